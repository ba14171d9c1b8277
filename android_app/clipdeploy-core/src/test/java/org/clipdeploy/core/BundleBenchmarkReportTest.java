package org.clipdeploy.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;

import java.io.File;
import java.nio.file.Files;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

public class BundleBenchmarkReportTest {
    @Rule
    public TemporaryFolder tmp = new TemporaryFolder();

    static Bundle golden() throws Exception {
        return Bundle.open(Goldens.file("bundle"));
    }

    @Test
    public void goldenBundleOpens() throws Exception {
        Bundle b = golden();
        assertEquals("golden_linear", b.model());
        assertEquals(3, b.artifacts().size());          // image, text and the zero-shot classifier (issue 23)
        assertEquals("classifier", b.artifacts().get(2).encoder);
        assertTrue(b.artifacts().get(2).isClassifier() && b.artifacts().get(2).takesImage());
        assertTrue(b.hasClassifier());
        assertEquals(16, b.embeddingDim());
        assertEquals(100.0, b.logitScale(), 0);
        PreprocessSpec spec = b.preprocessSpec();
        assertEquals(32, spec.imageSize);
        Bundle.Probe p = b.probe();
        assertEquals(6, p.images.length);
        assertEquals(3 * 32 * 32, p.images[0].length);
        assertEquals(8, p.tokenIds.length);
        assertEquals(77, p.tokenIds[0].length);
        assertEquals(8, p.captions.size());
        assertEquals(6, p.refImage.length);
        assertEquals(16, p.refText[0].length);
        // the probe's token ids are what the tokenizer makes of its captions
        ClipTokenizer tok = ClipTokenizer.fromBundle(b);
        for (int k = 0; k < p.captions.size(); k++) assertArrayEquals(p.captions.get(k), p.tokenIds[k], tok.tokenize(p.captions.get(k)));
    }

    @Test
    public void aMergeCountWhereTheMergesPathBelongsIsASchemaError() throws Exception {
        // bundles from before clipdeploy 0.1.0 stored the merge count under "merges"; they are schema_version 1,
        // refused anyway, and in a schema_version 2 manifest tokenizer.merges is a path
        File dir = TestBundles.copyGolden(tmp.newFolder("old"));
        Map<String, Object> m = TestBundles.goldenManifest();
        Json.map(m.get("tokenizer")).put("merges", 48894L);
        TestBundles.writeManifest(dir, m);
        try {
            Bundle.open(dir);
            throw new AssertionError("a merge count for tokenizer.merges was accepted");
        } catch (Bundle.BundleException e) {
            assertEquals(Bundle.BundleException.Kind.SCHEMA, e.kind());
            assertTrue(e.getMessage(), e.getMessage().contains("manifest key 'tokenizer.merges' must be a string"));
        }
        Json.map(m.get("tokenizer")).remove("merges");          // absent: the standard location
        TestBundles.writeManifest(dir, m);
        assertEquals(new File(dir, "tokenizer/merges.txt"), Bundle.open(dir).tokenizerMerges());
    }

    @Test
    public void badBundlesFailWithOneLine() throws Exception {
        File empty = tmp.newFolder("empty");
        try {
            Bundle.open(empty);
            throw new AssertionError("a folder without manifest.json opened");
        } catch (Bundle.BundleException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("no manifest.json"));
        }
        File bad = tmp.newFolder("bad");
        Files.write(new File(bad, "manifest.json").toPath(), "{\"schema_version\": 1,".getBytes("UTF-8"));
        try {
            Bundle.open(bad);
            throw new AssertionError("a broken manifest opened");
        } catch (Bundle.BundleException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("cannot be read") && !e.getMessage().contains("\n"));
        }
    }

    @Test
    public void benchmarkMeasuresEveryPhaseAndParity() throws Exception {
        Bundle b = golden();
        BenchmarkSettings s = new BenchmarkSettings("reference", 12, 2, 1, 0.0, 1);       // the smallest: one block
        final StringBuilder phases = new StringBuilder();
        List<Map<String, Object>> recs = Benchmark.runAll(b, Collections.<EncoderRuntime>singletonList(new ReferenceRuntime()), s,
                new MemoryProbe.JvmHeap(), (a, phase, done, total) -> phases.append(phase).append(' '));
        assertEquals(3, recs.size());
        java.util.Set<Object> ids = new java.util.HashSet<>();
        for (Map<String, Object> r : recs) {
            assertEquals(r.get("reason") + "", "ok", r.get("status"));
            // every artifact has its own file (the classifier too): id = path@runtime, as in Python
            assertEquals(r.get("artifact") + "@reference", r.get("id"));
            assertTrue("duplicate id " + r.get("id"), ids.add(r.get("id")));
            Map<String, Object> steady = Json.map(r.get("steady"));
            double[] xs = (double[]) steady.get("samples_ms");
            assertTrue(xs.length >= 12);
            for (double x : xs) assertTrue(x > 0);
            assertEquals(1L, steady.get("work_factor"));
            int[] ends = (int[]) steady.get("block_ends");
            assertEquals(xs.length, ends[ends.length - 1]);
            assertEquals((long) xs.length, Json.map(steady.get("stats")).get("n"));
            assertEquals(Stats.summarize(xs).median, Json.num(Json.map(steady.get("stats")).get("median")), 0);
            Map<String, Object> load = Json.map(r.get("load"));
            assertTrue(Json.num(load.get("cold_s")) > 0 && Json.num(load.get("warm_s")) > 0);
            assertTrue(Json.num(r.get("first_inference_ms")) > 0);
            Map<String, Object> par = Json.map(r.get("parity"));
            assertTrue("max abs " + par.get("max_abs"), Json.num(par.get("max_abs")) <= 1e-6);
            assertEquals(1.0, Json.num(par.get("zero_shot_agreement")), 0);
            assertEquals("text".equals(r.get("encoder")) ? 8L : 6L, par.get("n"));
            if ("classifier".equals(r.get("encoder"))) {
                // logits against the probe's reference image embeddings x the class matrix x logit_scale: the
                // reference classifier applies the head to the image encoder's float32 output, hence exactly
                assertEquals(1.0, Json.num(par.get("top1_agreement")), 0);
                assertEquals(0.0, Json.num(par.get("max_abs_cosine_units")), 1e-8);
                assertTrue(Json.num(par.get("cosine_min")) > 0.999999);
            }
            assertNotNull(r.get("export_parity"));
            assertEquals("done", r.get("phase_reached"));
        }
        String p = phases.toString();
        for (String ph : new String[] {"configure", "cold_load", "first_inference", "warm_load", "warmup", "steady", "parity", "done"}) {
            assertTrue(ph + " missing from " + p, p.contains(ph + " "));
        }
        assertTrue(p.indexOf("cold_load") < p.indexOf("first_inference") && p.indexOf("first_inference") < p.indexOf("warm_load"));
    }

    @Test
    public void minSecondsExtendsTheSteadyState() throws Exception {
        Bundle b = golden();
        BenchmarkSettings s = new BenchmarkSettings("reference", 1, 0, 0, 0.6, 1);   // longer than one block
        Map<String, Object> r = Benchmark.measure(b, b.artifacts().get(0), new ReferenceRuntime(), s, new MemoryProbe.JvmHeap(), null);
        Map<String, Object> steady = Json.map(r.get("steady"));
        assertTrue(((double[]) steady.get("samples_ms")).length > 1);
        assertTrue(Json.num(steady.get("seconds")) >= 0.6);
    }

    /** The default settings: at least 50 samples, 2 s of timed work and 8 blocks of >= 0.25 s and >= 3 samples. */
    @Test
    public void defaultSettingsSampleInBlocks() throws Exception {
        Bundle b = golden();
        BenchmarkSettings s = new BenchmarkSettings();
        assertEquals(50, s.runs);
        assertEquals(2.0, s.minSeconds, 0);
        assertEquals(8, s.minBlocks);
        assertEquals(0.25, BenchmarkSettings.BLOCK_SECONDS, 0);
        assertEquals(3, BenchmarkSettings.BLOCK_MIN_SAMPLES);
        s.runtime = "reference";
        Bundle.Artifact image = b.artifacts().get(0);
        assertEquals("image", image.encoder);
        Map<String, Object> r = Benchmark.measure(b, image, new ReferenceRuntime(), s, new MemoryProbe.JvmHeap(), null);
        assertEquals(r.get("reason") + "", "ok", r.get("status"));
        Map<String, Object> steady = Json.map(r.get("steady"));
        assertEquals(1L, steady.get("work_factor"));
        double[] xs = (double[]) steady.get("samples_ms");
        int[] ends = (int[]) steady.get("block_ends");
        assertTrue(xs.length >= 50);
        assertTrue("seconds " + steady.get("seconds"), Json.num(steady.get("seconds")) >= 2.0);
        double sum = 0;
        for (double x : xs) sum += x;
        assertTrue("sum " + sum, sum / 1000 >= 2.0 - 1e-9);
        assertTrue(Arrays.toString(ends), ends.length >= 8);
        assertEquals(xs.length, ends[ends.length - 1]);
        int prev = 0;
        for (int k = 0; k < ends.length; k++) {
            assertTrue(Arrays.toString(ends), ends[k] > prev);
            if (k < ends.length - 1) {                       // a full block; the last may be partial
                double blockMs = 0;
                for (int i = prev; i < ends[k]; i++) blockMs += xs[i];
                assertTrue("block " + k + ": " + (ends[k] - prev) + " samples", ends[k] - prev >= 3);
                assertTrue("block " + k + ": " + blockMs + " ms", blockMs / 1000 >= 0.25);
            }
            prev = ends[k];
        }
    }

    /** The small case, min_blocks 1 and min_seconds 0: one closed block, so at least BLOCK_SECONDS of timed work
     * even when runs samples take much less (as clip-latency's worker). */
    @Test
    public void oneBlockIsTheSmallCase() throws Exception {
        Bundle b = golden();
        for (Bundle.Artifact a : b.artifacts()) {
            BenchmarkSettings s = new BenchmarkSettings("reference", 5, 0, 0);
            s.minSeconds = 0;
            s.minBlocks = 1;
            Map<String, Object> r = Benchmark.measure(b, a, new ReferenceRuntime(), s, new MemoryProbe.JvmHeap(), null);
            Map<String, Object> steady = Json.map(r.get("steady"));
            double[] xs = (double[]) steady.get("samples_ms");
            int[] ends = (int[]) steady.get("block_ends");
            assertTrue(xs.length >= 5);
            assertEquals(xs.length, ends[ends.length - 1]);
            double first = 0;
            for (int i = 0; i < ends[0]; i++) first += xs[i];
            assertTrue(ends[0] >= 3 && first / 1000 >= 0.25);
            assertTrue(Json.num(steady.get("seconds")) >= 0.25);
            // five reference calls take far less than 0.25 s: the run stopped as its one block closed
            if (xs.length > 5) assertArrayEquals(new int[] {xs.length}, ends);
        }
    }

    /** A block needs BLOCK_MIN_SAMPLES samples even when fewer already make BLOCK_SECONDS; minBlocks counts closed
     * blocks; samples after the last closed block (runs not reached yet) make a partial last block. The reference
     * runtime, 150 ms a call in the steady state. */
    @Test
    public void blocksCloseOnTimeAndSampleCountAndEndWithAPartialBlock() throws Exception {
        Bundle b = golden();
        final boolean[] slow = {false};
        final ReferenceRuntime ref = new ReferenceRuntime();
        EncoderRuntime sleepy = new EncoderRuntime() {
            public String name() { return "reference"; }
            public boolean supports(Bundle.Artifact a) { return ref.supports(a); }
            public void configure(int threads) { ref.configure(threads); }
            public Map<String, Object> versions() { return ref.versions(); }
            public Map<String, Object> options() { return ref.options(); }
            public EncoderSession load(Bundle.Artifact a) throws Exception {
                final EncoderSession inner = ref.load(a);
                return new EncoderSession() {
                    public float[] encodeImage(float[] chw, int size) throws Exception {
                        if (slow[0]) Thread.sleep(150);
                        return inner.encodeImage(chw, size);
                    }
                    public float[] encodeText(int[] ids) throws Exception {
                        if (slow[0]) Thread.sleep(150);
                        return inner.encodeText(ids);
                    }
                    public void close() { inner.close(); }
                };
            }
        };
        BenchmarkSettings s = new BenchmarkSettings("reference", 7, 0, 0, 0.0, 2);
        Map<String, Object> r = Benchmark.measure(b, b.artifacts().get(0), sleepy, s, new MemoryProbe.JvmHeap(),
                (a, phase, done, total) -> {
                    if ("warmup".equals(phase)) slow[0] = true;       // 0 warmup calls: the next calls are steady
                    if ("parity".equals(phase)) slow[0] = false;
                });
        assertEquals(r.get("reason") + "", "ok", r.get("status"));
        Map<String, Object> steady = Json.map(r.get("steady"));
        // 2 samples (>= 0.3 s) are too few for a block, the 3rd closes it; likewise the 6th; 2 blocks but 7 runs:
        // the 7th sample is the last, partial block
        assertArrayEquals(new int[] {3, 6, 7}, (int[]) steady.get("block_ends"));
        assertEquals(7, ((double[]) steady.get("samples_ms")).length);
    }

    @Test
    public void settingsAreValidated() {
        BenchmarkSettings s = new BenchmarkSettings("reference", 5, 0, 0, 0.0, 0);
        try {
            s.validate();
            throw new AssertionError("minBlocks 0 accepted");
        } catch (IllegalArgumentException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("minBlocks must be at least 1"));
        }
        for (double bad : new double[] {-1, Double.NaN, Double.POSITIVE_INFINITY}) {
            try {
                new BenchmarkSettings("reference", 5, 0, 0, bad, 1).validate();
                throw new AssertionError("minSeconds " + bad + " accepted");
            } catch (IllegalArgumentException e) {
                assertTrue(e.getMessage(), e.getMessage().contains("minSeconds must be 0 or more"));
            }
        }
    }

    @Test
    public void perturbedWeightsFailTheBarsByOrdersOfMagnitude() throws Exception {
        Bundle b = golden();
        BenchmarkSettings s = new BenchmarkSettings("reference", 3, 0, 0, 0.0, 1);
        for (Map<String, Object> r : Benchmark.runAll(b, Collections.<EncoderRuntime>singletonList(new ReferenceRuntime(0.01)), s,
                new MemoryProbe.JvmHeap(), null)) {
            Map<String, Object> par = Json.map(r.get("parity"));
            double maxAbs = Json.num(par.get("max_abs"));
            assertTrue(r.get("artifact") + ": max abs " + maxAbs, maxAbs > 1e-4);
            Parity.Figures f = Parity.measure(new float[][] {{1f}}, new float[][] {{1f}}, new float[][] {{1f}});
            assertTrue(Parity.failures(f, "fp32").isEmpty());
        }
    }

    @Test
    public void otherRuntimesAreSkippedAndFailuresAreRecorded() throws Exception {
        Bundle b = golden();
        BenchmarkSettings s = new BenchmarkSettings("executorch", 3, 0, 0, 0.0, 1);
        List<Map<String, Object>> recs = Benchmark.runAll(b, Collections.<EncoderRuntime>singletonList(new ReferenceRuntime()), s,
                new MemoryProbe.JvmHeap(), null);
        for (Map<String, Object> r : recs) {
            assertEquals("skipped", r.get("status"));
            assertTrue(Json.str(r.get("reason")).contains("not requested"));
        }
        EncoderRuntime broken = new EncoderRuntime() {
            public String name() { return "reference"; }
            public boolean supports(Bundle.Artifact a) { return true; }
            public void configure(int threads) { }
            public Map<String, Object> versions() { return Collections.emptyMap(); }
            public Map<String, Object> options() { return Collections.emptyMap(); }
            public EncoderSession load(Bundle.Artifact a) throws Exception { throw new java.io.IOException("cannot map " + a.path); }
        };
        Map<String, Object> r = Benchmark.measure(b, b.artifacts().get(0), broken, new BenchmarkSettings("reference", 3, 0, 0, 0.0, 1),
                new MemoryProbe.JvmHeap(), null);
        assertEquals("error", r.get("status"));
        assertEquals("cold_load", r.get("phase_reached"));
        assertTrue(Json.str(r.get("reason")).contains("cannot map"));
        assertFalse(r.containsKey("steady"));
    }

    @Test
    public void reportIsWrittenAtomicallyAndReadsBack() throws Exception {
        Bundle b = golden();
        BenchmarkSettings s = new BenchmarkSettings("reference", 5, 1, 2, 0.0, 1);
        LatencyReport rep = new LatencyReport("jvm-core", "clipdeploy-core test", "0.1.0").bundle(b, "/data/local/tmp/clipdeploy/golden_linear")
                .settings(s, Arrays.asList("reference"));
        for (Map<String, Object> r : Benchmark.runAll(b, Collections.<EncoderRuntime>singletonList(new ReferenceRuntime()), s,
                new MemoryProbe.JvmHeap(), null)) rep.addRecord(r);
        File out = new File(tmp.getRoot(), "sub/report.json");
        rep.writeAtomically(out);
        assertTrue(out.isFile());
        assertFalse(new File(out.getPath() + ".tmp").exists());
        Map<String, Object> m = LatencyReport.read(out);
        assertEquals(1L, m.get("schema_version"));
        assertEquals("jvm-core", m.get("source"));
        assertEquals("/data/local/tmp/clipdeploy/golden_linear", Json.map(m.get("bundle")).get("path"));
        assertEquals(2L, Json.map(m.get("settings")).get("threads"));
        assertEquals(0.0, Json.num(Json.map(m.get("settings")).get("min_seconds")), 0);
        assertEquals(1L, Json.map(m.get("settings")).get("min_blocks"));
        assertTrue(Json.str(m.get("created")).matches("\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d([+-]\\d\\d:\\d\\d|Z)"));
        List<Object> recs = Json.list(m.get("records"));
        assertEquals(3, recs.size());
        Map<String, Object> r0 = Json.map(recs.get(0));
        int n = Json.list(Json.map(r0.get("steady")).get("samples_ms")).size();
        assertTrue(n >= 5);
        List<Object> ends = Json.list(Json.map(r0.get("steady")).get("block_ends"));
        assertEquals((long) n, ends.get(ends.size() - 1));                  // JSON ints, read back as Long

        LatencyReport.writeError(out, "bundle not found:\n/x");
        assertEquals("bundle not found: /x\n", new String(Files.readAllBytes(new File(out.getPath() + ".error").toPath()), "UTF-8"));
    }

    /** ReportTool's CLI (tests/test_goldens.py runs it): BUNDLE REPORT [runs] [warmup] [min_seconds] [min_blocks],
     * by default min_seconds 0 and min_blocks 1. */
    @Test
    public void reportToolKeepsItsCommandLine() throws Exception {
        java.io.PrintStream out = System.out, err = System.err;
        java.io.ByteArrayOutputStream log = new java.io.ByteArrayOutputStream();
        File report = new File(tmp.getRoot(), "tool/report.json");
        String bundle = Goldens.file("bundle").getPath();
        int ok, badSeconds, badBlocks;
        try {
            java.io.PrintStream ps = new java.io.PrintStream(log, true, "UTF-8");
            System.setOut(ps);
            System.setErr(ps);
            ok = ReportTool.run(new String[] {bundle, report.getPath(), "25", "3"});
            badSeconds = ReportTool.run(new String[] {bundle, report.getPath() + "2", "5", "0", "-1"});
            badBlocks = ReportTool.run(new String[] {bundle, report.getPath() + "2", "5", "0", "0", "0"});
        } finally {
            System.setOut(out);
            System.setErr(err);
        }
        String text = log.toString("UTF-8");
        assertEquals(text, 0, ok);
        assertTrue(text, text.contains("steady 20/25"));
        assertEquals(2, badSeconds);
        assertTrue(text, text.contains("error: minSeconds must be 0 or more"));
        assertEquals(2, badBlocks);
        assertTrue(text, text.contains("error: minBlocks must be at least 1, got 0"));
        Map<String, Object> m = LatencyReport.read(report);
        Map<String, Object> settings = Json.map(m.get("settings"));
        assertEquals(0.0, Json.num(settings.get("min_seconds")), 0);
        assertEquals(1L, settings.get("min_blocks"));
        for (Object o : Json.list(m.get("records"))) {
            Map<String, Object> steady = Json.map(Json.map(o).get("steady"));
            int n = Json.list(steady.get("samples_ms")).size();
            assertTrue(n >= 25);
            List<Object> ends = Json.list(steady.get("block_ends"));
            assertEquals((long) n, ends.get(ends.size() - 1));
        }
    }

    @Test
    public void sampleDeviceReportParsesAndItsStatisticsAreOurs() throws Exception {
        Map<String, Object> m = LatencyReport.read(Goldens.file("report_sample.json"));
        int ok = 0;
        for (Object o : Json.list(m.get("records"))) {
            Map<String, Object> r = Json.map(o);
            if (!"ok".equals(r.get("status"))) {
                assertNotNull(r.get("reason"));
                continue;
            }
            ok++;
            Map<String, Object> steady = Json.map(r.get("steady"));
            Map<String, Object> want = Json.map(steady.get("stats"));
            Map<String, Object> got = Stats.summarize(Json.doubles(steady.get("samples_ms"))).toMap();
            for (String k : want.keySet()) assertEquals(k, Json.num(want.get(k)), Json.num(got.get(k)), 1e-9);
        }
        assertEquals(2, ok);
        File bad = tmp.newFile("bad.json");
        Files.write(bad.toPath(), "{\"schema_version\": 2, \"kind\": \"clipdeploy-latency-report\"}".getBytes("UTF-8"));
        try {
            LatencyReport.read(bad);
            throw new AssertionError("schema_version 2 accepted");
        } catch (java.io.IOException e) {
            assertTrue(e.getMessage().contains("schema_version 2 is not supported"));
        }
        assertNull(Json.map(m.get("calibration") == null ? new java.util.HashMap<String, Object>() : m.get("calibration")).get("x"));
    }
}
