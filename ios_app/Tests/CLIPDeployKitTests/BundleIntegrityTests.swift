import Foundation
import XCTest
@testable import CLIPDeployKit

/// Issue 22's acceptance cases for the Swift reader (the JVM core's BundleIntegrityTest): each damaged copy of
/// the golden bundle is refused with a typed `CLIPDeployError` (its kind checked, one line, naming the file)
/// before any runtime is handed an artifact.
final class BundleIntegrityTests: XCTestCase {
    typealias Kind = CLIPDeployError.Kind

    /// A runtime that supports every artifact of its target and fails the test if one is ever prepared or loaded.
    final class Refuse: EncoderRuntime {
        let name: String
        var calls = 0

        init(_ name: String) {
            self.name = name
        }

        func supports(_ artifact: ModelBundle.Artifact) -> Bool { Benchmark.runtimeFor(artifact) == name }
        func configure(threads: Int) {}
        func versions() -> [String: Any] { [:] }
        func options() -> [String: Any] { [:] }

        func prepare(_ artifact: ModelBundle.Artifact) throws {
            calls += 1
            XCTFail("\(artifact.path) was handed to the runtime (prepare)")
            throw CLIPDeployError(.encoder, "prepared")
        }

        func load(_ artifact: ModelBundle.Artifact) throws -> EncoderSession {
            calls += 1
            XCTFail("\(artifact.path) was handed to the runtime (load)")
            throw CLIPDeployError(.encoder, "loaded")
        }
    }

    final class FixedMemory: MemoryProbe {
        func currentMb() -> Double { 1 }
        func peakMb() -> Double { 1 }
        var source: String { "test" }
    }


    func settings(_ runtime: String) -> BenchmarkSettings {
        return BenchmarkSettings(runtime: runtime, runs: 12, warmup: 2, threads: 1, minSeconds: 0, minBlocks: 1)
    }

    func artifact(_ b: ModelBundle, _ path: String) throws -> ModelBundle.Artifact {
        return try XCTUnwrap(b.artifacts.first { $0.path == path }, path)
    }

    // MARK: an intact bundle

    func testAnUntouchedCopyOpensVerifiesAndRuns() throws {
        let dir = try TestBundles.fullBundle(self, name: "ok")
        let b = try ModelBundle.open(dir)
        XCTAssertEqual(b.artifacts.count, 6)
        let summary = try b.verifyAll()
        XCTAssertEqual(summary.files, b.integrity.files.count)
        XCTAssertEqual(summary.files, 18)                      // 13 golden files + onnx + pte + 3 in the package
        for a in b.artifacts {
            let url = try a.verifiedURL()
            XCTAssertTrue(url.path.hasSuffix(a.path), url.path)
        }
        let recs = try Benchmark.runAll(bundle: b, runtimes: [ReferenceRuntime()], settings: settings("reference"),
                                        memory: FixedMemory())
        XCTAssertEqual(recs.filter { $0["status"] as? String == "ok" }.count, 3)     // image, text, classifier
        XCTAssertEqual(recs.filter { $0["status"] as? String == "skipped" }.count, 3)
        XCTAssertEqual(try CLIPTokenizer.fromBundle(b).vocabSize, 49408)
        // the golden bundle itself (recorded by clipdeploy.latency.integrity in Python) verifies here too
        let g = try Goldens.bundle()
        try g.verifyAll()
        XCTAssertEqual(g.namedPaths().count, 13)
    }

    func testThePathRule() {
        for ok in ["a", "probe/images.npy", "coreml-fp16/x.mlpackage/Data/com.apple.CoreML/model.mlmodel", "a..b/c.",
                   "...", "é/ü.npy"] {
            XCTAssertNil(BundleIntegrity.unsafeReason(ok), ok)
        }
        let bad: [(String, String)] = [
            ("", "is not a non-empty string"), ("/etc/passwd", "is absolute"), ("C:/x", "is absolute"),
            ("c:x", "is absolute"), ("../x", "contains '..'"), ("a/../../x", "contains '..'"), ("a/..", "contains '..'"),
            ("./a", "'.' component"), ("a//b", "empty or '.' component"), ("a/", "empty or '.' component"),
            ("a\\b", "backslash"), ("a\u{0}b", "NUL"), (String(repeating: "x", count: 1025), "longer than 1024"),
        ]
        for (p, why) in bad {
            XCTAssertTrue(BundleIntegrity.unsafeReason(p)?.contains(why) == true, "\(p.prefix(20)): "
                          + "\(BundleIntegrity.unsafeReason(p) ?? "accepted")")
        }
        XCTAssertNil(BundleIntegrity.unsafeReason(String(repeating: "x", count: 1024)))
    }

    // MARK: tampered artifacts (same size: only the digest can tell)

    func testATamperedOnnxPteOrMlpackageFileIsRefusedBeforeItIsLoaded() throws {
        let cases: [(String, String, String)] = [
            (TestBundles.onnx, TestBundles.onnx, "onnxruntime"), (TestBundles.pte, TestBundles.pte, "executorch"),
            (TestBundles.mlmodel, TestBundles.mlpackage, "coreml"), (TestBundles.weights, TestBundles.mlpackage, "coreml"),
        ]
        for (k, c) in cases.enumerated() {
            let dir = try TestBundles.fullBundle(self, name: "t\(k)")
            try TestBundles.flipByte(dir.appendingPathComponent(c.0), at: -3)
            let b = try ModelBundle.open(dir)                        // the stat pass holds: the sizes are right
            let a = try artifact(b, c.1)
            expect(.integrity, "\(c.0) does not match the manifest (sha256") { try b.verifyArtifact(a) }
            expect(.integrity, "\(c.0) does not match") { _ = try a.verifiedURL() }
            expect(.integrity, "re-copy the bundle") { try b.verifyAll() }
            let rt = Refuse(c.2)
            expect(.integrity, c.0) {
                _ = try Benchmark.runAll(bundle: b, runtimes: [rt], settings: settings(c.2), memory: FixedMemory())
            }
            XCTAssertEqual(rt.calls, 0, "\(c.0) reached a runtime")
            // the untouched artifacts of the same bundle still verify
            XCTAssertNoThrow(try b.verifyArtifact(b.artifacts[0]))
        }
    }

    func testATamperedReferenceArtifactIsNeverMeasured() throws {
        let dir = try TestBundles.copyGolden(self, name: "ref")
        try TestBundles.flipByte(dir.appendingPathComponent("reference-fp32/text_encoder.npy"), at: 200)
        let b = try ModelBundle.open(dir)
        var phases: [String] = []
        expect(.integrity, "reference-fp32/text_encoder.npy does not match") {
            _ = try Benchmark.runAll(bundle: b, runtimes: [ReferenceRuntime()], settings: settings("reference"),
                                     memory: FixedMemory(), progress: { _, p, _, _ in phases.append(p) })
        }
        XCTAssertEqual(phases, [], "something was measured")
        // the runtime itself verifies too (a caller that skips Benchmark)
        expect(.integrity, "reference-fp32/text_encoder.npy does not match") { _ = try ReferenceRuntime().load(b.artifacts[1]) }
        // and measure() records the refusal instead of timing anything
        let r = Benchmark.measure(bundle: b, artifact: b.artifacts[1], runtime: ReferenceRuntime(),
                                  settings: settings("reference"), memory: FixedMemory(),
                                  progress: { _, p, _, _ in phases.append(p) })
        XCTAssertEqual(r["status"] as? String, "error")
        XCTAssertEqual(r["phase_reached"] as? String, "start")
        XCTAssertTrue((r["reason"] as? String)?.contains("does not match the manifest") == true)
        XCTAssertEqual(phases, [])
        // an artifact made by hand belongs to no bundle: it cannot be verified, so it is not loaded
        let loose = ModelBundle.Artifact(target: "reference", precision: "fp32", encoder: "image",
                                         path: "reference-fp32/image_encoder.npy",
                                         url: dir.appendingPathComponent("reference-fp32/image_encoder.npy"), parity: nil)
        expect(.integrity, "belongs to no bundle") { _ = try ReferenceRuntime().load(loose) }
    }

    func testAFileAddedInsideAnMlpackageIsRefused() throws {
        let dir = try TestBundles.fullBundle(self, name: "extra")
        try Data([1, 2, 3]).write(to: dir.appendingPathComponent(TestBundles.mlpackage + "/Data/com.apple.CoreML/weights/extra.bin"))
        let b = try ModelBundle.open(dir)                            // not named by the manifest: open holds
        let a = try artifact(b, TestBundles.mlpackage)
        let msg = "weights/extra.bin' is not in the manifest's integrity record"
        expect(.unlistedFile, msg) { try b.verifyArtifact(a) }
        expect(.unlistedFile, msg) { try b.verifyAll() }
        let rt = Refuse("coreml")
        expect(.unlistedFile, msg) {
            _ = try Benchmark.runAll(bundle: b, runtimes: [rt], settings: settings("coreml"), memory: FixedMemory())
        }
        XCTAssertEqual(rt.calls, 0)
        // a symlink added inside the package is an unlisted entry too
        let dir2 = try TestBundles.fullBundle(self, name: "extralink")
        try FileManager.default.createSymbolicLink(atPath: dir2.appendingPathComponent(TestBundles.mlpackage + "/link").path,
                                                   withDestinationPath: "/etc/hostname")
        expect(.unlistedFile, "image_encoder.mlpackage/link' is not in the manifest's integrity record") {
            try ModelBundle.open(dir2).verifyAll()
        }
    }

    // MARK: paths leaving the bundle

    func testAManifestPathLeavingTheBundleIsRefusedAtOpen() throws {
        let outside = try Goldens.temporaryDirectory(self).appendingPathComponent("outside.npy")
        try FileManager.default.copyItem(at: try Goldens.file("bundle/reference-fp32/image_encoder.npy"), to: outside)
        let cases: [(String, String)] = [
            ("../x", "contains '..'"), ("/etc/passwd", "is absolute"), ("../outside.npy", "contains '..'"),
            (outside.path, "is absolute"), ("reference-fp32/../../outside.npy", "contains '..'"),
            ("reference-fp32\\image_encoder.npy", "backslash"), ("C:/x.npy", "is absolute"),
            ("./reference-fp32/image_encoder.npy", "'.' component"),
            ("reference-fp32//image_encoder.npy", "empty or '.' component"),
        ]
        for (k, c) in cases.enumerated() {
            let dir = try TestBundles.copyGolden(self, name: "p\(k)")
            var m = try TestBundles.goldenManifest()
            var arts = try Json.list(m["artifacts"]).map { try Json.map($0) }
            arts[0]["path"] = c.0
            arts[0]["files"] = [c.0]
            m["artifacts"] = arts
            try TestBundles.writeManifest(dir, m)
            let e = expect(.unsafePath, "a bundle may only name files inside itself") { _ = try ModelBundle.open(dir) }
            XCTAssertTrue(e?.message.contains(c.1) == true, "\(e?.message ?? "") / \(c.1)")
        }
        // a probe path and an integrity key are paths too
        let dir = try TestBundles.copyGolden(self, name: "probe")
        var m = try TestBundles.goldenManifest()
        var probe = try Json.map(m["probe"])
        probe["images"] = "../outside.npy"
        m["probe"] = probe
        try TestBundles.writeManifest(dir, m)
        expect(.unsafePath, "'../outside.npy'") { _ = try ModelBundle.open(dir) }
        m = try TestBundles.goldenManifest()
        var integ = try Json.map(m["integrity"])
        var files = try Json.map(integ["files"])
        files["/etc/passwd"] = ["size": 1, "sha256": String(repeating: "a", count: 64)]
        integ["files"] = files
        m["integrity"] = integ
        try TestBundles.writeManifest(dir, m)
        expect(.unsafePath, "integrity path '/etc/passwd' is absolute") { _ = try ModelBundle.open(dir) }
        // a tokenizer path
        m = try TestBundles.goldenManifest()
        var tok = try Json.map(m["tokenizer"])
        tok["vocab"] = "/etc/passwd"
        m["tokenizer"] = tok
        try TestBundles.writeManifest(dir, m)
        expect(.unsafePath, "'/etc/passwd' is absolute") { _ = try ModelBundle.open(dir) }
    }

    func testASymlinkOutOfTheBundleIsRefusedAtOpen() throws {
        // a listed file replaced by a link to an identical copy outside: the digest matches, the path does not
        let fm = FileManager.default
        let elsewhere = try Goldens.temporaryDirectory(self).appendingPathComponent("elsewhere")
        try fm.createDirectory(at: elsewhere, withIntermediateDirectories: true)
        let dir = try TestBundles.copyGolden(self, name: "link")
        let target = dir.appendingPathComponent("reference-fp32/image_encoder.npy")
        let copy = elsewhere.appendingPathComponent("image_encoder.npy")
        try fm.moveItem(at: target, to: copy)
        try fm.createSymbolicLink(at: target, withDestinationURL: copy)
        XCTAssertEqual(try SHA256.hash(contentsOf: target).hex,
                       "a10dd333fb396e3f71243a41234ccb2e93920cc7f67742a417c52492bcbc8594")
        expect(.unsafePath, "'reference-fp32/image_encoder.npy' resolves outside the bundle") {
            _ = try ModelBundle.open(dir)
        }
        // a linked directory
        let dir2 = try TestBundles.copyGolden(self, name: "linkdir")
        let moved = elsewhere.appendingPathComponent("probe")
        try fm.moveItem(at: dir2.appendingPathComponent("probe"), to: moved)
        try fm.createSymbolicLink(at: dir2.appendingPathComponent("probe"), withDestinationURL: moved)
        expect(.unsafePath, "resolves outside the bundle") { _ = try ModelBundle.open(dir2) }
        // a relative link that climbs out (to an identical copy next to the bundle)
        let dir3 = try TestBundles.copyGolden(self, name: "linkrel")
        let cap = dir3.appendingPathComponent("probe/captions.json")
        let beside = dir3.deletingLastPathComponent().appendingPathComponent("elsewhere")
        try fm.createDirectory(at: beside, withIntermediateDirectories: true)
        try fm.moveItem(at: cap, to: beside.appendingPathComponent("captions.json"))
        try fm.createSymbolicLink(atPath: cap.path, withDestinationPath: "../../elsewhere/captions.json")
        expect(.unsafePath, "'probe/captions.json' resolves outside the bundle") { _ = try ModelBundle.open(dir3) }
        // a dangling link
        try fm.removeItem(at: cap)
        try fm.createSymbolicLink(atPath: cap.path, withDestinationPath: "nowhere.json")
        expect(.unsafePath, "'probe/captions.json' goes through a broken symlink") { _ = try ModelBundle.open(dir3) }
        // a link that stays inside the bundle is only a path: it resolves inside and the digest holds
        let dir4 = try TestBundles.copyGolden(self, name: "inside")
        let cap4 = dir4.appendingPathComponent("probe/captions.json")
        try fm.moveItem(at: cap4, to: dir4.appendingPathComponent("probe/captions.real.json"))
        try fm.createSymbolicLink(atPath: cap4.path, withDestinationPath: "captions.real.json")
        try TestBundles.seal(dir4, try TestBundles.goldenManifest())
        let b = try ModelBundle.open(dir4)
        try b.verifyAll()
        XCTAssertEqual(try b.probe().captions.count, 8)
    }

    // MARK: incomplete copies, bad manifests

    func testATruncatedProbeArrayIsRefusedAsIncompleteAtOpen() throws {
        let dir = try TestBundles.copyGolden(self, name: "trunc")
        let images = dir.appendingPathComponent("probe/images.npy")
        let full = try Data(contentsOf: images)
        try full.prefix(full.count - 100).write(to: images)
        expect(.incomplete, "probe/images.npy is \(full.count - 100) bytes, the manifest records \(full.count)") {
            _ = try ModelBundle.open(dir)
        }
        expect(.incomplete, "copied while being written or truncated; re-copy it") { _ = try ModelBundle.open(dir) }
        // the same file, re-recorded as it is: open passes, the array reader refuses it (and allocates nothing)
        try TestBundles.seal(dir, try TestBundles.goldenManifest())
        let b = try ModelBundle.open(dir)
        expect(.malformedArray, "probe file probe/images.npy cannot be read: .npy file is truncated") { _ = try b.probe() }
        expect(.malformedArray, "needs 73728 bytes of data, the file has 73628") { _ = try Npy.read(contentsOf: images) }
        expect(.malformedArray, ".npy file is truncated") { _ = try Npy.read(full.prefix(full.count - 100)) }
        expect(.malformedArray, ".npy file has trailing bytes") { _ = try Npy.read(full + Data([0])) }
    }

    func testAManifestThatIsNotJsonIsRefused() throws {
        let dir = try TestBundles.copyGolden(self, name: "notjson")
        let mf = dir.appendingPathComponent("manifest.json")
        let good = try Data(contentsOf: mf)
        try Data("this is not json {".utf8).write(to: mf)
        expect(.invalidManifest, "manifest.json cannot be read: not JSON") { _ = try ModelBundle.open(dir) }
        try good.prefix(good.count / 2).write(to: mf)                                 // copied while written
        expect(.invalidManifest, "the bundle is incomplete or damaged") { _ = try ModelBundle.open(dir) }
        try Data().write(to: mf)
        expect(.incomplete, "manifest.json is empty") { _ = try ModelBundle.open(dir) }
        try Data("[1, 2]".utf8).write(to: mf)
        expect(.invalidManifest, "is not a clipdeploy manifest") { _ = try ModelBundle.open(dir) }
        try Data((String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)).utf8).write(to: mf)
        expect(.invalidManifest, "nested deeper than 200 levels") { _ = try ModelBundle.open(dir) }
        try Data(#"{"schema_version": 2, "x": NaN}"#.utf8).write(to: mf)
        expect(.invalidManifest, "not JSON") { _ = try ModelBundle.open(dir) }
        try Data(good + Data(" x".utf8)).write(to: mf)
        expect(.invalidManifest, "trailing characters") { _ = try ModelBundle.open(dir) }
        // larger than 32 MiB: refused from its size, never read (a sparse file: no 32 MiB written)
        let h = try FileHandle(forWritingTo: mf)
        try h.truncate(atOffset: UInt64(ModelBundle.maxManifestBytes) + 1)
        try h.close()
        expect(.invalidManifest, "more than the \(ModelBundle.maxManifestBytes) a manifest may have") {
            _ = try ModelBundle.open(dir)
        }
        // a manifest that is a symlink
        try FileManager.default.removeItem(at: mf)
        let real = dir.appendingPathComponent("real.json")
        try good.write(to: real)
        try FileManager.default.createSymbolicLink(at: mf, withDestinationURL: real)
        expect(.unsafePath, "manifest.json is a symlink") { _ = try ModelBundle.open(dir) }
    }

    func testSchemaVersion1AndAMissingIntegrityRecordAreRefused() throws {
        let dir = try TestBundles.copyGolden(self, name: "v1")
        var m = try TestBundles.goldenManifest()
        m["schema_version"] = 1
        m["integrity"] = nil
        try TestBundles.writeManifest(dir, m)
        expect(.unsupportedSchema, "manifest schema_version 1 has no integrity record; re-export the bundle with clip-export") {
            _ = try ModelBundle.open(dir)
        }
        for v in [3, "2", 2.5, NSNull()] as [Any] {
            m["schema_version"] = v
            try TestBundles.writeManifest(dir, m)
            expect(.unsupportedSchema, "is not supported (this reader reads 2)") { _ = try ModelBundle.open(dir) }
        }
        m["schema_version"] = 2
        try TestBundles.writeManifest(dir, m)
        expect(.invalidManifest, "manifest has no 'integrity'") { _ = try ModelBundle.open(dir) }
        // malformed records
        let sha = String(repeating: "0", count: 64)
        let bad: [(Any, String)] = [
            (["algorithm": "md5", "files": ["a": ["size": 1, "sha256": sha]]], "integrity algorithm the string 'md5'"),
            (["algorithm": "sha256", "files": [String: Any]()], "integrity record lists no files"),
            (["algorithm": "sha256", "files": ["a": ["size": -1, "sha256": sha]]], "integrity entry for 'a' is not"),
            (["algorithm": "sha256", "files": ["a": ["size": 1.5, "sha256": sha]]], "integrity entry for 'a' is not"),
            (["algorithm": "sha256", "files": ["a": ["size": 1, "sha256": sha.uppercased() + "A"]]], "integrity entry"),
            (["algorithm": "sha256", "files": ["a": ["size": 1, "sha256": String(repeating: "A", count: 64)]]],
             "64 lowercase hex digits"),
            (["algorithm": "sha256", "files": ["manifest.json": ["size": 1, "sha256": sha]]], "lists manifest.json itself"),
            ("sha256", "manifest has no 'integrity' record (got a string)"),
        ]
        for (block, want) in bad {
            m["integrity"] = block
            try TestBundles.writeManifest(dir, m)
            expect(.invalidManifest, want) { _ = try ModelBundle.open(dir) }
        }
        // a path the manifest names without a record
        m = try TestBundles.goldenManifest()
        var integ = try Json.map(m["integrity"])
        var files = try Json.map(integ["files"])
        files["probe/token_ids.npy"] = nil
        integ["files"] = files
        m["integrity"] = integ
        try TestBundles.writeManifest(dir, m)
        expect(.integrity, "'probe/token_ids.npy' is named by the manifest but has no integrity record") {
            _ = try ModelBundle.open(dir)
        }
    }

    func testWrongTypesInTheManifestAreRefusedWithTheKey() throws {
        let dir = try TestBundles.copyGolden(self, name: "types")
        let cases: [((inout [String: Any]) throws -> Void, String)] = [
            ({ $0["model"] = 5 }, "manifest key 'model' must be a string of 1 to 200 characters, got a number 5"),
            ({ $0["logit_scale"] = "100" }, "manifest key 'logit_scale' must be a number in 0 .. 1000, got the string '100'"),
            ({ $0["logit_scale"] = 1e300 }, "'logit_scale' must be a number in 0 .. 1000"),
            ({ $0["artifacts"] = ["x"] }, "manifest key 'artifacts[0]' must be an object"),
            ({ $0["probe"] = [1] }, "manifest key 'probe' must be an object, got an array"),
            ({ m in
                var p = try Json.map(m["preprocessing"])
                p["resize_shorter_side_to"] = 4611686018427387904
                m["preprocessing"] = p
            }, "'preprocessing.resize_shorter_side_to' must be an integer in 1 .. 16384"),
            ({ m in
                var arts = try Json.list(m["artifacts"]).map { try Json.map($0) }
                arts[1]["files"] = [String]()
                m["artifacts"] = arts
            }, "'artifacts[1].files' must be a list of 1 to 10000 paths"),
            ({ m in
                var arts = try Json.list(m["artifacts"]).map { try Json.map($0) }
                arts[0]["encoder"] = "audio"
                m["artifacts"] = arts
            }, "'artifacts[0].encoder' must be \"image\", \"text\" or \"classifier\", got the string 'audio'"),
            ({ $0["embedding_dim"] = true }, "'embedding_dim' must be an integer in 1 .. 65536, got a boolean true"),
            ({ $0["tokenizer"] = nil }, "manifest has no 'tokenizer'"),
        ]
        for (edit, want) in cases {
            var m = try TestBundles.goldenManifest()
            try edit(&m)
            try TestBundles.writeManifest(dir, m)
            expect(.invalidManifest, want) { _ = try ModelBundle.open(dir) }
        }
    }

    func testAMissingFileIsIncompleteAndATamperedTokenizerIsRefused() throws {
        let dir = try TestBundles.copyGolden(self, name: "missing")
        try FileManager.default.removeItem(at: dir.appendingPathComponent("probe/captions.json"))
        expect(.incomplete, "probe/captions.json is missing") { _ = try ModelBundle.open(dir) }
        let dir2 = try TestBundles.copyGolden(self, name: "tok")
        try TestBundles.flipByte(dir2.appendingPathComponent("tokenizer/merges.txt"), at: 5000)
        let b = try ModelBundle.open(dir2)
        expect(.integrity, "tokenizer/merges.txt does not match") { _ = try CLIPTokenizer.fromBundle(b) }
        // a probe file changed after open: refused before it is read
        let dir3 = try TestBundles.copyGolden(self, name: "probe")
        let b3 = try ModelBundle.open(dir3)
        try TestBundles.flipByte(dir3.appendingPathComponent("probe/token_ids.npy"), at: 300)
        expect(.integrity, "probe/token_ids.npy does not match the manifest") { _ = try b3.probe() }
        // a file removed after open
        try FileManager.default.removeItem(at: dir3.appendingPathComponent("probe/images.npy"))
        expect(.incomplete, "probe/images.npy is missing") { _ = try b3.probe() }
    }

    func testVerifiedDigestsAreCachedUntilTheFileChanges() throws {
        let dir = try TestBundles.fullBundle(self, name: "cache")
        try ModelBundle.open(dir).verifyAll()
        let hashed = BundleIntegrity.hashedBytes
        let hits = BundleIntegrity.cacheHits
        try ModelBundle.open(dir).verifyAll()                        // a second open: every digest from the cache
        XCTAssertEqual(BundleIntegrity.hashedBytes, hashed)
        XCTAssertGreaterThanOrEqual(BundleIntegrity.cacheHits, hits + 15)
        let onnx = dir.appendingPathComponent(TestBundles.onnx)
        try TestBundles.flipByte(onnx, at: 7)                        // same size, new mtime: hashed again, and caught
        let again = try ModelBundle.open(dir)
        expect(.integrity, "\(TestBundles.onnx) does not match") { try again.verifyAll() }
        let size = try FileManager.default.attributesOfItem(atPath: onnx.path)[.size] as? Int ?? 0
        XCTAssertEqual(BundleIntegrity.hashedBytes, hashed + UInt64(size))
    }

    /// `clipdeploy-report` refuses a tampered bundle as bad input (exit 2) and its error file says why.
    func testTheReportToolRefusesATamperedBundle() throws {
        let dir = try TestBundles.copyGolden(self, name: "tool")
        try TestBundles.flipByte(dir.appendingPathComponent("reference-fp32/image_encoder.npy"), at: 1000)
        let report = try Goldens.temporaryDirectory(self).appendingPathComponent("report.json")
        var lines: [String] = []
        let code = ReportTool.run([dir.path, report.path], out: { lines.append($0) }, err: { lines.append($0) })
        XCTAssertEqual(code, 2, lines.joined(separator: "\n"))
        XCTAssertFalse(lines.contains { $0.contains("cold_load") }, "something was loaded")
        let err = try String(contentsOf: report.appendingPathExtension("error"), encoding: .utf8)
        XCTAssertTrue(err.hasPrefix("bundle refused (integrity): bundle ") && err.contains("reference-fp32/image_encoder.npy"),
                      err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: report.path))
    }
}
