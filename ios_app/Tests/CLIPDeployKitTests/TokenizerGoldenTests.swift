import Foundation
import XCTest
@testable import CLIPDeployKit

/// The JVM core's TokenizerGoldenTest, case for case, plus Python's lowercasing and entity rules.
final class TokenizerGoldenTests: XCTestCase {
    static var shared: CLIPTokenizer?

    func tokenizer() throws -> CLIPTokenizer {
        if let t = TokenizerGoldenTests.shared { return t }
        let dir = try Goldens.file("bundle/tokenizer")
        let t = try CLIPTokenizer.fromFiles(vocab: dir.appendingPathComponent("vocab.json"),
                                            merges: dir.appendingPathComponent("merges.txt"))
        TokenizerGoldenTests.shared = t
        return t
    }

    func testEveryGoldenCaptionTokenizesToThePythonIds() throws {
        let g = try Goldens.json("tokens.json")
        XCTAssertEqual(try Json.int(g["context_length"]), 77)
        let cases = try Json.list(g["cases"])
        XCTAssertGreaterThanOrEqual(cases.count, 20, "expected at least 20 golden captions")
        let tok = try tokenizer()
        var failures = ""
        for o in cases {
            let c = try Json.map(o)
            let want = try Json.ints(c["ids"]).map { Int32($0) }
            let got = try tok.tokenize(try Json.str(c["text"]))
            if want != got {
                failures += "\n\(c["name"] ?? "?"): want \(want)\n   got \(got)"
            }
        }
        XCTAssertEqual(failures, "", "captions that differ from open_clip:\(failures)")
    }

    func testSpecialIdsPaddingAndTruncation() throws {
        let tok = try tokenizer()
        let ids = try tok.tokenize("a photo of a dog")
        XCTAssertEqual(ids.count, 77)
        XCTAssertEqual(ids[0], CLIPTokenizer.sot)
        XCTAssertEqual(ids[6], CLIPTokenizer.eot)
        XCTAssertEqual(ids[7], 0)
        XCTAssertEqual(ids[76], 0)
        let long = String(repeating: "dog ", count: 200)
        let t = try tok.tokenize(long)
        XCTAssertEqual(t[0], CLIPTokenizer.sot)
        XCTAssertEqual(t[76], CLIPTokenizer.eot)
        XCTAssertEqual(try tok.encode("dog")[0], t[75])
        XCTAssertEqual(Array(try tok.tokenize("").prefix(2)), [CLIPTokenizer.sot, CLIPTokenizer.eot])
    }

    func testCleaningRules() {
        XCTAssertEqual(TextCleaner.clean("  FISH &amp;amp; Chips "), "fish & chips")
        XCTAssertEqual(TextCleaner.clean("\u{201C}Hi\u{201D} it\u{2019}s"), "\"hi\" it's")
        XCTAssertEqual(TextCleaner.clean("the \u{FB01}sh"), "the fish")
        XCTAssertEqual(TextCleaner.clean("\u{FF41}\u{FF42}\u{FF43}\u{3000}\u{FF01}"), "abc !")
        XCTAssertEqual(Array(TextCleaner.clean("cafe\u{0301}").unicodeScalars), Array("caf\u{00E9}".unicodeScalars))
        XCTAssertEqual(TextCleaner.clean("a\u{0007}\t\n\u{00A0} b"), "a b")
    }

    func testRejectsAVocabularyThatIsNotClips() {
        XCTAssertThrowsError(try CLIPTokenizer.fromData(vocab: Data("{\"a\": 0}".utf8),
                                                        merges: Data("#version: 0.2\n".utf8))) { error in
            XCTAssertTrue(oneLine(error).contains("not the OpenAI CLIP vocabulary"), oneLine(error))
        }
    }

    /// Swift only: `str.lower()`'s final sigma and full mappings, and html.unescape's numeric references,
    /// checked against CPython's output for the same strings.
    func testLowercaseAndEntitiesFollowPython() {
        let cases: [(String, String)] = [
            ("\u{039F}\u{0394}\u{039F}\u{03A3} \u{03A3}\u{0391}\u{03A3}", "\u{03BF}\u{03B4}\u{03BF}\u{03C2} \u{03C3}\u{03B1}\u{03C2}"),
            ("\u{03A3}\u{0391}", "\u{03C3}\u{03B1}"),
            ("A\u{03A3}.", "a\u{03C2}."),
            ("\u{0130}stanbul", "i\u{0307}stanbul"),
            ("&#00000000065;bc", "abc"),
            ("&#x41;&#X42", "ab"),
            ("a&ampb", "a&b"),
            ("x&#128;y", "x\u{20AC}y"),
        ]
        for (raw, want) in cases {
            XCTAssertEqual(Array(TextCleaner.clean(raw).unicodeScalars), Array(want.unicodeScalars), raw)
        }
    }

    func testBytesToUnicodeIsGPT2s() {
        let cs = CLIPTokenizer.bytesToUnicode()
        XCTAssertEqual(cs[0x21], 0x21)
        XCTAssertEqual(cs[0x00], 256)
        XCTAssertEqual(cs[0x20], 256 + 32)                   // space -> U+0120 'Ġ'
        XCTAssertEqual(Set(cs).count, 256)
    }
}
