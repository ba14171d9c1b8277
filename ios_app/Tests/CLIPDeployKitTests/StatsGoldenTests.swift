import Foundation
import XCTest
@testable import CLIPDeployKit

/// The statistics half of the JVM core's StatsParityGoldenTest.
final class StatsGoldenTests: XCTestCase {
    func testSummariesEqualClipLatencys() throws {
        let sets = try Json.list(Goldens.json("stats.json")["summaries"])
        XCTAssertGreaterThanOrEqual(sets.count, 5)
        for o in sets {
            let c = try Json.map(o)
            let samples = try Json.doubles(c["samples_ms"])
            let want = try Json.map(c["stats"])
            let got = try Stats.summarize(samples).toDictionary()
            XCTAssertEqual(Set(want.keys), Set(got.keys))
            XCTAssertEqual(Set(got.keys), Set(Stats.Summary.keys))
            for k in want.keys {
                assertClose(try Json.num(want[k]), try Json.num(got[k]), "n=\(samples.count) \(k)")
            }
        }
    }

    func testSummarizeRejectsEmptyAndNonFinite() {
        XCTAssertThrowsError(try Stats.summarize([])) { error in
            XCTAssertTrue(oneLine(error).contains("no samples"))
        }
        XCTAssertThrowsError(try Stats.summarize([1, .nan])) { error in
            XCTAssertTrue(oneLine(error).contains("non-finite"))
        }
    }

    /// Swift only: numpy's percentile definition on a hand-checked case.
    func testPercentileIsNumpysLinear() {
        let x: [Double] = [1, 2, 3, 4]
        XCTAssertEqual(Stats.percentile(x, 50), 2.5)
        XCTAssertEqual(Stats.percentile(x, 90), 3.7, accuracy: 1e-12)
        XCTAssertEqual(Stats.percentile([7], 99), 7)
    }
}
