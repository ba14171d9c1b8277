import Foundation
import XCTest
@testable import CLIPDeployKit

/// A memory probe for tests: a constant footprint (the JVM tests use MemoryProbe.JvmHeap).
final class FixedMemory: MemoryProbe {
    func currentMb() -> Double { 12.5 }
    func peakMb() -> Double { 20.0 }
    var source: String { "test constant" }
}

/// The benchmark half of the JVM core's BundleBenchmarkReportTest: the ReferenceRuntime through the
/// benchmark on goldens/bundle.
final class BenchmarkTests: XCTestCase {
    func testBenchmarkMeasuresEveryPhaseAndParity() throws {
        let b = try Goldens.bundle()
        let s = BenchmarkSettings(runtime: "reference", runs: 12, warmup: 2, threads: 1)
        var phases = ""
        let recs = try Benchmark.runAll(bundle: b, runtimes: [ReferenceRuntime()], settings: s,
                                        memory: PhysFootprintProbe(),
                                        progress: { _, phase, _, _ in phases += phase + " " })
        XCTAssertEqual(recs.count, 2)
        for r in recs {
            XCTAssertEqual(r["status"] as? String, "ok", "\(r["reason"] ?? "")")
            XCTAssertEqual(r["id"] as? String, "\(r["artifact"] ?? "")@reference")
            let steady = try Json.map(r["steady"])
            let xs = try XCTUnwrap(steady["samples_ms"] as? [Double])
            XCTAssertEqual(xs.count, 12)
            for x in xs { XCTAssertGreaterThan(x, 0) }
            let stats = try Json.map(steady["stats"])
            XCTAssertEqual(try Json.int(stats["n"]), 12)
            // the statistics are those of the raw samples
            let again = try Stats.summarize(xs).toDictionary()
            for k in Stats.Summary.keys { XCTAssertEqual(try Json.num(stats[k]), try Json.num(again[k]), k) }
            XCTAssertEqual(try Json.num(steady["seconds"]), xs.reduce(0, +) / 1e3, accuracy: 1e-9)
            let load = try Json.map(r["load"])
            XCTAssertGreaterThan(try Json.num(load["cold_s"]), 0)
            XCTAssertGreaterThan(try Json.num(load["warm_s"]), 0)
            XCTAssertTrue(Json.isNull(load["import_s"]))
            XCTAssertGreaterThan(try Json.num(r["first_inference_ms"]), 0)
            let par = try Json.map(r["parity"])
            XCTAssertLessThanOrEqual(try Json.num(par["max_abs"]), 1e-5, "max abs \(par["max_abs"] ?? "")")
            XCTAssertEqual(try Json.num(par["zero_shot_agreement"]), 1.0)
            XCTAssertEqual(try Json.int(par["n"]), (r["encoder"] as? String) == "image" ? 6 : 8)
            XCTAssertEqual(Json.bool(par["finite"]), true)
            XCTAssertEqual(Benchmark.passes(r), true)
            XCTAssertNotNil(r["export_parity"] as? [String: Any])
            XCTAssertEqual(r["phase_reached"] as? String, "done")
            let mem = try Json.map(r["memory"])
            XCTAssertEqual(mem["source"] as? String, "task_vm_info.phys_footprint")
            XCTAssertGreaterThan(try Json.num(mem["peak_rss_mb"]), 0)
        }
        for ph in ["configure", "cold_load", "first_inference", "warm_load", "warmup", "steady", "parity", "done"] {
            XCTAssertTrue(phases.contains(ph + " "), "\(ph) missing from \(phases)")
        }
        let cold = try XCTUnwrap(phases.range(of: "cold_load"))
        let first = try XCTUnwrap(phases.range(of: "first_inference"))
        let warm = try XCTUnwrap(phases.range(of: "warm_load"))
        XCTAssertTrue(cold.lowerBound < first.lowerBound && first.lowerBound < warm.lowerBound)
    }

    func testMinSecondsExtendsTheSteadyState() throws {
        let b = try Goldens.bundle()
        var s = BenchmarkSettings(runtime: "reference", runs: 1, warmup: 0, threads: 0)
        s.minSeconds = 0.05
        let r = Benchmark.measure(bundle: b, artifact: b.artifacts[0], runtime: ReferenceRuntime(), settings: s,
                                  memory: FixedMemory())
        let steady = try Json.map(r["steady"])
        XCTAssertGreaterThan(try XCTUnwrap(steady["samples_ms"] as? [Double]).count, 1)
        XCTAssertGreaterThanOrEqual(try Json.num(steady["seconds"]), 0.05)
    }

    func testPerturbedWeightsFailTheBarsByOrdersOfMagnitude() throws {
        let b = try Goldens.bundle()
        let s = BenchmarkSettings(runtime: "reference", runs: 3, warmup: 0, threads: 0)
        for r in try Benchmark.runAll(bundle: b, runtimes: [ReferenceRuntime(perturb: 0.01)], settings: s,
                                      memory: FixedMemory()) {
            let par = try Json.map(r["parity"])
            let maxAbs = try Json.num(par["max_abs"])
            XCTAssertGreaterThan(maxAbs, 1e-4, "\(r["artifact"] ?? ""): max abs \(maxAbs)")
            let fig = Parity.Figures(maxAbs: maxAbs, cosineMin: try Json.num(par["cosine_min"]),
                                     cosineMean: try Json.num(par["cosine_mean"]),
                                     zeroShotAgreement: try Json.num(par["zero_shot_agreement"]),
                                     n: try Json.int(par["n"]), finite: true)
            XCTAssertFalse(try Parity.failures(fig, precision: "fp32").isEmpty)
            XCTAssertEqual(Benchmark.passes(r), false)
        }
        let f = try Parity.measure(reference: [[1]], got: [[1]], otherTower: [[1]])
        XCTAssertTrue(try Parity.failures(f, precision: "fp32").isEmpty)
    }

    func testOtherRuntimesAreSkippedAndFailuresAreRecorded() throws {
        let b = try Goldens.bundle()
        let s = BenchmarkSettings(runtime: "executorch", runs: 3, warmup: 0, threads: 0)
        for r in try Benchmark.runAll(bundle: b, runtimes: [ReferenceRuntime()], settings: s, memory: FixedMemory()) {
            XCTAssertEqual(r["status"] as? String, "skipped")
            XCTAssertTrue((r["reason"] as? String ?? "").contains("not requested"))
        }
        let r = Benchmark.measure(bundle: b, artifact: b.artifacts[0], runtime: BrokenRuntime(),
                                  settings: BenchmarkSettings(runtime: "reference", runs: 3, warmup: 0, threads: 0),
                                  memory: FixedMemory())
        XCTAssertEqual(r["status"] as? String, "error")
        XCTAssertEqual(r["phase_reached"] as? String, "cold_load")
        XCTAssertTrue((r["reason"] as? String ?? "").contains("cannot map"))
        XCTAssertNil(r["steady"])
    }

    /// Swift only: a run can be cancelled between samples; the record says so.
    func testCancellationIsAnErrorRecord() throws {
        let b = try Goldens.bundle()
        let s = BenchmarkSettings(runtime: "reference", runs: 50, warmup: 0, threads: 0)
        let r = Benchmark.measure(bundle: b, artifact: b.artifacts[1], runtime: ReferenceRuntime(), settings: s,
                                  memory: FixedMemory(), isCancelled: { true })
        XCTAssertEqual(r["status"] as? String, "error")
        XCTAssertEqual(r["phase_reached"] as? String, "steady")
        XCTAssertTrue((r["reason"] as? String ?? "").contains("cancelled"))
    }
}

/// A runtime whose load fails (the JVM test's anonymous `broken` runtime).
final class BrokenRuntime: EncoderRuntime {
    var name: String { "reference" }
    func supports(_ artifact: ModelBundle.Artifact) -> Bool { true }
    func configure(threads: Int) {}
    func versions() -> [String: Any] { [:] }
    func options() -> [String: Any] { [:] }
    func load(_ artifact: ModelBundle.Artifact) throws -> EncoderSession {
        throw CLIPDeployError(.encoder, "cannot map \(artifact.path)")
    }
}
