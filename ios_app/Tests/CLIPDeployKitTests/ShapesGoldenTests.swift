import Foundation
import XCTest
@testable import CLIPDeployKit

/// The JVM core's ShapesGoldenTest, case for case: the manifest's `shapes`, shortest-length tokenization and
/// batched indexing, against `goldens/token_lengths.json` (written by the Python implementation) and the goldens'
/// bundle.
final class ShapesGoldenTests: XCTestCase {
    func tokenizer() throws -> CLIPTokenizer {
        if let t = TokenizerGoldenTests.shared { return t }
        let dir = try Goldens.file("bundle/tokenizer")
        let t = try CLIPTokenizer.fromFiles(vocab: dir.appendingPathComponent("vocab.json"),
                                            merges: dir.appendingPathComponent("merges.txt"))
        TokenizerGoldenTests.shared = t
        return t
    }

    func golden() throws -> [String: Any] {
        return try Goldens.json("token_lengths.json")
    }

    /// (name, descriptor) in the golden's order.
    func descriptors() throws -> [(String, ShapeDescriptor)] {
        return try Json.list(golden()["descriptors"]).map { o in
            let d = try Json.map(o)
            let name = try Json.str(d["name"])
            return (name, try ShapeDescriptor.parse(d["descriptor"], what: name))
        }
    }

    func testEveryCaptionAndDescriptorGivesThePythonLengthAndIds() throws {
        let tok = try tokenizer()
        let descs = try descriptors()
        XCTAssertEqual(descs.count, 8)
        let cases = try Json.list(golden()["cases"])
        XCTAssertGreaterThanOrEqual(cases.count, 12)
        var failures = ""
        var checked = 0
        for o in cases {
            let c = try Json.map(o)
            let text = try Json.str(c["text"]), name = try Json.str(c["name"])
            XCTAssertEqual(try tok.tokenCount(text), try Json.int(c["tokens"]), name)
            let lengths = try Json.map(c["lengths"]), ids = try Json.map(c["ids"])
            for (dname, d) in descs {
                let want = try Json.ints(ids[dname]).map { Int32($0) }
                let got = try tok.tokenize(text, for: d)
                XCTAssertEqual(try tok.shortestLength(text, for: d), try Json.int(lengths[dname]), "\(name) \(dname)")
                XCTAssertTrue(d.accepts(got.count))
                if want != got { failures += "\n\(name) @ \(dname): want \(want)\n   got \(got)" }
                checked += 1
            }
        }
        XCTAssertEqual(failures, "", "differ from Python:\(failures)")
        XCTAssertEqual(checked, cases.count * 8)
    }

    func testBatchesShareOneLength() throws {
        let tok = try tokenizer()
        let g = try golden()
        var texts: [String: String] = [:]
        for o in try Json.list(g["cases"]) {
            let c = try Json.map(o)
            texts[try Json.str(c["name"])] = try Json.str(c["text"])
        }
        let descs = Dictionary(uniqueKeysWithValues: try descriptors())
        let batches = try Json.list(g["batches"])
        XCTAssertGreaterThanOrEqual(batches.count, 4)
        for o in batches {
            let b = try Json.map(o)
            let t = try Json.strings(b["captions"]).map { texts[$0]! }
            let got = try tok.tokenize(t, for: descs[try Json.str(b["descriptor"])]!)
            let want = try Json.list(b["ids"]).map { try Json.ints($0).map { Int32($0) } }
            XCTAssertEqual(got, want, "\(b["descriptor"] ?? "?")")
            for row in got { XCTAssertEqual(row.count, try Json.int(b["length"])) }
        }
    }

    func testEdgeCases() throws {
        let tok = try tokenizer()
        let long = String(repeating: "dog ", count: 200)
        XCTAssertEqual(try tok.tokenCount(long), 77)
        let at77 = try tok.tokenize(long, for: .enumerated([8, 16, 32, 77]))
        XCTAssertEqual(at77, try tok.tokenize(long))
        let at16 = try tok.tokenize(long, for: .enumerated([8, 16]))
        XCTAssertEqual(at16.count, 16)
        XCTAssertEqual(at16[15], CLIPTokenizer.eot)
        XCTAssertEqual(Array(at16.prefix(15)), Array(at77.prefix(15)))
        XCTAssertEqual(try tok.tokenize(long, for: .dynamic(min: 1, max: nil)).count, 77)
        XCTAssertEqual(try tok.tokenize("a photo of a big red dog", for: .enumerated([4, 8])),
                       [CLIPTokenizer.sot, 320, 1125, 539, 320, 1205, 736, CLIPTokenizer.eot])
        let padded = try tok.tokenize("", for: .dynamic(min: 12, max: 77))
        XCTAssertEqual(padded.count, 12)
        XCTAssertEqual(Array(padded.prefix(3)), [CLIPTokenizer.sot, CLIPTokenizer.eot, 0])
        let d = try tok.tokenize("a photo of a dog", for: .dynamic(min: 1, max: 77))
        XCTAssertEqual(d, Array(try tok.tokenize("a photo of a dog").prefix(7)))
        XCTAssertEqual(try tok.tokenize("a photo of a dog", length: 77), try tok.tokenize("a photo of a dog"))
        XCTAssertEqual(try tok.tokenize("a dog", length: 1), [CLIPTokenizer.eot])
    }

    func testMalformedDescriptorsAreRejectedWithThePythonPhrase() throws {
        let bad = try Json.list(golden()["malformed"])
        XCTAssertGreaterThanOrEqual(bad.count, 12)
        for o in bad {
            let m = try Json.map(o)
            let phrase = try Json.str(m["error"])
            XCTAssertThrowsError(try ShapeDescriptor.parse(m["descriptor"], what: "length"),
                                 "accepted \(m["descriptor"] ?? "?")") { error in
                let msg = oneLine(error)
                XCTAssertTrue(msg.hasPrefix("length: ") && msg.contains(phrase), "\(msg) lacks \(phrase)")
            }
        }
    }

    func testDescriptorsRoundTripAndAnswer() throws {
        for o in try Json.list(golden()["descriptors"]) {
            let d = try Json.map(o)
            let parsed = try ShapeDescriptor.parse(d["descriptor"], what: "x")
            XCTAssertEqual(try Json.write(parsed.toJson(), pretty: false),
                           try Json.write(try Json.map(d["descriptor"]), pretty: false))
        }
        let descs = Dictionary(uniqueKeysWithValues: try descriptors())
        let e = descs["enumerated_coreml"]!
        XCTAssertTrue(e.accepts(16) && !e.accepts(17) && e.largest == 77 && !e.isDynamic)
        let u = descs["dynamic_unbounded"]!
        XCTAssertTrue(u.accepts(1) && u.accepts(100000) && u.largest == nil)
        XCTAssertEqual(u.description, "dynamic 1..")
        XCTAssertEqual(descs["fixed_77_non_causal"]!.reason,
                       "non-causal text tower: the padding after EOT changes the embedding")
    }

    // MARK: the bundle reader

    func testGoldenBundleDeclaresShapes() throws {
        let b = try Goldens.bundle()
        let image = b.artifacts[0], text = b.artifacts[1]
        XCTAssertTrue(image.shapes.declared && text.shapes.declared)
        XCTAssertEqual(image.shapes.batch, .enumerated([1, 4, 8]))
        XCTAssertNil(image.shapes.length)
        XCTAssertEqual(text.shapes.batch, .fixed(1))
        XCTAssertEqual(text.shapes.length, .dynamic(min: 1, max: 77))
        XCTAssertEqual(b.artifactsWithVariants()[1].shapes, text.shapes)
    }

    /// A copy of the golden bundle whose artifacts' `shapes` are replaced (or removed), re-sealed.
    func manifestWith(_ name: String, image: Any?, text: Any?, remove: Bool = false) throws -> URL {
        return try TestBundles.editedGolden(self, name: name) { m in
            var arts = try Json.list(m["artifacts"]).map { try Json.map($0) }
            if remove {
                for k in arts.indices { arts[k]["shapes"] = nil }
            } else {
                if let i = image { arts[0]["shapes"] = i }
                if let t = text { arts[1]["shapes"] = t }
            }
            m["artifacts"] = arts
        }
    }

    func testOlderManifestsWithoutShapesGetBatch1AndLength77() throws {
        let b = try ModelBundle.open(try manifestWith("old", image: nil, text: nil, remove: true))
        for a in b.artifacts {
            XCTAssertFalse(a.shapes.declared)
            XCTAssertEqual(a.shapes.batch, .fixed(1))
        }
        XCTAssertNil(b.artifacts[0].shapes.length)
        XCTAssertEqual(b.artifacts[1].shapes.length, .fixed(77))
        XCTAssertEqual(try tokenizer().tokenize("a dog", for: b.artifacts[1].shapes.length!).count, 77)
    }

    func testMalformedShapesNameTheArtifactAndKey() throws {
        let fixed1: [String: Any] = ["kind": "fixed", "values": [1]]
        let cases: [(Any?, Any?, String)] = [
            (nil, ["batch": fixed1, "length": ["kind": "enumerated", "values": [16, 8]] as [String: Any]] as [String: Any],
             "artifact reference-fp32/text_encoder.npy: shapes.length: enumerated values must be increasing and distinct"),
            (nil, ["batch": fixed1] as [String: Any],
             "artifact reference-fp32/text_encoder.npy: shapes: a text encoder's shapes have no 'length'"),
            (["batch": ["kind": "dynamic", "min": 0, "max": NSNull()] as [String: Any]] as [String: Any], nil,
             "artifact reference-fp32/image_encoder.npy: shapes.batch: dynamic needs an integer 'min' >= 1, got 0"),
            ("[1]", nil, "artifact reference-fp32/image_encoder.npy: shapes: must be an object"),
            ([String: Any](), nil, "artifact reference-fp32/image_encoder.npy: shapes: has no 'batch'"),
        ]
        for (k, c) in cases.enumerated() {
            let dir = try manifestWith("bad\(k)", image: c.0, text: c.1)
            XCTAssertThrowsError(try ModelBundle.open(dir), c.2) { error in
                let msg = (error as? CLIPDeployError)?.message ?? ""
                XCTAssertTrue(msg.contains(dir.appendingPathComponent("manifest.json").path + ": " + c.2), msg)
                XCTAssertFalse(msg.contains("\n"))
            }
        }
    }

    func testBenchmarkInputsFitTheTextArtifact() throws {
        let tok = try tokenizer()
        let ids77 = try tok.tokenize("a photo of a big red dog")
        let dynamic = ArtifactShapes(batch: .fixed(1), length: .dynamic(min: 1, max: 77))
        XCTAssertEqual(try dynamic.fitIds(ids77), ids77)
        let no77 = ArtifactShapes(batch: .fixed(1), length: .enumerated([8, 16, 32]))
        XCTAssertEqual(try no77.fitIds(ids77), Array(ids77.prefix(16)))
        let tiny = ArtifactShapes(batch: .fixed(1), length: .enumerated([4, 8]))
        XCTAssertEqual(try tiny.fitIds(ids77), try tok.tokenize("a photo of a big red dog", for: .enumerated([4, 8])))
    }

    // MARK: text and images

    final class RecordingTextSession: EncoderSession {
        let ref: EncoderSession
        let length: ShapeDescriptor
        var lengths: [Int] = []

        init(ref: EncoderSession, length: ShapeDescriptor) {
            self.ref = ref
            self.length = length
        }

        func encodeImage(_ chw: [Float], size: Int) throws -> [Float] {
            throw CLIPDeployError(.encoder, "image")
        }

        func encodeText(_ ids: [Int32]) throws -> [Float] {
            XCTAssertTrue(length.accepts(ids.count), "length \(ids.count)")
            lengths.append(ids.count)
            return try ref.encodeText(ids)
        }

        func close() {}
    }

    func testTextEncoderFeedsTheShortestLengthAndGetsThe77Embedding() throws {
        let tok = try tokenizer()
        let b = try Goldens.bundle()
        let text = b.artifacts[1]
        let ref = try ReferenceRuntime().load(text)
        defer { ref.close() }
        let rec = RecordingTextSession(ref: ref, length: text.shapes.length!)
        let enc = TextEncoder(session: rec, tokenizer: tok, artifact: text)
        let p = try b.probe()
        for k in 0..<p.captions.count {
            let got = try enc.embed(p.captions[k])
            XCTAssertEqual(rec.lengths.last, try tok.tokenCount(p.captions[k]))
            XCTAssertEqual(got, Vectors.l2normalize(p.refText[k]), p.captions[k])
        }
        let labels = ["dog", "cat"]
        let classes = try enc.classEmbeddings(labels: labels, templates: ZeroShot.defaultTemplates)
        for (c, label) in labels.enumerated() {
            let full = try ZeroShot.prompts(label: label, templates: ZeroShot.defaultTemplates).map {
                Vectors.l2normalize(try ref.encodeText(try tok.tokenize($0)))
            }
            XCTAssertEqual(try ZeroShot.ensemble(full), classes[c])
        }
        XCTAssertTrue(rec.lengths.allSatisfy { $0 < 77 })
    }

    func testBatchPlansAreThePythonOnes() throws {
        let ib = try Json.map(golden()["image_batches"])
        XCTAssertEqual(try Json.int(ib["default_max_batch"]), ImageIndexBuilder.defaultMaxBatch)
        for o in try Json.list(ib["descriptors"]) {
            let d = try Json.map(o)
            let name = try Json.str(d["descriptor"])
            let desc = try ShapeDescriptor.parse(d["shape"], what: name)
            for po in try Json.list(d["plans"]) {
                let p = try Json.map(po)
                let n = try Json.int(p["images"])
                let plan = try ImageIndexBuilder.plan(desc, images: n)
                let want = try Json.list(p["batches"]).map { try Json.ints($0) }
                XCTAssertEqual(plan.count, want.count, "\(name) n=\(n)")
                var start = 0
                for (k, w) in want.enumerated() where k < plan.count {
                    XCTAssertEqual(plan[k], ImageIndexBuilder.Batch(start: start, images: w[0], size: w[1]))
                    XCTAssertTrue(desc.accepts(w[1]))
                    start += w[0]
                }
                XCTAssertEqual(start, n)
            }
        }
    }

    /// Checks every batch it gets has an accepted size and records it; rows via the reference model.
    final class BatchCheckingSession: EncoderSession {
        let ref: EncoderSession
        let batch: ShapeDescriptor
        var sizes: [Int] = []
        var failAt = -1

        init(ref: EncoderSession, batch: ShapeDescriptor) {
            self.ref = ref
            self.batch = batch
        }

        func encodeImage(_ chw: [Float], size: Int) throws -> [Float] {
            XCTFail("the index builder must call encodeImages")
            return []
        }

        func encodeImages(_ chws: [[Float]], size: Int) throws -> [[Float]] {
            XCTAssertTrue(batch.accepts(chws.count), "batch of \(chws.count) for \(batch)")
            if sizes.count == failAt {
                sizes.append(-chws.count)
                throw CLIPDeployError(.encoder, "encoder failure")
            }
            sizes.append(chws.count)
            return try chws.map { try ref.encodeImage($0, size: size) }
        }

        func encodeText(_ ids: [Int32]) throws -> [Float] {
            throw CLIPDeployError(.encoder, "text")
        }

        func close() {}
    }

    func testBatchedIndexEqualsTheOneAtATimeIndex() throws {
        let b = try Goldens.bundle()
        let image = b.artifacts[0]
        let p = try b.probe()
        var chws: [[Float]] = []
        var ids: [String] = []
        for k in 0..<17 {
            var x = p.images[k % 6]
            let other = p.images[(k * 5 + 1) % 6]
            for j in 0..<x.count { x[j] = 0.5 * (x[j] + other[j]) * Float(1 + k % 3) / 3 }
            chws.append(x)
            ids.append("img\(k)")
        }
        let ref = try ReferenceRuntime().load(image)
        defer { ref.close() }
        let query = Vectors.l2normalize(p.refImage[2])
        let batches: [ShapeDescriptor] = [image.shapes.batch, .fixed(1), .enumerated([4, 8]), .dynamic(min: 1, max: 8),
                                          .dynamic(min: 1, max: nil), .dynamic(min: 3, max: 5), .fixed(4)]
        for d in batches {
            for n in [1, 3, 8, 11, 17] {
                let s = BatchCheckingSession(ref: ref, batch: d)
                let index = ImageSearch()
                let builder = ImageIndexBuilder(session: s, batch: d, size: 32, index: index)
                var committed: [String] = []
                for k in 0..<n { committed += try builder.add(id: ids[k], chw: chws[k]) }
                committed += try builder.flush()
                XCTAssertEqual(committed, Array(ids.prefix(n)))
                XCTAssertEqual(index.count, n)
                XCTAssertEqual(builder.added, n)
                let plan = try ImageIndexBuilder.plan(d, images: n)
                XCTAssertEqual(s.sizes, plan.map { $0.size }, "\(d) n=\(n)")
                XCTAssertEqual(builder.calls, plan)
                let first = ImageSearch()
                for k in 0..<n {
                    try first.add(id: ids[k], embedding: Vectors.l2normalize(try ref.encodeImage(chws[k], size: 32)))
                }
                XCTAssertEqual(first.query(query, k: n), index.query(query, k: n), "\(d) n=\(n)")
            }
        }
        let all = ImageSearch()
        try ImageIndexBuilder.addAll(all, session: BatchCheckingSession(ref: ref, batch: image.shapes.batch),
                                     batch: image.shapes.batch, size: 32, ids: ids, chws: chws)
        XCTAssertEqual(all.count, 17)
        // an encoder failure drops the chunk it had (none of its images is indexed) and the builder goes on
        let failing = BatchCheckingSession(ref: ref, batch: .enumerated([1, 4, 8]))
        failing.failAt = 1
        let index = ImageSearch()
        let builder = ImageIndexBuilder(session: failing, batch: .enumerated([1, 4, 8]), size: 32, index: index)
        var failed = 0
        for k in 0..<17 {
            let before = builder.pending + 1
            do {
                try builder.add(id: ids[k], chw: chws[k])
            } catch {
                failed += before
            }
        }
        try builder.flush()
        XCTAssertEqual(failed, 8)
        XCTAssertEqual(index.count, 9)
        XCTAssertEqual(failing.sizes, [8, -8, 1])
    }

    func testDefaultEncodeImagesLoopsOverRows() throws {
        let b = try Goldens.bundle()
        let p = try b.probe()
        let ref = try ReferenceRuntime().load(b.artifacts[0])
        defer { ref.close() }
        let y = try ref.encodeImages([p.images[0], p.images[3], p.images[3]], size: 32)
        XCTAssertEqual(y.count, 3)
        XCTAssertEqual(y[2], try ref.encodeImage(p.images[3], size: 32))
        assertFloatsClose(p.refImage[0], y[0], 1e-6, "row 0")
    }
}
