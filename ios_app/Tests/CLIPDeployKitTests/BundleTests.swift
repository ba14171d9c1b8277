import Foundation
import XCTest
@testable import CLIPDeployKit

/// The bundle half of the JVM core's BundleBenchmarkReportTest.
final class BundleTests: XCTestCase {
    func testGoldenBundleOpens() throws {
        let b = try Goldens.bundle()
        XCTAssertEqual(b.model, "golden_linear")
        XCTAssertEqual(b.artifacts.count, 2)
        XCTAssertEqual(try b.embeddingDim(), 16)
        XCTAssertEqual(try b.logitScale(), 100.0)
        let spec = try b.preprocessSpec()
        XCTAssertEqual(spec.imageSize, 32)
        let p = try b.probe()
        XCTAssertEqual(p.images.count, 6)
        XCTAssertEqual(p.images[0].count, 3 * 32 * 32)
        XCTAssertEqual(p.imageSize, 32)
        XCTAssertEqual(p.tokenIds.count, 8)
        XCTAssertEqual(p.tokenIds[0].count, 77)
        XCTAssertEqual(p.captions.count, 8)
        XCTAssertEqual(p.refImage.count, 6)
        XCTAssertEqual(p.refText[0].count, 16)
        // the probe's token ids are what the tokenizer makes of its captions
        let tok = try CLIPTokenizer.fromBundle(b)
        for k in 0..<p.captions.count {
            XCTAssertEqual(try tok.tokenize(p.captions[k]), p.tokenIds[k], p.captions[k])
        }
        // artifacts: paths resolved inside the bundle, export parity kept
        for a in b.artifacts {
            XCTAssertTrue(FileManager.default.fileExists(atPath: a.url.path), a.path)
            XCTAssertNotNil(a.parity, a.path)
            XCTAssertNil(a.imageTypeVariant)
        }
        XCTAssertEqual(b.artifactsWithVariants().count, 2)
    }

    func testOlderManifestsWithAMergeCountStillFindTheMergesFile() throws {
        let dir = try Goldens.temporaryDirectory(self).appendingPathComponent("old")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var m = try Json.map(Json.parse(contentsOf: Goldens.file("bundle/manifest.json")))
        var tok = try Json.map(m["tokenizer"])
        tok["merges"] = 48894
        m["tokenizer"] = tok
        try Data(try Json.write(m, pretty: true).utf8).write(to: dir.appendingPathComponent("manifest.json"))
        XCTAssertEqual(try ModelBundle.open(dir).tokenizerMerges.path,
                       dir.appendingPathComponent("tokenizer/merges.txt").path)
    }

    func testBadBundlesFailWithOneLine() throws {
        let tmp = try Goldens.temporaryDirectory(self)
        let empty = tmp.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        XCTAssertThrowsError(try ModelBundle.open(empty)) { error in
            XCTAssertTrue(oneLine(error).contains("no manifest.json"), oneLine(error))
        }
        let bad = tmp.appendingPathComponent("bad")
        try FileManager.default.createDirectory(at: bad, withIntermediateDirectories: true)
        try Data("{\"schema_version\": 1,".utf8).write(to: bad.appendingPathComponent("manifest.json"))
        XCTAssertThrowsError(try ModelBundle.open(bad)) { error in
            let msg = (error as? CLIPDeployError)?.message ?? ""
            XCTAssertTrue(msg.contains("cannot be read") && !msg.contains("\n"), msg)
        }
        XCTAssertThrowsError(try ModelBundle.open(tmp.appendingPathComponent("missing"))) { error in
            XCTAssertTrue(oneLine(error).contains("not a directory"), oneLine(error))
        }
    }

    /// Swift only: a Core ML artifact's ImageType variant (manifest `info.image_type_variant`) is listed
    /// as an entry of its own that takes pixels.
    func testImageTypeVariantIsListed() throws {
        let tmp = try Goldens.temporaryDirectory(self)
        let src = try Goldens.file("bundle")
        let dst = tmp.appendingPathComponent("bundle")
        try FileManager.default.copyItem(at: src, to: dst)
        var m = try Json.map(Json.parse(contentsOf: dst.appendingPathComponent("manifest.json")))
        var arts = try Json.list(m["artifacts"])
        arts.append(["target": "coreml", "precision": "fp16", "encoder": "image",
                     "path": "coreml-fp16/image_encoder.mlpackage",
                     "info": ["image_type_variant": ["file": "image_encoder_imagetype.mlpackage"]]] as [String: Any])
        m["artifacts"] = arts
        try Data(try Json.write(m, pretty: true).utf8).write(to: dst.appendingPathComponent("manifest.json"))
        let variantDir = dst.appendingPathComponent("coreml-fp16/image_encoder_imagetype.mlpackage")
        try FileManager.default.createDirectory(at: variantDir, withIntermediateDirectories: true)
        let b = try ModelBundle.open(dst)
        XCTAssertEqual(b.artifacts.count, 3)
        XCTAssertEqual(b.artifacts[2].imageTypeVariant, "coreml-fp16/image_encoder_imagetype.mlpackage")
        let all = b.artifactsWithVariants()
        XCTAssertEqual(all.count, 4)
        XCTAssertEqual(all[3].path, "coreml-fp16/image_encoder_imagetype.mlpackage")
        XCTAssertTrue(all[3].takesPixels)
        XCTAssertFalse(all[2].takesPixels)
    }
}
