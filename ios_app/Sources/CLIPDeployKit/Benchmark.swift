import Foundation

/// The on-device benchmark with `clip-latency run`'s phases (the JVM core's `Benchmark`), in this order:
/// `cold_load` (first load in the process) -> `first_inference` (first call, probe input 0) -> the handle is
/// released -> `warm_load` -> `warmup` untimed calls -> `steady` (timed calls until all of `runs` samples,
/// `minSeconds` of timed work and `minBlocks` blocks) -> `parity` (every probe input vs the bundle's reference
/// embeddings) -> `done`. Each artifact gives one report record (`[String: Any]`, the schema's record). A
/// classifier artifact (encoder "classifier") takes the probe images and is held to reference logits: the probe's
/// reference image embeddings times the bundle's class matrix times its logit_scale (`Parity.measureLogits`, as
/// clip-latency's worker: the schema's parity keys, zero_shot_agreement being the logits' top-1 agreement, plus
/// top1_agreement, max_abs_cosine_units and tie).
///
/// Blocks, as in clip-latency's worker: a block closes after a sample once its own timed work is at least
/// `BenchmarkSettings.blockSeconds` and it holds at least `BenchmarkSettings.blockMinSamples` samples, and
/// `minBlocks` counts these closed blocks; when sampling stops, the last, partial block (if it has a sample)
/// closes too. So even `minBlocks = 1, minSeconds = 0` samples for one whole block (at least `blockSeconds` of
/// timed work), as clip-latency's worker does. The record's
/// `steady.block_ends` are the sample counts at which the blocks ended (increasing, the last equals the number
/// of samples): block `k` is `samples_ms[block_ends[k-1]..<block_ends[k]]`.
///
/// Before `cold_load` the runtime's untimed `prepare` runs (Core ML compiles the package there, once,
/// cached), so `load.cold_s` is the model load alone.
public enum Benchmark {
    /// Progress: artifact path, phase name (as clip-latency's worker), done / total during warmup and steady.
    public typealias Progress = (_ artifact: String, _ phase: String, _ done: Int, _ total: Int) -> Void

    public static let silent: Progress = { _, _, _, _ in }

    /// Every artifact of `artifacts` (default: the bundle's): measured when `runtimes` has one that supports
    /// it and it is the requested runtime (`settings.runtime`, or any when nil); listed as skipped otherwise.
    /// Nothing is loaded or measured before the probe set and every artifact to measure matched the manifest's
    /// sha256 (`ModelBundle.probe`, `ModelBundle.verifyArtifact`): a bundle that fails throws its refusal
    /// (`.integrity`, `.unlistedFile`, ...) and no runtime is called.
    public static func runAll(bundle: ModelBundle, runtimes: [EncoderRuntime], settings: BenchmarkSettings,
                              memory: MemoryProbe, artifacts: [ModelBundle.Artifact]? = nil,
                              progress: Progress? = nil,
                              isCancelled: (() -> Bool)? = nil) throws -> [[String: Any]] {
        try settings.validate()
        let list = artifacts ?? bundle.artifacts
        let plan: [EncoderRuntime?] = list.map { a in
            runtimes.first { rt in rt.supports(a) && (settings.runtime == nil || settings.runtime == rt.name) }
        }
        if plan.contains(where: { $0 != nil }) {
            _ = try bundle.probe()
            if zip(list, plan).contains(where: { $0.0.isClassifier && $0.1 != nil }) {
                _ = try bundle.classifier()        // the class matrix and labels, verified, before anything runs
            }
            for (a, rt) in zip(list, plan) where rt != nil { try bundle.verifyArtifact(a) }
        }
        var records: [[String: Any]] = []
        for (a, chosen) in zip(list, plan) {
            if let rt = chosen {
                records.append(measure(bundle: bundle, artifact: a, runtime: rt, settings: settings, memory: memory,
                                       progress: progress, isCancelled: isCancelled))
            } else {
                let rt = runtimeFor(a)
                let why: String
                if let requested = settings.runtime, requested != rt {
                    why = "runtime not requested (runtime \(requested))"
                } else {
                    why = "no runtime for this artifact in this app"
                }
                records.append(skipped(bundle: bundle, artifact: a, runtime: rt, reason: why))
            }
        }
        return records
    }

    /// The runtime name a skipped artifact is listed under.
    static func runtimeFor(_ a: ModelBundle.Artifact) -> String {
        switch a.target {
        case "onnx": return "onnxruntime"
        case "executorch", "executorch-coreml": return "executorch"
        case "coreml": return "coreml"
        default: return a.target
        }
    }

    /// The artifact's part of a record id (the JVM core's `Benchmark.artifactId`): its path (as clip-latency's),
    /// except for a classifier artifact whose path another artifact of the bundle has too (the goldens' reference
    /// classifier reuses the image encoder's matrix), `path#classifier`, so every record of a report has its own id.
    public static func artifactId(bundle: ModelBundle, artifact a: ModelBundle.Artifact) -> String {
        if a.isClassifier && bundle.artifacts.contains(where: { !$0.isClassifier && $0.path == a.path }) {
            return a.path + "#" + a.encoder
        }
        return a.path
    }

    static func base(bundle: ModelBundle, artifact a: ModelBundle.Artifact, runtime: String,
                     status: String) -> [String: Any] {
        return ["id": artifactId(bundle: bundle, artifact: a) + "@" + runtime, "model": bundle.model, "artifact": a.path, "target": a.target,
                "precision": a.precision, "encoder": a.encoder, "runtime": runtime, "status": status,
                "reason": NSNull()]
    }

    public static func skipped(bundle: ModelBundle, artifact: ModelBundle.Artifact, runtime: String,
                               reason: String) -> [String: Any] {
        var r = base(bundle: bundle, artifact: artifact, runtime: runtime, status: "skipped")
        r["reason"] = reason
        return r
    }

    private static func run(_ s: EncoderSession, _ a: ModelBundle.Artifact, _ p: ModelBundle.Probe,
                            _ ids: [[Int32]], _ index: Int) throws -> [Float] {
        if a.takesImage { return try s.encodeImage(p.images[index], size: p.imageSize) }
        return try s.encodeText(ids[index])
    }

    /// The probe's [77] id rows as the text artifact takes them (`ArtifactShapes.fitIds`: unchanged when it
    /// accepts 77, as every exported text artifact does); empty for an image artifact.
    private static func textInputs(_ a: ModelBundle.Artifact, _ p: ModelBundle.Probe) throws -> [[Int32]] {
        if a.takesImage { return [] }
        return try p.tokenIds.map { try a.shapes.fitIds($0) }
    }

    public static func measure(bundle: ModelBundle, artifact a: ModelBundle.Artifact, runtime rt: EncoderRuntime,
                               settings: BenchmarkSettings, memory: MemoryProbe, progress: Progress? = nil,
                               isCancelled: (() -> Bool)? = nil) -> [String: Any] {
        let progress = progress ?? silent
        var r = base(bundle: bundle, artifact: a, runtime: rt.name, status: "ok")
        var phase = "start"
        var session: EncoderSession?
        defer { session?.close() }
        func checkCancelled() throws {
            if isCancelled?() == true { throw CLIPDeployError(.benchmark, "cancelled") }
        }
        do {
            try settings.validate()
            // nothing is configured, loaded or timed before the probe set and the artifact matched their sha256
            let p = try bundle.probe()
            let classifier = a.isClassifier ? try bundle.classifier() : nil
            try bundle.verifyArtifact(a)
            let ids = try textInputs(a, p)
            r["runtime_versions"] = rt.versions()
            phase = "configure"
            progress(a.path, phase, 0, 0)
            rt.configure(threads: settings.threads)
            r["runtime_options"] = rt.options()
            phase = "prepare"
            progress(a.path, phase, 0, 0)
            try rt.prepare(a)

            phase = "cold_load"
            progress(a.path, phase, 0, 0)
            var t0 = MonotonicClock.nanos()
            session = try rt.load(a)
            let cold = MonotonicClock.seconds(since: t0)
            let afterLoad = memory.currentMb()

            phase = "first_inference"
            progress(a.path, phase, 0, 0)
            t0 = MonotonicClock.nanos()
            let y = try run(session!, a, p, ids, 0)
            let first = MonotonicClock.millis(since: t0)
            if y.isEmpty {
                throw CLIPDeployError(.benchmark, "the artifact returned no \(classifier != nil ? "logits" : "embedding")")
            }
            _ = memory.currentMb()
            session?.close()
            session = nil

            phase = "warm_load"
            progress(a.path, phase, 0, 0)
            t0 = MonotonicClock.nanos()
            session = try rt.load(a)
            let warm = MonotonicClock.seconds(since: t0)
            let s = session!

            phase = "warmup"
            progress(a.path, phase, 0, settings.warmup)
            for _ in 0..<settings.warmup { _ = try run(s, a, p, ids, 0) }

            phase = "steady"
            var samples: [Double] = []
            samples.reserveCapacity(settings.runs)
            var blockEnds: [Int] = []
            var total = 0.0
            var blockMs = 0.0      // the open block's timed work (ms) and samples
            var blockN = 0
            while samples.count < settings.runs || total < settings.minSeconds || blockEnds.count < settings.minBlocks {
                let t = MonotonicClock.nanos()
                _ = try run(s, a, p, ids, 0)
                let ms = MonotonicClock.millis(since: t)
                samples.append(ms)
                total += ms / 1e3
                blockMs += ms
                blockN += 1
                if blockMs / 1e3 >= BenchmarkSettings.blockSeconds && blockN >= BenchmarkSettings.blockMinSamples {
                    blockEnds.append(samples.count)
                    blockMs = 0
                    blockN = 0
                }
                if samples.count % 10 == 0 || samples.count == settings.runs {
                    progress(a.path, phase, samples.count, settings.runs)
                    _ = memory.currentMb()
                    try checkCancelled()
                }
            }
            if blockN > 0 { blockEnds.append(samples.count) }       // the last, partial block

            phase = "parity"
            progress(a.path, phase, 0, 0)
            let n = a.takesImage ? p.images.count : p.tokenIds.count
            var got: [[Float]] = []
            for k in 0..<n { got.append(try run(s, a, p, ids, k)) }
            let parity: [String: Any]
            if let c = classifier {
                parity = try Parity.measureLogits(refImage: p.refImage, classes: c.classEmbeddings,
                                                  logitScale: c.logitScale, got: got).toDictionary()
            } else {
                parity = try Parity.measure(reference: a.isImage ? p.refImage : p.refText, got: got,
                                            otherTower: a.isImage ? p.refText : p.refImage).toDictionary()
            }

            r["phase_reached"] = "done"
            r["load"] = ["import_s": NSNull(), "cold_s": cold, "warm_s": warm] as [String: Any]
            r["first_inference_ms"] = first
            let stats = try Stats.summarize(samples).toDictionary()
            r["steady"] = ["warmup": settings.warmup, "work_factor": 1, "samples_ms": samples,
                           "stats": stats, "seconds": total,
                           "cpu_s": NSNull(), "block_ends": blockEnds] as [String: Any]
            r["memory"] = ["peak_rss_mb": memory.peakMb(), "rss_after_load_mb": afterLoad,
                           "source": memory.source] as [String: Any]
            r["parity"] = parity
            r["export_parity"] = Json.orNull(a.parity)
            r["flops"] = NSNull()
            progress(a.path, "done", 0, 0)
        } catch {
            r["status"] = "error"
            r["reason"] = "\(oneLine(error)) (in phase \(phase))"
            r["phase_reached"] = phase
            for k in ["load", "first_inference_ms", "steady", "memory", "parity"] { r.removeValue(forKey: k) }
        }
        return r
    }

    /// Whether a record passed the parity bars of its precision (nil when it has no parity figures); a classifier
    /// record is held to the logits bars (`Parity.failures(_: LogitFigures, ...)`).
    public static func passes(_ record: [String: Any]) -> Bool? {
        guard let par = record["parity"] as? [String: Any], let precision = record["precision"] as? String,
              (try? Parity.Thresholds.of(precision)) != nil else { return nil }
        let fig = Parity.Figures(maxAbs: Json.optionalNumber(par["max_abs"]) ?? .infinity,
                                 cosineMin: Json.optionalNumber(par["cosine_min"]) ?? .nan,
                                 cosineMean: Json.optionalNumber(par["cosine_mean"]) ?? .nan,
                                 zeroShotAgreement: Json.optionalNumber(par["zero_shot_agreement"]) ?? 0,
                                 n: (Json.optionalNumber(par["n"]).map { Int($0) }) ?? 0,
                                 finite: Json.bool(par["finite"]) ?? false)
        if record["encoder"] as? String == "classifier" {
            // the scale back from the two figures the record has (max abs and max abs in cosine units)
            let units = Json.optionalNumber(par["max_abs_cosine_units"]) ?? .infinity
            let scale = units > 0 && units.isFinite && fig.maxAbs.isFinite ? fig.maxAbs / units : 1
            let logits = Parity.LogitFigures(figures: fig, logitScale: scale)
            return (try? Parity.failures(logits, precision: precision))?.isEmpty
        }
        return (try? Parity.failures(fig, precision: precision))?.isEmpty
    }
}
