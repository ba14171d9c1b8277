import CLIPDeployKit
import SwiftUI

/// The on-device benchmark: the bundle's probe set through every Core ML artifact (and each image encoder's
/// ImageType variant) with clip-latency's phases, a table of the results, and the report in the
/// clip-latency schema (source "ios-app") written to Documents/reports/ and shared with the share sheet.
///
/// Launched with `-benchmark YES [-runs N] [-warmup N] [-minSeconds S] [-minBlocks N]
/// [-computeUnits ALL|CPU_ONLY|CPU_AND_GPU|CPU_AND_NE] [-report NAME]` it runs once on appearing and writes
/// Documents/NAME (default report.json), or Documents/NAME.error with one line on failure (the Android app's
/// contract). The arguments are parsed and checked by the kit's `BenchmarkRequest`.
struct BenchmarkView: View {
    let engine: Engine
    @EnvironmentObject var model: AppModel
    @StateObject private var bench = BenchmarkModel()

    var body: some View {
        NavigationStack {
            List {
                Section {
                    BundleBar(engine: engine)
                    Stepper("Timed runs: \(bench.runs)", value: $bench.runs, in: 1...1000, step: 10)
                    Stepper("Warm-up calls: \(bench.warmup)", value: $bench.warmup, in: 0...100)
                    Picker("Compute units", selection: $bench.computeUnits) {
                        ForEach(ComputeUnits.allCases) { Text($0.rawValue).tag($0) }
                    }
                    HStack {
                        Button(bench.running ? "Running…" : "Run benchmark") {
                            bench.run(bundle: engine.bundle, appVersion: model.appVersion)
                        }
                        .disabled(bench.running)
                        Spacer()
                        if bench.running {
                            Button("Cancel", role: .destructive) { bench.cancel() }
                        }
                    }
                    if !bench.progress.isEmpty {
                        Text(bench.progress).font(.caption).foregroundStyle(.secondary)
                    }
                    if let url = bench.reportURL {
                        ShareLink(item: url) {
                            Label("Share \(url.lastPathComponent)", systemImage: "square.and.arrow.up")
                        }
                    }
                } footer: {
                    Text("Per artifact: cold load, first inference, warm load, warm-up, timed calls on probe input 0, "
                         + "then parity of every probe input against the bundle's reference embeddings "
                         + "(fp32: max abs ≤ 1e-5; fp16: max abs ≤ 1.5e-3 and cosine ≥ 0.99995; zero-shot 100 %).")
                }
                Section("Results") {
                    if bench.rows.isEmpty {
                        Text("No run yet").foregroundStyle(.secondary)
                    }
                    ForEach(bench.rows) { row in BenchmarkRowView(row: row) }
                }
            }
            .navigationTitle("Benchmark")
        }
        .onAppear {
            let args = UserDefaults.standard.volatileDomain(forName: UserDefaults.argumentDomain)
            guard BenchmarkRequest.isRequested(args), !bench.autoRunDone else { return }
            bench.autoRunDone = true
            let name = BenchmarkRequest.reportName(args)
            do {
                let req = try BenchmarkRequest.parse(args)
                bench.runs = req.runs
                bench.warmup = req.warmup
                bench.minSeconds = req.minSeconds
                bench.minBlocks = req.minBlocks
                bench.computeUnits = ComputeUnits(rawValue: req.computeUnits) ?? .all
                bench.run(bundle: engine.bundle, appVersion: model.appVersion, reportName: req.reportName,
                          inReportsFolder: false)
            } catch {
                try? LatencyReport.writeError(to: AppModel.documents.appendingPathComponent(name),
                                              message: oneLineWithKind(error))
                bench.progress = "Failed: \(oneLineWithKind(error))"
            }
        }
    }
}

struct BenchmarkRowView: View {
    let row: BenchmarkModel.Row

    var body: some View {
        VStack(alignment: .leading, spacing: 4) {
            HStack {
                Text(row.artifact).font(.system(.footnote, design: .monospaced)).lineLimit(2)
                Spacer()
                Text(row.verdict)
                    .font(.caption.bold())
                    .padding(.horizontal, 6)
                    .padding(.vertical, 2)
                    .background(row.verdictColor.opacity(0.2))
                    .clipShape(Capsule())
            }
            if row.status == "ok" {
                Text(verbatim: loadLine)
                Text(verbatim: latencyLine)
                Text(verbatim: parityLine)
                if let mem = row.peakMb { Text(verbatim: "memory peak \(Int(mem.rounded())) MB (phys_footprint)") }
            } else if let reason = row.reason {
                Text(reason).foregroundStyle(.secondary)
            }
        }
        .font(.caption)
        .monospacedDigit()
    }

    private var loadLine: String {
        "load cold \(f(row.coldS, "%.3f")) s · warm \(f(row.warmS, "%.3f")) s · first \(f(row.firstMs, "%.1f")) ms"
    }

    private var latencyLine: String {
        "median \(f(row.medianMs, "%.2f")) ms · p90 \(f(row.p90Ms, "%.2f")) ms · n \(row.n)"
    }

    private var parityLine: String {
        let zeroShot = f(row.zeroShot.map { $0 * 100 }, "%.0f")
        return "parity max abs \(f(row.maxAbs, "%.1e")) · cos min \(f(row.cosineMin, "%.6f")) · zero-shot \(zeroShot) %"
    }

    private func f(_ v: Double?, _ format: String) -> String {
        guard let v = v, v.isFinite else { return "–" }
        return String(format: format, v)
    }
}

/// Runs the benchmark off the main thread, one artifact at a time, and publishes each record as a row.
final class BenchmarkModel: ObservableObject {
    struct Row: Identifiable {
        let id: String
        let artifact: String
        let precision: String
        let status: String
        let reason: String?
        let coldS, warmS, firstMs, medianMs, p90Ms, maxAbs, cosineMin, zeroShot, peakMb: Double?
        let n: Int
        let passes: Bool?

        init(_ r: [String: Any]) {
            func num(_ v: Any?) -> Double? { Json.optionalNumber(v) }
            let load = r["load"] as? [String: Any]
            let steady = r["steady"] as? [String: Any]
            let stats = steady?["stats"] as? [String: Any]
            let parity = r["parity"] as? [String: Any]
            let memory = r["memory"] as? [String: Any]
            id = (r["id"] as? String) ?? UUID().uuidString
            artifact = (r["artifact"] as? String) ?? "?"
            precision = (r["precision"] as? String) ?? "?"
            status = (r["status"] as? String) ?? "?"
            reason = r["reason"] as? String
            coldS = num(load?["cold_s"])
            warmS = num(load?["warm_s"])
            firstMs = num(r["first_inference_ms"])
            medianMs = num(stats?["median"])
            p90Ms = num(stats?["p90"])
            n = Int(num(stats?["n"]) ?? 0)
            maxAbs = num(parity?["max_abs"])
            cosineMin = num(parity?["cosine_min"])
            zeroShot = num(parity?["zero_shot_agreement"])
            peakMb = num(memory?["peak_rss_mb"])
            passes = Benchmark.passes(r)
        }

        var verdict: String {
            switch status {
            case "ok": return passes == true ? "PASS \(precision)" : (passes == false ? "FAIL \(precision)" : "ok")
            default: return status.uppercased()
            }
        }

        var verdictColor: Color {
            if status != "ok" { return status == "skipped" ? .gray : .red }
            return passes == false ? .red : .green
        }
    }

    @Published var rows: [Row] = []
    @Published var running = false
    @Published var progress = ""
    @Published var reportURL: URL?
    @Published var runs = 50
    @Published var warmup = 10
    @Published var computeUnits: ComputeUnits = .all
    /// The steady state's other bounds (launch arguments only; the defaults are clip-latency's).
    var minSeconds = BenchmarkSettings().minSeconds
    var minBlocks = BenchmarkSettings().minBlocks
    var autoRunDone = false
    private let lock = NSLock()
    private var cancelled = false

    func cancel() {
        lock.lock()
        cancelled = true
        lock.unlock()
    }

    private var isCancelled: Bool {
        lock.lock()
        defer { lock.unlock() }
        return cancelled
    }

    /// `reportName`: the file name (default `report_<model>_<time>.json`), under Documents/reports/ or, with
    /// `inReportsFolder` false, directly in Documents (where the launch-argument contract puts it).
    func run(bundle: ModelBundle, appVersion: String, reportName: String? = nil, inReportsFolder: Bool = true) {
        guard !running else { return }
        running = true
        rows = []
        reportURL = nil
        lock.lock()
        cancelled = false
        lock.unlock()
        let settings = BenchmarkSettings(runtime: "coreml", runs: runs, warmup: warmup, threads: 0,
                                         minSeconds: minSeconds, minBlocks: minBlocks)
        let units = computeUnits
        let stamp = LatencyReport.isoTimestamp(Date()).replacingOccurrences(of: ":", with: "")
        let name = reportName ?? "report_\(bundle.model)_\(stamp).json"
        let folder = inReportsFolder ? AppModel.documents.appendingPathComponent("reports", isDirectory: true)
            : AppModel.documents
        let out = folder.appendingPathComponent(name)
        DispatchQueue.global(qos: .userInitiated).async {
            do {
                let runtime = CoreMLRuntime(computeUnits: units)
                let memory = PhysFootprintProbe()
                var records: [[String: Any]] = []
                // the whole bundle first: a refused probe set or artifact (integrity, unlisted file, ...) stops
                // the run before anything is loaded, and its one line goes to the screen and the .error file
                DispatchQueue.main.async { self.progress = "Verifying the bundle…" }
                _ = try bundle.probe()
                for artifact in bundle.artifactsWithVariants() where runtime.supports(artifact) {
                    try bundle.verifyArtifact(artifact)
                }
                for artifact in bundle.artifactsWithVariants() {
                    let recs = try Benchmark.runAll(
                        bundle: bundle, runtimes: [runtime], settings: settings, memory: memory, artifacts: [artifact],
                        progress: { art, phase, done, total in
                            let text = total > 0 ? "\(art): \(phase) \(done)/\(total)" : "\(art): \(phase)"
                            DispatchQueue.main.async { self.progress = text }
                        },
                        isCancelled: { self.isCancelled })
                    records += recs
                    let newRows = recs.map { Row($0) }
                    DispatchQueue.main.async { self.rows += newRows }
                }
                let host = HostInfo.current()
                host.libraries["app"] = appVersion
                let report = try LatencyReport(source: "ios-app", toolName: "clipdeploy-ios BenchmarkView",
                                               toolVersion: appVersion)
                    .bundle(bundle, devicePath: bundle.dir.path)
                    .host(host)
                    .settings(settings, runtimes: ["coreml"])
                for r in records { report.addRecord(r) }
                try report.writeAtomically(to: out)
                DispatchQueue.main.async {
                    self.reportURL = out
                    self.running = false
                    self.progress = "Wrote Documents/\(inReportsFolder ? "reports/" : "")\(name)"
                }
            } catch {
                try? LatencyReport.writeError(to: out, message: oneLineWithKind(error))
                DispatchQueue.main.async {
                    self.running = false
                    self.progress = "Failed: \(oneLineWithKind(error))"
                }
            }
        }
    }
}
