import Foundation
import XCTest
@testable import CLIPDeployKit

/// The parity half of the JVM core's StatsParityGoldenTest.
final class ParityGoldenTests: XCTestCase {
    func testParityFiguresAndBarsEqualClipLatencys() throws {
        let cases = try Json.list(Goldens.json("stats.json")["parity"])
        XCTAssertEqual(cases.count, 7)
        for o in cases {
            let c = try Json.map(o)
            let name = try Json.str(c["name"])
            let f = try Parity.measure(reference: try Json.floatRows(c["reference"]), got: try Json.floatRows(c["got"]),
                                       otherTower: try Json.floatRows(c["other"]))
            let want = try Json.map(c["figures"])
            XCTAssertEqual(Json.bool(want["finite"]), f.finite, name)
            XCTAssertEqual(try Json.int(want["n"]), f.n, name)
            XCTAssertEqual(try Json.num(want["zero_shot_agreement"]), f.zeroShotAgreement, name)
            if f.finite {
                assertClose(try Json.num(want["max_abs"]), f.maxAbs, "\(name) max_abs")
                assertClose(try Json.num(want["cosine_min"]), f.cosineMin, "\(name) cosine_min")
                assertClose(try Json.num(want["cosine_mean"]), f.cosineMean, "\(name) cosine_mean")
            } else {
                XCTAssertTrue(f.maxAbs.isInfinite && f.cosineMin.isNaN, name)
                XCTAssertTrue(Json.isNull(want["max_abs"]), name)
                // the report form writes them as null
                XCTAssertTrue(try Json.write(f.toDictionary(), pretty: false).contains("\"max_abs\":null"), name)
            }
            let fails = try Json.map(c["failures"])
            for p in ["fp32", "fp16", "int8"] {
                let wantF = try Json.strings(fails[p])
                let gotF = try Parity.failures(f, precision: p)
                // C's printf formats like Python's format(): the strings are equal, not just their prefixes
                XCTAssertEqual(gotF, wantF, "\(name) \(p)")
            }
        }
    }

    /// Mirrors StatsParityGoldenTest.failureNumbersAreFormattedLikePython.
    func testFailureNumbersAreFormattedLikePython() throws {
        XCTAssertEqual(Parity.formatG(3.1e-4, 3), "0.00031")
        XCTAssertEqual(Parity.formatG(1.234e-5, 3), "1.23e-05")
        XCTAssertEqual(Parity.formatG(1.0, 3), "1")
        XCTAssertEqual(Parity.formatG(0.05, 3), "0.05")
        XCTAssertEqual(Parity.formatG(Double.infinity, 3), "inf")
        let ref: [[Float]] = [[1, 0], [0, 1], [1, 1], [0, 1], [1, 0], [1, 0], [0, 1], [1, 0]]
        var got = ref
        got[0] = [0, 1]
        let f = try Parity.measure(reference: ref, got: got, otherTower: [[1, 0], [0, 1]])
        XCTAssertEqual(f.zeroShotAgreement, 0.875)
        // 87.5 -> 88: half to even, as Python's format
        XCTAssertTrue(try Parity.failures(f, precision: "fp32").contains("zero-shot top-1 agreement 88% < 100%"))
    }

    func testParityIsNotCosineAlone() throws {
        let ref: [[Float]] = [[1, 0, 0], [0, 1, 0]]
        let scaled: [[Float]] = [[2, 0, 0], [0, 2, 0]]          // cosine 1, max abs 1
        let other: [[Float]] = [[1, 0, 0], [0, 1, 0]]
        let f = try Parity.measure(reference: ref, got: scaled, otherTower: other)
        XCTAssertEqual(f.cosineMin, 1.0, accuracy: 1e-12)
        XCTAssertFalse(try Parity.failures(f, precision: "fp32").isEmpty)
        XCTAssertFalse(try Parity.failures(f, precision: "fp16").isEmpty)
    }

    func testUnknownPrecisionAndShapeMismatchAreErrors() {
        XCTAssertThrowsError(try Parity.failures(Parity.Figures(maxAbs: 0, cosineMin: 1, cosineMean: 1,
                                                                zeroShotAgreement: 1, n: 1, finite: true),
                                                 precision: "int4"))
        XCTAssertThrowsError(try Parity.measure(reference: [[1, 0]], got: [[1, 0], [0, 1]], otherTower: [[1, 0]]))
    }
}
