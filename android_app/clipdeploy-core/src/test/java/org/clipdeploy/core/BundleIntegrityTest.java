package org.clipdeploy.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;

import java.io.File;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.clipdeploy.core.Bundle.BundleException.Kind;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

/**
 * Issue 22's acceptance cases for the JVM reader: each damaged bundle is refused with a typed
 * {@link Bundle.BundleException} (one line, its {@link Kind}) before any runtime is handed an artifact.
 */
public class BundleIntegrityTest {
    @Rule
    public TemporaryFolder tmp = new TemporaryFolder();

    static final String ONNX = "onnx-fp32/image_encoder.onnx";
    static final String PTE = "executorch-fp32/image_encoder.pte";
    static final String MLPACKAGE = "coreml-fp16/image_encoder.mlpackage";
    static final String MLMODEL = MLPACKAGE + "/Data/com.apple.CoreML/model.mlmodel";
    static final String WEIGHTS = MLPACKAGE + "/Data/com.apple.CoreML/weights/weight.bin";

    /** The goldens' reference bundle plus an ONNX, a .pte and an .mlpackage artifact, sealed (integrity recorded). */
    private File fullBundle(String name) throws Exception {
        Map<String, Object> m = TestBundles.goldenManifest();
        List<Object> arts = Json.list(m.get("artifacts"));
        arts.add(TestBundles.artifact("onnx", "fp32", "image", ONNX));
        arts.add(TestBundles.artifact("executorch", "fp32", "image", PTE));
        arts.add(TestBundles.artifact("coreml", "fp16", "image", MLPACKAGE, MLPACKAGE + "/Manifest.json", MLMODEL, WEIGHTS));
        return TestBundles.bundle(tmp.newFolder(name), m);
    }

    /** A runtime that supports every artifact and fails the test if one is ever loaded. */
    static final class Refuse implements EncoderRuntime {
        final String name;
        int loads;

        Refuse(String name) {
            this.name = name;
        }

        @Override
        public String name() {
            return name;
        }

        @Override
        public boolean supports(Bundle.Artifact artifact) {
            return Bundle.runtimeForTarget(artifact.target).equals(name);
        }

        @Override
        public void configure(int threads) {
        }

        @Override
        public Map<String, Object> versions() {
            return new LinkedHashMap<>();
        }

        @Override
        public Map<String, Object> options() {
            return new LinkedHashMap<>();
        }

        @Override
        public EncoderSession load(Bundle.Artifact artifact) {
            loads++;
            throw new AssertionError(artifact.path + " was handed to the runtime");
        }
    }

    static Bundle.BundleException expect(Kind kind, String contains, ThrowingRunnable r) {
        try {
            r.run();
        } catch (Bundle.BundleException e) {
            String msg = e.getMessage();
            assertEquals(msg, kind, e.kind());
            assertTrue("not one line: " + msg, !msg.contains("\n") && !msg.contains("\r"));
            assertTrue(msg + " does not say '" + contains + "'", msg.contains(contains));
            return e;
        } catch (Exception e) {
            throw new AssertionError("expected a BundleException (" + kind + "), got " + e, e);
        }
        throw new AssertionError("expected a BundleException (" + kind + "), nothing was thrown");
    }

    interface ThrowingRunnable {
        void run() throws Exception;
    }

    static BenchmarkSettings settings(String runtime) {
        return new BenchmarkSettings(runtime, 12, 2, 1, 0.0, 1);
    }

    @Test
    public void anUntouchedCopyOpensVerifiesAndRuns() throws Exception {
        File dir = fullBundle("ok");
        Bundle b = Bundle.open(dir);
        b.verifyAll();
        assertEquals(ONNX, b.select("onnxruntime", "image", null).path);
        assertEquals(PTE, b.select("executorch", "image", null).path);
        List<Map<String, Object>> recs = Benchmark.runAll(b, Collections.<EncoderRuntime>singletonList(new ReferenceRuntime()),
                settings("reference"), new MemoryProbe.JvmHeap(), Benchmark.SILENT);
        int measured = 0;
        for (Map<String, Object> r : recs) if ("ok".equals(r.get("status"))) measured++;
        assertEquals(3, measured);                        // image, text and the classifier
        // the golden bundle itself (written by clipdeploy.latency.integrity in Python) verifies here too
        Bundle.open(Goldens.file("bundle")).verifyAll();
    }

    @Test
    public void aTamperedOnnxPteOrMlpackageFileIsRefusedBeforeItIsLoaded() throws Exception {
        String[][] cases = {{ONNX, ONNX, "onnxruntime"}, {PTE, PTE, "executorch"}, {MLMODEL, MLPACKAGE, "coreml"},
                            {WEIGHTS, MLPACKAGE, "coreml"}};
        for (String[] c : cases) {
            final File dir = fullBundle("t" + Math.abs(c[0].hashCode()));
            TestBundles.flipByte(new File(dir, c[0]), -3);        // same size: only the digest can tell
            final Bundle b = Bundle.open(dir);                    // the stat pass holds: sizes are right
            Bundle.Artifact a = null;
            for (Bundle.Artifact x : b.artifacts()) if (x.path.equals(c[1])) a = x;
            final Bundle.Artifact art = a;
            expect(Kind.INTEGRITY, c[0] + " does not match the manifest (sha256", () -> b.verify(art));
            expect(Kind.INTEGRITY, c[0] + " does not match", art::verifiedFile);
            expect(Kind.INTEGRITY, "re-copy the bundle", b::verifyAll);
            if (!"coreml".equals(c[2])) {
                expect(Kind.INTEGRITY, c[0], () -> b.select(c[2], "image", null));
            }
            final Refuse rt = new Refuse(c[2]);
            expect(Kind.INTEGRITY, c[0], () -> Benchmark.runAll(b, Collections.<EncoderRuntime>singletonList(rt),
                    settings(c[2]), new MemoryProbe.JvmHeap(), Benchmark.SILENT));
            assertEquals(c[0] + " reached a runtime", 0, rt.loads);
        }
    }

    @Test
    public void aTamperedReferenceArtifactIsNeverMeasured() throws Exception {
        File dir = TestBundles.copyGolden(tmp.newFolder("ref"));
        TestBundles.flipByte(new File(dir, "reference-fp32/text_encoder.npy"), 200);
        final Bundle b = Bundle.open(dir);
        final List<String> phases = new ArrayList<>();
        expect(Kind.INTEGRITY, "reference-fp32/text_encoder.npy does not match", () -> Benchmark.runAll(b,
                Collections.<EncoderRuntime>singletonList(new ReferenceRuntime()), settings("reference"),
                new MemoryProbe.JvmHeap(), (a, p, d, t) -> phases.add(p)));
        assertEquals("something was measured: " + phases, Collections.emptyList(), phases);
    }

    @Test
    public void aFileAddedInsideAnMlpackageIsRefused() throws Exception {
        File dir = fullBundle("extra");
        Files.write(new File(dir, MLPACKAGE + "/Data/com.apple.CoreML/weights/extra.bin").toPath(), new byte[] {1, 2, 3});
        final Bundle b = Bundle.open(dir);
        expect(Kind.INTEGRITY, "weights/extra.bin' is not in the manifest's integrity record", b::verifyAll);
    }

    @Test
    public void aManifestPathLeavingTheBundleIsRefusedAtOpen() throws Exception {
        File outside = tmp.newFile("outside.npy");
        Files.copy(Goldens.file("bundle/reference-fp32/image_encoder.npy").toPath(), outside.toPath(),
                java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        String[][] cases = {{"../outside.npy", "contains '..'"}, {outside.getAbsolutePath(), "is absolute"},
                            {"reference-fp32/../../outside.npy", "contains '..'"}, {"reference-fp32\\image_encoder.npy", "backslash"},
                            {"C:/x.npy", "is absolute"}, {"./reference-fp32/image_encoder.npy", "'.' component"},
                            {"reference-fp32//image_encoder.npy", "empty or '.' component"}};
        for (String[] c : cases) {
            final File dir = TestBundles.copyGolden(tmp.newFolder());
            Map<String, Object> m = TestBundles.goldenManifest();
            Map<String, Object> a = Json.map(Json.list(m.get("artifacts")).get(0));
            a.put("path", c[0]);
            a.put("files", new ArrayList<Object>(Collections.singletonList(c[0])));
            TestBundles.writeManifest(dir, m);
            Bundle.BundleException e = expect(Kind.UNSAFE_PATH, "a bundle may only name files inside itself", () -> Bundle.open(dir));
            assertTrue(e.getMessage() + " / " + c[1], e.getMessage().contains(c[1]));
        }
        // a probe path and an integrity key are paths too
        final File dir = TestBundles.copyGolden(tmp.newFolder("probe"));
        Map<String, Object> m = TestBundles.goldenManifest();
        Json.map(m.get("probe")).put("images", "../outside.npy");
        TestBundles.writeManifest(dir, m);
        expect(Kind.UNSAFE_PATH, "'../outside.npy'", () -> Bundle.open(dir));
        m = TestBundles.goldenManifest();
        Json.map(Json.map(m.get("integrity")).get("files")).put("/etc/passwd", Json.map(Json.parse(
                "{\"size\": 1, \"sha256\": \"" + new String(new char[64]).replace('\0', 'a') + "\"}")));
        TestBundles.writeManifest(dir, m);
        expect(Kind.UNSAFE_PATH, "integrity path '/etc/passwd' is absolute", () -> Bundle.open(dir));
    }

    @Test
    public void aSymlinkOutOfTheBundleIsRefusedAtOpen() throws Exception {
        // a listed file replaced by a link to an identical copy outside: digests match, the path does not
        File outsideDir = tmp.newFolder("elsewhere");
        final File dir = TestBundles.copyGolden(tmp.newFolder("link"));
        File target = new File(dir, "reference-fp32/image_encoder.npy");
        File copy = new File(outsideDir, "image_encoder.npy");
        Files.move(target.toPath(), copy.toPath());
        Files.createSymbolicLink(target.toPath(), copy.toPath());
        expect(Kind.UNSAFE_PATH, "'reference-fp32/image_encoder.npy' resolves outside the bundle", () -> Bundle.open(dir));
        // a linked directory
        final File dir2 = TestBundles.copyGolden(tmp.newFolder("linkdir"));
        File probe = new File(dir2, "probe");
        File moved = new File(outsideDir, "probe");
        Files.move(probe.toPath(), moved.toPath());
        Files.createSymbolicLink(probe.toPath(), moved.toPath());
        expect(Kind.UNSAFE_PATH, "resolves outside the bundle", () -> Bundle.open(dir2));
        // a link that stays inside the bundle is only a path: it resolves inside and the digest holds
        final File dir3 = TestBundles.copyGolden(tmp.newFolder("inside"));
        File cap = new File(dir3, "probe/captions.json");
        File real = new File(dir3, "probe/captions.real.json");
        Files.move(cap.toPath(), real.toPath());
        Files.createSymbolicLink(cap.toPath(), real.toPath());
        Map<String, Object> m = TestBundles.goldenManifest();
        TestBundles.seal(dir3, m);
        Bundle.open(dir3).verifyAll();
    }

    @Test
    public void aTruncatedProbeArrayIsRefusedAsIncompleteAtOpen() throws Exception {
        final File dir = TestBundles.copyGolden(tmp.newFolder("trunc"));
        File images = new File(dir, "probe/images.npy");
        long size = images.length();
        try (RandomAccessFile f = new RandomAccessFile(images, "rw")) {
            f.setLength(size - 100);
        }
        expect(Kind.INCOMPLETE, "probe/images.npy is " + (size - 100) + " bytes, the manifest records " + size,
                () -> Bundle.open(dir));
        // the same file, re-recorded as it is: open passes, the array reader refuses it (and allocates nothing)
        TestBundles.seal(dir, TestBundles.goldenManifest());
        final Bundle b = Bundle.open(dir);
        expect(Kind.ARRAY, "probe/images.npy", b::probe);
        try {
            Npy.read(images);
            throw new AssertionError("a truncated .npy was read");
        } catch (Npy.NpyException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("bytes"));
        }
    }

    @Test
    public void aManifestThatIsNotJsonIsRefused() throws Exception {
        final File dir = TestBundles.copyGolden(tmp.newFolder("notjson"));
        File mf = new File(dir, "manifest.json");
        byte[] good = Files.readAllBytes(mf.toPath());
        Files.write(mf.toPath(), "this is not json {".getBytes(StandardCharsets.UTF_8));
        expect(Kind.NOT_JSON, "manifest.json cannot be read", () -> Bundle.open(dir));
        Files.write(mf.toPath(), java.util.Arrays.copyOf(good, good.length / 2));       // copied while written
        expect(Kind.NOT_JSON, "the bundle is incomplete or damaged", () -> Bundle.open(dir));
        Files.write(mf.toPath(), new byte[0]);
        expect(Kind.INCOMPLETE, "manifest.json is empty", () -> Bundle.open(dir));
        Files.write(mf.toPath(), "[1, 2]".getBytes(StandardCharsets.UTF_8));
        expect(Kind.SCHEMA, "is not a clipdeploy manifest", () -> Bundle.open(dir));
    }

    @Test
    public void schemaVersion1AndAMissingIntegrityRecordAreRefused() throws Exception {
        final File dir = TestBundles.copyGolden(tmp.newFolder("v1"));
        Map<String, Object> m = TestBundles.goldenManifest();
        m.put("schema_version", 1L);
        m.remove("integrity");
        TestBundles.writeManifest(dir, m);
        expect(Kind.SCHEMA, "schema_version 1 has no integrity record; re-export the bundle with clip-export", () -> Bundle.open(dir));
        m.put("schema_version", 2L);
        TestBundles.writeManifest(dir, m);
        expect(Kind.SCHEMA, "manifest has no 'integrity'", () -> Bundle.open(dir));
        m = TestBundles.goldenManifest();
        Json.map(Json.map(m.get("integrity")).get("files")).remove("probe/token_ids.npy");
        TestBundles.writeManifest(dir, m);
        expect(Kind.INTEGRITY, "'probe/token_ids.npy' is named by the manifest but has no integrity record", () -> Bundle.open(dir));
    }

    @Test
    public void aMissingFileIsIncompleteAndATamperedTokenizerIsRefused() throws Exception {
        final File dir = TestBundles.copyGolden(tmp.newFolder("missing"));
        assertTrue(new File(dir, "probe/captions.json").delete());
        expect(Kind.INCOMPLETE, "probe/captions.json is missing", () -> Bundle.open(dir));
        final File dir2 = TestBundles.copyGolden(tmp.newFolder("tok"));
        TestBundles.flipByte(new File(dir2, "tokenizer/merges.txt"), 5000);
        final Bundle b = Bundle.open(dir2);
        expect(Kind.INTEGRITY, "tokenizer/merges.txt does not match", () -> ClipTokenizer.fromBundle(b));
    }

    @Test
    public void verifiedDigestsAreCachedUntilTheFileChanges() throws Exception {
        File dir = fullBundle("cache");
        Bundle b = Bundle.open(dir);
        b.verifyAll();
        long hashed = Bundle.hashedBytes();
        Bundle.open(dir).verifyAll();                          // a second open: every digest from the cache
        assertEquals(hashed, Bundle.hashedBytes());
        File onnx = new File(dir, ONNX);
        TestBundles.flipByte(onnx, 7);                         // same size, new mtime: hashed again, and caught
        final Bundle again = Bundle.open(dir);
        expect(Kind.INTEGRITY, ONNX + " does not match", again::verifyAll);
        assertEquals(hashed + onnx.length(), Bundle.hashedBytes());
        assertFalse(Bundle.hashedBytes() == 0);
    }
}
