import Foundation
import XCTest
@testable import CLIPDeployKit

/// The bundle half of the JVM core's BundleBenchmarkReportTest.
final class BundleTests: XCTestCase {
    func testGoldenBundleOpens() throws {
        let b = try Goldens.bundle()
        XCTAssertEqual(b.model, "golden_linear")
        XCTAssertEqual(b.artifacts.count, 3)                 // image, text and the zero-shot classifier (issue 23)
        XCTAssertEqual(b.artifacts[2].encoder, "classifier")
        XCTAssertTrue(b.artifacts[2].isClassifier && b.artifacts[2].takesImage && !b.artifacts[2].isImage)
        XCTAssertTrue(b.hasClassifier)
        XCTAssertTrue(b.artifacts[2].bundle === b)
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
        XCTAssertEqual(b.artifactsWithVariants().count, 3)
    }

    func testTokenizerMergesIsAPathOrTheStandardLocation() throws {
        // bundles from before clipdeploy 0.1.0 stored the merge count under "merges"; they are schema_version 1,
        // refused anyway, and in a schema_version 2 manifest tokenizer.merges is a path
        let counted = try TestBundles.editedGolden(self, name: "count") { m in
            var tok = try Json.map(m["tokenizer"])
            tok["merges"] = 48894
            m["tokenizer"] = tok
        }
        XCTAssertThrowsError(try ModelBundle.open(counted)) { error in
            XCTAssertEqual((error as? CLIPDeployError)?.kind, .invalidManifest)
            XCTAssertTrue(oneLine(error).contains("manifest key 'tokenizer.merges' must be a string"), oneLine(error))
        }
        let absent = try TestBundles.editedGolden(self, name: "absent") { m in
            var tok = try Json.map(m["tokenizer"])
            tok["merges"] = nil
            m["tokenizer"] = tok
        }
        XCTAssertEqual(try ModelBundle.open(absent).tokenizerMerges.path,
                       absent.appendingPathComponent("tokenizer/merges.txt").path)
        XCTAssertNoThrow(try CLIPTokenizer.fromBundle(try ModelBundle.open(absent)))
    }

    func testBadBundlesFailWithOneLine() throws {
        let tmp = try Goldens.temporaryDirectory(self)
        let empty = tmp.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        XCTAssertThrowsError(try ModelBundle.open(empty)) { error in
            XCTAssertEqual((error as? CLIPDeployError)?.kind, .notFound)
            XCTAssertTrue(oneLine(error).contains("no manifest.json"), oneLine(error))
        }
        let bad = tmp.appendingPathComponent("bad")
        try FileManager.default.createDirectory(at: bad, withIntermediateDirectories: true)
        try Data("{\"schema_version\": 2,".utf8).write(to: bad.appendingPathComponent("manifest.json"))
        XCTAssertThrowsError(try ModelBundle.open(bad)) { error in
            let msg = (error as? CLIPDeployError)?.message ?? ""
            XCTAssertEqual((error as? CLIPDeployError)?.kind, .invalidManifest)
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
        let dst = tmp.appendingPathComponent("bundle")
        try FileManager.default.copyItem(at: try Goldens.file("bundle"), to: dst)
        var m = try TestBundles.goldenManifest()
        var arts = try Json.list(m["artifacts"])
        arts.append(["target": "coreml", "precision": "fp16", "encoder": "image",
                     "path": "coreml-fp16/image_encoder.mlpackage",
                     "files": ["coreml-fp16/image_encoder.mlpackage", "coreml-fp16/image_encoder_imagetype.mlpackage"],
                     "info": ["image_type_variant": ["file": "image_encoder_imagetype.mlpackage"]]] as [String: Any])
        m["artifacts"] = arts
        try TestBundles.bundle(dst, m)
        let b = try ModelBundle.open(dst)
        XCTAssertEqual(b.artifacts.count, 4)
        XCTAssertEqual(b.artifacts[3].imageTypeVariant, "coreml-fp16/image_encoder_imagetype.mlpackage")
        let all = b.artifactsWithVariants()
        XCTAssertEqual(all.count, 5)
        XCTAssertEqual(all[4].path, "coreml-fp16/image_encoder_imagetype.mlpackage")
        XCTAssertTrue(all[4].takesPixels)
        XCTAssertFalse(all[3].takesPixels)
        // the variant is verified like any artifact: each file of its package against the record
        XCTAssertEqual(try all[4].verifiedURL().lastPathComponent, "image_encoder_imagetype.mlpackage")
        try TestBundles.flipByte(dst.appendingPathComponent("coreml-fp16/image_encoder_imagetype.mlpackage/Manifest.json"),
                                 at: 3)
        XCTAssertThrowsError(try b.verifyArtifact(all[4])) { error in
            XCTAssertEqual((error as? CLIPDeployError)?.kind, .integrity, oneLine(error))
        }
        XCTAssertNoThrow(try b.verifyArtifact(all[0]))
    }
}
