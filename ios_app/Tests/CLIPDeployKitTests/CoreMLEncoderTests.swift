// Core ML exists only on Apple platforms: on Linux neither the encoder nor these tests are compiled (the
// macOS CI job in .github/workflows/ios.yml runs them on an exported bundle).
#if canImport(CoreML)
import CoreML
import Foundation
import XCTest
@testable import CLIPDeployKit

/// Core ML on a real bundle: runs only when CLIPDEPLOY_BUNDLE points to a bundle exported with
/// `clip-export --target coreml` (the macOS CI job exports `mobileclip_s0 --random-weights 0`).
/// `CLIPDEPLOY_COMPUTE_UNITS` (ALL, CPU_ONLY, CPU_AND_GPU, CPU_AND_NE) picks the compute units (default ALL).
final class CoreMLEncoderTests: XCTestCase {
    func realBundle() throws -> ModelBundle {
        guard let p = ProcessInfo.processInfo.environment["CLIPDEPLOY_BUNDLE"], !p.isEmpty else {
            throw XCTSkip("set CLIPDEPLOY_BUNDLE to a bundle exported with clip-export --target coreml")
        }
        return try ModelBundle.open(URL(fileURLWithPath: p))
    }

    var computeUnits: ComputeUnits {
        let name = ProcessInfo.processInfo.environment["CLIPDEPLOY_COMPUTE_UNITS"] ?? "ALL"
        return ComputeUnits(rawValue: name) ?? .all
    }

    func coreMLArtifacts(_ b: ModelBundle) throws -> [ModelBundle.Artifact] {
        let arts = b.artifacts.filter { CoreMLRuntime().supports($0) }
        if arts.isEmpty { throw XCTSkip("\(b.dir.path) has no Core ML artifacts") }
        return arts
    }

    /// Every probe input through every Core ML artifact, held to its precision's bars (fp16: max abs <= 1.5e-3,
    /// cosine >= 0.99995; fp32: max abs <= 1e-5; zero-shot agreement 100 % for both).
    func testEncodersMeetTheParityBarsOnTheProbe() throws {
        let b = try realBundle()
        let p = try b.probe()
        for a in try coreMLArtifacts(b) {
            let enc = try CoreMLEncoder.load(a, computeUnits: computeUnits)
            defer { enc.close() }
            var got: [[Float]] = []
            if a.isImage {
                for x in p.images { got.append(try enc.encodeImage(x, size: p.imageSize)) }
            } else {
                for ids in p.tokenIds { got.append(try enc.encodeText(ids)) }
            }
            let fig = try Parity.measure(reference: a.isImage ? p.refImage : p.refText, got: got,
                                         otherTower: a.isImage ? p.refText : p.refImage)
            let failures = try Parity.failures(fig, precision: a.precision)
            XCTAssertEqual(failures, [], "\(a.path) (\(a.precision)): \(fig.summary)")
        }
    }

    /// The ImageType variant gets 8-bit pixels (the probe images rounded), so it is compared with the tensor
    /// model fed the same rounded pixels / 255: the same top-1 against the captions, cosine >= 0.9999.
    func testImageTypeVariantMatchesTheTensorModel() throws {
        let b = try realBundle()
        let p = try b.probe()
        let variants = b.artifactsWithVariants().filter { $0.takesPixels }
        if variants.isEmpty { throw XCTSkip("\(b.dir.path) has no ImageType variant") }
        for v in variants {
            guard let tensorArt = b.artifacts.first(where: { $0.imageTypeVariant == v.path }) else { continue }
            let pixels = try CoreMLEncoder.load(v, computeUnits: computeUnits)
            let tensor = try CoreMLEncoder.load(tensorArt, computeUnits: computeUnits)
            defer { pixels.close(); tensor.close() }
            var a: [[Float]] = [], t: [[Float]] = []
            for x in p.images {
                let img = try RGBImage.fromCHW(x, size: p.imageSize)
                a.append(try pixels.encode(pixelBuffer: try img.pixelBuffer()))
                t.append(try tensor.encodeImage(Preprocess.toCHW(img), size: p.imageSize))
            }
            let fig = try Parity.measure(reference: t, got: a, otherTower: p.refText)
            XCTAssertEqual(fig.zeroShotAgreement, 1.0, "\(v.path): \(fig.summary)")
            XCTAssertGreaterThanOrEqual(fig.cosineMin, 0.9999, "\(v.path): \(fig.summary)")
        }
    }

    /// The probe captions tokenize to the bundle's token ids, and the benchmark runs every Core ML artifact.
    func testTokenizerAndBenchmarkOnTheBundle() throws {
        let b = try realBundle()
        let p = try b.probe()
        let tok = try CLIPTokenizer.fromBundle(b)
        for k in 0..<p.captions.count { XCTAssertEqual(try tok.tokenize(p.captions[k]), p.tokenIds[k]) }
        let s = BenchmarkSettings(runtime: "coreml", runs: 3, warmup: 1, threads: 0, minSeconds: 0, minBlocks: 1)
        let recs = try Benchmark.runAll(bundle: b, runtimes: [CoreMLRuntime(computeUnits: computeUnits)], settings: s,
                                        memory: PhysFootprintProbe(), artifacts: b.artifactsWithVariants())
        XCTAssertFalse(recs.isEmpty)
        for r in recs where (r["target"] as? String) == "coreml" {
            XCTAssertEqual(r["status"] as? String, "ok", "\(r["id"] ?? ""): \(r["reason"] ?? "")")
        }
        for r in recs where (r["target"] as? String) != "coreml" {
            XCTAssertEqual(r["status"] as? String, "skipped")
        }
        let rep = try LatencyReport(source: "ios-app", toolName: "CLIPDeployKit tests", toolVersion: KitInfo.version)
            .bundle(b).settings(s, runtimes: ["coreml"])
        for r in recs { rep.addRecord(r) }
        let out = try Goldens.temporaryDirectory(self).appendingPathComponent("coreml_report.json")
        try rep.writeAtomically(to: out)
        XCTAssertNoThrow(try LatencyReport.read(out))
        if let keep = ProcessInfo.processInfo.environment["CLIPDEPLOY_REPORT_OUT"], !keep.isEmpty {
            try rep.writeAtomically(to: URL(fileURLWithPath: keep))
        }
    }
}
#endif
