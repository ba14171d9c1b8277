package org.clipdeploy.core;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The on-device benchmark, with clip-latency run's phases, in this order:
 * {@code cold_load} (first load in the process) → {@code first_inference} (first call, probe input 0) →
 * the handle is released → {@code warm_load} → {@code warmup} untimed calls → {@code steady} (timed calls
 * until all of {@code runs} samples, {@code minSeconds} of timed work and {@code minBlocks} blocks) →
 * {@code parity} (every probe input vs the bundle's reference embeddings) → {@code done}. Each artifact gives
 * one report record. A classifier artifact (encoder "classifier") takes the probe images and is held to reference
 * logits: the probe's reference image embeddings times the bundle's class matrix times its logit_scale
 * ({@link Parity#measureLogits}, as clip-latency's worker: the schema's parity keys, zero_shot_agreement being
 * the logits' top-1 agreement, plus top1_agreement, max_abs_cosine_units and tie).
 *
 * <p>Blocks, as in clip-latency's worker: a block closes after a sample once its own timed work is at least
 * {@link BenchmarkSettings#BLOCK_SECONDS} and it holds at least {@link BenchmarkSettings#BLOCK_MIN_SAMPLES}
 * samples, and {@code minBlocks} counts these closed blocks; when sampling stops, the last, partial block (if it
 * has a sample) closes too. So even {@code minBlocks = 1, minSeconds = 0} samples for one whole block (at least
 * {@code BLOCK_SECONDS} of timed work), as clip-latency's worker does.
 * The record's {@code steady.block_ends} are the sample counts at which the blocks ended (increasing, the last
 * equals the number of samples): block {@code k} is {@code samples_ms[block_ends[k-1]:block_ends[k]]}.
 */
public final class Benchmark {
    private Benchmark() {}

    /** Progress of a run: phase names as in clip-latency's worker; {@code done/total} during steady state. */
    public interface Progress {
        void onPhase(String artifact, String phase, int done, int total);
    }

    public static final Progress SILENT = (a, p, d, t) -> { };

    /**
     * Every artifact of the bundle: measured when {@code runtimes} has one that supports it and it is the
     * requested runtime (settings.runtime, or any when null); listed as skipped otherwise. Nothing is loaded or
     * measured before the probe set and every artifact to measure matched the manifest's sha256
     * ({@link Bundle#probe}, {@link Bundle#verify}): a bundle that fails is a {@link Bundle.BundleException} and no
     * runtime is called.
     */
    public static List<Map<String, Object>> runAll(Bundle bundle, List<EncoderRuntime> runtimes, BenchmarkSettings settings,
                                                   MemoryProbe memory, Progress progress) throws Bundle.BundleException {
        settings.validate();
        List<EncoderRuntime> plan = new ArrayList<>();
        boolean any = false;
        for (Bundle.Artifact a : bundle.artifacts()) {
            EncoderRuntime chosen = null;
            for (EncoderRuntime rt : runtimes) {
                if (rt.supports(a) && (settings.runtime == null || settings.runtime.equals(rt.name()))) {
                    chosen = rt;
                    break;
                }
            }
            plan.add(chosen);
            any |= chosen != null;
        }
        if (any) {
            bundle.probe();
            for (int k = 0; k < plan.size(); k++) {
                if (plan.get(k) != null && bundle.artifacts().get(k).isClassifier()) {
                    bundle.classifier();           // the class matrix and labels, verified, before anything runs
                    break;
                }
            }
            for (int k = 0; k < plan.size(); k++) if (plan.get(k) != null) bundle.verify(bundle.artifacts().get(k));
        }
        List<Map<String, Object>> records = new ArrayList<>();
        for (int k = 0; k < plan.size(); k++) {
            Bundle.Artifact a = bundle.artifacts().get(k);
            EncoderRuntime chosen = plan.get(k);
            if (chosen != null) {
                records.add(measure(bundle, a, chosen, settings, memory, progress));
            } else {
                String rt = runtimeFor(a);
                String why = settings.runtime != null && !settings.runtime.equals(rt)
                        ? "runtime not requested (runtime " + settings.runtime + ")"
                        : "no runtime for this artifact in this app";
                records.add(skipped(bundle, a, rt, why));
            }
        }
        return records;
    }

    /** The runtime name a skipped artifact is listed under. */
    static String runtimeFor(Bundle.Artifact a) {
        return Bundle.runtimeForTarget(a.target);
    }

    /**
     * The artifact's part of a record id: its path (as clip-latency's), except for a classifier artifact whose path
     * another artifact of the bundle has too (the goldens' reference classifier reuses the image encoder's matrix),
     * {@code path#classifier}, so every record of a report has its own id.
     */
    public static String artifactId(Bundle bundle, Bundle.Artifact a) {
        if (a.isClassifier()) {
            for (Bundle.Artifact o : bundle.artifacts()) {
                if (o != a && !o.isClassifier() && o.path.equals(a.path)) return a.path + "#" + a.encoder;
            }
        }
        return a.path;
    }

    static Map<String, Object> base(Bundle bundle, Bundle.Artifact a, String runtime, String status) {
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("id", artifactId(bundle, a) + "@" + runtime);
        r.put("model", bundle.model());
        r.put("artifact", a.path);
        r.put("target", a.target);
        r.put("precision", a.precision);
        r.put("encoder", a.encoder);
        r.put("runtime", runtime);
        r.put("status", status);
        r.put("reason", null);
        return r;
    }

    public static Map<String, Object> skipped(Bundle bundle, Bundle.Artifact a, String runtime, String reason) {
        Map<String, Object> r = base(bundle, a, runtime, "skipped");
        r.put("reason", reason);
        return r;
    }

    private static float[] run(EncoderSession s, Bundle.Artifact a, Bundle.Probe p, int[][] ids, int index) throws Exception {
        if (a.takesImage()) return s.encodeImage(p.images[index], p.imageSize);
        return s.encodeText(ids[index]);
    }

    /** The probe's [77] id rows as the text artifact takes them ({@link ArtifactShapes#fitIds}: unchanged when it
     * accepts 77, as every exported text artifact does); null for an image artifact. */
    private static int[][] textInputs(Bundle.Artifact a, Bundle.Probe p) {
        if (a.takesImage()) return null;
        int[][] out = new int[p.tokenIds.length][];
        for (int k = 0; k < out.length; k++) out[k] = a.shapes.fitIds(p.tokenIds[k]);
        return out;
    }

    public static Map<String, Object> measure(Bundle bundle, Bundle.Artifact a, EncoderRuntime rt, BenchmarkSettings settings,
                                              MemoryProbe memory, Progress progress) {
        settings.validate();
        if (progress == null) progress = SILENT;
        Map<String, Object> r = base(bundle, a, rt.name(), "ok");
        String phase = "start";
        EncoderSession s = null;
        try {
            // nothing is configured, loaded or timed before the probe set and the artifact matched their sha256
            Bundle.Probe p = bundle.probe();
            Classifier classifier = a.isClassifier() ? bundle.classifier() : null;
            bundle.verify(a);
            int[][] ids = textInputs(a, p);
            r.put("runtime_versions", rt.versions());
            phase = "configure";
            progress.onPhase(a.path, phase, 0, 0);
            rt.configure(settings.threads);
            r.put("runtime_options", rt.options());

            phase = "cold_load";
            progress.onPhase(a.path, phase, 0, 0);
            long t0 = System.nanoTime();
            s = rt.load(a);
            double cold = (System.nanoTime() - t0) / 1e9;
            double afterLoad = memory.currentMb();
            // again after the load: a runtime may record there what the load applied (LiteRT: its XNNPACK threads)
            r.put("runtime_options", rt.options());

            phase = "first_inference";
            progress.onPhase(a.path, phase, 0, 0);
            t0 = System.nanoTime();
            float[] y = run(s, a, p, ids, 0);
            double first = (System.nanoTime() - t0) / 1e6;
            if (y == null || y.length == 0) {
                throw new IllegalStateException("the artifact returned no " + (classifier != null ? "logits" : "embedding"));
            }
            s.close();
            s = null;

            phase = "warm_load";
            progress.onPhase(a.path, phase, 0, 0);
            t0 = System.nanoTime();
            s = rt.load(a);
            double warm = (System.nanoTime() - t0) / 1e9;

            phase = "warmup";
            progress.onPhase(a.path, phase, 0, settings.warmup);
            for (int k = 0; k < settings.warmup; k++) run(s, a, p, ids, 0);

            phase = "steady";
            List<Double> samples = new ArrayList<>();
            List<Integer> ends = new ArrayList<>();
            double total = 0;
            double blockMs = 0;      // the open block's timed work (ms) and samples
            int blockN = 0;
            while (samples.size() < settings.runs || total < settings.minSeconds || ends.size() < settings.minBlocks) {
                long t = System.nanoTime();
                run(s, a, p, ids, 0);
                double ms = (System.nanoTime() - t) / 1e6;
                samples.add(ms);
                total += ms / 1e3;
                blockMs += ms;
                blockN++;
                if (blockMs / 1e3 >= BenchmarkSettings.BLOCK_SECONDS && blockN >= BenchmarkSettings.BLOCK_MIN_SAMPLES) {
                    ends.add(samples.size());
                    blockMs = 0;
                    blockN = 0;
                }
                if (samples.size() % 10 == 0 || samples.size() == settings.runs) {
                    progress.onPhase(a.path, phase, samples.size(), settings.runs);
                }
            }
            if (blockN > 0) ends.add(samples.size());       // the last, partial block
            double[] xs = new double[samples.size()];
            for (int k = 0; k < xs.length; k++) xs[k] = samples.get(k);
            int[] blockEnds = new int[ends.size()];
            for (int k = 0; k < blockEnds.length; k++) blockEnds[k] = ends.get(k);

            phase = "parity";
            progress.onPhase(a.path, phase, 0, 0);
            boolean image = a.takesImage();
            int n = image ? p.images.length : p.tokenIds.length;
            float[][] got = new float[n][];
            for (int k = 0; k < n; k++) got[k] = run(s, a, p, ids, k);
            Map<String, Object> parity;
            if (classifier != null) {
                parity = Parity.measureLogits(p.refImage, classifier.rows(), classifier.logitScale, got).toMap();
            } else {
                parity = Parity.measure(image ? p.refImage : p.refText, got, image ? p.refText : p.refImage).toMap();
            }

            Map<String, Object> load = new LinkedHashMap<>();
            load.put("import_s", null);
            load.put("cold_s", cold);
            load.put("warm_s", warm);
            Map<String, Object> steady = new LinkedHashMap<>();
            steady.put("warmup", (long) settings.warmup);
            steady.put("work_factor", 1L);
            steady.put("samples_ms", xs);
            steady.put("stats", Stats.summarize(xs).toMap());
            steady.put("seconds", total);
            steady.put("cpu_s", null);
            steady.put("block_ends", blockEnds);
            Map<String, Object> mem = new LinkedHashMap<>();
            mem.put("peak_rss_mb", memory.peakMb());
            mem.put("rss_after_load_mb", afterLoad);
            mem.put("source", memory.source());
            r.put("phase_reached", "done");
            r.put("load", load);
            r.put("first_inference_ms", first);
            r.put("steady", steady);
            r.put("memory", mem);
            r.put("parity", parity);
            r.put("export_parity", a.parity);
            r.put("flops", null);
            progress.onPhase(a.path, "done", 0, 0);
        } catch (Throwable e) {
            r.put("status", "error");
            String msg = e.getMessage() == null ? "" : e.getMessage().replace('\n', ' ');
            r.put("reason", (e.getClass().getSimpleName() + ": " + msg).trim() + " (in phase " + phase + ")");
            r.put("phase_reached", phase);
            for (String k : new String[] {"load", "first_inference_ms", "steady", "memory", "parity"}) r.remove(k);
        } finally {
            if (s != null) s.close();
        }
        return r;
    }
}
