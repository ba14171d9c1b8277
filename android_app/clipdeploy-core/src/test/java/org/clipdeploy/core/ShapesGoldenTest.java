package org.clipdeploy.core;

import static org.junit.Assert.assertArrayEquals;
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
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.BeforeClass;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

/**
 * The manifest's {@code shapes}, shortest-length tokenization and batched indexing, against
 * {@code goldens/token_lengths.json} (written by the Python implementation) and the goldens' bundle.
 * The Swift twin is ShapesGoldenTests.swift.
 */
public class ShapesGoldenTest {
    @Rule
    public TemporaryFolder tmp = new TemporaryFolder();

    static ClipTokenizer tok;
    static Map<String, Object> g;
    static Map<String, ShapeDescriptor> descs = new LinkedHashMap<>();

    @BeforeClass
    public static void load() throws Exception {
        File t = Goldens.file("bundle/tokenizer");
        tok = ClipTokenizer.fromFiles(new File(t, "vocab.json"), new File(t, "merges.txt"));
        g = Goldens.json("token_lengths.json");
        for (Object o : Json.list(g.get("descriptors"))) {
            Map<String, Object> d = Json.map(o);
            descs.put(Json.str(d.get("name")), ShapeDescriptor.parse(d.get("descriptor"), Json.str(d.get("name"))));
        }
    }

    @Test
    public void everyCaptionAndDescriptorGivesThePythonLengthAndIds() {
        assertEquals(8, descs.size());
        List<Object> cases = Json.list(g.get("cases"));
        assertTrue(cases.size() >= 12);
        StringBuilder failures = new StringBuilder();
        int checked = 0;
        for (Object o : cases) {
            Map<String, Object> c = Json.map(o);
            String text = Json.str(c.get("text")), name = Json.str(c.get("name"));
            assertEquals(name, (int) Json.num(c.get("tokens")), tok.tokenCount(text));
            Map<String, Object> lengths = Json.map(c.get("lengths")), ids = Json.map(c.get("ids"));
            for (Map.Entry<String, ShapeDescriptor> d : descs.entrySet()) {
                int want = (int) Json.num(lengths.get(d.getKey()));
                int[] wantIds = Json.ints(ids.get(d.getKey()));
                int[] got = tok.tokenizeShortest(text, d.getValue());
                assertEquals(name + " " + d.getKey(), want, tok.shortestLength(text, d.getValue()));
                assertTrue(d.getValue().accepts(got.length));
                if (!Arrays.equals(wantIds, got)) {
                    failures.append("\n").append(name).append(" @ ").append(d.getKey()).append(": want ")
                            .append(Arrays.toString(wantIds)).append("\n   got ").append(Arrays.toString(got));
                }
                checked++;
            }
        }
        assertEquals("differ from Python:" + failures, "", failures.toString());
        assertEquals(cases.size() * 8, checked);
    }

    @Test
    public void batchesShareOneLength() {
        for (Object o : Json.list(g.get("batches"))) {
            Map<String, Object> b = Json.map(o);
            Map<String, String> texts = captionTexts();
            List<String> t = new ArrayList<>();
            for (Object n : Json.list(b.get("captions"))) t.add(texts.get(Json.str(n)));
            int[][] got = tok.tokenizeShortest(t, descs.get(Json.str(b.get("descriptor"))));
            List<Object> want = Json.list(b.get("ids"));
            assertEquals(want.size(), got.length);
            for (int k = 0; k < got.length; k++) {
                assertEquals((int) Json.num(b.get("length")), got[k].length);
                assertArrayEquals(b.get("descriptor") + " row " + k, Json.ints(want.get(k)), got[k]);
            }
        }
    }

    static Map<String, String> captionTexts() {
        Map<String, String> out = new LinkedHashMap<>();
        for (Object o : Json.list(g.get("cases"))) out.put(Json.str(Json.map(o).get("name")), Json.str(Json.map(o).get("text")));
        return out;
    }

    @Test
    public void edgeCases() {
        // 77+ tokens: truncated at 77 (EOT last) for every descriptor that reaches 77, at its largest otherwise
        StringBuilder sb = new StringBuilder();
        for (int k = 0; k < 200; k++) sb.append("dog ");
        String longText = sb.toString();
        assertEquals(77, tok.tokenCount(longText));
        int[] at77 = tok.tokenizeShortest(longText, ShapeDescriptor.enumerated(8, 16, 32, 77));
        assertArrayEquals(tok.tokenize(longText), at77);
        int[] at16 = tok.tokenizeShortest(longText, ShapeDescriptor.enumerated(8, 16));
        assertEquals(16, at16.length);
        assertEquals(ClipTokenizer.EOT, at16[15]);
        assertArrayEquals(Arrays.copyOf(at77, 15), Arrays.copyOf(at16, 15));
        assertEquals(77, tok.tokenizeShortest(longText, ShapeDescriptor.dynamic(1, ShapeDescriptor.UNBOUNDED)).length);
        // enumerated where the count exceeds the largest: the largest, EOT last
        int[] cut = tok.tokenizeShortest("a photo of a big red dog", ShapeDescriptor.enumerated(4, 8));   // 9 tokens
        assertArrayEquals(new int[] {ClipTokenizer.SOT, 320, 1125, 539, 320, 1205, 736, ClipTokenizer.EOT}, cut);
        // dynamic with min: padded up to min
        int[] padded = tok.tokenizeShortest("", ShapeDescriptor.dynamic(12, 77));
        assertEquals(12, padded.length);
        assertArrayEquals(new int[] {ClipTokenizer.SOT, ClipTokenizer.EOT, 0}, Arrays.copyOf(padded, 3));
        // short text: exactly SOT..EOT, a prefix of the 77 ids
        int[] d = tok.tokenizeShortest("a photo of a dog", ShapeDescriptor.dynamic(1, 77));
        assertEquals(7, d.length);
        assertArrayEquals(Arrays.copyOf(tok.tokenize("a photo of a dog"), 7), d);
        assertArrayEquals(tok.tokenize("a photo of a dog"), tok.tokenize("a photo of a dog", 77));
        assertArrayEquals(new int[] {ClipTokenizer.EOT}, tok.tokenize("a dog", 1));
    }

    @Test
    public void malformedDescriptorsAreRejectedWithThePythonPhrase() {
        List<Object> bad = Json.list(g.get("malformed"));
        assertTrue(bad.size() >= 12);
        for (Object o : bad) {
            Map<String, Object> m = Json.map(o);
            try {
                ShapeDescriptor.parse(m.get("descriptor"), "length");
                fail("accepted " + Json.write(m.get("descriptor"), false));
            } catch (ShapeDescriptor.ShapeException e) {
                assertTrue(e.getMessage(), e.getMessage().startsWith("length: "));
                assertTrue(e.getMessage() + " lacks " + m.get("error"), e.getMessage().contains(Json.str(m.get("error"))));
            }
        }
    }

    @Test
    public void descriptorsRoundTripAndAnswer() {
        for (Object o : Json.list(g.get("descriptors"))) {
            Map<String, Object> d = Json.map(o);
            assertEquals(d.get("descriptor"), descs.get(Json.str(d.get("name"))).toJson());
        }
        ShapeDescriptor e = descs.get("enumerated_coreml");
        assertTrue(e.accepts(16) && !e.accepts(17) && e.largest() == 77 && !e.isDynamic());
        ShapeDescriptor u = descs.get("dynamic_unbounded");
        assertTrue(u.accepts(1) && u.accepts(100000) && u.largest() == ShapeDescriptor.UNBOUNDED);
        assertEquals("dynamic 1..", u.toString());
        assertEquals("non-causal text tower: the padding after EOT changes the embedding",
                descs.get("fixed_77_non_causal").reason);
    }

    // --------------------------------------------------------------------------------------- the bundle reader

    @Test
    public void goldenBundleDeclaresShapes() throws Exception {
        Bundle b = Bundle.open(Goldens.file("bundle"));
        Bundle.Artifact image = b.artifacts().get(0), text = b.artifacts().get(1);
        assertTrue(image.shapes.declared && text.shapes.declared);
        assertEquals(ShapeDescriptor.enumerated(1, 4, 8), image.shapes.batch);
        assertNull(image.shapes.length);
        assertEquals(ShapeDescriptor.fixed(1), text.shapes.batch);
        assertEquals(ShapeDescriptor.dynamic(1, 77), text.shapes.length);
    }

    private File manifestWith(String name, Object imageShapes, Object textShapes, boolean remove) throws Exception {
        File dir = TestBundles.copyGolden(tmp.newFolder(name));     // the golden files: their integrity record holds
        Map<String, Object> m = TestBundles.goldenManifest();
        List<Object> arts = Json.list(m.get("artifacts"));
        if (remove) {
            for (Object a : arts) Json.map(a).remove("shapes");
        } else {
            if (imageShapes != null) Json.map(arts.get(0)).put("shapes", imageShapes);
            if (textShapes != null) Json.map(arts.get(1)).put("shapes", textShapes);
        }
        Files.write(new File(dir, "manifest.json").toPath(), Json.write(m, true).getBytes("UTF-8"));
        return dir;
    }

    @Test
    public void olderManifestsWithoutShapesGetBatch1AndLength77() throws Exception {
        Bundle b = Bundle.open(manifestWith("old", null, null, true));
        for (Bundle.Artifact a : b.artifacts()) {
            assertFalse(a.shapes.declared);
            assertEquals(ShapeDescriptor.fixed(1), a.shapes.batch);
        }
        assertNull(b.artifacts().get(0).shapes.length);
        assertEquals(ShapeDescriptor.fixed(77), b.artifacts().get(1).shapes.length);
        assertEquals(77, tok.tokenizeShortest("a dog", b.artifacts().get(1).shapes.length).length);
    }

    @Test
    public void malformedShapesNameTheArtifactAndKey() throws Exception {
        Map<String, Object> badLength = new LinkedHashMap<>();
        badLength.put("batch", ShapeDescriptor.fixed(1).toJson());
        Map<String, Object> lengthDesc = new LinkedHashMap<>();
        lengthDesc.put("kind", "enumerated");
        lengthDesc.put("values", Arrays.<Object>asList(16L, 8L));
        badLength.put("length", lengthDesc);
        Map<String, Object> noLength = new LinkedHashMap<>();
        noLength.put("batch", ShapeDescriptor.fixed(1).toJson());
        Map<String, Object> badBatch = new LinkedHashMap<>();
        Map<String, Object> batchDesc = new LinkedHashMap<>();
        batchDesc.put("kind", "dynamic");
        batchDesc.put("min", 0L);
        batchDesc.put("max", null);
        badBatch.put("batch", batchDesc);
        Object[][] cases = {
            {null, badLength, "artifact reference-fp32/text_encoder.npy: shapes.length: enumerated values must be increasing and distinct"},
            {null, noLength, "artifact reference-fp32/text_encoder.npy: shapes: a text encoder's shapes have no 'length'"},
            {badBatch, null, "artifact reference-fp32/image_encoder.npy: shapes.batch: dynamic needs an integer 'min' >= 1, got 0"},
            {"[1]", null, "artifact reference-fp32/image_encoder.npy: shapes: must be an object"},
            {new LinkedHashMap<String, Object>(), null, "artifact reference-fp32/image_encoder.npy: shapes: has no 'batch'"},
        };
        int k = 0;
        for (Object[] c : cases) {
            File dir = manifestWith("bad" + k++, c[0], c[1], false);
            try {
                Bundle.open(dir);
                fail("opened a manifest with " + c[2]);
            } catch (Bundle.BundleException e) {
                assertTrue(e.getMessage(), e.getMessage().contains(new File(dir, "manifest.json") + ": " + c[2]));
                assertFalse(e.getMessage().contains("\n"));
            }
        }
    }

    @Test
    public void benchmarkInputsFitTheTextArtifact() {
        int[] ids77 = tok.tokenize("a photo of a big red dog");           // 9 tokens
        ArtifactShapes dynamic = new ArtifactShapes(ShapeDescriptor.fixed(1), ShapeDescriptor.dynamic(1, 77), true);
        assertSame(ids77, dynamic.fitIds(ids77));
        ArtifactShapes noSeventySeven = new ArtifactShapes(ShapeDescriptor.fixed(1), ShapeDescriptor.enumerated(8, 16, 32), true);
        assertArrayEquals(Arrays.copyOf(ids77, 16), noSeventySeven.fitIds(ids77));
        ArtifactShapes tiny = new ArtifactShapes(ShapeDescriptor.fixed(1), ShapeDescriptor.enumerated(4, 8), true);
        assertArrayEquals(tok.tokenizeShortest("a photo of a big red dog", ShapeDescriptor.enumerated(4, 8)), tiny.fitIds(ids77));
    }

    // ---------------------------------------------------------------------------------------- text and images

    @Test
    public void textEncoderFeedsTheShortestLengthAndGetsThe77Embedding() throws Exception {
        Bundle b = Bundle.open(Goldens.file("bundle"));
        Bundle.Artifact text = b.artifacts().get(1);
        final List<Integer> lengths = new ArrayList<>();
        try (EncoderSession ref = new ReferenceRuntime().load(text)) {
            EncoderSession recording = new EncoderSession() {
                public float[] encodeImage(float[] chw, int size) {
                    throw new IllegalStateException("image");
                }

                public float[] encodeText(int[] ids) throws Exception {
                    assertTrue("length " + ids.length, text.shapes.length.accepts(ids.length));
                    lengths.add(ids.length);
                    return ref.encodeText(ids);
                }

                public void close() {
                }
            };
            TextEncoder enc = new TextEncoder(recording, tok, text);
            Bundle.Probe p = b.probe();
            for (int k = 0; k < p.captions.size(); k++) {
                float[] got = enc.embed(p.captions.get(k));
                assertEquals(tok.tokenCount(p.captions.get(k)), (int) lengths.get(lengths.size() - 1));
                assertArrayEquals(p.captions.get(k), Vectors.l2normalize(p.refText[k]), got, 0f);
            }
            List<String> labels = Arrays.asList("dog", "cat");
            List<float[]> classes = enc.classEmbeddings(labels, ZeroShot.DEFAULT_TEMPLATES);
            for (int c = 0; c < labels.size(); c++) {
                List<float[]> full = new ArrayList<>();
                for (String prompt : ZeroShot.prompts(labels.get(c), ZeroShot.DEFAULT_TEMPLATES)) {
                    full.add(Vectors.l2normalize(ref.encodeText(tok.tokenize(prompt))));
                }
                assertArrayEquals(ZeroShot.ensemble(full), classes.get(c), 0f);
            }
            for (int n : lengths) assertTrue(n < 77);
        }
    }

    @Test
    public void batchPlansAreThePythonOnes() {
        Map<String, Object> ib = Json.map(g.get("image_batches"));
        assertEquals(ImageIndexBuilder.DEFAULT_MAX_BATCH, (int) Json.num(ib.get("default_max_batch")));
        for (Object o : Json.list(ib.get("descriptors"))) {
            Map<String, Object> d = Json.map(o);
            ShapeDescriptor desc = ShapeDescriptor.parse(d.get("shape"), Json.str(d.get("descriptor")));
            for (Object po : Json.list(d.get("plans"))) {
                Map<String, Object> p = Json.map(po);
                int n = (int) Json.num(p.get("images"));
                List<ImageIndexBuilder.Batch> plan = ImageIndexBuilder.plan(desc, n);
                List<Object> want = Json.list(p.get("batches"));
                assertEquals(d.get("descriptor") + " n=" + n, want.size(), plan.size());
                int start = 0;
                for (int k = 0; k < plan.size(); k++) {
                    int[] w = Json.ints(want.get(k));
                    assertEquals(new ImageIndexBuilder.Batch(start, w[0], w[1]), plan.get(k));
                    assertTrue(desc.accepts(w[1]));
                    start += w[0];
                }
                assertEquals(n, start);
            }
        }
    }

    /** A session that checks every batch it gets has an accepted size and records it; rows via the reference model. */
    static final class BatchCheckingSession implements EncoderSession {
        final EncoderSession ref;
        final ShapeDescriptor batch;
        final List<Integer> sizes = new ArrayList<>();
        int failAt = -1;

        BatchCheckingSession(EncoderSession ref, ShapeDescriptor batch) {
            this.ref = ref;
            this.batch = batch;
        }

        public float[] encodeImage(float[] chw, int size) {
            throw new AssertionError("the index builder must call encodeImages");
        }

        @Override
        public float[][] encodeImages(float[][] chws, int size) throws Exception {
            assertTrue("batch of " + chws.length + " for " + batch, batch.accepts(chws.length));
            if (sizes.size() == failAt) {
                sizes.add(-chws.length);
                throw new IllegalStateException("encoder failure");
            }
            sizes.add(chws.length);
            float[][] out = new float[chws.length][];
            for (int k = 0; k < chws.length; k++) out[k] = ref.encodeImage(chws[k], size);
            return out;
        }

        public float[] encodeText(int[] ids) {
            throw new IllegalStateException("text");
        }

        public void close() {
        }
    }

    @Test
    public void batchedIndexEqualsTheOneAtATimeIndex() throws Exception {
        Bundle b = Bundle.open(Goldens.file("bundle"));
        Bundle.Artifact image = b.artifacts().get(0);
        Bundle.Probe p = b.probe();
        // 17 images: the probe's 6 and mixes of them
        List<float[]> chws = new ArrayList<>();
        List<String> ids = new ArrayList<>();
        for (int k = 0; k < 17; k++) {
            float[] x = p.images[k % 6].clone();
            for (int j = 0; j < x.length; j++) x[j] = 0.5f * (x[j] + p.images[(k * 5 + 1) % 6][j]) * (1 + k % 3) / 3f;
            chws.add(x);
            ids.add("img" + k);
        }
        try (EncoderSession ref = new ReferenceRuntime().load(image)) {
            ImageSearch single = new ImageSearch();
            for (int k = 0; k < chws.size(); k++) single.add(ids.get(k), Vectors.l2normalize(ref.encodeImage(chws.get(k), 32)));
            float[] query = Vectors.l2normalize(p.refImage[2]);
            ShapeDescriptor[] batches = {image.shapes.batch, ShapeDescriptor.fixed(1), ShapeDescriptor.enumerated(4, 8),
                ShapeDescriptor.dynamic(1, 8), ShapeDescriptor.dynamic(1, ShapeDescriptor.UNBOUNDED),
                ShapeDescriptor.dynamic(3, 5), ShapeDescriptor.fixed(4)};
            for (ShapeDescriptor d : batches) {
                for (int n : new int[] {1, 3, 8, 11, 17}) {
                    BatchCheckingSession s = new BatchCheckingSession(ref, d);
                    ImageSearch index = new ImageSearch();
                    ImageIndexBuilder builder = new ImageIndexBuilder(s, d, 32, index);
                    List<String> committed = new ArrayList<>();
                    for (int k = 0; k < n; k++) committed.addAll(builder.add(ids.get(k), chws.get(k)));
                    committed.addAll(builder.flush());
                    assertEquals(ids.subList(0, n), committed);
                    assertEquals(n, index.size());
                    assertEquals(n, builder.added());
                    List<Integer> planned = new ArrayList<>();
                    for (ImageIndexBuilder.Batch bt : ImageIndexBuilder.plan(d, n)) planned.add(bt.size);
                    assertEquals(d + " n=" + n, planned, s.sizes);
                    assertEquals(ImageIndexBuilder.plan(d, n), builder.calls());
                    ImageSearch first = new ImageSearch();
                    for (int k = 0; k < n; k++) first.add(ids.get(k), Vectors.l2normalize(ref.encodeImage(chws.get(k), 32)));
                    assertEquals(first.query(query, n).toString(), index.query(query, n).toString());
                    for (int k = 0; k < n; k++) {
                        // equal embeddings: each image's score against a one-hot query, row by row
                        assertEquals(first.query(query, n).get(k).score, index.query(query, n).get(k).score, 0.0);
                    }
                }
            }
            assertEquals(single.query(query, 17).toString(), singleFrom(ref, ids, chws, image.shapes.batch).query(query, 17).toString());
            // an encoder failure drops the chunk it had (none of its images is indexed) and the builder goes on
            BatchCheckingSession failing = new BatchCheckingSession(ref, ShapeDescriptor.enumerated(1, 4, 8));
            failing.failAt = 1;
            ImageSearch index = new ImageSearch();
            ImageIndexBuilder builder = new ImageIndexBuilder(failing, ShapeDescriptor.enumerated(1, 4, 8), 32, index);
            int failed = 0;
            for (int k = 0; k < 17; k++) {
                int before = builder.pending() + 1;
                try {
                    builder.add(ids.get(k), chws.get(k));
                } catch (IllegalStateException e) {
                    failed += before;
                }
            }
            builder.flush();
            assertEquals(8, failed);
            assertEquals(9, index.size());
            assertEquals(Arrays.asList(8, -8, 1), failing.sizes);
        }
    }

    private static ImageSearch singleFrom(EncoderSession ref, List<String> ids, List<float[]> chws, ShapeDescriptor d)
            throws Exception {
        ImageSearch index = new ImageSearch();
        ImageIndexBuilder.addAll(index, new BatchCheckingSession(ref, d), d, 32, ids, chws);
        return index;
    }

    @Test
    public void defaultEncodeImagesLoopsOverRows() throws Exception {
        Bundle b = Bundle.open(Goldens.file("bundle"));
        Bundle.Probe p = b.probe();
        try (EncoderSession ref = new ReferenceRuntime().load(b.artifacts().get(0))) {
            float[][] y = ref.encodeImages(new float[][] {p.images[0], p.images[3], p.images[3]}, 32);
            assertEquals(3, y.length);
            assertArrayEquals(ref.encodeImage(p.images[3], 32), y[2], 0f);
            assertArrayEquals(p.refImage[0], y[0], 1e-6f);
        }
    }

    @Test
    public void batchedBuffersConcatAndSplitRows() {
        float[][] rows = {{1, 2, 3}, {4, 5, 6}};
        float[] flat = Vectors.concatRows(rows, 3);
        assertArrayEquals(new float[] {1, 2, 3, 4, 5, 6}, flat, 0f);
        float[][] back = Vectors.splitRows(flat, 2);
        assertArrayEquals(rows[1], back[1], 0f);
        assertEquals(2, Vectors.splitRows(flat, 3)[0].length);
        for (Runnable r : new Runnable[] {() -> Vectors.splitRows(flat, 4), () -> Vectors.concatRows(rows, 2),
                () -> Vectors.concatRows(new float[0][], 3)}) {
            try {
                r.run();
                fail("accepted a bad batch");
            } catch (IllegalArgumentException e) {
                assertTrue(e.getMessage(), !e.getMessage().isEmpty());
            }
        }
    }
}
