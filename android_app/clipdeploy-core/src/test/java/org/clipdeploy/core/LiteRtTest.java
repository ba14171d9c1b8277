package org.clipdeploy.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertSame;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

/**
 * runtime=litert in the core: the request, the artifact selection and its manifest checks, the XNNPACK thread
 * option. The bundles are the goldens' miniature bundle (image 32x32, embedding 16, context 77) with litert-*
 * artifacts added to its manifest, written to a temporary folder.
 */
public class LiteRtTest {
    @Rule
    public TemporaryFolder tmp = new TemporaryFolder();

    private static Map<String, Object> tensor(String name, String dtype, Object... shape) {
        Map<String, Object> t = new LinkedHashMap<>();
        t.put("name", name);
        t.put("shape", new ArrayList<Object>(Arrays.asList(shape)));
        t.put("dtype", dtype);
        return t;
    }

    /** A manifest entry as clip-export --target litert writes it. */
    private static Map<String, Object> litert(String precision, String encoder, boolean isDefault) {
        Map<String, Object> a = new LinkedHashMap<>();
        String path = "litert-" + precision + "/" + encoder + "_encoder.tflite";
        a.put("target", "litert");
        a.put("precision", precision);
        a.put("encoder", encoder);
        a.put("path", path);
        a.put("files", new ArrayList<Object>(Collections.singletonList(path)));
        List<Object> in = new ArrayList<>();
        in.add("image".equals(encoder) ? tensor("image", "float32", 1L, 3L, 32L, 32L) : tensor("text", "int32", 1L, 77L));
        a.put("inputs", in);
        List<Object> out = new ArrayList<>();
        out.add(tensor("embedding", "float32", 1L, 16L));
        a.put("outputs", out);
        a.put("default", isDefault);
        a.put("parity", new LinkedHashMap<String, Object>());
        a.put("info", new LinkedHashMap<String, Object>());
        return a;
    }

    private static Map<String, Object> goldenManifest() throws Exception {
        return Json.map(Json.parse(Goldens.file("bundle/manifest.json")));
    }

    private static List<Object> artifacts(Map<String, Object> m) {
        return Json.list(m.get("artifacts"));
    }

    /** The golden manifest plus litert fp32 (default) and int8 (not default) artifacts for both encoders. */
    private Map<String, Object> manifestWithLiteRt() throws Exception {
        Map<String, Object> m = goldenManifest();
        List<Object> arts = artifacts(m);
        arts.add(litert("fp32", "image", true));
        arts.add(litert("fp32", "text", true));
        arts.add(litert("int8", "image", false));
        arts.add(litert("int8", "text", false));
        return m;
    }

    /** The golden files, a placeholder file for each added artifact and the integrity record of it all. */
    private Bundle write(Map<String, Object> manifest) throws Exception {
        return Bundle.open(TestBundles.bundle(tmp.newFolder(), manifest));
    }

    @Test
    public void requestAcceptsLiteRtAndTheErrorListsIt() {
        Map<String, Object> extras = new HashMap<>();
        extras.put("bundle", "/data/local/tmp/clipdeploy/mobileclip_s0");
        extras.put("runtime", "litert");
        extras.put("threads", 4);
        BenchmarkRequest r = BenchmarkRequest.parse(extras, new File("/r.json"), null);
        assertEquals("litert", r.runtime);
        assertEquals("litert", r.settings().runtime);
        assertEquals(4, r.settings().threads);
        assertEquals(Arrays.asList("executorch", "onnxruntime", "litert"), BenchmarkRequest.RUNTIMES);
        extras.put("runtime", "tflite");
        try {
            BenchmarkRequest.parse(extras, new File("/r.json"), null);
            fail("runtime tflite accepted");
        } catch (IllegalArgumentException e) {
            assertEquals("unknown runtime 'tflite': use executorch, onnxruntime or litert", e.getMessage());
        }
    }

    @Test
    public void selectionFindsLiteRtArtifactsAndReadsTheirDeclaredTensors() throws Exception {
        Bundle b = write(manifestWithLiteRt());
        assertEquals("litert", Bundle.runtimeForTarget("litert"));
        assertEquals("onnxruntime", Bundle.runtimeForTarget("onnx"));
        List<Bundle.Artifact> lite = b.artifactsFor("litert");
        assertEquals(4, lite.size());
        for (Bundle.Artifact a : lite) {
            assertTrue(a.path, a.path.startsWith("litert-") && a.path.endsWith(".tflite"));
            assertTrue(Bundle.runsOn("litert", a));
            assertFalse(Bundle.runsOn("executorch", a));
        }
        assertEquals(3, b.artifactsFor("reference").size());
        for (Bundle.Artifact a : b.artifactsFor("reference")) assertFalse(Bundle.runsOn("litert", a));

        Bundle.Artifact image = b.select("litert", "image", null);
        assertEquals("litert-fp32/image_encoder.tflite", image.path);
        assertEquals(new File(b.dir(), "litert-fp32/image_encoder.tflite"), image.file);
        assertEquals("image", image.inputs.get(0).name);
        assertTrue(Arrays.equals(new int[] {1, 3, 32, 32}, image.inputs.get(0).shape));
        assertEquals("litert-int8/text_encoder.tflite", b.select("litert", "text", "int8").path);
        assertEquals("reference-fp32/text_encoder.npy", b.select("reference", "text", null).path);

        LiteRtSpec img = LiteRtSpec.check(b, image);
        assertEquals("image", img.inputName);
        assertEquals("float32", img.inputDtype);
        assertEquals(3 * 32 * 32, img.inputElements());
        assertEquals(16, img.embeddingDim);
        assertSame(b, image.bundle());
        assertEquals(16, LiteRtSpec.check(image).embeddingDim);     // what LiteRtRuntime.load calls
        LiteRtSpec txt = LiteRtSpec.check(b, b.select("litert", "text", null));
        assertEquals("text", txt.inputName);
        assertEquals("int32", txt.inputDtype);
        assertEquals(77, txt.inputElements());
        // the loaded model's tensors against the manifest (what LiteRtRuntime compares after loading)
        assertNull(img.inputMismatch("FLOAT", new int[] {1, 3, 32, 32}));
        assertNull(txt.inputMismatch("INT", new int[] {1, 77}));
        assertNull(img.outputMismatch("FLOAT", new int[] {1, 16}));
        String m = img.inputMismatch("FLOAT", new int[] {1, 3, 224, 224});
        assertTrue(m, m.contains("has shape [1, 3, 224, 224], the manifest says [1, 3, 32, 32]"));
        m = txt.inputMismatch("INT64", new int[] {1, 77});
        assertTrue(m, m.contains("'text' is INT64, the manifest says int32"));
        assertTrue(img.outputMismatch("FLOAT", new int[] {1, 512}).contains("output 'embedding' has shape [1, 512]"));
    }

    @Test
    public void missingLiteRtArtifactsOrPrecisionsAreOneLineErrors() throws Exception {
        Bundle none = write(goldenManifest());
        assertTrue(none.artifactsFor("litert").isEmpty());
        expectSelectError(none, "image", null, "no image encoder for runtime litert: export one with clip-export --target litert");
        Bundle b = write(manifestWithLiteRt());
        expectSelectError(b, "text", "fp16", "no fp16 text encoder for runtime litert (it has fp32, int8)");
    }

    @Test
    public void benchmarkListsLiteRtArtifactsUnderTheirRuntime() throws Exception {
        Bundle b = write(manifestWithLiteRt());
        List<Map<String, Object>> recs = Benchmark.runAll(b, Collections.<EncoderRuntime>singletonList(new ReferenceRuntime()),
                new BenchmarkSettings("litert", 3, 0, 0, 0.0, 1), new MemoryProbe.JvmHeap(), null);
        assertEquals(7, recs.size());
        int lite = 0;
        for (Map<String, Object> r : recs) {
            assertEquals("skipped", r.get("status"));
            if ("litert".equals(r.get("target"))) {
                lite++;
                assertEquals(r.get("artifact") + "@litert", r.get("id"));
                assertEquals("litert", r.get("runtime"));
                assertEquals("no runtime for this artifact in this app", r.get("reason"));
            } else {
                assertEquals("runtime not requested (runtime litert)", r.get("reason"));
            }
        }
        assertEquals(4, lite);
    }

    /** A broken manifest entry for litert-fp32/image_encoder.tflite (or text), and what the error must say. */
    private static final class Broken {
        final String encoder, expected;
        final Map<String, Object> entry;

        Broken(String encoder, String expected, Map<String, Object> entry) {
            this.encoder = encoder;
            this.expected = expected;
            this.entry = entry;
        }
    }

    @SuppressWarnings("unchecked")
    private static List<Object> io(Map<String, Object> a, String key) {
        return (List<Object>) a.get(key);
    }

    @Test
    public void brokenLiteRtManifestsAreRejectedWithTheProblemAndTheFix() throws Exception {
        List<Broken> cases = new ArrayList<>();
        Map<String, Object> a;

        a = litert("fp32", "image", true);
        io(a, "inputs").set(0, tensor("pixels", "float32", 1L, 3L, 32L, 32L));
        cases.add(new Broken("image", "input is named 'pixels', expected 'image'", a));

        a = litert("fp32", "image", true);
        io(a, "inputs").set(0, tensor("image", "float16", 1L, 3L, 32L, 32L));
        cases.add(new Broken("image", "input 'image' is float16, expected float32", a));

        a = litert("fp32", "image", true);
        io(a, "inputs").set(0, tensor("image", "float32", "batch", 3L, 32L, 32L));
        cases.add(new Broken("image", "input 'image' has a dynamic shape [?, 3, 32, 32]", a));

        a = litert("fp32", "image", true);
        io(a, "inputs").set(0, tensor("image", "float32", 1L, 3L, 256L, 256L));
        cases.add(new Broken("image", "input 'image' has shape [1, 3, 256, 256], expected [1, 3, 32, 32]", a));

        a = litert("fp32", "image", true);
        io(a, "inputs").add(tensor("mask", "float32", 1L, 32L));
        cases.add(new Broken("image", "declares 2 inputs", a));

        a = litert("fp32", "image", true);
        a.remove("inputs");
        cases.add(new Broken("image", "declares 0 inputs [], expected one ('image')", a));

        a = litert("fp32", "text", true);
        io(a, "inputs").set(0, tensor("text", "int64", 1L, 77L));
        cases.add(new Broken("text", "input 'text' is int64, expected int32", a));

        a = litert("fp32", "text", true);
        io(a, "outputs").set(0, tensor("text_embeds", "float32", 1L, 16L));
        cases.add(new Broken("text", "output is named 'text_embeds', expected 'embedding'", a));

        a = litert("fp32", "image", true);
        io(a, "outputs").set(0, tensor("embedding", "float32", 1L, 512L));
        cases.add(new Broken("image", "output 'embedding' has shape [1, 512], expected [1, 16]", a));

        a = litert("fp32", "image", true);
        io(a, "outputs").set(0, tensor("embedding", "float32", null, 16L));
        cases.add(new Broken("image", "output 'embedding' has a dynamic shape [?, 16]", a));

        a = litert("fp32", "image", true);
        a.put("path", "tflite/image_encoder.tflite");
        cases.add(new Broken("image", "a fp32 LiteRT artifact belongs in litert-fp32/", a));

        for (Broken c : cases) {
            Map<String, Object> m = goldenManifest();
            artifacts(m).add(c.entry);
            Bundle b = write(m);          // the bundle still opens: only runtime=litert's selection rejects it
            assertEquals(4, b.artifacts().size());
            String msg = expectSelectError(b, c.encoder, null, c.expected);
            assertTrue(msg, msg.startsWith(c.entry.get("path") + ": "));
            assertTrue(msg, msg.endsWith("re-export it with clip-export --target litert")
                    || msg.contains("re-export it with clip-export --target litert "));
            // the runner's check on load (the artifact alone) gives the same line
            for (Bundle.Artifact x : b.artifacts()) {
                if (!x.path.equals(c.entry.get("path"))) continue;
                try {
                    LiteRtSpec.check(x);
                    fail("LiteRtSpec.check(artifact) passed " + x);
                } catch (Bundle.BundleException e) {
                    assertEquals(msg, e.getMessage());
                }
            }
        }
    }

    /** A LiteRT zero-shot classifier (issue 23): input image, signature output "logits" [1, N labels]. */
    @Test
    public void aLiteRtClassifierDeclaresLogitsOverTheLabels() throws Exception {
        Map<String, Object> m = goldenManifest();
        Map<String, Object> a = litert("fp32", "classifier", true);
        a.put("path", "litert-fp32/classifier.tflite");
        a.put("files", new ArrayList<Object>(Arrays.asList("litert-fp32/classifier.tflite", "classifier/class_embeddings.npy")));
        io(a, "inputs").set(0, tensor("image", "float32", 1L, 3L, 32L, 32L));
        io(a, "outputs").set(0, tensor("logits", "float32", 1L, 5L));
        artifacts(m).add(a);
        Bundle b = write(m);
        Bundle.Artifact c = b.select("litert", "classifier", null);
        assertEquals("litert-fp32/classifier.tflite", c.path);
        LiteRtSpec spec = LiteRtSpec.check(c);
        assertEquals("image", spec.inputName);
        assertEquals(LiteRtSpec.LOGITS, spec.outputName);
        assertEquals(5, spec.outputDim);
        assertEquals(16, spec.embeddingDim);
        assertEquals(Arrays.asList(1, 5), spec.outputShape());
        assertNull(spec.outputMismatch("FLOAT", new int[] {1, 5}));
        assertTrue(spec.outputMismatch("FLOAT", new int[] {1, 16}).contains("output 'logits' has shape [1, 16]"));
        // an embedding output where the logits belong, and the wrong number of classes
        io(a, "outputs").set(0, tensor("embedding", "float32", 1L, 5L));
        expectSelectError(write(m), "classifier", null, "output is named 'embedding', expected 'logits'");
        io(a, "outputs").set(0, tensor("logits", "float32", 1L, 4L));
        try {
            write(m);
            fail("a classifier output of 4 classes for 5 labels opened");
        } catch (Bundle.BundleException e) {
            assertEquals(Bundle.BundleException.Kind.SCHEMA, e.kind());
            assertTrue(e.getMessage(), e.getMessage().contains("output 'logits' has 4 classes, the classifier has 5 labels"));
        }
    }

    @Test
    public void aTfliteOutsideTheLiteRtTargetIsNotSelected() throws Exception {
        Map<String, Object> m = goldenManifest();
        Map<String, Object> a = litert("fp32", "image", true);
        a.put("path", "litert-fp32/image_encoder.bin");
        artifacts(m).add(a);
        Bundle b = write(m);
        assertTrue(b.artifactsFor("litert").isEmpty());
        expectSelectError(b, "image", null, "no image encoder for runtime litert");
        try {
            LiteRtSpec.check(b, b.artifacts().get(3));
            fail("a .bin passed the LiteRT check");
        } catch (Bundle.BundleException e) {
            assertEquals("litert-fp32/image_encoder.bin: a litert artifact must be a .tflite file: "
                    + "re-export it with clip-export --target litert", e.getMessage());
        }
    }

    private static String expectSelectError(Bundle b, String encoder, String precision, String expected) {
        try {
            Bundle.Artifact a = b.select("litert", encoder, precision);
            throw new AssertionError("selected " + a + " (expected: " + expected + ")");
        } catch (Bundle.BundleException e) {
            String msg = e.getMessage();
            assertTrue(msg, msg.contains(expected));
            assertFalse(msg, msg.contains("\n"));
            return msg;
        }
    }

    @Test
    public void xnnpackThreadOptions() {
        XnnpackThreads d = XnnpackThreads.resolve(0);
        assertNull("0 leaves XNNPACK's option unset", d.option);
        assertEquals(1, d.effective);
        assertEquals(0, d.expectedNewThreads());
        Map<String, Object> m = d.toMap();
        assertEquals(1L, m.get("threads"));
        assertEquals(0L, m.get("requested_threads"));
        assertTrue(m.containsKey("xnnpack_num_threads"));
        assertNull(m.get("xnnpack_num_threads"));

        XnnpackThreads four = XnnpackThreads.resolve(4);
        assertEquals(Integer.valueOf(4), four.option);
        assertEquals(4, four.effective);
        assertEquals(3, four.expectedNewThreads());
        assertEquals(4L, four.toMap().get("xnnpack_num_threads"));
        assertTrue(four.toMap().get("xnnpack_threads_source").toString().contains("numThreads = 4"));

        XnnpackThreads one = XnnpackThreads.resolve(1);
        assertEquals(Integer.valueOf(1), one.option);
        assertEquals(0, one.expectedNewThreads());
        assertEquals(64, XnnpackThreads.resolve(XnnpackThreads.MAX_THREADS).effective);

        for (int bad : new int[] {-1, XnnpackThreads.MAX_THREADS + 1}) {
            try {
                XnnpackThreads.resolve(bad);
                fail("threads " + bad + " accepted");
            } catch (IllegalArgumentException e) {
                assertTrue(e.getMessage(), e.getMessage().contains(bad < 0 ? "threads must be 0 (the runtime's default) or more, got -1"
                        : "threads 65 is more than 64"));
            }
        }
    }

    @Test
    public void threadCensusAndVerification() throws Exception {
        File tasks = tmp.newFolder("task");
        for (String t : new String[] {"101", "102", "7"}) assertTrue(new File(tasks, t).mkdir());
        assertTrue(new File(tasks, "ignored").mkdir());
        assertEquals(3, XnnpackThreads.liveThreads(tasks));
        assertEquals(-1, XnnpackThreads.liveThreads(new File(tasks, "no-such-dir")));
        if (XnnpackThreads.PROC_TASKS.isDirectory()) {          // Linux (and Android): this JVM has several threads
            assertTrue(XnnpackThreads.liveThreads(XnnpackThreads.PROC_TASKS) >= 2);
        }

        XnnpackThreads four = XnnpackThreads.resolve(4);
        Map<String, Object> ok = four.verify(10, 13);
        assertEquals(3L, ok.get("new_threads"));
        assertEquals(3L, ok.get("expected_new_threads"));
        assertEquals(Boolean.TRUE, ok.get("threads_applied"));
        assertEquals(Boolean.TRUE, four.verify(10, 15).get("threads_applied"));     // other threads may start too
        assertEquals(Boolean.FALSE, four.verify(10, 11).get("threads_applied"));    // the pool did not start
        Map<String, Object> unknown = four.verify(-1, 12);
        assertNull(unknown.get("threads_applied"));
        assertNull(unknown.get("new_threads"));
        assertEquals(Boolean.TRUE, XnnpackThreads.resolve(0).verify(10, 10).get("threads_applied"));
    }

    /** The record's runtime_options are read again after the cold load, so a runtime can report what it applied. */
    @Test
    public void runtimeOptionsAreRecordedAfterTheLoad() throws Exception {
        final ReferenceRuntime ref = new ReferenceRuntime();
        final Map<String, Object> applied = new LinkedHashMap<>();
        EncoderRuntime rt = new EncoderRuntime() {
            @Override public String name() { return "reference"; }
            @Override public boolean supports(Bundle.Artifact a) { return ref.supports(a); }
            @Override public void configure(int threads) { ref.configure(threads); }
            @Override public Map<String, Object> versions() { return ref.versions(); }
            @Override public Map<String, Object> options() {
                Map<String, Object> m = new LinkedHashMap<>(ref.options());
                m.putAll(applied);
                return m;
            }
            @Override public EncoderSession load(Bundle.Artifact a) throws Exception {
                applied.put("load_applied", Boolean.TRUE);
                return ref.load(a);
            }
        };
        Bundle b = Bundle.open(Goldens.file("bundle"));
        Map<String, Object> r = Benchmark.measure(b, b.artifacts().get(0), rt, new BenchmarkSettings("reference", 3, 0, 0, 0.0, 1),
                new MemoryProbe.JvmHeap(), null);
        assertEquals(r.get("reason") + "", "ok", r.get("status"));
        assertSame(Boolean.TRUE, Json.map(r.get("runtime_options")).get("load_applied"));
    }
}
