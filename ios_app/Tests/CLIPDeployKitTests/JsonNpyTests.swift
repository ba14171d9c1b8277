import Foundation
import XCTest
@testable import CLIPDeployKit

/// The JVM core's JsonNpyTest (Foundation's JSONSerialization is the parser here).
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

    func testBadJsonIsOneLine() {
        for bad in ["{", "[1,]", "{\"a\" 1}", "tru", "\"x", "1 2", "{\"a\":01x}"] {
            XCTAssertThrowsError(try Json.parse(string: bad), bad) { error in
                let msg = oneLine(error)
                XCTAssertTrue(msg.hasPrefix("not JSON"), msg)
                XCTAssertFalse(msg.contains("\n"))
            }
        }
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
