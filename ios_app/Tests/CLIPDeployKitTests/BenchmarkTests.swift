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
        let s = BenchmarkSettings(runtime: "reference", runs: 12, warmup: 2, threads: 1, minSeconds: 0, minBlocks: 1)
        var phases = ""
        let recs = try Benchmark.runAll(bundle: b, runtimes: [ReferenceRuntime()], settings: s,
                                        memory: MemoryProbes.platform(),
                                        progress: { _, phase, _, _ in phases += phase + " " })
        XCTAssertEqual(recs.count, 3)                               // image, text and the zero-shot classifier
        // every artifact has its own file (the classifier too): id = path@runtime, as in Python
        XCTAssertEqual(Set(recs.compactMap { $0["id"] as? String }).count, 3, "record ids are unique")
        for r in recs {
            XCTAssertEqual(r["status"] as? String, "ok", "\(r["reason"] ?? "")")
            XCTAssertEqual(r["id"] as? String, "\(r["artifact"] ?? "")@reference")
            let steady = try Json.map(r["steady"])
            let xs = try XCTUnwrap(steady["samples_ms"] as? [Double])
            XCTAssertGreaterThanOrEqual(xs.count, 12)               // minBlocks 1: one block of >= 0.25 s
            for x in xs { XCTAssertGreaterThan(x, 0) }
            XCTAssertEqual(try Json.int(steady["work_factor"]), 1)
            XCTAssertEqual(try XCTUnwrap(steady["block_ends"] as? [Int]).last, xs.count)
            let stats = try Json.map(steady["stats"])
            XCTAssertEqual(try Json.int(stats["n"]), xs.count)
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
            XCTAssertEqual(try Json.int(par["n"]), (r["encoder"] as? String) == "text" ? 8 : 6)
            if r["encoder"] as? String == "classifier" {
                // logits against the probe's reference image embeddings x the class matrix x logit_scale: the
                // reference classifier applies the head to the image encoder's float32 output, hence exactly
                XCTAssertEqual(try Json.num(par["top1_agreement"]), 1.0)
                XCTAssertEqual(try Json.num(par["max_abs_cosine_units"]), 0, accuracy: 1e-8)
                XCTAssertGreaterThan(try Json.num(par["cosine_min"]), 0.999999)
            }
            XCTAssertEqual(Json.bool(par["finite"]), true)
            XCTAssertEqual(Benchmark.passes(r), true)
            XCTAssertNotNil(r["export_parity"] as? [String: Any])
            XCTAssertEqual(r["phase_reached"] as? String, "done")
            let mem = try Json.map(r["memory"])
            XCTAssertEqual(mem["source"] as? String, MemoryProbes.platform().source)
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
        // longer than one block
        let s = BenchmarkSettings(runtime: "reference", runs: 1, warmup: 0, threads: 0, minSeconds: 0.6, minBlocks: 1)
        let r = Benchmark.measure(bundle: b, artifact: b.artifacts[0], runtime: ReferenceRuntime(), settings: s,
                                  memory: FixedMemory())
        let steady = try Json.map(r["steady"])
        XCTAssertGreaterThan(try XCTUnwrap(steady["samples_ms"] as? [Double]).count, 1)
        XCTAssertGreaterThanOrEqual(try Json.num(steady["seconds"]), 0.6)
    }

    /// The default settings: at least 50 samples, 2 s of timed work and 8 blocks of >= 0.25 s and >= 3 samples.
    func testDefaultSettingsSampleInBlocks() throws {
        let b = try Goldens.bundle()
        var s = BenchmarkSettings()
        XCTAssertEqual(s.runs, 50)
        XCTAssertEqual(s.minSeconds, 2.0)
        XCTAssertEqual(s.minBlocks, 8)
        XCTAssertEqual(BenchmarkSettings.blockSeconds, 0.25)
        XCTAssertEqual(BenchmarkSettings.blockMinSamples, 3)
        s.runtime = "reference"
        let image = b.artifacts[0]
        XCTAssertEqual(image.encoder, "image")
        let r = Benchmark.measure(bundle: b, artifact: image, runtime: ReferenceRuntime(), settings: s,
                                  memory: FixedMemory())
        XCTAssertEqual(r["status"] as? String, "ok", "\(r["reason"] ?? "")")
        let steady = try Json.map(r["steady"])
        XCTAssertEqual(try Json.int(steady["work_factor"]), 1)
        let xs = try XCTUnwrap(steady["samples_ms"] as? [Double])
        let ends = try XCTUnwrap(steady["block_ends"] as? [Int])
        XCTAssertGreaterThanOrEqual(xs.count, 50)
        XCTAssertGreaterThanOrEqual(try Json.num(steady["seconds"]), 2.0)
        XCTAssertGreaterThanOrEqual(xs.reduce(0, +) / 1000, 2.0 - 1e-9)
        XCTAssertGreaterThanOrEqual(ends.count, 8, "\(ends)")
        XCTAssertEqual(ends.last, xs.count)
        var prev = 0
        for (k, end) in ends.enumerated() {
            XCTAssertGreaterThan(end, prev, "\(ends)")
            if k < ends.count - 1 {                          // a full block; the last may be partial
                let blockMs = xs[prev..<end].reduce(0, +)
                XCTAssertGreaterThanOrEqual(end - prev, 3, "block \(k): \(end - prev) samples")
                XCTAssertGreaterThanOrEqual(blockMs / 1000, 0.25, "block \(k): \(blockMs) ms")
            }
            prev = end
        }
    }

    /// The small case, minBlocks 1 and minSeconds 0: one closed block, so at least `blockSeconds` of timed work
    /// even when `runs` samples take much less (as clip-latency's worker).
    func testOneBlockIsTheSmallCase() throws {
        let b = try Goldens.bundle()
        for a in b.artifacts {
            let s = BenchmarkSettings(runtime: "reference", runs: 5, warmup: 0, threads: 0, minSeconds: 0, minBlocks: 1)
            let r = Benchmark.measure(bundle: b, artifact: a, runtime: ReferenceRuntime(), settings: s,
                                      memory: FixedMemory())
            let steady = try Json.map(r["steady"])
            let xs = try XCTUnwrap(steady["samples_ms"] as? [Double])
            let ends = try XCTUnwrap(steady["block_ends"] as? [Int])
            XCTAssertGreaterThanOrEqual(xs.count, 5)
            XCTAssertEqual(ends.last, xs.count)
            let first = try XCTUnwrap(ends.first)
            XCTAssertGreaterThanOrEqual(first, 3)
            XCTAssertGreaterThanOrEqual(xs[0..<first].reduce(0, +) / 1000, 0.25)
            XCTAssertGreaterThanOrEqual(try Json.num(steady["seconds"]), 0.25)
            // five reference calls take far less than 0.25 s: the run stopped as its one block closed
            if xs.count > 5 { XCTAssertEqual(ends, [xs.count]) }
        }
    }

    /// A block needs `blockMinSamples` samples even when fewer already make `blockSeconds`; `minBlocks` counts
    /// closed blocks; samples after the last closed block (`runs` not reached yet) make a partial last block.
    /// The reference runtime, 150 ms a call in the steady state.
    func testBlocksCloseOnTimeAndSampleCountAndEndWithAPartialBlock() throws {
        let b = try Goldens.bundle()
        let sleepy = SleepyRuntime()
        let s = BenchmarkSettings(runtime: "reference", runs: 7, warmup: 0, threads: 0, minSeconds: 0, minBlocks: 2)
        let r = Benchmark.measure(bundle: b, artifact: b.artifacts[0], runtime: sleepy, settings: s,
                                  memory: FixedMemory(), progress: { _, phase, _, _ in
                                      if phase == "warmup" { sleepy.slow = true }   // 0 warmup calls: next are steady
                                      if phase == "parity" { sleepy.slow = false }
                                  })
        XCTAssertEqual(r["status"] as? String, "ok", "\(r["reason"] ?? "")")
        let steady = try Json.map(r["steady"])
        // 2 samples (>= 0.3 s) are too few for a block, the 3rd closes it; likewise the 6th; 2 blocks but 7 runs:
        // the 7th sample is the last, partial block
        XCTAssertEqual(steady["block_ends"] as? [Int], [3, 6, 7])
        XCTAssertEqual((steady["samples_ms"] as? [Double])?.count, 7)
    }

    func testSettingsAreValidated() throws {
        XCTAssertThrowsError(try BenchmarkSettings(runtime: "reference", runs: 5, minSeconds: 0, minBlocks: 0).validate()) {
            XCTAssertTrue(oneLine($0).contains("minBlocks must be at least 1"), oneLine($0))
        }
        for bad in [-1.0, Double.nan, Double.infinity] {
            XCTAssertThrowsError(try BenchmarkSettings(runtime: "reference", runs: 5, minSeconds: bad, minBlocks: 1).validate()) {
                XCTAssertTrue(oneLine($0).contains("minSeconds must be 0 or more"), oneLine($0))
            }
        }
        XCTAssertNoThrow(try BenchmarkSettings().validate())
    }

    func testPerturbedWeightsFailTheBarsByOrdersOfMagnitude() throws {
        let b = try Goldens.bundle()
        let s = BenchmarkSettings(runtime: "reference", runs: 3, warmup: 0, threads: 0, minSeconds: 0, minBlocks: 1)
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
        let s = BenchmarkSettings(runtime: "executorch", runs: 3, warmup: 0, threads: 0, minSeconds: 0, minBlocks: 1)
        for r in try Benchmark.runAll(bundle: b, runtimes: [ReferenceRuntime()], settings: s, memory: FixedMemory()) {
            XCTAssertEqual(r["status"] as? String, "skipped")
            XCTAssertTrue((r["reason"] as? String ?? "").contains("not requested"))
        }
        let r = Benchmark.measure(bundle: b, artifact: b.artifacts[0], runtime: BrokenRuntime(),
                                  settings: BenchmarkSettings(runtime: "reference", runs: 3, warmup: 0, threads: 0,
                                                              minSeconds: 0, minBlocks: 1),
                                  memory: FixedMemory())
        XCTAssertEqual(r["status"] as? String, "error")
        XCTAssertEqual(r["phase_reached"] as? String, "cold_load")
        XCTAssertTrue((r["reason"] as? String ?? "").contains("cannot map"))
        XCTAssertNil(r["steady"])
    }

    /// Swift only: a run can be cancelled between samples; the record says so.
    func testCancellationIsAnErrorRecord() throws {
        let b = try Goldens.bundle()
        let s = BenchmarkSettings(runtime: "reference", runs: 50, warmup: 0, threads: 0, minSeconds: 0, minBlocks: 1)
        let r = Benchmark.measure(bundle: b, artifact: b.artifacts[1], runtime: ReferenceRuntime(), settings: s,
                                  memory: FixedMemory(), isCancelled: { true })
        XCTAssertEqual(r["status"] as? String, "error")
        XCTAssertEqual(r["phase_reached"] as? String, "steady")
        XCTAssertTrue((r["reason"] as? String ?? "").contains("cancelled"))
    }
}

/// The reference runtime, sleeping 150 ms before each call while `slow` (the JVM test's anonymous `sleepy`).
final class SleepyRuntime: EncoderRuntime {
    let ref = ReferenceRuntime()
    var slow = false
    var name: String { ref.name }
    func supports(_ artifact: ModelBundle.Artifact) -> Bool { ref.supports(artifact) }
    func configure(threads: Int) { ref.configure(threads: threads) }
    func versions() -> [String: Any] { ref.versions() }
    func options() -> [String: Any] { ref.options() }
    func load(_ artifact: ModelBundle.Artifact) throws -> EncoderSession {
        return SleepySession(inner: try ref.load(artifact), runtime: self)
    }
}

final class SleepySession: EncoderSession {
    let inner: EncoderSession
    let runtime: SleepyRuntime
    init(inner: EncoderSession, runtime: SleepyRuntime) {
        self.inner = inner
        self.runtime = runtime
    }
    func encodeImage(_ chw: [Float], size: Int) throws -> [Float] {
        if runtime.slow { Thread.sleep(forTimeInterval: 0.15) }
        return try inner.encodeImage(chw, size: size)
    }
    func encodeText(_ ids: [Int32]) throws -> [Float] {
        if runtime.slow { Thread.sleep(forTimeInterval: 0.15) }
        return try inner.encodeText(ids)
    }
    func close() { inner.close() }
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
