import Foundation

/// A clip-latency report (schema_version 1, `latency/report.schema.json`) as the apps write it (the JVM
/// core's `LatencyReport`): `clip-latency ingest` and `compare` read it like a host report. Written to
/// `<report>.tmp` and moved into place when complete; a failed run leaves one line in `<report>.error`.
public final class LatencyReport {
    public static let schemaVersion = 1
    public static let kind = "clipdeploy-latency-report"
    /// What every consumer relies on (the schema's required keys).
    public static let requiredKeys = ["schema_version", "kind", "created", "tool", "source", "bundle", "host",
                                      "settings", "records"]
    public static let requiredRecordKeys = ["id", "model", "artifact", "target", "precision", "encoder", "runtime",
                                            "status"]
    public static let requiredOkRecordKeys = ["load", "first_inference_ms", "steady", "memory", "parity"]

    private let source: String
    private let toolName: String
    private let toolVersion: String?
    private var bundleInfo: [String: Any] = [:]
    private var hostInfo: HostInfo = HostInfo.current()
    private var settingsInfo: [String: Any] = [:]
    public private(set) var records: [[String: Any]] = []
    private var createdAt = Date()

    public init(source: String, toolName: String, toolVersion: String?) throws {
        guard !source.isEmpty else {
            throw CLIPDeployError(.report, "a report needs a source (android-app, ios-app, ...)")
        }
        self.source = source
        self.toolName = toolName
        self.toolVersion = toolVersion
    }

    @discardableResult
    public func bundle(_ b: ModelBundle, devicePath: String? = nil) -> LatencyReport {
        let m = b.manifest
        bundleInfo = ["path": devicePath ?? b.dir.path, "model": b.model,
                      "manifest_created": Json.orNull(m["created"] as? String),
                      "clipdeploy_version": Json.orNull(m["clipdeploy_version"] as? String),
                      "checkpoint": Json.orNull(m["checkpoint"] as? [String: Any])]
        return self
    }

    @discardableResult
    public func host(_ h: HostInfo) -> LatencyReport {
        hostInfo = h
        return self
    }

    @discardableResult
    public func created(_ when: Date) -> LatencyReport {
        createdAt = when
        return self
    }

    @discardableResult
    public func settings(_ s: BenchmarkSettings, runtimes: [String]) -> LatencyReport {
        settingsInfo = ["threads": s.threads > 0 ? s.threads as Any : NSNull() as Any, "warmup": s.warmup, "runs": s.runs,
                        "min_seconds": s.minSeconds, "min_blocks": s.minBlocks, "timeout_s": NSNull(), "work_factor": 1,
                        "runtimes": runtimes, "peak_gflops_per_core": NSNull()]
        return self
    }

    @discardableResult
    public func addRecord(_ record: [String: Any]) -> LatencyReport {
        records.append(record)
        return self
    }

    /// ISO 8601 with the time zone's offset, e.g. 2026-11-30T12:00:00+01:00 (never "Z": +00:00).
    public static func isoTimestamp(_ date: Date, timeZone: TimeZone = .current) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.calendar = Calendar(identifier: .gregorian)
        f.timeZone = timeZone
        f.dateFormat = "yyyy-MM-dd'T'HH:mm:ssxxxxx"
        return f.string(from: date)
    }

    public func toDictionary() throws -> [String: Any] {
        guard bundleInfo["model"] != nil else {
            throw CLIPDeployError(.report, "report has no bundle: call bundle(...) first")
        }
        guard !settingsInfo.isEmpty else {
            throw CLIPDeployError(.report, "report has no settings: call settings(...) first")
        }
        return ["schema_version": LatencyReport.schemaVersion, "kind": LatencyReport.kind,
                "created": LatencyReport.isoTimestamp(createdAt),
                "tool": ["name": toolName, "version": Json.orNull(toolVersion)] as [String: Any],
                "source": source, "bundle": bundleInfo, "host": hostInfo.toDictionary(), "settings": settingsInfo,
                "calibration": NSNull(), "records": records]
    }

    public func toJSON() throws -> String {
        return try Json.write(toDictionary(), pretty: true) + "\n"
    }

    /// Write `<report>.tmp`, then move it to `report` (a reader never sees half a report).
    public func writeAtomically(to report: URL) throws {
        let text = try toJSON()
        try LatencyReport.writeAtomically(Data(text.utf8), to: report)
    }

    static func writeAtomically(_ data: Data, to report: URL) throws {
        let fm = FileManager.default
        let parent = report.deletingLastPathComponent()
        do {
            try fm.createDirectory(at: parent, withIntermediateDirectories: true)
        } catch {
            throw CLIPDeployError(.report, "cannot create \(parent.path): choose a writable report path")
        }
        let tmp = URL(fileURLWithPath: report.path + ".tmp")
        do {
            try data.write(to: tmp)
        } catch {
            try? fm.removeItem(at: tmp)
            throw CLIPDeployError(.report, "cannot write \(report.path): \(oneLine(error))")
        }
        // rename(2) replaces an existing report atomically on every platform. FileManager's replaceItemAt is
        // Darwin's exchange-and-delete; swift-corelibs-foundation's fails when the report already exists.
        if rename(tmp.path, report.path) != 0 {
            let reason = String(cString: strerror(errno))
            try? fm.removeItem(at: tmp)
            throw CLIPDeployError(.report, "cannot write \(report.path): \(reason)")
        }
    }

    /// The failure contract: one line in `<report>.error` (what `clip-latency android` shows).
    public static func writeError(to report: URL, message: String?) throws {
        let text = (message ?? "unknown error").replacingOccurrences(of: "\n", with: " ")
            .replacingOccurrences(of: "\r", with: " ").trimmingCharacters(in: .whitespaces)
        try writeAtomically(Data((text + "\n").utf8), to: URL(fileURLWithPath: report.path + ".error"))
    }

    /// Read a report and check what every consumer relies on: schema version, kind, the required keys.
    public static func read(_ url: URL) throws -> [String: Any] {
        let m = try Json.map(Json.parse(contentsOf: url))
        guard let v = Json.optionalNumber(m["schema_version"]), v == Double(schemaVersion) else {
            throw CLIPDeployError(.report, "\(url.path): schema_version \(m["schema_version"] ?? "null") is not "
                                  + "supported (\(schemaVersion))")
        }
        guard (m["kind"] as? String) == kind else {
            throw CLIPDeployError(.report, "\(url.path): not a clipdeploy latency report (kind "
                                  + "\(m["kind"] ?? "null"))")
        }
        for k in requiredKeys where m[k] == nil {
            throw CLIPDeployError(.report, "\(url.path): report has no '\(k)'")
        }
        for o in try Json.list(m["records"]) {
            let r = try Json.map(o)
            for k in requiredRecordKeys where r[k] == nil {
                throw CLIPDeployError(.report, "\(url.path): a record has no '\(k)'")
            }
            if (r["status"] as? String) == "ok" {
                for k in requiredOkRecordKeys where r[k] == nil {
                    throw CLIPDeployError(.report, "\(url.path): record \(r["id"] ?? "?") is ok but has no '\(k)'")
                }
            }
        }
        return m
    }
}
