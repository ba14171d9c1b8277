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
        assertEquals(2, b.artifacts().size());
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
    public void olderManifestsWithAMergeCountStillFindTheMergesFile() throws Exception {
        File dir = tmp.newFolder("old");
        Map<String, Object> m = Json.map(Json.parse(Goldens.file("bundle/manifest.json")));
        Json.map(m.get("tokenizer")).put("merges", 48894L);
        Files.write(new File(dir, "manifest.json").toPath(), Json.write(m, true).getBytes("UTF-8"));
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
        BenchmarkSettings s = new BenchmarkSettings("reference", 12, 2, 1);
        final StringBuilder phases = new StringBuilder();
        List<Map<String, Object>> recs = Benchmark.runAll(b, Collections.<EncoderRuntime>singletonList(new ReferenceRuntime()), s,
                new MemoryProbe.JvmHeap(), (a, phase, done, total) -> phases.append(phase).append(' '));
        assertEquals(2, recs.size());
        for (Map<String, Object> r : recs) {
            assertEquals(r.get("reason") + "", "ok", r.get("status"));
            assertEquals(r.get("artifact") + "@reference", r.get("id"));
            Map<String, Object> steady = Json.map(r.get("steady"));
            double[] xs = (double[]) steady.get("samples_ms");
            assertEquals(12, xs.length);
            for (double x : xs) assertTrue(x > 0);
            assertEquals(12L, Json.map(steady.get("stats")).get("n"));
            assertEquals(Stats.summarize(xs).median, Json.num(Json.map(steady.get("stats")).get("median")), 0);
            Map<String, Object> load = Json.map(r.get("load"));
            assertTrue(Json.num(load.get("cold_s")) > 0 && Json.num(load.get("warm_s")) > 0);
            assertTrue(Json.num(r.get("first_inference_ms")) > 0);
            Map<String, Object> par = Json.map(r.get("parity"));
            assertTrue("max abs " + par.get("max_abs"), Json.num(par.get("max_abs")) <= 1e-6);
            assertEquals(1.0, Json.num(par.get("zero_shot_agreement")), 0);
            assertEquals("image".equals(r.get("encoder")) ? 6L : 8L, par.get("n"));
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
        BenchmarkSettings s = new BenchmarkSettings("reference", 1, 0, 0);
        s.minSeconds = 0.05;
        Map<String, Object> r = Benchmark.measure(b, b.artifacts().get(0), new ReferenceRuntime(), s, new MemoryProbe.JvmHeap(), null);
        Map<String, Object> steady = Json.map(r.get("steady"));
        assertTrue(((double[]) steady.get("samples_ms")).length > 1);
        assertTrue(Json.num(steady.get("seconds")) >= 0.05);
    }

    @Test
    public void perturbedWeightsFailTheBarsByOrdersOfMagnitude() throws Exception {
        Bundle b = golden();
        BenchmarkSettings s = new BenchmarkSettings("reference", 3, 0, 0);
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
        BenchmarkSettings s = new BenchmarkSettings("executorch", 3, 0, 0);
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
        Map<String, Object> r = Benchmark.measure(b, b.artifacts().get(0), broken, new BenchmarkSettings("reference", 3, 0, 0),
                new MemoryProbe.JvmHeap(), null);
        assertEquals("error", r.get("status"));
        assertEquals("cold_load", r.get("phase_reached"));
        assertTrue(Json.str(r.get("reason")).contains("cannot map"));
        assertFalse(r.containsKey("steady"));
    }

    @Test
    public void reportIsWrittenAtomicallyAndReadsBack() throws Exception {
        Bundle b = golden();
        BenchmarkSettings s = new BenchmarkSettings("reference", 5, 1, 2);
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
        assertTrue(Json.str(m.get("created")).matches("\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d([+-]\\d\\d:\\d\\d|Z)"));
        List<Object> recs = Json.list(m.get("records"));
        assertEquals(2, recs.size());
        Map<String, Object> r0 = Json.map(recs.get(0));
        assertEquals(5, Json.list(Json.map(r0.get("steady")).get("samples_ms")).size());

        LatencyReport.writeError(out, "bundle not found:\n/x");
        assertEquals("bundle not found: /x\n", new String(Files.readAllBytes(new File(out.getPath() + ".error").toPath()), "UTF-8"));
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
