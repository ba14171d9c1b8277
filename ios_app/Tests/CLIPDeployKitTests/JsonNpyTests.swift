import Foundation
import XCTest
@testable import CLIPDeployKit

/// The JVM core's JsonNpyTest, plus the strict parser's own rules.
final class JsonNpyTests: XCTestCase {
    func testRoundTrip() throws {
        let m: [String: Any] = [
            "s": "caf\u{00E9} \"q\" \\ \n\t\u{0001}", "i": 42, "d": 1.5e-7, "nan": Double.nan,
            "inf": Double.infinity, "b": true, "n": NSNull(), "l": [1, 2.5, "x"] as [Any],
            "arr": [0.25, 3.0] as [Double], "opt": Optional<Int>.none as Any,
        ]
        for pretty in [false, true] {
            let back = try Json.map(Json.parse(string: try Json.write(m, pretty: pretty)))
            XCTAssertEqual(back["s"] as? String, m["s"] as? String)
            XCTAssertEqual(try Json.int(back["i"]), 42)
            XCTAssertEqual(try Json.num(back["d"]), 1.5e-7)
            XCTAssertTrue(Json.isNull(back["nan"]))
            XCTAssertTrue(Json.isNull(back["inf"]))
            XCTAssertEqual(Json.bool(back["b"]), true)
            XCTAssertNil(Json.optionalNumber(back["b"]), "a boolean is not a number")
            XCTAssertTrue(back.keys.contains("n") && Json.isNull(back["n"]))
            XCTAssertTrue(back.keys.contains("opt") && Json.isNull(back["opt"]))
            let l = try Json.list(back["l"])
            XCTAssertEqual(try Json.num(l[0]), 1)
            XCTAssertEqual(try Json.num(l[1]), 2.5)
            XCTAssertEqual(l[2] as? String, "x")
            XCTAssertEqual(try Json.doubles(back["arr"]), [0.25, 3.0])
        }
        XCTAssertEqual(try Json.parse(string: "\"\\ud83d\\udc36\"") as? String, "\u{1F436}")
    }

    func testBadJsonIsOneLineWithAPosition() {
        for bad in ["{", "[1,]", "{\"a\" 1}", "tru", "\"x", "1 2", "{\"a\":01x}"] {
            XCTAssertThrowsError(try Json.parse(string: bad), bad) { error in
                let msg = oneLine(error)
                XCTAssertTrue(msg.hasPrefix("not JSON: ") && msg.contains("line 1"), msg)
                XCTAssertFalse(msg.contains("\n"))
            }
        }
    }

    /// Swift only: the parser is strict RFC 8259 on every platform (swift-corelibs-foundation's
    /// JSONSerialization accepts trailing commas), says where, and bounds nesting.
    func testParserIsStrictAndSaysWhere() throws {
        let cases: [(String, String)] = [
            ("{\"a\": 1,}", "expected a string key"), ("[01]", "bad number '01'"), ("[1.]", "bad number"),
            ("[.5]", "unexpected character '.'"), ("[-]", "bad number"), ("[1e]", "bad number"),
            ("[NaN]", "unexpected character 'N'"), ("[Infinity]", "unexpected character 'I'"), ("[1e999]", "bad number"),
            ("// c\n1", "unexpected character '/'"), ("[\"a\tb\"]", "control character in string"),
            ("[\"\\x\"]", "bad escape '\\x'"), ("[\"\\ud800\"]", "lone surrogate"), ("[\"\\udc00x\"]", "lone surrogate"),
            ("[\"\\u12g4\"]", "bad \\u escape"), ("{\"a\" : 1 \"b\": 2}", "expected ',' or '}'"),
            ("[1 2]", "expected ',' or ']'"), ("nul", "unexpected token"), ("", "unexpected end"),
        ]
        for (text, want) in cases {
            XCTAssertThrowsError(try Json.parse(string: text), text) { error in
                XCTAssertTrue(oneLine(error).contains(want), "\(text): \(oneLine(error))")
            }
        }
        // the position is the offending character's line and column (columns count characters, not bytes)
        XCTAssertThrowsError(try Json.parse(string: "{\n  \"caf\u{00E9}\": [1,\n    2,]\n}")) { error in
            XCTAssertTrue(oneLine(error).hasSuffix("at line 3 column 7"), oneLine(error))
        }
        XCTAssertThrowsError(try Json.parse(Data([0x22, 0xC3, 0x28, 0x22]))) { error in
            XCTAssertTrue(oneLine(error).contains("invalid UTF-8"), oneLine(error))
        }
        let deep = String(repeating: "[", count: JsonParser.maxDepth + 1) + String(repeating: "]", count: JsonParser.maxDepth + 1)
        XCTAssertThrowsError(try Json.parse(string: deep)) { error in
            XCTAssertTrue(oneLine(error).contains("nested deeper than 200"), oneLine(error))
        }
        let ok = String(repeating: "[", count: JsonParser.maxDepth) + String(repeating: "]", count: JsonParser.maxDepth)
        XCTAssertNoThrow(try Json.parse(string: ok))
        // what is accepted: every value kind, escapes, a byte order mark, a repeated key keeps the last value
        let m = try Json.map(Json.parse(Data([0xEF, 0xBB, 0xBF]) + Data(#" {"a": [true, false, null, -0, 12, 1.5E+2, -2e-3, 9223372036854775807, 9223372036854775808], "s": "\/\b\f\n\r\t\"\\\u00e9\ud83d\ude00", "a2": {}, "k": 1, "k": 2} "#.utf8)))
        let a = try Json.list(m["a"])
        XCTAssertEqual(Json.bool(a[0]), true)
        XCTAssertEqual(Json.bool(a[1]), false)
        XCTAssertNil(Json.optionalNumber(a[0]), "a boolean is not a number")
        XCTAssertNil(Json.bool(a[3]), "a number is not a boolean")
        XCTAssertTrue(Json.isNull(a[2]))
        XCTAssertEqual(try a[3...].map { try Json.num($0) }, [0, 12, 150, -0.002, 9223372036854775807, 9223372036854775808])
        XCTAssertEqual(try Json.int(a[4]), 12)
        XCTAssertEqual(m["s"] as? String, "/\u{8}\u{c}\n\r\t\"\\\u{00E9}\u{1F600}")
        XCTAssertEqual(try Json.map(m["a2"]).count, 0)
        XCTAssertEqual(try Json.int(m["k"]), 2)
    }

    func testNpyOfTheGoldensAndTruncation() throws {
        let ids = try Npy.read(contentsOf: Goldens.file("bundle/probe/token_ids.npy"))
        XCTAssertEqual(ids.dtype, "<i4")
        XCTAssertEqual(ids.shape, [8, 77])
        XCTAssertEqual(try ids.intRows()[0][0], CLIPTokenizer.sot)
        let img = try Npy.read(contentsOf: Goldens.file("bundle/probe/images.npy"))
        XCTAssertEqual(img.shape, [6, 3, 32, 32])
        XCTAssertEqual(img.rows()[5].count, 3 * 32 * 32)
        let all = try Data(contentsOf: Goldens.file("bundle/probe/token_ids.npy"))
        XCTAssertThrowsError(try Npy.read(all.prefix(all.count - 4))) { error in
            XCTAssertTrue(oneLine(error).contains("truncated"), oneLine(error))
        }
    }

    /// Swift only: the writer the tests use to corrupt weights reads back bit for bit.
    func testNpyWriterRoundTrips() throws {
        let values: [Float] = [0, -1.5, .pi, 1e-30, 65504]
        let back = try Npy.read(try Npy.encode(floats: values, shape: [5, 1]))
        XCTAssertEqual(back.shape, [5, 1])
        XCTAssertEqual(back.dtype, "<f4")
        XCTAssertEqual(back.floats().map { $0.bitPattern }, values.map { $0.bitPattern })
    }
}
