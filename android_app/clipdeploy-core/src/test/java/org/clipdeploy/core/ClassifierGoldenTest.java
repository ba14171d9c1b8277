package org.clipdeploy.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertSame;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import org.clipdeploy.core.Bundle.BundleException.Kind;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

/**
 * Issue 23: the golden bundle's zero-shot classifier (goldens/classifier.json). The class matrix and labels read
 * through the verified path, the logits / probabilities / top-1 of the probe's image embeddings, the class matrix
 * derived the way an app does when the user edits labels (prompts through the bundle's tokenizer and reference text
 * encoder, then ZeroShot.ensemble), the reference classifier artifact on the probe images, and the refusals.
 */
public class ClassifierGoldenTest {
    @Rule
    public TemporaryFolder tmp = new TemporaryFolder();

    static final String MATRIX = "classifier/class_embeddings.npy";
    static final String LABELS = "classifier/labels.json";

    private static Map<String, Object> golden() throws Exception {
        return Goldens.json("classifier.json");
    }

    private static List<String> strings(Object o) {
        List<String> out = new ArrayList<>();
        for (Object x : Json.list(o)) out.add(Json.str(x));
        return out;
    }

    private static double tol(Map<String, Object> g, String key) {
        return Json.num(Json.map(g.get("tolerance")).get(key));
    }

    private static void assertClose(String what, float[] want, float[] got, double tol) {
        assertEquals(what + ": length", want.length, got.length);
        for (int k = 0; k < want.length; k++) {
            assertTrue(what + "[" + k + "]: want " + want[k] + ", got " + got[k], Math.abs(want[k] - got[k]) <= tol);
        }
    }

    private static Bundle.Artifact artifact(Bundle b, String encoder) {
        for (Bundle.Artifact a : b.artifacts()) if (a.encoder.equals(encoder)) return a;
        throw new AssertionError("no " + encoder + " artifact");
    }

    @Test
    public void classMatrixLabelsAndProbeLogitsEqualTheGoldens() throws Exception {
        Map<String, Object> g = golden();
        Bundle b = Bundle.open(Goldens.file("bundle"));
        assertTrue(b.hasClassifier());
        Classifier c = b.classifier();
        assertSame(c, b.classifier());                                  // read once
        assertEquals(strings(g.get("labels")), c.labels);
        assertEquals("crème brûlée", c.labels.get(4));                 // non-ASCII, through JSON and the manifest
        assertEquals(strings(g.get("templates")), c.templates);
        assertEquals("file", c.templateSource);
        assertEquals(Json.num(g.get("logit_scale")), c.logitScale, 0);
        assertEquals(16, c.embeddingDim);
        assertEquals(5, c.size());
        assertEquals(MATRIX, c.classEmbeddingsPath);
        assertEquals(LABELS, c.labelsFile);
        float[][] want = Json.floatRows(g.get("class_embeddings"));
        for (int k = 0; k < want.length; k++) {
            assertClose("class " + k, want[k], c.classEmbedding(k), tol(g, "class_embeddings"));
            assertEquals(1.0, Vectors.norm(c.classEmbedding(k)), 1e-6);
        }
        List<Object> prompts = Json.list(g.get("prompts"));
        for (int k = 0; k < c.size(); k++) {
            assertEquals(strings(prompts.get(k)), ZeroShot.prompts(c.labels.get(k), c.templates));
        }
        // the probe's image embeddings through the class matrix: logits, probabilities, top-1
        Bundle.Probe p = b.probe();
        float[][] logits = Json.floatRows(g.get("probe_logits"));
        float[][] probs = Json.floatRows(g.get("probe_probabilities"));
        int[] top1 = Json.ints(g.get("probe_top1"));
        assertEquals(p.refImage.length, logits.length);
        for (int k = 0; k < p.refImage.length; k++) {
            float[] z = c.logits(p.refImage[k]);
            assertClose("logits " + k, logits[k], z, tol(g, "logits"));
            float[] pr = c.probabilities(p.refImage[k]);
            assertClose("probabilities " + k, probs[k], pr, tol(g, "probabilities"));
            assertClose("softmax(logits) " + k, probs[k], ZeroShot.softmax(z), tol(g, "probabilities"));
            assertEquals("top-1 of image " + k, top1[k], ZeroShot.topK(pr, 1)[0]);
            assertEquals("top-1 of image " + k, top1[k], Vectors.argmax(z));
            assertArrayEquals(z, ZeroShot.logits(p.refImage[k], c.classEmbeddings(), c.logitScale), 0f);
        }
    }

    @Test
    public void labelEditingDerivesTheClassMatrixWithTheTextEncoder() throws Exception {
        Bundle b = Bundle.open(Goldens.file("bundle"));
        Classifier c = b.classifier();
        ClipTokenizer tok = ClipTokenizer.fromBundle(b);
        Bundle.Artifact text = b.select("reference", "text", null);
        try (EncoderSession s = new ReferenceRuntime().load(text)) {
            // what an app does when the user edits labels: prompts -> tokenizer -> text encoder -> ensemble
            List<float[]> derived = new TextEncoder(s, tok, text).classEmbeddings(c.labels, c.templates);
            assertEquals(c.size(), derived.size());
            for (int k = 0; k < c.size(); k++) assertClose("class " + k + " (" + c.labels.get(k) + ")", c.classEmbedding(k), derived.get(k), 1e-5);
            // the same at the context length of 77 (what the Python export tokenizes to)
            for (int k = 0; k < c.size(); k++) {
                List<float[]> e = new ArrayList<>();
                for (String prompt : ZeroShot.prompts(c.labels.get(k), c.templates)) e.add(s.encodeText(tok.tokenize(prompt)));
                assertClose("class " + k + " at 77", c.classEmbedding(k), ZeroShot.ensemble(e), 1e-5);
            }
        }
    }

    @Test
    public void theReferenceClassifierArtifactGivesTheProbeLogits() throws Exception {
        Map<String, Object> g = golden();
        Bundle b = Bundle.open(Goldens.file("bundle"));
        Bundle.Artifact a = b.select("reference", "classifier", null);
        assertEquals("reference-fp32/classifier.npy", a.path);
        assertEquals(Arrays.asList("reference-fp32/classifier.npy", MATRIX), a.files());
        assertEquals("logits", a.outputs.get(0).name);
        assertArrayEquals(new int[] {1, 5}, a.outputs.get(0).shape);
        assertEquals(ShapeDescriptor.fixed(1), a.shapes.batch);
        float[][] logits = Json.floatRows(g.get("probe_logits"));
        float[][] probs = Json.floatRows(g.get("probe_probabilities"));
        int[] top1 = Json.ints(g.get("probe_top1"));
        Bundle.Probe p = b.probe();
        try (EncoderSession s = new ReferenceRuntime().load(a)) {
            for (int k = 0; k < p.images.length; k++) {
                float[] z = s.encodeImage(p.images[k], p.imageSize);
                assertClose("artifact logits " + k, logits[k], z, tol(g, "logits"));
                assertClose("artifact probabilities " + k, probs[k], ZeroShot.softmax(z), tol(g, "probabilities"));
                assertEquals("top-1 of image " + k, top1[k], Vectors.argmax(z));
            }
            try {
                s.encodeText(p.tokenIds[0]);
                fail("a classifier took token ids");
            } catch (IllegalStateException expected) {
                // an image model
            }
        }
        // the figures the benchmark reports for it: the schema's keys, zero-shot = top-1 agreement
        float[][] got = new float[p.images.length][];
        try (EncoderSession s = new ReferenceRuntime().load(a)) {
            for (int k = 0; k < got.length; k++) got[k] = s.encodeImage(p.images[k], p.imageSize);
        }
        Parity.LogitFigures f = Parity.measureLogits(p.refImage, b.classifier().classEmbeddings(), 100.0, got);
        assertEquals(1.0, f.top1Agreement(), 0);
        assertTrue(f.toString(), f.figures.maxAbs <= 1e-6 && f.figures.cosineMin > 0.999999);
        assertEquals(Collections.<String>emptyList(), Parity.failures(f, "fp32"));
        Map<String, Object> m = f.toMap();
        for (String k : new String[] {"max_abs", "cosine_min", "cosine_mean", "zero_shot_agreement", "n", "finite",
                                      "top1_agreement", "max_abs_cosine_units"}) {
            assertTrue(k, m.containsKey(k));
        }
        // a classifier one image in six wrong fails the top-1 bar; logits 1e-3 x scale off fail fp32's, not fp16's
        float[][] off = new float[got.length][];
        for (int k = 0; k < got.length; k++) off[k] = got[k].clone();
        for (int k = 0; k < 5; k++) off[0][k] = k == 1 ? 1000f : 0f;
        Parity.LogitFigures bad = Parity.measureLogits(p.refImage, b.classifier().classEmbeddings(), 100.0, off);
        assertTrue(Parity.failures(bad, "fp32").toString(), Parity.failures(bad, "int8").get(0).startsWith("top-1 agreement 83.3% < 99% (1 of 6 images)"));
        for (int k = 0; k < got.length; k++) off[k] = got[k].clone();
        off[2][0] += 0.1f;
        List<String> why = Parity.failures(Parity.measureLogits(p.refImage, b.classifier().classEmbeddings(), 100.0, off), "fp32");
        assertEquals(why.toString(), 1, why.size());
        assertTrue(why.get(0), why.get(0).startsWith("logits max abs 0.1 (0.001 x logit_scale) > 2e-05 x logit_scale"));
        assertTrue(Parity.failures(Parity.measureLogits(p.refImage, b.classifier().classEmbeddings(), 100.0, off), "fp16").isEmpty());
    }

    @Test
    public void aBundleWithoutAClassifierSaysSo() throws Exception {
        File dir = TestBundles.copyGolden(tmp.newFolder("none"));
        Map<String, Object> m = TestBundles.goldenManifest();
        m.remove("classifier");
        Json.list(m.get("artifacts")).remove(2);
        TestBundles.seal(dir, m);
        final Bundle b = Bundle.open(dir);
        assertFalse(b.hasClassifier());
        BundleIntegrityTest.expect(Kind.NO_ARTIFACT, "has no zero-shot classifier", b::classifier);
        BundleIntegrityTest.expect(Kind.NO_ARTIFACT, "no classifier encoder for runtime reference",
                () -> b.select("reference", "classifier", null));
    }

    // ------------------------------------------------------------------------------------------ refusals

    @Test
    public void aTamperedClassMatrixIsRefusedBeforeAnythingRuns() throws Exception {
        File dir = TestBundles.copyGolden(tmp.newFolder("tampered"));
        TestBundles.flipByte(new File(dir, MATRIX), -7);                 // same size: only the digest tells
        final Bundle b = Bundle.open(dir);
        BundleIntegrityTest.expect(Kind.INTEGRITY, MATRIX + " does not match the manifest (sha256", b::classifier);
        final Bundle.Artifact a = artifact(b, "classifier");
        BundleIntegrityTest.expect(Kind.INTEGRITY, MATRIX + " does not match", () -> new ReferenceRuntime().load(a));
        BundleIntegrityTest.expect(Kind.INTEGRITY, MATRIX + " does not match", () -> b.select("reference", "classifier", null));
        final List<String> phases = new ArrayList<>();
        BundleIntegrityTest.expect(Kind.INTEGRITY, MATRIX + " does not match", () -> Benchmark.runAll(b,
                Collections.<EncoderRuntime>singletonList(new ReferenceRuntime()), BundleIntegrityTest.settings("reference"),
                new MemoryProbe.JvmHeap(), (x, ph, d, t) -> phases.add(ph)));
        assertEquals("something was measured: " + phases, Collections.emptyList(), phases);
        // the image and text encoders do not need the class matrix: they still verify
        b.verify(artifact(b, "image"));
        b.verify(artifact(b, "text"));
    }

    @Test
    public void aLabelFileThatDisagreesWithTheManifestIsRefused() throws Exception {
        String[][] cases = {
            {"[\"tree\", \"cat\", \"frog\", \"red apple\", \"crème brûlée\"]", "SCHEMA", "disagrees with the manifest's classifier.labels at 0 ('tree'"},
            {"[\"cat\", \"tree\", \"frog\", \"red apple\"]", "SCHEMA", "at 4 (nothing, the manifest has 'crème brûlée'; 4 vs 5 labels)"},
            {"[\"cat\", \"tree\", \"frog\", \"red apple\", \"creme brulee\"]", "SCHEMA", "at 4 ('creme brulee'"},
            {"[\"cat\", \"tree\", \"frog\", \"red apple\", \"crème brûlée\", \"dog\"]", "SCHEMA", "6 vs 5 labels"},
            {"[\"cat\", \"tree\", \"frog\", \"red apple\", 5]", "SCHEMA", "at 4 (a number"},
            {"{\"labels\": []}", "SCHEMA", "classifier/labels.json must be a list of labels, got an object"},
            {"[\"cat\", ", "NOT_JSON", "classifier/labels.json is not JSON"},
        };
        for (String[] c : cases) {
            File dir = TestBundles.copyGolden(tmp.newFolder());
            Files.write(new File(dir, LABELS).toPath(), c[0].getBytes(StandardCharsets.UTF_8));
            TestBundles.seal(dir, TestBundles.goldenManifest());           // re-recorded: only the reader can tell
            final Bundle b = Bundle.open(dir);
            BundleIntegrityTest.expect(Kind.valueOf(c[1]), c[2], b::classifier);
            final List<String> phases = new ArrayList<>();
            BundleIntegrityTest.expect(Kind.valueOf(c[1]), c[2], () -> Benchmark.runAll(b,
                    Collections.<EncoderRuntime>singletonList(new ReferenceRuntime()), BundleIntegrityTest.settings("reference"),
                    new MemoryProbe.JvmHeap(), (x, ph, d, t) -> phases.add(ph)));
            assertEquals(Collections.emptyList(), phases);
        }
        // a label file changed after the export (not re-recorded): its digest
        File dir = TestBundles.copyGolden(tmp.newFolder("edited"));
        TestBundles.flipByte(new File(dir, LABELS), 3);
        final Bundle b = Bundle.open(dir);
        BundleIntegrityTest.expect(Kind.INTEGRITY, LABELS + " does not match the manifest", b::classifier);
    }

    /** A copy of the goldens' class matrix with {@code rows} rows and row 0's first value set to {@code first}. */
    private static byte[] matrix(int rows, Float first) throws Exception {
        byte[] orig = Files.readAllBytes(Goldens.file("bundle/" + MATRIX).toPath());
        int headerLen = (orig[8] & 0xff) | (orig[9] & 0xff) << 8, data = 10 + headerLen;
        String header = new String(orig, 10, headerLen, StandardCharsets.ISO_8859_1);
        assertTrue(header, header.contains("(5, 16)"));
        String h = header.replace("(5, 16)", "(" + rows + ", 16)");
        while (h.length() < headerLen) h = h.substring(0, h.length() - 1) + " \n";
        byte[] out = new byte[data + rows * 16 * 4];
        System.arraycopy(orig, 0, out, 0, 10);
        System.arraycopy(h.getBytes(StandardCharsets.ISO_8859_1), 0, out, 10, headerLen);
        System.arraycopy(orig, data, out, data, Math.min(rows, 5) * 64);
        if (first != null) ByteBuffer.wrap(out).order(ByteOrder.LITTLE_ENDIAN).putFloat(data, first);
        return out;
    }

    @Test
    public void aClassMatrixThatDoesNotFitTheLabelsIsRefused() throws Exception {
        // 4 rows for 5 labels: recorded, so the digest holds; the shape does not
        File dir = TestBundles.copyGolden(tmp.newFolder("rows"));
        Files.write(new File(dir, MATRIX).toPath(), matrix(4, null));
        TestBundles.seal(dir, TestBundles.goldenManifest());
        final Bundle b = Bundle.open(dir);
        BundleIntegrityTest.expect(Kind.ARRAY, "class matrix " + MATRIX + " is <f4 [4, 16], expected float32 [5, 16]", b::classifier);
        final List<String> phases = new ArrayList<>();
        BundleIntegrityTest.expect(Kind.ARRAY, "expected float32 [5, 16]", () -> Benchmark.runAll(b,
                Collections.<EncoderRuntime>singletonList(new ReferenceRuntime()), BundleIntegrityTest.settings("reference"),
                new MemoryProbe.JvmHeap(), (x, ph, d, t) -> phases.add(ph)));
        assertEquals(Collections.emptyList(), phases);
        // 4 labels in the manifest (and in labels.json and the artifact's output) for a matrix of 5 rows
        File dir2 = TestBundles.copyGolden(tmp.newFolder("labels"));
        Map<String, Object> m = TestBundles.goldenManifest();
        Json.list(Json.map(m.get("classifier")).get("labels")).remove(4);
        Json.list(Json.map(Json.list(Json.map(Json.list(m.get("artifacts")).get(2)).get("outputs")).get(0)).get("shape")).set(1, 4L);
        Files.write(new File(dir2, LABELS).toPath(), "[\"cat\", \"tree\", \"frog\", \"red apple\"]".getBytes(StandardCharsets.UTF_8));
        TestBundles.seal(dir2, m);
        final Bundle b2 = Bundle.open(dir2);
        BundleIntegrityTest.expect(Kind.ARRAY, "is <f4 [5, 16], expected float32 [4, 16] (one row per label", b2::classifier);
        // ... and the artifact's declared output against the labels, at open
        Json.list(Json.map(Json.list(Json.map(Json.list(m.get("artifacts")).get(2)).get("outputs")).get(0)).get("shape")).set(1, 5L);
        TestBundles.seal(dir2, m);
        final File d2 = dir2;
        BundleIntegrityTest.expect(Kind.SCHEMA, "artifacts[2] output 'logits' has 5 classes, the classifier has 4 labels",
                () -> Bundle.open(d2));
        // a row that is not a unit vector, and one that is not finite
        for (float v : new float[] {2f, Float.NaN}) {
            File dir3 = TestBundles.copyGolden(tmp.newFolder());
            Files.write(new File(dir3, MATRIX).toPath(), matrix(5, v));
            TestBundles.seal(dir3, TestBundles.goldenManifest());
            final Bundle b3 = Bundle.open(dir3);
            BundleIntegrityTest.expect(Kind.ARRAY, "row 0 ('cat') is not a unit vector", b3::classifier);
        }
        // a width that is not the model's
        File dir4 = TestBundles.copyGolden(tmp.newFolder("dim"));
        Map<String, Object> m4 = TestBundles.goldenManifest();
        Json.map(m4.get("classifier")).put("embedding_dim", 8L);
        TestBundles.seal(dir4, m4);
        BundleIntegrityTest.expect(Kind.SCHEMA, "'classifier.embedding_dim' is 8, the manifest's embedding_dim 16",
                () -> Bundle.open(dir4));
    }

    @Test
    public void aClassifierArtifactWithoutAClassifierBlockIsRefusedAtOpen() throws Exception {
        final File dir = TestBundles.copyGolden(tmp.newFolder("noblock"));
        Map<String, Object> m = TestBundles.goldenManifest();
        m.remove("classifier");
        TestBundles.seal(dir, m);
        BundleIntegrityTest.expect(Kind.SCHEMA, "manifest has no 'classifier' (labels, templates, class matrix), but "
                + "artifacts[2] is a classifier", () -> Bundle.open(dir));
    }

    @Test
    public void aMalformedClassifierBlockIsRefusedWithTheKey() throws Exception {
        Object[][] cases = {
            {"labels", "cat", Kind.SCHEMA, "'classifier.labels' must be a list of 1 to 100000 labels, got the string 'cat'"},
            {"labels", new ArrayList<Object>(), Kind.SCHEMA, "'classifier.labels' must be a list of 1 to 100000 labels"},
            {"labels", new ArrayList<Object>(Arrays.asList("cat", "tree", "cat", "red apple", "crème brûlée")), Kind.SCHEMA,
             "'classifier.labels[2]' repeats the label 'cat': each label once"},
            {"labels", new ArrayList<Object>(Arrays.asList("cat", "", "frog", "red apple", "crème brûlée")), Kind.SCHEMA,
             "'classifier.labels[1]' must be a string of 1 to 1000 characters"},
            {"labels", new ArrayList<Object>(Arrays.asList("cat", 2L, "frog", "red apple", "crème brûlée")), Kind.SCHEMA,
             "'classifier.labels[1]' must be a string of 1 to 1000 characters, got a number 2"},
            {"labels", null, Kind.SCHEMA, "'classifier.labels' must be a list"},
            {"templates", new ArrayList<Object>(), Kind.SCHEMA, "'classifier.templates' must be a list of 1 to 1000 templates"},
            {"templates", new ArrayList<Object>(Arrays.asList("a photo of a {}.", true)), Kind.SCHEMA,
             "'classifier.templates[1]' must be a string of 2 to 1000 characters, got a boolean true"},
            {"logit_scale", "100", Kind.SCHEMA, "'classifier.logit_scale' must be a number in 0 .. 1000, got the string '100'"},
            {"logit_scale", 1e4, Kind.SCHEMA, "'classifier.logit_scale' must be a number in 0 .. 1000"},
            {"embedding_dim", 0L, Kind.SCHEMA, "'classifier.embedding_dim' must be an integer in 1 .. 65536"},
            {"class_embeddings", 5L, Kind.SCHEMA, "'classifier.class_embeddings' must be a string of 1 to 1024 characters"},
            {"class_embeddings", "../class_embeddings.npy", Kind.UNSAFE_PATH, "'../class_embeddings.npy' contains '..'"},
            {"class_embeddings", "classifier/other.npy", Kind.INTEGRITY, "'classifier/other.npy' is named by the manifest but has no integrity record"},
            {"labels_file", "/etc/passwd", Kind.UNSAFE_PATH, "'/etc/passwd' is absolute"},
            {"template_source", 3L, Kind.SCHEMA, "'classifier.template_source' must be a string"},
        };
        for (Object[] c : cases) {
            final File dir = TestBundles.copyGolden(tmp.newFolder());
            Map<String, Object> m = TestBundles.goldenManifest();
            Json.map(m.get("classifier")).put((String) c[0], c[1]);
            TestBundles.writeManifest(dir, m);                               // the files' record is the goldens'
            BundleIntegrityTest.expect((Kind) c[2], (String) c[3], () -> Bundle.open(dir));
        }
        for (String required : new String[] {"labels", "templates", "logit_scale", "class_embeddings"}) {
            final File dir = TestBundles.copyGolden(tmp.newFolder());
            Map<String, Object> m = TestBundles.goldenManifest();
            Json.map(m.get("classifier")).remove(required);
            TestBundles.writeManifest(dir, m);
            BundleIntegrityTest.expect(Kind.SCHEMA, "manifest has no 'classifier." + required + "'", () -> Bundle.open(dir));
        }
        final File dir = TestBundles.copyGolden(tmp.newFolder());
        Map<String, Object> m = TestBundles.goldenManifest();
        m.put("classifier", new ArrayList<Object>());
        TestBundles.writeManifest(dir, m);
        BundleIntegrityTest.expect(Kind.SCHEMA, "manifest key 'classifier' must be an object, got an array", () -> Bundle.open(dir));
    }
}
