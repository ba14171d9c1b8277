package org.clipdeploy.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.io.ByteArrayInputStream;
import java.io.File;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.AfterClass;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

/**
 * Randomized corruption of what the JVM core reads from outside: {@link Json}, {@link Npy} and {@link Bundle}
 * (manifest and probe files). Seeded, so a failure names a case that can be replayed. Each input is either read
 * or refused with the reader's own typed exception; anything else (a {@code NullPointerException}, a
 * {@code ClassCastException}, a stack overflow, an allocation the input merely asked for) fails the test.
 */
public class FuzzCorruptionTest {
    @Rule
    public TemporaryFolder tmp = new TemporaryFolder();

    static final long SEED = 0x5eed2026L;
    static final Map<String, int[]> SUMMARY = new LinkedHashMap<>();

    @AfterClass
    public static void summary() {
        StringBuilder b = new StringBuilder("FuzzCorruption (seed 0x5eed2026):");
        for (Map.Entry<String, int[]> e : SUMMARY.entrySet()) {
            int[] c = e.getValue();
            b.append(String.format(" %s %d inputs (%d accepted, %d refused);", e.getKey(), c[0] + c[1], c[0], c[1]));
        }
        System.out.println(b);
    }

    static void count(String reader, int accepted, int refused) {
        SUMMARY.put(reader, new int[] {accepted, refused});
    }

    // ------------------------------------------------------------------------------------------ mutations

    static byte[] mutate(byte[] in, SplittableRandom r) {
        byte[] b = in.clone();
        switch (r.nextInt(7)) {
            case 0:                                              // truncation
                return Arrays.copyOf(b, r.nextInt(b.length + 1));
            case 1: {                                            // bit flips
                int n = 1 + r.nextInt(8);
                for (int k = 0; k < n && b.length > 0; k++) b[r.nextInt(b.length)] ^= (byte) (1 << r.nextInt(8));
                return b;
            }
            case 2: {                                            // a random byte run overwritten
                if (b.length == 0) return b;
                int at = r.nextInt(b.length), n = Math.min(b.length - at, 1 + r.nextInt(16));
                for (int k = 0; k < n; k++) b[at + k] = (byte) r.nextInt(256);
                return b;
            }
            case 3: {                                            // a chunk duplicated (inserted)
                int at = r.nextInt(b.length + 1), n = Math.min(b.length - at, r.nextInt(64));
                byte[] out = new byte[b.length + n];
                System.arraycopy(b, 0, out, 0, at);
                System.arraycopy(b, at, out, at, n);
                System.arraycopy(b, at, out, at + n, b.length - at);
                return out;
            }
            case 4: {                                            // a chunk removed
                if (b.length == 0) return b;
                int at = r.nextInt(b.length), n = Math.min(b.length - at, 1 + r.nextInt(64));
                byte[] out = new byte[b.length - n];
                System.arraycopy(b, 0, out, 0, at);
                System.arraycopy(b, at + n, out, at, b.length - at - n);
                return out;
            }
            case 5: {                                            // a digit run replaced by a huge number
                String s = new String(b, StandardCharsets.ISO_8859_1);
                String[] huge = {"99999999999999999999999", "-1", "1e400", "4611686018427387904", "-0", "1.5", "2147483648"};
                int at = r.nextInt(s.length() + 1);
                int d = at;
                while (d < s.length() && !Character.isDigit(s.charAt(d))) d++;
                int e = d;
                while (e < s.length() && Character.isDigit(s.charAt(e))) e++;
                return (s.substring(0, d) + huge[r.nextInt(huge.length)] + s.substring(e)).getBytes(StandardCharsets.ISO_8859_1);
            }
            default: {                                           // random bytes
                byte[] out = new byte[r.nextInt(256)];
                for (int k = 0; k < out.length; k++) out[k] = (byte) r.nextInt(256);
                return out;
            }
        }
    }

    static final Object[] WRONG = {"x", "", "../../etc/passwd", "/abs", -1L, 0L, 4611686018427387904L, 1e308, -1e-300, 0.5,
                                   true, false, null, new ArrayList<Object>(), new LinkedHashMap<String, Object>(),
                                   Arrays.<Object>asList(1L, "a"), new String(new char[5000]).replace('\0', 'x')};

    /** Replaces one random node of a parsed JSON tree with a value of a random (usually wrong) type. */
    @SuppressWarnings("unchecked")
    static void typeMutate(Object root, SplittableRandom r) {
        Object node = root;
        for (int depth = 0; depth < 8; depth++) {
            if (node instanceof Map) {
                Map<String, Object> m = (Map<String, Object>) node;
                if (m.isEmpty()) return;
                String key = new ArrayList<>(m.keySet()).get(r.nextInt(m.size()));
                Object child = m.get(key);
                if (r.nextInt(3) == 0 || !(child instanceof Map || child instanceof List)) {
                    if (r.nextInt(5) == 0) m.remove(key);
                    else m.put(key, WRONG[r.nextInt(WRONG.length)]);
                    return;
                }
                node = child;
            } else if (node instanceof List) {
                List<Object> l = (List<Object>) node;
                if (l.isEmpty()) return;
                int k = r.nextInt(l.size());
                Object child = l.get(k);
                if (r.nextInt(3) == 0 || !(child instanceof Map || child instanceof List)) {
                    l.set(k, WRONG[r.nextInt(WRONG.length)]);
                    return;
                }
                node = child;
            } else {
                return;
            }
        }
    }

    // ------------------------------------------------------------------------------------------ Json

    @Test
    public void jsonNeverCrashes() throws Exception {
        List<byte[]> seeds = new ArrayList<>();
        seeds.add(Files.readAllBytes(Goldens.file("bundle/manifest.json").toPath()));
        seeds.add(Files.readAllBytes(Goldens.file("bundle/probe/captions.json").toPath()));
        seeds.add("{\"a\": [1, 2.5e-3, -0, true, null, \"\\u00e9\\ud83d\\ude00\"], \"b\": {\"c\": \"d\"}}".getBytes(StandardCharsets.UTF_8));
        SplittableRandom r = new SplittableRandom(SEED);
        int ok = 0, refused = 0;
        for (int k = 0; k < 3000; k++) {
            byte[] in = mutate(seeds.get(k % seeds.size()), r);
            if (k % 50 == 0) in = nesting(r.nextInt(3) == 0 ? 100000 : 150 + r.nextInt(100), r.nextBoolean());
            try {
                Json.parse(new ByteArrayInputStream(in), 1 << 20);
                ok++;
            } catch (Json.JsonException e) {
                oneLine(e, "json case " + k);
                refused++;
            }
        }
        for (String s : new String[] {"NaN", "[Infinity]", "{\"a\": -Infinity}", "[1] x", "// c\n[1]", "[1,]", "{\"a\":1,}"}) {
            try {
                Json.parse(s);
                throw new AssertionError("accepted " + s);
            } catch (Json.JsonException e) {
                refused++;
            }
        }
        byte[] big = new byte[(1 << 20) + 1];
        Arrays.fill(big, (byte) ' ');
        try {
            Json.parse(new ByteArrayInputStream(big), 1 << 20);
            throw new AssertionError("a JSON input over its size limit was read");
        } catch (Json.JsonException e) {
            refused++;
        }
        count("json", ok, refused);
        assertTrue(ok > 0 && refused > 0);
    }

    static byte[] nesting(int depth, boolean objects) {
        StringBuilder b = new StringBuilder();
        for (int k = 0; k < depth; k++) b.append(objects ? "{\"a\":" : "[");
        b.append('1');
        for (int k = 0; k < depth; k++) b.append(objects ? '}' : ']');
        return b.toString().getBytes(StandardCharsets.UTF_8);
    }

    static void oneLine(Exception e, String where) {
        String m = e.getMessage();
        assertTrue(where + ": an empty message", m != null && !m.isEmpty());
        assertTrue(where + ": not one line: " + m, !m.contains("\n"));
    }

    // ------------------------------------------------------------------------------------------ Npy

    static byte[] npy(String header, int dataBytes) {
        StringBuilder h = new StringBuilder(header);
        while ((10 + h.length() + 1) % 64 != 0) h.append(' ');
        h.append('\n');
        byte[] hb = h.toString().getBytes(StandardCharsets.ISO_8859_1);
        ByteBuffer b = ByteBuffer.allocate(10 + hb.length + dataBytes).order(ByteOrder.LITTLE_ENDIAN);
        b.put((byte) 0x93).put("NUMPY".getBytes(StandardCharsets.ISO_8859_1)).put((byte) 1).put((byte) 0);
        b.putShort((short) hb.length).put(hb);
        return b.array();
    }

    @Test
    public void npyNeverCrashesNorAllocatesWhatAHeaderClaims() throws Exception {
        List<byte[]> seeds = new ArrayList<>();
        for (String f : new String[] {"probe/token_ids.npy", "probe/image_embeddings.npy", "reference-fp32/image_encoder.npy"}) {
            byte[] b = Files.readAllBytes(Goldens.file("bundle/" + f).toPath());
            seeds.add(b.length > 20000 ? Arrays.copyOf(b, 20000) : b);        // the head: header mutations matter
        }
        seeds.add(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", 48));
        // huge declared shapes with no data behind them: refused from the header, before any allocation
        String[] huge = {"(4611686018427387904, 4611686018427387904)", "(99999999999,)", "(2147483647, 2147483647)",
                         "(65536, 65536, 65536)", "(-1, 3)", "(3, -0)", "()", "(1,)*", "(2147483648,)", "(1e9,)"};
        SplittableRandom r = new SplittableRandom(SEED + 1);
        int ok = 0, refused = 0;
        long before = usedHeap();
        for (String s : huge) {
            byte[] in = npy("{'descr': '<f4', 'fortran_order': False, 'shape': " + s + ", }", 16);
            try {
                Npy.read(new ByteArrayInputStream(in));
                ok++;
            } catch (Npy.NpyException e) {
                oneLine(e, "npy shape " + s);
                refused++;
            }
        }
        for (int k = 0; k < 3000; k++) {
            byte[] in = mutate(seeds.get(k % seeds.size()), r);
            try {
                Npy a = Npy.read(new ByteArrayInputStream(in));
                assertTrue(a.shape.length >= 0);
                ok++;
            } catch (Npy.NpyException e) {
                oneLine(e, "npy case " + k);
                refused++;
            }
        }
        // the file reader checks the declared size against the file's before reading any data
        File f = tmp.newFile("huge.npy");
        Files.write(f.toPath(), npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000,), }", 64));
        try {
            Npy.read(f);
            throw new AssertionError("a 4 GB claim in a small file was read");
        } catch (Npy.NpyException e) {
            refused++;
        }
        assertTrue("the reader allocated what headers claimed", usedHeap() - before < 512L << 20);
        count("npy", ok, refused);
        assertTrue(ok > 0 && refused > 0);
    }

    static long usedHeap() {
        Runtime rt = Runtime.getRuntime();
        return rt.totalMemory() - rt.freeMemory();
    }

    // ------------------------------------------------------------------------------------------ Bundle

    /** Opens, verifies and reads everything a bundle offers; returns normally or throws BundleException. */
    static void readAll(File dir) throws Exception {
        Bundle b = Bundle.open(dir);
        b.verifyAll();
        b.probe();
        b.preprocessSpec();
        ClipTokenizer.fromBundle(b);
        for (Bundle.Artifact a : b.artifacts()) b.verify(a);
        if (b.hasClassifier()) b.classifier();
    }

    @Test
    public void bundleReaderNeverCrashes() throws Exception {
        File dir = TestBundles.copyGolden(tmp.newFolder("b"));
        File mf = new File(dir, "manifest.json");
        byte[] good = Files.readAllBytes(mf.toPath());
        SplittableRandom r = new SplittableRandom(SEED + 2);
        int ok = 0, refused = 0;
        for (int k = 0; k < 1500; k++) {
            byte[] in;
            if (k % 2 == 0) {
                Map<String, Object> m = TestBundles.goldenManifest();
                int n = 1 + r.nextInt(3);
                // every third time inside the classifier block (labels, templates, scale, paths), else anywhere
                for (int j = 0; j < n; j++) typeMutate(k % 3 == 0 ? m.get("classifier") : m, r);
                in = Json.write(m, true).getBytes(StandardCharsets.UTF_8);
            } else {
                in = mutate(good, r);
            }
            Files.write(mf.toPath(), in);
            try {
                readAll(dir);
                ok++;
            } catch (Bundle.BundleException e) {
                oneLine(e, "bundle case " + k + " (" + new String(in, 0, Math.min(in.length, 80), StandardCharsets.UTF_8) + ")");
                refused++;
            }
        }
        Files.write(mf.toPath(), good);
        // corrupted probe arrays, re-recorded so that only the array reader stands between them and the app
        String[] probes = {"probe/images.npy", "probe/token_ids.npy", "probe/image_embeddings.npy", "probe/text_embeddings.npy",
                           "classifier/class_embeddings.npy", "classifier/labels.json"};
        Map<String, byte[]> originals = new LinkedHashMap<>();
        for (String p : probes) originals.put(p, Files.readAllBytes(new File(dir, p).toPath()));
        for (int k = 0; k < 300; k++) {
            String p = probes[k % probes.length];
            byte[] orig = originals.get(p);
            byte[] head = mutate(Arrays.copyOf(orig, Math.min(orig.length, 256)), r);
            byte[] in = k % 3 == 0 ? mutate(orig, r) : concat(head, Arrays.copyOfRange(orig, Math.min(orig.length, 256), orig.length));
            Files.write(new File(dir, p).toPath(), in);
            Map<String, Object> m = TestBundles.goldenManifest();       // the changed file re-recorded
            Json.map(Json.map(m.get("integrity")).get("files")).put(p, TestBundles.entry(new File(dir, p).toPath()));
            TestBundles.writeManifest(dir, m);
            try {
                readAll(dir);
                ok++;
            } catch (Bundle.BundleException e) {
                oneLine(e, "probe case " + k);
                refused++;
            }
            Files.write(new File(dir, p).toPath(), orig);
        }
        count("bundle", ok, refused);
        assertTrue(ok > 0 && refused > 0);
        TestBundles.seal(dir, TestBundles.goldenManifest());
        readAll(dir);
        assertEquals(3, Bundle.open(dir).artifacts().size());
    }

    static byte[] concat(byte[] a, byte[] b) {
        byte[] out = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }
}
