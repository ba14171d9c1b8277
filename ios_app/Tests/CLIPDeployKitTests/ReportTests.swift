import Foundation
import XCTest
@testable import CLIPDeployKit

/// The report half of the JVM core's BundleBenchmarkReportTest, plus a check of a written report against the
/// required keys of latency/report.schema.json.
final class ReportTests: XCTestCase {
    func makeReport(runs: Int = 5, warmup: Int = 1, threads: Int = 2) throws -> LatencyReport {
        let b = try Goldens.bundle()
        // minSeconds 0 / minBlocks 1: the smallest run (at least `runs` samples and one 0.25 s block)
        let s = BenchmarkSettings(runtime: "reference", runs: runs, warmup: warmup, threads: threads, minSeconds: 0,
                                  minBlocks: 1)
        let rep = try LatencyReport(source: "ios-app", toolName: "CLIPDeployKit tests", toolVersion: KitInfo.version)
            .bundle(b, devicePath: "/var/mobile/Containers/Data/Application/X/Documents/golden_linear")
            .settings(s, runtimes: ["reference"])
            .host(HostInfo.current())
        for r in try Benchmark.runAll(bundle: b, runtimes: [ReferenceRuntime()], settings: s, memory: MemoryProbes.platform()) {
            rep.addRecord(r)
        }
        return rep
    }

    func testReportIsWrittenAtomicallyAndReadsBack() throws {
        let rep = try makeReport()
        let tmp = try Goldens.temporaryDirectory(self)
        let out = tmp.appendingPathComponent("sub/report.json")
        try rep.writeAtomically(to: out)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path + ".tmp"))
        // a second write replaces the first
        try rep.writeAtomically(to: out)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path + ".tmp"))
        let m = try LatencyReport.read(out)
        XCTAssertEqual(try Json.int(m["schema_version"]), 1)
        XCTAssertEqual(m["kind"] as? String, "clipdeploy-latency-report")
        XCTAssertEqual(m["source"] as? String, "ios-app")
        XCTAssertEqual(try Json.map(m["bundle"])["path"] as? String,
                       "/var/mobile/Containers/Data/Application/X/Documents/golden_linear")
        XCTAssertEqual(try Json.map(m["bundle"])["model"] as? String, "golden_linear")
        XCTAssertEqual(try Json.int(Json.map(m["settings"])["threads"]), 2)
        XCTAssertEqual(try Json.num(Json.map(m["settings"])["min_seconds"]), 0)
        XCTAssertEqual(try Json.int(Json.map(m["settings"])["min_blocks"]), 1)
        XCTAssertTrue(Json.isNull(m["calibration"]))
        let created = try Json.str(m["created"])
        XCTAssertNotNil(created.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$"#, options: .regularExpression),
                        created)
        let recs = try Json.list(m["records"])
        XCTAssertEqual(recs.count, 3)
        let r0 = try Json.map(recs[0])
        let n = try Json.list(Json.map(r0["steady"])["samples_ms"]).count
        XCTAssertGreaterThanOrEqual(n, 5)
        XCTAssertEqual(try Json.ints(Json.map(r0["steady"])["block_ends"]).last, n)

        try LatencyReport.writeError(to: out, message: "bundle not found:\n/x")
        XCTAssertEqual(try String(contentsOf: URL(fileURLWithPath: out.path + ".error"), encoding: .utf8),
                       "bundle not found: /x\n")
    }

    func testSampleDeviceReportParsesAndItsStatisticsAreOurs() throws {
        let m = try LatencyReport.read(Goldens.file("report_sample.json"))
        var ok = 0
        for o in try Json.list(m["records"]) {
            let r = try Json.map(o)
            if (r["status"] as? String) != "ok" {
                XCTAssertNotNil(r["reason"] as? String)
                continue
            }
            ok += 1
            let steady = try Json.map(r["steady"])
            let want = try Json.map(steady["stats"])
            let got = try Stats.summarize(try Json.doubles(steady["samples_ms"])).toDictionary()
            for k in want.keys {
                XCTAssertEqual(try Json.num(want[k]), try Json.num(got[k]), accuracy: 1e-9, k)
            }
        }
        XCTAssertEqual(ok, 2)
        let tmp = try Goldens.temporaryDirectory(self)
        let bad = tmp.appendingPathComponent("bad.json")
        try Data("{\"schema_version\": 2, \"kind\": \"clipdeploy-latency-report\"}".utf8).write(to: bad)
        XCTAssertThrowsError(try LatencyReport.read(bad)) { error in
            XCTAssertTrue(oneLine(error).contains("schema_version 2 is not supported"), oneLine(error))
        }
    }

    /// Swift only: every key the JSON schema requires is in the report we write (top level, bundle, host,
    /// settings, each record and, for ok records, load / steady / stats / memory / parity), with the types
    /// the schema's integer and nullable fields need.
    func testWrittenReportHasEverySchemaField() throws {
        let rep = try makeReport(runs: 3, warmup: 0, threads: 0)
        let tmp = try Goldens.temporaryDirectory(self)
        let out = tmp.appendingPathComponent("report.json")
        try rep.writeAtomically(to: out)
        let m = try LatencyReport.read(out)
        let schemaURL = try Goldens.dir().deletingLastPathComponent().appendingPathComponent("latency/report.schema.json")
        guard FileManager.default.fileExists(atPath: schemaURL.path) else {
            throw XCTSkip("latency/report.schema.json is not beside the goldens (\(schemaURL.path))")
        }
        let schema = try Json.map(Json.parse(contentsOf: schemaURL))
        let props = try Json.map(schema["properties"])
        let defs = try Json.map(schema["$defs"])
        func required(_ node: Any?) throws -> [String] { try Json.strings(Json.map(node)["required"]) }
        func check(_ obj: [String: Any], _ keys: [String], _ at: String) {
            for k in keys { XCTAssertTrue(obj.keys.contains(k), "\(at) has no '\(k)'") }
        }
        check(m, try required(schema), "report")
        check(try Json.map(m["bundle"]), try required(props["bundle"]), "bundle")
        let host = try Json.map(m["host"])
        check(host, try required(props["host"]), "host")
        check(host, Array(try Json.map(try Json.map(props["host"])["properties"]).keys), "host")
        let settings = try Json.map(m["settings"])
        check(settings, try required(props["settings"]), "settings")
        XCTAssertTrue(Json.isNull(settings["threads"]), "threads 0 (runtime default) is written as null")
        let record = try Json.map(defs["record"])
        let recProps = try Json.map(record["properties"])
        for o in try Json.list(m["records"]) {
            let r = try Json.map(o)
            check(r, try required(record), "record")
            check(r, try required(Json.map(record["then"])), "ok record")
            let steady = try Json.map(r["steady"])
            check(try Json.map(r["load"]), try required(recProps["load"]), "load")
            check(steady, try required(recProps["steady"]), "steady")
            check(try Json.map(steady["stats"]), try required(defs["stats"]), "stats")
            check(try Json.map(r["memory"]), try required(recProps["memory"]), "memory")
            check(try Json.map(r["parity"]), try required(defs["parity"]), "parity")
            XCTAssertEqual(try Json.int(Json.map(steady["stats"])["n"]), try Json.list(steady["samples_ms"]).count)
            XCTAssertEqual(try Json.int(steady["warmup"]), 0)
            XCTAssertEqual(try Json.int(steady["work_factor"]), 1)
            XCTAssertNotNil(Json.bool(try Json.map(r["parity"])["finite"]), "finite is a JSON boolean")
        }
        XCTAssertEqual(try Json.strings(settings["runtimes"]), ["reference"])
        XCTAssertNotNil(Json.optionalNumber(host["cpu_count_logical"]))
        XCTAssertNotNil(host["os"] as? String)
        // the raw text is strict JSON (no NaN / Infinity)
        let text = try String(contentsOf: out, encoding: .utf8)
        XCTAssertFalse(text.contains("NaN") || text.contains("Infinity"))
    }

    func testIsoTimestampHasAnOffset() {
        let d = Date(timeIntervalSince1970: 1_764_504_000)          // 2025-11-30T12:00:00Z
        XCTAssertEqual(LatencyReport.isoTimestamp(d, timeZone: TimeZone(identifier: "UTC")!), "2025-11-30T12:00:00+00:00")
        XCTAssertEqual(LatencyReport.isoTimestamp(d, timeZone: TimeZone(secondsFromGMT: 3600)!), "2025-11-30T13:00:00+01:00")
    }
}
