import Foundation
import XCTest
@testable import CLIPDeployKit

/// The command-line twins: the JVM core's `reportToolKeepsItsCommandLine`, and the tokenizer tool's contract
/// (`tests/test_goldens.py` runs both executables as well).
final class ToolTests: XCTestCase {
    final class Log {
        var lines: [String] = []
        var text: String { lines.joined(separator: "\n") }
    }

    func testReportToolKeepsItsCommandLine() throws {
        let tmp = try Goldens.temporaryDirectory(self)
        let report = tmp.appendingPathComponent("tool/report.json")
        let bundle = try Goldens.file("bundle").path
        let log = Log()
        let sink: (String) -> Void = { log.lines.append($0) }
        let ok = ReportTool.run([bundle, report.path, "25", "3"], out: sink, err: sink)
        let badSeconds = ReportTool.run([bundle, report.path + "2", "5", "0", "-1"], out: sink, err: sink)
        let badBlocks = ReportTool.run([bundle, report.path + "2", "5", "0", "0", "0"], out: sink, err: sink)
        let badNumber = ReportTool.run([bundle, report.path + "2", "5", "x"], out: sink, err: sink)
        let noBundle = ReportTool.run([tmp.appendingPathComponent("nowhere").path, report.path + "2"], out: sink, err: sink)
        let usage = ReportTool.run([bundle], out: sink, err: sink)
        XCTAssertEqual(ok, 0, log.text)
        XCTAssertTrue(log.text.contains("steady 20/25"), log.text)
        XCTAssertTrue(log.text.contains("wrote \(report.path) (3 records)"), log.text)
        XCTAssertEqual(badSeconds, 2)
        XCTAssertTrue(log.text.contains("error: minSeconds must be 0 or more"), log.text)
        XCTAssertEqual(badBlocks, 2)
        XCTAssertTrue(log.text.contains("error: minBlocks must be at least 1, got 0"), log.text)
        XCTAssertEqual(badNumber, 2)
        XCTAssertTrue(log.text.contains("error: warmup must be an integer, got 'x'"), log.text)
        XCTAssertEqual(noBundle, 2)
        XCTAssertTrue(log.lines.contains { $0.hasPrefix("error: ") && $0.contains("is not a directory") }, log.text)
        XCTAssertEqual(usage, 2)
        XCTAssertTrue(log.lines.contains(ReportTool.usage))
        XCTAssertFalse(FileManager.default.fileExists(atPath: report.path + "2"), "a refused run writes nothing")
        XCTAssertFalse(FileManager.default.fileExists(atPath: report.path + "2.error"))

        let m = try LatencyReport.read(report)
        XCTAssertEqual(m["source"] as? String, "swift-kit")
        let settings = try Json.map(m["settings"])
        XCTAssertEqual(try Json.num(settings["min_seconds"]), 0)
        XCTAssertEqual(try Json.int(settings["min_blocks"]), 1)
        XCTAssertEqual(try Json.int(settings["threads"]), 1)
        for o in try Json.list(m["records"]) {
            let steady = try Json.map(Json.map(o)["steady"])
            let n = try Json.list(steady["samples_ms"]).count
            XCTAssertGreaterThanOrEqual(n, 25)
            XCTAssertEqual(try Json.ints(steady["block_ends"]).last, n)
        }
    }

    func testTokenizeToolPrintsIdRowsAndRefusesBadInput() throws {
        let dir = try Goldens.file("bundle/tokenizer").path
        var printed = Data()
        let log = Log()
        let texts = ["a photo of a dog", "", "Caf\u{00E9} \u{1F436}"]
        XCTAssertEqual(TokenizeTool.run([dir], input: try Json.data(texts, pretty: false), out: { printed.append($0) },
                                        err: { log.lines.append($0) }), 0, log.text)
        let rows = try Json.list(Json.parse(printed)).map { try Json.ints($0) }
        let tok = try CLIPTokenizer.fromBundle(Goldens.bundle())
        XCTAssertEqual(rows, try texts.map { try tok.tokenize($0).map { Int($0) } })
        XCTAssertEqual(rows.map(\.count), [77, 77, 77])
        XCTAssertEqual(Array(rows[1].prefix(3)), [CLIPTokenizer.sot, CLIPTokenizer.eot, 0].map { Int($0) })

        for (args, input, want) in [([dir], "[\"a\", 3]", "expected a string, got a number"),
                                    ([dir], "[\"a\",]", "not JSON: unexpected character ']' at line 1 column 6"),
                                    ([dir + "/missing"], "[]", "missing"),
                                    ([String](), "[]", TokenizeTool.usage)] {
            log.lines = []
            XCTAssertEqual(TokenizeTool.run(args, input: Data(input.utf8), out: { _ in XCTFail("printed") },
                                            err: { log.lines.append($0) }), 2, input)
            XCTAssertEqual(log.lines.count, 1, log.text)
            XCTAssertTrue(log.text.contains(want), log.text)
        }
    }
}
