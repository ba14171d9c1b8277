import Foundation

/// The iOS app's launch-argument contract for an unattended benchmark (the JVM core's `BenchmarkRequest` for
/// the Android activity's intent extras):
///
///     -benchmark YES [-runs N] [-warmup N] [-minSeconds S] [-minBlocks N]
///                    [-computeUnits ALL|CPU_ONLY|CPU_AND_GPU|CPU_AND_NE] [-report NAME]
///
/// The arguments arrive as UserDefaults' argument domain (`UserDefaults.standard.volatileDomain(forName:
/// UserDefaults.argumentDomain)`): a `[String: Any]` whose values are strings (or numbers). Parsed here, so the
/// contract is tested wherever Swift runs; the app only hands the domain over. The report goes to
/// `Documents/NAME` (default `report.json`), a failure to `Documents/NAME.error` with one line. NAME is a plain
/// file name: the launch arguments come from outside the app, and a path could write anywhere in its sandbox.
public struct BenchmarkRequest: Equatable {
    public static let keyBenchmark = "benchmark"
    public static let keyRuns = "runs"
    public static let keyWarmup = "warmup"
    public static let keyMinSeconds = "minSeconds"
    public static let keyMinBlocks = "minBlocks"
    public static let keyComputeUnits = "computeUnits"
    public static let keyReport = "report"

    public static let defaultReport = "report.json"
    /// Core ML's compute units by their launch-argument names (`ComputeUnits` raw values).
    public static let computeUnitNames = ["ALL", "CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE"]

    public var runs: Int
    public var warmup: Int
    public var minSeconds: Double
    public var minBlocks: Int
    public var computeUnits: String
    public var reportName: String

    /// The benchmark settings of this request (Core ML, the runtime's default threads).
    public var settings: BenchmarkSettings {
        return BenchmarkSettings(runtime: "coreml", runs: runs, warmup: warmup, threads: 0, minSeconds: minSeconds,
                                 minBlocks: minBlocks)
    }

    /// Whether `-benchmark YES` (or true / 1) was given.
    public static func isRequested(_ args: [String: Any]) -> Bool {
        guard let v = args[keyBenchmark] else { return false }
        if let n = v as? NSNumber { return n.boolValue }
        return ["yes", "true", "1"].contains(String(describing: v).trimmingCharacters(in: .whitespaces).lowercased())
    }

    /// Where the report goes: `-report NAME` when it is a valid file name, else `report.json`, even when other
    /// arguments are bad (so the error line lands where the caller polls).
    public static func reportName(_ args: [String: Any]) -> String {
        return (try? checkedName(args[keyReport])) ?? defaultReport
    }

    /// Reads and checks the arguments; a bad one throws a one-line `CLIPDeployError(.benchmark, ...)`.
    public static func parse(_ args: [String: Any]) throws -> BenchmarkRequest {
        let d = BenchmarkSettings()
        let r = BenchmarkRequest(
            runs: try int(args, keyRuns, d.runs), warmup: try int(args, keyWarmup, d.warmup),
            minSeconds: try number(args, keyMinSeconds, d.minSeconds), minBlocks: try int(args, keyMinBlocks, d.minBlocks),
            computeUnits: try units(args[keyComputeUnits]), reportName: try checkedName(args[keyReport]))
        if r.runs < 1 { throw CLIPDeployError(.benchmark, "-runs must be at least 1, got \(r.runs)") }
        if r.warmup < 0 { throw CLIPDeployError(.benchmark, "-warmup must be 0 or more, got \(r.warmup)") }
        if !r.minSeconds.isFinite || r.minSeconds < 0 {
            throw CLIPDeployError(.benchmark, "-minSeconds must be a finite number, 0 or more, got \(r.minSeconds)")
        }
        if r.minBlocks < 1 { throw CLIPDeployError(.benchmark, "-minBlocks must be at least 1, got \(r.minBlocks)") }
        try r.settings.validate()
        return r
    }

    private static func text(_ v: Any?) -> String? {
        guard let v = v, !(v is NSNull) else { return nil }
        if let s = v as? String { return s.trimmingCharacters(in: .whitespaces) }
        if let n = v as? NSNumber { return n.stringValue }
        return String(describing: v)
    }

    private static func int(_ args: [String: Any], _ key: String, _ dflt: Int) throws -> Int {
        guard let t = text(args[key]) else { return dflt }
        guard let v = Int(t) else { throw CLIPDeployError(.benchmark, "-\(key) must be an integer, got '\(t)'") }
        return v
    }

    private static func number(_ args: [String: Any], _ key: String, _ dflt: Double) throws -> Double {
        guard let t = text(args[key]) else { return dflt }
        guard let v = Double(t) else { throw CLIPDeployError(.benchmark, "-\(key) must be a number, got '\(t)'") }
        return v
    }

    private static func units(_ v: Any?) throws -> String {
        guard let t = text(v), !t.isEmpty else { return "ALL" }
        guard computeUnitNames.contains(t.uppercased()) else {
            throw CLIPDeployError(.benchmark, "unknown -computeUnits '\(t)': use "
                                  + computeUnitNames.joined(separator: ", "))
        }
        return t.uppercased()
    }

    private static func checkedName(_ v: Any?) throws -> String {
        guard let t = text(v), !t.isEmpty else { return defaultReport }
        guard !t.contains("/"), !t.contains("\\"), !t.hasPrefix("."), !t.contains("\0") else {
            throw CLIPDeployError(.benchmark, "-report must be a file name in Documents (no '/', no leading '.'), "
                                  + "got '\(t)'")
        }
        return t
    }
}
