import Foundation
import XCTest
@testable import CLIPDeployKit

/// Randomized corruption of what the kit reads from outside: `Json`, `Npy` and `ModelBundle` (manifest and probe
/// files), the JVM core's FuzzCorruptionTest. Seeded (SplitMix64, fixed seeds), so a failure names a case that can
/// be replayed. Each input is either read or refused with a `CLIPDeployError` (one line); anything else fails the
/// test, and a trap (an overflow, an out-of-range index, a stack overflow, an allocation the input merely asked
/// for) would end the test process. The class prints one summary line with the counts.
final class FuzzCorruptionTests: XCTestCase {
    static let seed: UInt64 = 0x5eed_2026
    static var summary: [(String, Int, Int)] = []
    static var kinds: [String: Int] = [:]

    override class func tearDown() {
        let parts = summary.map { "\($0.0) \($0.1 + $0.2) inputs (\($0.1) accepted, \($0.2) refused)" }
        print("FuzzCorruption (seed 0x5eed2026): " + parts.joined(separator: ", "))
        if !kinds.isEmpty {
            print("FuzzCorruption bundle refusals by kind: "
                  + kinds.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        }
        super.tearDown()
    }

    static func count(_ reader: String, _ accepted: Int, _ refused: Int) {
        summary.removeAll { $0.0 == reader }
        summary.append((reader, accepted, refused))
        summary.sort { order($0.0) < order($1.0) }
    }

    private static func order(_ r: String) -> Int { ["json": 0, "npy": 1, "bundle": 2][r] ?? 3 }

    // MARK: mutations

    static func mutate(_ input: [UInt8], _ r: inout SplitMix64) -> [UInt8] {
        var b = input
        switch r.below(7) {
        case 0:                                               // truncation at a random point
            return Array(b.prefix(r.below(b.count + 1)))
        case 1:                                               // random bit flips
            let n = 1 + r.below(8)
            for _ in 0..<n where !b.isEmpty { b[r.below(b.count)] ^= UInt8(1) << UInt8(r.below(8)) }
            return b
        case 2:                                               // a random byte run overwritten
            guard !b.isEmpty else { return b }
            let at = r.below(b.count), n = min(b.count - at, 1 + r.below(16))
            for k in 0..<n { b[at + k] = UInt8(truncatingIfNeeded: r.next()) }
            return b
        case 3:                                               // a chunk duplicated (inserted)
            let at = r.below(b.count + 1), n = min(b.count - at, r.below(64))
            b.insert(contentsOf: b[at..<(at + n)], at: at)
            return b
        case 4:                                               // a chunk removed
            guard !b.isEmpty else { return b }
            let at = r.below(b.count), n = min(b.count - at, 1 + r.below(64))
            b.removeSubrange(at..<(at + n))
            return b
        case 5:                                               // a digit run replaced by a huge / odd number
            let huge = ["99999999999999999999999", "-1", "1e400", "4611686018427387904", "-0", "1.5", "2147483648",
                        "18446744073709551616", "1e-400"]
            let at = r.below(b.count + 1)
            var d = at
            while d < b.count, !(b[d] >= 0x30 && b[d] <= 0x39) { d += 1 }
            var e = d
            while e < b.count, b[e] >= 0x30 && b[e] <= 0x39 { e += 1 }
            b.replaceSubrange(d..<e, with: Array(huge[r.below(huge.count)].utf8))
            return b
        default:                                              // random bytes
            return (0..<r.below(256)).map { _ in UInt8(truncatingIfNeeded: r.next()) }
        }
    }

    static let wrong: [Any] = ["x", "", "../../etc/passwd", "/abs", -1, 0, 4611686018427387904, 1e308, -1e-300, 0.5,
                               true, false, NSNull(), [Any](), [String: Any](), [1, "a"] as [Any],
                               String(repeating: "x", count: 5000)]

    /// `root` with one random node replaced by a value of a random (usually wrong) type, or a key removed.
    static func typeMutate(_ root: Any, _ r: inout SplitMix64, depth: Int = 0) -> Any {
        if var m = root as? [String: Any], !m.isEmpty {
            let keys = m.keys.sorted()
            let key = keys[r.below(keys.count)]
            let child = m[key]!
            if depth >= 7 || r.below(3) == 0 || !(child is [String: Any] || child is [Any]) {
                if r.below(5) == 0 {
                    m[key] = nil
                } else {
                    m[key] = wrong[r.below(wrong.count)]
                }
            } else {
                m[key] = typeMutate(child, &r, depth: depth + 1)
            }
            return m
        }
        if var l = root as? [Any], !l.isEmpty {
            let k = r.below(l.count)
            let child = l[k]
            if depth >= 7 || r.below(3) == 0 || !(child is [String: Any] || child is [Any]) {
                l[k] = wrong[r.below(wrong.count)]
            } else {
                l[k] = typeMutate(child, &r, depth: depth + 1)
            }
            return l
        }
        return root
    }

    static func nesting(_ depth: Int, objects: Bool) -> [UInt8] {
        let open = objects ? "{\"a\":" : "[", close = objects ? "}" : "]"
        return Array((String(repeating: open, count: depth) + "1" + String(repeating: close, count: depth)).utf8)
    }

    /// Runs `body`: true when it returned, false when it threw a one-line CLIPDeployError; anything else fails.
    func accepted(_ what: String, file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void) -> Bool {
        do {
            try body()
            return true
        } catch let e as CLIPDeployError {
            XCTAssertFalse(e.message.isEmpty, "\(what): an empty message", file: file, line: line)
            XCTAssertFalse(e.message.contains("\n"), "\(what): not one line: \(e.message)", file: file, line: line)
            return false
        } catch {
            XCTFail("\(what): not a CLIPDeployError: \(error)", file: file, line: line)
            return false
        }
    }

    // MARK: Json

    func testJsonNeverCrashes() throws {
        let seeds: [[UInt8]] = [
            [UInt8](try Data(contentsOf: Goldens.file("bundle/manifest.json"))),
            [UInt8](try Data(contentsOf: Goldens.file("bundle/probe/captions.json"))),
            Array(#"{"a": [1, 2.5e-3, -0, true, null, "\u00e9\ud83d\ude00"], "b": {"c": "d"}, "n": 12}"#.utf8),
        ]
        var r = SplitMix64(seed: FuzzCorruptionTests.seed)
        var ok = 0, refused = 0
        for k in 0..<2000 {
            var input = FuzzCorruptionTests.mutate(seeds[k % seeds.count], &r)
            if k % 50 == 0 {
                input = FuzzCorruptionTests.nesting(r.below(3) == 0 ? 100_000 : 150 + r.below(100), objects: r.bool())
            }
            var parsed: Any?
            if accepted("json case \(k)", { parsed = try Json.parse(Data(input), maxBytes: 1 << 20) }) {
                ok += 1
                // the typed accessors on whatever came out: a value or a CLIPDeployError, never a trap
                let v = parsed!
                let probes: [(Any?) throws -> Void] = [
                    { _ = try Json.map($0) }, { _ = try Json.list($0) }, { _ = try Json.num($0) },
                    { _ = try Json.int($0) }, { _ = try Json.str($0) }, { _ = try Json.ints($0) },
                    { _ = try Json.floatRows($0) }, { _ = try Json.strings($0) },
                ]
                let child: Any? = (v as? [String: Any])?.values.first ?? (v as? [Any])?.first
                for p in probes {
                    _ = accepted("json case \(k) accessor") { try p(v) }
                    _ = accepted("json case \(k) accessor") { try p(child) }
                }
            } else {
                refused += 1
            }
        }
        for s in ["NaN", "[Infinity]", "{\"a\": -Infinity}", "[1] x", "// c\n[1]", "[1,]", "{\"a\":1,}", "[1e999]",
                  "\"\\ud800\"", "[01]", "{\"a\" 1}", ""] {
            XCTAssertFalse(accepted("strict \(s)") { _ = try Json.parse(string: s) }, "accepted \(s)")
            refused += 1
        }
        // over the size limit: refused before it is parsed
        let big = Data(repeating: 0x20, count: (1 << 20) + 1)
        XCTAssertFalse(accepted("size limit") { _ = try Json.parse(big, maxBytes: 1 << 20) })
        refused += 1
        FuzzCorruptionTests.count("json", ok, refused)
        XCTAssertGreaterThan(ok, 0)
        XCTAssertGreaterThan(refused, 0)
    }

    // MARK: Npy

    static func npy(_ header: String, dataBytes: Int, version: UInt8 = 1) -> [UInt8] {
        let pre = version == 1 ? 10 : 12
        var h = header
        while (pre + h.utf8.count + 1) % 64 != 0 { h += " " }
        h += "\n"
        let hb = Array(h.utf8)
        var out: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, version, 0]
        if version == 1 {
            out += [UInt8(hb.count & 0xff), UInt8(hb.count >> 8)]
        } else {
            out += [UInt8(hb.count & 0xff), UInt8((hb.count >> 8) & 0xff), 0, 0]
        }
        return out + hb + [UInt8](repeating: 0x3f, count: dataBytes)
    }

    func testNpyNeverCrashesNorAllocatesWhatAHeaderClaims() throws {
        var seeds: [[UInt8]] = []
        for f in ["probe/token_ids.npy", "probe/image_embeddings.npy", "probe/text_embeddings.npy"] {
            seeds.append([UInt8](try Data(contentsOf: Goldens.file("bundle/" + f))))
        }
        seeds.append(FuzzCorruptionTests.npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", dataBytes: 48))
        seeds.append(FuzzCorruptionTests.npy("{'descr': '|u1', 'fortran_order': False, 'shape': (5,), }", dataBytes: 5,
                                             version: 2))
        seeds.append(FuzzCorruptionTests.npy("{'descr': '<i8', 'fortran_order': False, 'shape': (), }", dataBytes: 8,
                                             version: 3))
        let memory = MemoryProbes.platform()
        let before = memory.currentMb()
        var ok = 0, refused = 0
        // huge declared shapes with no data behind them: refused from the header, before any allocation
        let huge = ["(4611686018427387904, 4611686018427387904)", "(99999999999,)", "(2147483647, 2147483647)",
                    "(65536, 65536, 65536)", "(1099511627777,)", "(-1, 3)", "(3, -0)", "(1,)*", "(2147483648,)",
                    "(1e9,)", "(1099511627776, 0)", "(0, 1099511627776)", "(3, 'a')", "[3, 4]", "(3 4)", "(3,,)",
                    "(" + String(repeating: "1, ", count: 40) + ")", "(4,)", "()"]
        for s in huge {
            let input = FuzzCorruptionTests.npy("{'descr': '<f4', 'fortran_order': False, 'shape': \(s), }", dataBytes: 16)
            if accepted("npy shape \(s)", { _ = try Npy.read(Data(input)) }) { ok += 1 } else { refused += 1 }
        }
        for (h, why) in [("{'descr': '<f4', 'fortran_order': True, 'shape': (4,), }", "Fortran order"),
                         ("{'descr': '>f4', 'fortran_order': False, 'shape': (4,), }", "dtype '>f4' is not supported"),
                         ("{'descr': '<f4', 'shape': (4,), }", "must have 'descr', 'fortran_order' and 'shape'"),
                         ("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), 'x': 1}", "unexpected key 'x'"),
                         ("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), 'shape': (4,)}", "'shape' twice")] {
            XCTAssertThrowsError(try Npy.read(Data(FuzzCorruptionTests.npy(h, dataBytes: 16)))) { error in
                XCTAssertEqual((error as? CLIPDeployError)?.kind, .malformedArray)
                XCTAssertTrue(oneLine(error).contains(why), oneLine(error))
            }
            refused += 1
        }
        var r = SplitMix64(seed: FuzzCorruptionTests.seed + 1)
        for k in 0..<2000 {
            let input = FuzzCorruptionTests.mutate(seeds[k % seeds.count], &r)
            var a: Npy?
            if accepted("npy case \(k)", { a = try Npy.read(Data(input)) }) {
                ok += 1
                let arr = a!
                XCTAssertEqual(arr.floats().count, arr.count)
                _ = arr.rows()
                _ = accepted("npy case \(k) ints") { _ = try arr.ints() }
                _ = accepted("npy case \(k) intRows") { _ = try arr.intRows() }
            } else {
                refused += 1
            }
        }
        // the file reader checks the declared size against the file's before reading any data
        let f = try Goldens.temporaryDirectory(self).appendingPathComponent("huge.npy")
        try Data(FuzzCorruptionTests.npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000,), }",
                                         dataBytes: 64)).write(to: f)
        XCTAssertThrowsError(try Npy.read(contentsOf: f)) { error in
            XCTAssertEqual((error as? CLIPDeployError)?.kind, .malformedArray)
            XCTAssertTrue(oneLine(error).contains("needs 4000000000 bytes of data, the file has 64")
                          || oneLine(error).contains("larger than"), oneLine(error))
        }
        refused += 1
        let grown = memory.currentMb() - before
        XCTAssertLessThan(grown, 512, "the reader allocated what headers claimed (\(grown) MB)")
        FuzzCorruptionTests.count("npy", ok, refused)
        XCTAssertGreaterThan(ok, 0)
        XCTAssertGreaterThan(refused, 0)
    }

    // MARK: the bundle reader

    /// Opens, verifies and reads everything a bundle offers (the tokenizer files are always verified, parsed only
    /// when `tokenizer`: they are not what is mutated here, and parsing them is the slow part in a debug build).
    static func readAll(_ dir: URL, tokenizer: Bool) throws {
        let b = try ModelBundle.open(dir)
        try b.verifyAll()
        _ = try b.probe()
        _ = try b.preprocessSpec()
        _ = try b.logitScale()
        _ = try b.embeddingDim()
        for a in b.artifactsWithVariants() { _ = try a.verifiedURL() }
        if b.hasClassifier { _ = try b.classifier() }
        try b.verifyFile(b.tokenizerPath("vocab"))
        try b.verifyFile(b.tokenizerPath("merges"))
        if tokenizer { _ = try CLIPTokenizer.fromBundle(b) }
    }

    func testBundleReaderNeverCrashes() throws {
        let dir = try TestBundles.copyGolden(self, name: "fuzz")
        let mf = dir.appendingPathComponent("manifest.json")
        let good = [UInt8](try Data(contentsOf: mf))
        let golden = try TestBundles.goldenManifest()
        var r = SplitMix64(seed: FuzzCorruptionTests.seed + 2)
        var ok = 0, refused = 0
        var tokenizerRuns = 0
        func run(_ what: String) {
            var kind: String?
            let tok = tokenizerRuns < 1
            let passed = accepted(what) {
                do {
                    try FuzzCorruptionTests.readAll(dir, tokenizer: tok)
                } catch let e as CLIPDeployError {
                    kind = e.kind.rawValue
                    throw e
                }
            }
            if passed {
                ok += 1
                if tok { tokenizerRuns += 1 }
            } else {
                refused += 1
                if let k = kind { FuzzCorruptionTests.kinds[k, default: 0] += 1 }
            }
        }
        for k in 0..<1000 {
            let input: [UInt8]
            if k % 100 == 99 {
                input = FuzzCorruptionTests.nesting(100_000, objects: r.bool())
            } else if k % 2 == 0 {
                var m: Any = golden
                if k % 6 == 0, var g = m as? [String: Any], let c = g["classifier"] {
                    // inside the classifier block (labels, templates, scale, paths)
                    var block: Any = c
                    for _ in 0..<(1 + r.below(3)) { block = FuzzCorruptionTests.typeMutate(block, &r) }
                    g["classifier"] = block
                    m = g
                } else {
                    for _ in 0..<(1 + r.below(3)) { m = FuzzCorruptionTests.typeMutate(m, &r) }
                }
                input = Array(try Json.write(m, pretty: true).utf8)
            } else {
                input = FuzzCorruptionTests.mutate(good, &r)
            }
            try Data(input).write(to: mf)
            run("bundle case \(k) (\(String(decoding: input.prefix(80), as: UTF8.self)))")
        }
        try Data(good).write(to: mf)
        // corrupted probe arrays, re-recorded, so that only the array reader stands between them and the app
        let probes = ["probe/images.npy", "probe/token_ids.npy", "probe/image_embeddings.npy", "probe/text_embeddings.npy",
                      "classifier/class_embeddings.npy", "classifier/labels.json"]
        var originals: [String: [UInt8]] = [:]
        for p in probes { originals[p] = [UInt8](try Data(contentsOf: dir.appendingPathComponent(p))) }
        for k in 0..<200 {
            let p = probes[k % probes.count]
            let orig = originals[p]!
            let input: [UInt8]
            if k % 3 == 0 {
                input = FuzzCorruptionTests.mutate(orig, &r)
            } else {
                input = FuzzCorruptionTests.mutate(Array(orig.prefix(256)), &r) + orig.dropFirst(256)
            }
            let f = dir.appendingPathComponent(p)
            try Data(input).write(to: f)
            var m = golden
            var integ = try Json.map(m["integrity"])
            var files = try Json.map(integ["files"])
            files[p] = try TestBundles.entry(f)
            integ["files"] = files
            m["integrity"] = integ
            try TestBundles.writeManifest(dir, m)
            run("probe case \(k) (\(p))")
            try Data(orig).write(to: f)
        }
        FuzzCorruptionTests.count("bundle", ok, refused)
        XCTAssertGreaterThan(ok, 0)
        XCTAssertGreaterThan(refused, 0)
        try TestBundles.writeManifest(dir, golden)
        try FuzzCorruptionTests.readAll(dir, tokenizer: true)
        XCTAssertEqual(try ModelBundle.open(dir).artifacts.count, 3)
    }
}
