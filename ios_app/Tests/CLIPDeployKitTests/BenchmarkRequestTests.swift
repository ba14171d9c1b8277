import Foundation
import XCTest
@testable import CLIPDeployKit

/// The JVM core's BenchmarkRequestTest for the iOS launch-argument contract (`-benchmark YES -runs N ...`).
final class BenchmarkRequestTests: XCTestCase {
    func testArgumentsOfTheLaunchContract() throws {
        let args: [String: Any] = ["benchmark": "YES", "runs": "30", "warmup": "2", "minSeconds": "0.5",
                                   "minBlocks": "4", "computeUnits": "cpu_only", "report": "r1.json"]
        XCTAssertTrue(BenchmarkRequest.isRequested(args))
        let r = try BenchmarkRequest.parse(args)
        XCTAssertEqual(r, BenchmarkRequest(runs: 30, warmup: 2, minSeconds: 0.5, minBlocks: 4, computeUnits: "CPU_ONLY",
                                           reportName: "r1.json"))
        let s = r.settings
        XCTAssertEqual(s.runtime, "coreml")
        XCTAssertEqual([s.runs, s.warmup, s.threads, s.minBlocks], [30, 2, 0, 4])
        XCTAssertEqual(s.minSeconds, 0.5)
    }

    func testDefaultsAreClipLatencyOnes() throws {
        XCTAssertFalse(BenchmarkRequest.isRequested([:]))
        XCTAssertFalse(BenchmarkRequest.isRequested(["benchmark": "NO"]))
        for yes: Any in ["YES", "true", "1", NSNumber(value: true)] {
            XCTAssertTrue(BenchmarkRequest.isRequested(["benchmark": yes]), "\(yes)")
        }
        let r = try BenchmarkRequest.parse(["benchmark": "YES"])
        XCTAssertEqual(r, BenchmarkRequest(runs: 50, warmup: 10, minSeconds: 2.0, minBlocks: 8, computeUnits: "ALL",
                                           reportName: "report.json"))
    }

    func testNumbersAsNumbersAreAccepted() throws {
        let r = try BenchmarkRequest.parse(["runs": NSNumber(value: 7), "minSeconds": NSNumber(value: 0.1),
                                            "warmup": " 3 "])
        XCTAssertEqual([r.runs, r.warmup], [7, 3])
        XCTAssertEqual(r.minSeconds, 0.1)
    }

    func testBadArgumentsAreOneLineErrors() {
        let cases: [([String: Any], String)] = [
            (["runs": "0"], "-runs must be at least 1, got 0"), (["runs": "many"], "-runs must be an integer, got 'many'"),
            (["warmup": "-1"], "-warmup must be 0 or more"), (["minSeconds": "-1"], "-minSeconds must be a finite number"),
            (["minSeconds": "inf"], "-minSeconds must be a finite number"), (["minSeconds": "x"], "must be a number, got 'x'"),
            (["minBlocks": "0"], "-minBlocks must be at least 1, got 0"),
            (["computeUnits": "GPU"], "unknown -computeUnits 'GPU': use ALL, CPU_ONLY, CPU_AND_GPU, CPU_AND_NE"),
            (["report": "../Library/x.json"], "-report must be a file name in Documents"),
            (["report": "/tmp/x.json"], "-report must be a file name"), (["report": ".hidden"], "no leading '.'"),
        ]
        for (args, want) in cases {
            XCTAssertThrowsError(try BenchmarkRequest.parse(args), "\(args)") { error in
                XCTAssertTrue(oneLine(error).contains(want), "\(args): \(oneLine(error))")
                XCTAssertFalse(oneLine(error).contains("\n"))
            }
        }
    }

    func testReportNameEvenWhenTheOtherArgumentsAreBad() {
        XCTAssertEqual(BenchmarkRequest.reportName(["report": "mine.json", "runs": "zero"]), "mine.json")
        XCTAssertEqual(BenchmarkRequest.reportName(["runs": "zero"]), "report.json")
        // a name that could leave Documents is never used, not even for the error line
        XCTAssertEqual(BenchmarkRequest.reportName(["report": "../../x.json"]), "report.json")
    }
}
