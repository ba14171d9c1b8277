import Foundation

/// `clipdeploy-report BUNDLE REPORT [runs] [warmup] [min_seconds] [min_blocks]`: the kit's benchmark with the
/// `ReferenceRuntime` (the goldens' linear bundle) on any platform, writing a report in the clip-latency schema
/// (source "swift-kit"); the Swift twin of the JVM core's `ReportTool`. The Python suite validates and ingests
/// what it writes, so the report writer the iOS app uses is checked against the schema on Linux too.
/// Defaults: 20 runs, 3 warmup, min_seconds 0 and min_blocks 1 (the smallest settings: at least `runs`
/// samples and one block of `BenchmarkSettings.blockSeconds`, a check of the writer rather than the apps'
/// defaults). Progress goes to `err`, one line per phase. Exit 0 (skipped artifacts included), 1 (an artifact
/// failed), 2 (bad input: usage, settings, a bundle that cannot be opened or fails its integrity record).
public enum ReportTool {
    public static let usage = "usage: clipdeploy-report BUNDLE REPORT [runs] [warmup] [min_seconds] [min_blocks]"

    public static func run(_ args: [String], out: (String) -> Void = { print($0) },
                           err: @escaping (String) -> Void = ToolIO.stderr) -> Int32 {
        guard args.count >= 2, args.count <= 6 else {
            err(usage)
            return 2
        }
        let report = URL(fileURLWithPath: args[1])
        func intArg(_ k: Int, _ name: String, _ dflt: Int) throws -> Int {
            guard args.count > k else { return dflt }
            guard let v = Int(args[k]) else { throw CLIPDeployError(.benchmark, "\(name) must be an integer, got '\(args[k])'") }
            return v
        }
        let s: BenchmarkSettings
        do {
            var minSeconds = 0.0
            if args.count > 4 {
                guard let v = Double(args[4]) else {
                    throw CLIPDeployError(.benchmark, "min_seconds must be a number, got '\(args[4])'")
                }
                minSeconds = v
            }
            s = BenchmarkSettings(runtime: "reference", runs: try intArg(2, "runs", 20), warmup: try intArg(3, "warmup", 3),
                                  threads: 1, minSeconds: minSeconds, minBlocks: try intArg(5, "min_blocks", 1))
            try s.validate()
        } catch {
            err("error: \(oneLine(error))")
            return 2
        }
        let bundle: ModelBundle
        do {
            bundle = try ModelBundle.open(URL(fileURLWithPath: args[0]))
        } catch {
            err("error: \(oneLineWithKind(error))")
            return 2
        }
        do {
            let rep = try LatencyReport(source: "swift-kit", toolName: "CLIPDeployKit clipdeploy-report",
                                        toolVersion: KitInfo.version)
                .bundle(bundle).host(HostInfo.current()).settings(s, runtimes: ["reference"])
            var failed = false
            let recs = try Benchmark.runAll(bundle: bundle, runtimes: [ReferenceRuntime()], settings: s,
                                            memory: MemoryProbes.platform(), progress: { a, phase, done, total in
                                                err("[\(a)] \(phase)" + (total > 0 ? " \(done)/\(total)" : ""))
                                            })
            for r in recs {
                rep.addRecord(r)
                let status = r["status"] as? String
                failed = failed || status == "error" || status == "timeout"
            }
            try rep.writeAtomically(to: report)
            out("wrote \(report.path) (\(recs.count) records)")
            return failed ? 1 : 0
        } catch {
            // a bundle that fails its integrity record is refused before anything runs: bad input (2)
            err("error: \(oneLineWithKind(error))")
            try? LatencyReport.writeError(to: report, message: oneLineWithKind(error))
            return (error as? CLIPDeployError)?.isBundleRefusal == true ? 2 : 1
        }
    }
}

/// `clipdeploy-tokenize TOKENIZER_DIR < texts.json > ids.json`: the kit's tokenizer on a JSON list of strings
/// (stdin), printing a JSON list of id lists (77 each); the Swift twin of the JVM core's `TokenizeTool`. The
/// Python suite feeds it a seeded random corpus and compares with open_clip's tokenizer.
public enum TokenizeTool {
    public static let usage = "usage: clipdeploy-tokenize TOKENIZER_DIR < texts.json"

    public static func run(_ args: [String], input: Data, out: (Data) -> Void,
                           err: @escaping (String) -> Void = ToolIO.stderr) -> Int32 {
        guard args.count == 1 else {
            err(usage)
            return 2
        }
        let dir = URL(fileURLWithPath: args[0], isDirectory: true)
        do {
            let tok = try CLIPTokenizer.fromFiles(vocab: dir.appendingPathComponent("vocab.json"),
                                                  merges: dir.appendingPathComponent("merges.txt"))
            let texts = try Json.strings(Json.parse(input))
            let ids: [[Int]] = try texts.map { try tok.tokenize($0).map { Int($0) } }
            out(try Json.data(ids, pretty: false))
            return 0
        } catch {
            err("error: \(oneLine(error))")
            return 2
        }
    }
}

public enum ToolIO {
    /// One line to standard error.
    public static func stderr(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}
