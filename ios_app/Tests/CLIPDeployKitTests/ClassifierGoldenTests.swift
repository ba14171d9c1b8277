import Foundation
import XCTest
@testable import CLIPDeployKit

/// Issue 23 (the JVM core's ClassifierGoldenTest): the golden bundle's zero-shot classifier (goldens/classifier.json).
/// The class matrix and labels read through the verified path, the logits / probabilities / top-1 of the probe's
/// image embeddings, the class matrix derived the way the app does when the user edits labels (prompts through the
/// bundle's tokenizer and reference text encoder, then `ZeroShot.ensemble`), the reference classifier artifact on
/// the probe images, and the refusals.
final class ClassifierGoldenTests: XCTestCase {
    typealias Kind = CLIPDeployError.Kind
    static let matrix = "classifier/class_embeddings.npy"
    static let labelsFile = "classifier/labels.json"

    func golden() throws -> [String: Any] {
        return try Goldens.json("classifier.json")
    }

    func tol(_ g: [String: Any], _ key: String) throws -> Float {
        return Float(try Json.num(Json.map(g["tolerance"])[key]))
    }

    func settings() -> BenchmarkSettings {
        return BenchmarkSettings(runtime: "reference", runs: 12, warmup: 2, threads: 1, minSeconds: 0, minBlocks: 1)
    }

    func artifact(_ b: ModelBundle, _ encoder: String) throws -> ModelBundle.Artifact {
        return try XCTUnwrap(b.artifacts.first { $0.encoder == encoder }, encoder)
    }

    /// Runs the benchmark on `b` and checks that it is refused with `kind` before any phase starts.
    func expectNothingMeasured(_ b: ModelBundle, _ kind: Kind, _ contains: String, file: StaticString = #filePath,
                               line: UInt = #line) {
        var phases: [String] = []
        expect(kind, contains, file: file, line: line) {
            _ = try Benchmark.runAll(bundle: b, runtimes: [ReferenceRuntime()], settings: settings(),
                                     memory: BundleIntegrityTests.FixedMemory(), progress: { _, p, _, _ in phases.append(p) })
        }
        XCTAssertEqual(phases, [], "something was measured", file: file, line: line)
    }

    // MARK: the goldens

    func testClassMatrixLabelsAndProbeLogitsEqualTheGoldens() throws {
        let g = try golden()
        let b = try Goldens.bundle()
        XCTAssertTrue(b.hasClassifier)
        let c = try b.classifier()
        XCTAssertEqual(c.labels, try Json.strings(g["labels"]))
        XCTAssertEqual(c.labels[4], "crème brûlée")                   // non-ASCII, through JSON and the manifest
        XCTAssertEqual(c.templates, try Json.strings(g["templates"]))
        XCTAssertEqual(c.templateSource, "file")
        XCTAssertEqual(c.logitScale, try Json.num(g["logit_scale"]))
        XCTAssertEqual(c.embeddingDim, 16)
        XCTAssertEqual(c.count, 5)
        XCTAssertEqual(c.classEmbeddingsPath, ClassifierGoldenTests.matrix)
        XCTAssertEqual(c.labelsFile, ClassifierGoldenTests.labelsFile)
        let want = try Json.floatRows(g["class_embeddings"])
        XCTAssertEqual(want.count, c.count)
        for k in 0..<want.count {
            assertFloatsClose(want[k], c.classEmbeddings[k], try tol(g, "class_embeddings"), "class \(k)")
            XCTAssertEqual(Vectors.norm(c.classEmbeddings[k]), 1, accuracy: 1e-6)
        }
        let prompts = try Json.list(g["prompts"])
        for k in 0..<c.count {
            XCTAssertEqual(ZeroShot.prompts(label: c.labels[k], templates: c.templates), try Json.strings(prompts[k]))
        }
        // the probe's image embeddings through the class matrix: logits, probabilities, top-1
        let p = try b.probe()
        let logits = try Json.floatRows(g["probe_logits"])
        let probs = try Json.floatRows(g["probe_probabilities"])
        let top1 = try Json.ints(g["probe_top1"])
        XCTAssertEqual(p.refImage.count, logits.count)
        for k in 0..<p.refImage.count {
            let z = try c.logits(p.refImage[k])
            assertFloatsClose(logits[k], z, try tol(g, "logits"), "logits \(k)")
            let pr = try c.probabilities(p.refImage[k])
            assertFloatsClose(probs[k], pr, try tol(g, "probabilities"), "probabilities \(k)")
            assertFloatsClose(probs[k], ZeroShot.softmax(z), try tol(g, "probabilities"), "softmax(logits) \(k)")
            XCTAssertEqual(ZeroShot.topK(pr, 1)[0], top1[k], "top-1 of image \(k)")
            XCTAssertEqual(Vectors.argmax(z), top1[k], "top-1 of image \(k)")
        }
        // an embedding of the wrong width is an error, not a trap
        XCTAssertThrowsError(try c.logits([1, 0, 0]))
    }

    func testLabelEditingDerivesTheClassMatrixWithTheTextEncoder() throws {
        let b = try Goldens.bundle()
        let c = try b.classifier()
        let tok = try CLIPTokenizer.fromBundle(b)
        let text = try artifact(b, "text")
        let s = try ReferenceRuntime().load(text)
        defer { s.close() }
        // what the app does when the user edits labels: prompts -> tokenizer -> text encoder -> ensemble
        let derived = try TextEncoder(session: s, tokenizer: tok, artifact: text)
            .classEmbeddings(labels: c.labels, templates: c.templates)
        XCTAssertEqual(derived.count, c.count)
        for k in 0..<c.count { assertFloatsClose(c.classEmbeddings[k], derived[k], 1e-5, "class \(k) (\(c.labels[k]))") }
        // the same at the context length of 77 (what the Python export tokenizes to)
        for k in 0..<c.count {
            let e = try ZeroShot.prompts(label: c.labels[k], templates: c.templates).map { try s.encodeText(try tok.tokenize($0)) }
            assertFloatsClose(c.classEmbeddings[k], try ZeroShot.ensemble(e), 1e-5, "class \(k) at 77")
        }
    }

    func testTheReferenceClassifierArtifactGivesTheProbeLogits() throws {
        let g = try golden()
        let b = try Goldens.bundle()
        let a = try artifact(b, "classifier")
        XCTAssertEqual(a.path, "reference-fp32/classifier.npy")
        XCTAssertEqual(a.files, ["reference-fp32/classifier.npy", ClassifierGoldenTests.matrix])
        XCTAssertEqual(a.shapes.batch, .fixed(1))
        XCTAssertNil(a.shapes.length)
        let logits = try Json.floatRows(g["probe_logits"])
        let probs = try Json.floatRows(g["probe_probabilities"])
        let top1 = try Json.ints(g["probe_top1"])
        let p = try b.probe()
        let s = try ReferenceRuntime().load(a)
        defer { s.close() }
        var got: [[Float]] = []
        for k in 0..<p.images.count {
            let z = try s.encodeImage(p.images[k], size: p.imageSize)
            assertFloatsClose(logits[k], z, try tol(g, "logits"), "artifact logits \(k)")
            assertFloatsClose(probs[k], ZeroShot.softmax(z), try tol(g, "probabilities"), "artifact probabilities \(k)")
            XCTAssertEqual(Vectors.argmax(z), top1[k], "top-1 of image \(k)")
            got.append(z)
        }
        XCTAssertThrowsError(try s.encodeText(p.tokenIds[0]))          // an image model
        // the figures the benchmark reports for it: the schema's keys, zero-shot = top-1 agreement
        let c = try b.classifier()
        let f = try Parity.measureLogits(refImage: p.refImage, classes: c.classEmbeddings, logitScale: 100, got: got)
        XCTAssertEqual(f.top1Agreement, 1)
        XCTAssertLessThanOrEqual(f.figures.maxAbs, 1e-6)
        XCTAssertGreaterThan(f.figures.cosineMin, 0.999999)
        XCTAssertEqual(try Parity.failures(f, precision: "fp32"), [])
        let d = f.toDictionary()
        for k in ["max_abs", "cosine_min", "cosine_mean", "zero_shot_agreement", "n", "finite", "top1_agreement",
                  "max_abs_cosine_units"] {
            XCTAssertNotNil(d[k], k)
        }
        // one image of six wrong fails the top-1 bar; logits 1e-3 x scale off fail fp32's max abs, not fp16's
        var off = got
        off[0] = [0, 1000, 0, 0, 0]
        let bad = try Parity.measureLogits(refImage: p.refImage, classes: c.classEmbeddings, logitScale: 100, got: off)
        XCTAssertEqual(try Parity.failures(bad, precision: "int8"), ["top-1 agreement 83.3% < 99% (1 of 6 images)"])
        off = got
        off[2][0] += 0.1
        let drift = try Parity.measureLogits(refImage: p.refImage, classes: c.classEmbeddings, logitScale: 100, got: off)
        let why = try Parity.failures(drift, precision: "fp32")
        XCTAssertEqual(why.count, 1, "\(why)")
        XCTAssertTrue(why.first?.hasPrefix("logits max abs 0.1 (0.001 x logit_scale) > 2e-05 x logit_scale") == true, "\(why)")
        XCTAssertEqual(try Parity.failures(drift, precision: "fp16"), [])
        // the Benchmark tab's verdict on a classifier record uses the logits bars
        let rec: [String: Any] = ["encoder": "classifier", "precision": "fp32", "parity": drift.toDictionary()]
        XCTAssertEqual(Benchmark.passes(rec), false)
        XCTAssertEqual(Benchmark.passes(["encoder": "classifier", "precision": "fp16", "parity": drift.toDictionary()]), true)
        XCTAssertEqual(Benchmark.passes(["encoder": "classifier", "precision": "fp32", "parity": f.toDictionary()]), true)
    }

    func testABundleWithoutAClassifierSaysSo() throws {
        let dir = try TestBundles.editedGolden(self, name: "none") { m in
            m["classifier"] = nil
            var arts = try Json.list(m["artifacts"])
            arts.removeLast()
            m["artifacts"] = arts
        }
        let b = try ModelBundle.open(dir)
        XCTAssertFalse(b.hasClassifier)
        XCTAssertThrowsError(try b.classifier()) { error in
            XCTAssertTrue(oneLine(error).contains("has no zero-shot classifier: export one with clip-export --classifier"),
                          oneLine(error))
        }
        XCTAssertEqual(try Benchmark.runAll(bundle: b, runtimes: [ReferenceRuntime()], settings: settings(),
                                            memory: BundleIntegrityTests.FixedMemory()).count, 2)
    }

    // MARK: refusals

    func testATamperedClassMatrixIsRefusedBeforeAnythingRuns() throws {
        let dir = try TestBundles.copyGolden(self, name: "tampered")
        try TestBundles.flipByte(dir.appendingPathComponent(ClassifierGoldenTests.matrix), at: -7)   // same size
        let b = try ModelBundle.open(dir)
        let m = ClassifierGoldenTests.matrix
        expect(.integrity, "\(m) does not match the manifest (sha256") { _ = try b.classifier() }
        let a = try artifact(b, "classifier")
        expect(.integrity, "\(m) does not match") { _ = try ReferenceRuntime().load(a) }
        expect(.integrity, "\(m) does not match") { try b.verifyArtifact(a) }
        expectNothingMeasured(b, .integrity, "\(m) does not match")
        // the image and text encoders do not need the class matrix: they still verify
        XCTAssertNoThrow(try b.verifyArtifact(try artifact(b, "image")))
        XCTAssertNoThrow(try b.verifyArtifact(try artifact(b, "text")))
    }

    func testALabelFileThatDisagreesWithTheManifestIsRefused() throws {
        let cases: [(String, String)] = [
            (#"["tree", "cat", "frog", "red apple", "crème brûlée"]"#,
             "disagrees with the manifest's classifier.labels at 0 ('tree'"),
            (#"["cat", "tree", "frog", "red apple"]"#, "at 4 (nothing, the manifest has 'crème brûlée'; 4 vs 5 labels)"),
            (#"["cat", "tree", "frog", "red apple", "creme brulee"]"#, "at 4 ('creme brulee'"),
            // the same label in another Unicode normal form (NFD) is another label, as in Python and the JVM
            ("[\"cat\", \"tree\", \"frog\", \"red apple\", \"cre\u{300}me bru\u{302}le\u{301}e\"]", "at 4 ("),
            (#"["cat", "tree", "frog", "red apple", "crème brûlée", "dog"]"#, "6 vs 5 labels"),
            (#"["cat", "tree", "frog", "red apple", 5]"#, "at 4 (a number"),
            (#"{"labels": []}"#, "classifier/labels.json must be a list of labels, got an object"),
            (#"["cat", "#, "classifier/labels.json is not JSON"),
        ]
        for (k, c) in cases.enumerated() {
            let dir = try TestBundles.copyGolden(self, name: "labels\(k)")
            try Data(c.0.utf8).write(to: dir.appendingPathComponent(ClassifierGoldenTests.labelsFile))
            try TestBundles.seal(dir, try TestBundles.goldenManifest())     // re-recorded: only the reader can tell
            let b = try ModelBundle.open(dir)
            expect(.invalidManifest, c.1) { _ = try b.classifier() }
            expectNothingMeasured(b, .invalidManifest, c.1)
        }
        // a label file changed after the export (not re-recorded): its digest
        let dir = try TestBundles.copyGolden(self, name: "edited")
        try TestBundles.flipByte(dir.appendingPathComponent(ClassifierGoldenTests.labelsFile), at: 3)
        let b = try ModelBundle.open(dir)
        expect(.integrity, "\(ClassifierGoldenTests.labelsFile) does not match the manifest") { _ = try b.classifier() }
    }

    /// The goldens' class matrix with `rows` rows (copies of its own) and row 0's first value set to `first`.
    func matrix(rows: Int, first: Float? = nil) throws -> Data {
        let c = try Npy.read(contentsOf: try Goldens.file("bundle/" + ClassifierGoldenTests.matrix)).rows()
        var out = (0..<rows).map { c[$0 % c.count] }
        if let f = first { out[0][0] = f }
        return try Npy.encode(floats: out.flatMap { $0 }, shape: [rows, 16])
    }

    func testAClassMatrixThatDoesNotFitTheLabelsIsRefused() throws {
        let m = ClassifierGoldenTests.matrix
        // 4 rows for 5 labels: recorded, so the digest holds; the shape does not
        let dir = try TestBundles.copyGolden(self, name: "rows")
        try matrix(rows: 4).write(to: dir.appendingPathComponent(m))
        try TestBundles.seal(dir, try TestBundles.goldenManifest())
        let b = try ModelBundle.open(dir)
        expect(.malformedArray, "class matrix \(m) is <f4 [4, 16], expected float32 [5, 16]") { _ = try b.classifier() }
        expectNothingMeasured(b, .malformedArray, "expected float32 [5, 16]")
        // 4 labels in the manifest (and in labels.json and the artifact's output) for a matrix of 5 rows
        func fourLabels(outputs n: Int) throws -> URL {
            let dir = try TestBundles.copyGolden(self, name: "labels4-\(n)")
            try Data(#"["cat", "tree", "frog", "red apple"]"#.utf8)
                .write(to: dir.appendingPathComponent(ClassifierGoldenTests.labelsFile))
            var man = try TestBundles.goldenManifest()
            var c = try Json.map(man["classifier"])
            c["labels"] = ["cat", "tree", "frog", "red apple"]
            man["classifier"] = c
            var arts = try Json.list(man["artifacts"]).map { try Json.map($0) }
            arts[2]["outputs"] = [["name": "logits", "shape": [1, n], "dtype": "float32"]] as [[String: Any]]
            man["artifacts"] = arts
            try TestBundles.seal(dir, man)
            return dir
        }
        let b2 = try ModelBundle.open(try fourLabels(outputs: 4))
        expect(.malformedArray, "is <f4 [5, 16], expected float32 [4, 16] (one row per label") { _ = try b2.classifier() }
        // ... and the artifact's declared output against the labels, at open
        let d5 = try fourLabels(outputs: 5)
        expect(.invalidManifest, "artifacts[2] output 'logits' has 5 classes, the classifier has 4 labels") {
            _ = try ModelBundle.open(d5)
        }
        // a row that is not a unit vector, and one that is not finite
        for (k, v) in [Float(2), Float.nan].enumerated() {
            let d = try TestBundles.copyGolden(self, name: "unit\(k)")
            try matrix(rows: 5, first: v).write(to: d.appendingPathComponent(m))
            try TestBundles.seal(d, try TestBundles.goldenManifest())
            let b3 = try ModelBundle.open(d)
            expect(.malformedArray, "row 0 ('cat') is not a unit vector") { _ = try b3.classifier() }
        }
        // a width that is not the model's
        let d4 = try TestBundles.editedGolden(self, name: "dim") { man in
            var c = try Json.map(man["classifier"])
            c["embedding_dim"] = 8
            man["classifier"] = c
        }
        expect(.invalidManifest, "'classifier.embedding_dim' is 8, the manifest's embedding_dim 16") {
            _ = try ModelBundle.open(d4)
        }
    }

    func testAClassifierArtifactWithoutAClassifierBlockIsRefusedAtOpen() throws {
        let dir = try TestBundles.editedGolden(self, name: "noblock") { $0["classifier"] = nil }
        expect(.invalidManifest, "manifest has no 'classifier' (labels, templates, class matrix), but artifacts[2] is a "
               + "classifier") { _ = try ModelBundle.open(dir) }
    }

    func testAMalformedClassifierBlockIsRefusedWithTheKey() throws {
        let cases: [(String, Any?, Kind, String)] = [
            ("labels", "cat", .invalidManifest, "'classifier.labels' must be a list of 1 to 100000 labels, got the string 'cat'"),
            ("labels", [Any](), .invalidManifest, "'classifier.labels' must be a list of 1 to 100000 labels"),
            ("labels", ["cat", "tree", "cat", "red apple", "crème brûlée"], .invalidManifest,
             "'classifier.labels[2]' repeats the label 'cat': each label once"),
            ("labels", ["cat", "", "frog", "red apple", "crème brûlée"], .invalidManifest,
             "'classifier.labels[1]' must be a string of 1 to 1000 characters"),
            ("labels", ["cat", 2, "frog", "red apple", "crème brûlée"] as [Any], .invalidManifest,
             "'classifier.labels[1]' must be a string of 1 to 1000 characters, got a number 2"),
            ("labels", NSNull(), .invalidManifest, "'classifier.labels' must be a list"),
            ("templates", [Any](), .invalidManifest, "'classifier.templates' must be a list of 1 to 1000 templates"),
            ("templates", ["a photo of a {}.", true] as [Any], .invalidManifest,
             "'classifier.templates[1]' must be a string of 2 to 1000 characters, got a boolean true"),
            ("logit_scale", "100", .invalidManifest,
             "'classifier.logit_scale' must be a number in 0 .. 1000, got the string '100'"),
            ("logit_scale", 1e4, .invalidManifest, "'classifier.logit_scale' must be a number in 0 .. 1000"),
            ("logit_scale", true, .invalidManifest, "'classifier.logit_scale' must be a number in 0 .. 1000, got a boolean"),
            ("embedding_dim", 0, .invalidManifest, "'classifier.embedding_dim' must be an integer in 1 .. 65536"),
            ("class_embeddings", 5, .invalidManifest,
             "'classifier.class_embeddings' must be a string of 1 to 1024 characters"),
            ("class_embeddings", "../class_embeddings.npy", .unsafePath, "'../class_embeddings.npy' contains '..'"),
            ("class_embeddings", "classifier/other.npy", .integrity,
             "'classifier/other.npy' is named by the manifest but has no integrity record"),
            ("labels_file", "/etc/passwd", .unsafePath, "'/etc/passwd' is absolute"),
            ("template_source", 3, .invalidManifest, "'classifier.template_source' must be a string"),
        ]
        let dir = try TestBundles.copyGolden(self, name: "block")
        for c in cases {
            var m = try TestBundles.goldenManifest()
            var block = try Json.map(m["classifier"])
            block[c.0] = c.1
            m["classifier"] = block
            try TestBundles.writeManifest(dir, m)                           // the files' record is the goldens'
            expect(c.2, c.3) { _ = try ModelBundle.open(dir) }
        }
        for key in ["labels", "templates", "logit_scale", "class_embeddings"] {
            var m = try TestBundles.goldenManifest()
            var block = try Json.map(m["classifier"])
            block[key] = nil
            m["classifier"] = block
            try TestBundles.writeManifest(dir, m)
            expect(.invalidManifest, "manifest has no 'classifier.\(key)'") { _ = try ModelBundle.open(dir) }
        }
        var m = try TestBundles.goldenManifest()
        m["classifier"] = [1, 2]
        try TestBundles.writeManifest(dir, m)
        expect(.invalidManifest, "manifest key 'classifier' must be an object, got an array") { _ = try ModelBundle.open(dir) }
    }
}
