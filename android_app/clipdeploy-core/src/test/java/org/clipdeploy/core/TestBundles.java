package org.clipdeploy.core;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileVisitResult;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.SimpleFileVisitor;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.BasicFileAttributes;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;

/**
 * Bundles for the tests, written in a temporary folder: a copy of the goldens' miniature bundle (never the goldens
 * themselves, which tests must not modify), files added or changed, and the manifest's integrity record computed here
 * in Java (sha256 + size of every file but manifest.json), as {@code clipdeploy.latency.integrity.record} writes it.
 */
final class TestBundles {
    private TestBundles() {}

    /** The goldens' manifest, parsed (a fresh, mutable copy). */
    static Map<String, Object> goldenManifest() throws IOException {
        return Json.map(Json.parse(Goldens.file("bundle/manifest.json")));
    }

    /** Copies every file of goldens/bundle (manifest.json included) into {@code dest}; returns it. */
    static File copyGolden(File dest) throws IOException {
        final Path src = Goldens.file("bundle").toPath();
        final Path to = dest.toPath();
        Files.walkFileTree(src, new SimpleFileVisitor<Path>() {
            @Override
            public FileVisitResult preVisitDirectory(Path d, BasicFileAttributes attrs) throws IOException {
                Files.createDirectories(to.resolve(src.relativize(d).toString()));
                return FileVisitResult.CONTINUE;
            }

            @Override
            public FileVisitResult visitFile(Path f, BasicFileAttributes attrs) throws IOException {
                Files.copy(f, to.resolve(src.relativize(f).toString()), StandardCopyOption.REPLACE_EXISTING);
                return FileVisitResult.CONTINUE;
            }
        });
        return dest;
    }

    static String sha256(byte[] b) throws IOException {
        try {
            return Bundle.hex(MessageDigest.getInstance("SHA-256").digest(b));
        } catch (java.security.NoSuchAlgorithmException e) {
            throw new IOException(e);
        }
    }

    /** {"size", "sha256"} of a file (read through a symlink). */
    static Map<String, Object> entry(Path f) throws IOException {
        byte[] b = Files.readAllBytes(f);
        Map<String, Object> e = new LinkedHashMap<>();
        e.put("size", (long) b.length);
        e.put("sha256", sha256(b));
        return e;
    }

    /** The integrity record of {@code dir}: every file (symlinks followed) but manifest.json, keys sorted. */
    static Map<String, Object> record(File dir) throws IOException {
        final Path root = dir.toPath();
        final Map<String, Object> files = new TreeMap<>();
        Files.walkFileTree(root, new SimpleFileVisitor<Path>() {
            @Override
            public FileVisitResult visitFile(Path f, BasicFileAttributes attrs) throws IOException {
                String rel = root.relativize(f).toString().replace(File.separatorChar, '/');
                if (!rel.equals("manifest.json") && Files.isRegularFile(f)) files.put(rel, entry(f));
                return FileVisitResult.CONTINUE;
            }
        });
        Map<String, Object> block = new LinkedHashMap<>();
        block.put("algorithm", "sha256");
        block.put("files", new LinkedHashMap<String, Object>(files));
        return block;
    }

    static void writeManifest(File dir, Map<String, Object> manifest) throws IOException {
        Files.write(new File(dir, "manifest.json").toPath(), Json.write(manifest, true).getBytes(StandardCharsets.UTF_8));
    }

    /** {@code manifest} with its integrity record recomputed from {@code dir}, written as dir/manifest.json. */
    static void seal(File dir, Map<String, Object> manifest) throws IOException {
        manifest.put("integrity", record(dir));
        writeManifest(dir, manifest);
    }

    /**
     * A bundle in {@code dir}: the goldens' files, a placeholder file (a few seeded random bytes) for every artifact
     * path or file {@code manifest} names that does not exist yet (a name ending in .mlpackage becomes a directory
     * with a model inside), and the integrity record of it all.
     */
    static File bundle(File dir, Map<String, Object> manifest) throws IOException {
        copyGolden(dir);
        Random rnd = new Random(dir.getName().hashCode());
        for (Object o : Json.list(manifest.get("artifacts"))) {
            Map<String, Object> a = Json.map(o);
            List<Object> names = new ArrayList<>();
            names.add(a.get("path"));
            if (a.get("files") instanceof List) names.addAll(Json.list(a.get("files")));
            for (Object n : names) {
                if (!(n instanceof String) || Bundle.unsafeReason((String) n) != null) continue;
                File f = new File(dir, (String) n);
                if (f.exists()) continue;
                if (((String) n).endsWith(".mlpackage")) {
                    placeholder(new File(f, "Manifest.json"), rnd, 64);
                    placeholder(new File(f, "Data/com.apple.CoreML/model.mlmodel"), rnd, 512);
                    placeholder(new File(f, "Data/com.apple.CoreML/weights/weight.bin"), rnd, 4096);
                } else {
                    placeholder(f, rnd, 1024 + rnd.nextInt(1024));
                }
            }
        }
        seal(dir, manifest);
        return dir;
    }

    static void placeholder(File f, Random rnd, int n) throws IOException {
        byte[] b = new byte[n];
        rnd.nextBytes(b);
        Files.createDirectories(f.getParentFile().toPath());
        Files.write(f.toPath(), b);
    }

    /** A manifest artifact entry. */
    static Map<String, Object> artifact(String target, String precision, String encoder, String path, String... files) {
        Map<String, Object> a = new LinkedHashMap<>();
        a.put("target", target);
        a.put("precision", precision);
        a.put("encoder", encoder);
        a.put("path", path);
        List<Object> fl = new ArrayList<>();
        if (files.length == 0) fl.add(path);
        for (String f : files) fl.add(f);
        a.put("files", fl);
        return a;
    }

    /** Flips one byte of {@code f} in place (same size), then moves its mtime so a digest cache cannot hide it. */
    static void flipByte(File f, int at) throws IOException {
        byte[] b = Files.readAllBytes(f.toPath());
        b[Math.floorMod(at, b.length)] ^= 0x5a;
        long mtime = f.lastModified();
        Files.write(f.toPath(), b);
        if (!f.setLastModified(mtime + 2000)) throw new IOException("cannot set the mtime of " + f);
    }
}
