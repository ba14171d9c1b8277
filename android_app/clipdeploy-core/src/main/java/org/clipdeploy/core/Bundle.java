package org.clipdeploy.core;

import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.FileVisitResult;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.SimpleFileVisitor;
import java.nio.file.attribute.BasicFileAttributes;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.regex.Pattern;
import org.clipdeploy.core.Bundle.BundleException.Kind;

/**
 * An artifact bundle written by {@code clip-export} ({@code out/<model>/}): its manifest, artifacts,
 * preprocessing, tokenizer files and probe set (inputs and PyTorch reference embeddings).
 *
 * <p>A bundle is untrusted input (the contract of {@code clipdeploy.latency.integrity}, the same in Python and
 * Swift). {@link #open} reads a manifest of at most {@link #MAX_MANIFEST_BYTES} (strict JSON, {@code schema_version}
 * 2), checks the type of every key this reader uses and the {@code integrity} record, refuses a path that is not a
 * plain relative path or whose canonical path (symlinks resolved) leaves the bundle's canonical directory, and stats
 * every listed file (missing, or not its recorded size: the bundle is incomplete). No file is read and no artifact
 * handed to a runtime before its sha256 matched the record: {@link #verify(Artifact)} (called by {@link #select},
 * {@link Benchmark}, {@link ReferenceRuntime} and the Android runtimes' {@code load}), {@link #probe} and
 * {@link ClipTokenizer#fromBundle}; a directory artifact ({@code .mlpackage}) may hold no file the record does not
 * list. Verified digests are cached for the process per file, keyed by (canonical path, size, mtime, file key).
 * Every failure is a one-line {@link BundleException} naming the file and the fix, with a {@link BundleException.Kind}.
 */
public final class Bundle {
    public static final int SCHEMA_VERSION = 2;
    public static final long MAX_MANIFEST_BYTES = 32L << 20;
    public static final long MAX_TOKENIZER_BYTES = 64L << 20;
    /** A probe array larger than this is refused (a real probe set is a few MB). */
    public static final long MAX_PROBE_BYTES = 1L << 30;
    public static final int MAX_PATH_CHARS = 1024;
    public static final String ALGORITHM = "sha256";

    public static final class BundleException extends IOException {
        private static final long serialVersionUID = 1L;

        /** What is wrong with the bundle (the app shows the message; a caller can branch on this). */
        public enum Kind {
            /** The bundle directory or its manifest.json does not exist. */
            NOT_FOUND,
            /** manifest.json (or another JSON file of the bundle) is not strict JSON, too large or not UTF-8. */
            NOT_JSON,
            /** A key is missing or of the wrong type, an unsupported schema_version, a malformed integrity record. */
            SCHEMA,
            /** A path is absolute, has '..' (or '.', empty, backslash, NUL), or resolves outside the bundle. */
            UNSAFE_PATH,
            /** A listed file is missing or not its recorded size at open (copied while written?). */
            INCOMPLETE,
            /** A file's sha256 differs from the record, a named file has no record, an unlisted file in a directory. */
            INTEGRITY,
            /** A probe or artifact .npy is malformed, or the probe arrays do not fit together. */
            ARRAY,
            /** The bundle has no artifact for the requested runtime / encoder / precision. */
            NO_ARTIFACT,
            /** A file could not be read (I/O error, permission). */
            UNREADABLE
        }

        private final Kind kind;

        /** A {@link Kind#SCHEMA} error (what the manifest declares does not fit). */
        public BundleException(String message) {
            this(Kind.SCHEMA, message);
        }

        public BundleException(Kind kind, String message) {
            super(message == null ? "" : message.replace('\r', ' ').replace('\n', ' '));
            this.kind = kind;
        }

        public Kind kind() {
            return kind;
        }
    }

    public static final class Artifact {
        public final String target, precision, encoder, path;
        public final File file;
        /** The parity figures measured at export time (the manifest's), or null. */
        public final Map<String, Object> parity;
        /**
         * The manifest's "default": false for a variant (e.g. int8) that its float artifact beat or that
         * missed its bars; true when the manifest predates the flag.
         */
        public final boolean isDefault;
        /** The manifest's declared inputs and outputs (empty when it has none or they cannot be read). */
        public final List<TensorSpec> inputs, outputs;
        /**
         * The input shapes it accepts (the manifest's {@code shapes}: batch, and a text encoder's length); an older
         * manifest without the key: batch fixed [1], length fixed [77].
         */
        public final ArtifactShapes shapes;
        private Bundle owner;
        private List<String> files = Collections.emptyList();

        Artifact(String target, String precision, String encoder, String path, File file, Map<String, Object> parity,
                 boolean isDefault) {
            this(target, precision, encoder, path, file, parity, isDefault, Collections.<TensorSpec>emptyList(),
                    Collections.<TensorSpec>emptyList());
        }

        Artifact(String target, String precision, String encoder, String path, File file, Map<String, Object> parity,
                 boolean isDefault, List<TensorSpec> inputs, List<TensorSpec> outputs) {
            this(target, precision, encoder, path, file, parity, isDefault, inputs, outputs, ArtifactShapes.defaults(encoder));
        }

        Artifact(String target, String precision, String encoder, String path, File file, Map<String, Object> parity,
                 boolean isDefault, List<TensorSpec> inputs, List<TensorSpec> outputs, ArtifactShapes shapes) {
            this.target = target;
            this.precision = precision;
            this.encoder = encoder;
            this.path = path;
            this.file = file;
            this.parity = parity;
            this.isDefault = isDefault;
            this.inputs = inputs;
            this.outputs = outputs;
            this.shapes = shapes;
        }

        /** A zero-shot classifier artifact ({@code encoder "classifier"}: image in, {@code logits} [1, N] out). */
        public boolean isClassifier() {
            return "classifier".equals(encoder);
        }

        /** Whether it takes an image ({@code encoder} "image" or "classifier"); else token ids ("text"). */
        public boolean takesImage() {
            return "image".equals(encoder) || "classifier".equals(encoder);
        }

        /** The bundle this artifact belongs to (its manifest gives the sizes the artifact is checked against). */
        public Bundle bundle() {
            return owner;
        }

        /** The manifest's {@code files}: the bundle-relative files the artifact is made of. */
        public List<String> files() {
            return files;
        }

        /**
         * {@link Bundle#verify(Artifact)}: its files' sha256 checked against the manifest (cached per process); the
         * canonical file a runtime loads. What every {@link EncoderRuntime#load} calls before loading.
         */
        public File verifiedFile() throws BundleException {
            if (owner == null) {
                throw new BundleException(Kind.INTEGRITY, path + ": the artifact belongs to no bundle: open the bundle "
                        + "with Bundle.open");
            }
            return owner.verify(this);
        }

        @Override
        public String toString() {
            return path;
        }
    }

    /**
     * One declared input or output of an artifact ({@code {"name", "shape", "dtype"}} in the manifest). A dimension
     * that is not a positive integer (a symbolic "batch", null) is kept as -1, so a dynamic shape can be reported.
     */
    public static final class TensorSpec {
        public final String name, dtype;
        public final int[] shape;

        public TensorSpec(String name, String dtype, int[] shape) {
            this.name = name;
            this.dtype = dtype;
            this.shape = shape;
        }

        /** Whether every dimension is a fixed size (no symbolic or unknown dimension). */
        public boolean isStatic() {
            for (int d : shape) if (d <= 0) return false;
            return true;
        }

        /** "[1, 3, 256, 256]", with "?" for a dimension that is not fixed. */
        public static String shapeString(int[] shape) {
            StringBuilder sb = new StringBuilder("[");
            for (int k = 0; k < shape.length; k++) {
                if (k > 0) sb.append(", ");
                sb.append(shape[k] > 0 ? Integer.toString(shape[k]) : "?");
            }
            return sb.append(']').toString();
        }

        @Override
        public String toString() {
            return name + " " + dtype + " " + shapeString(shape);
        }

        /** The manifest's list, leniently: entries that are not {name, dtype, shape} objects are skipped. */
        static List<TensorSpec> parseList(Object o) {
            if (!(o instanceof List)) return Collections.emptyList();
            List<TensorSpec> out = new ArrayList<>();
            for (Object e : (List<?>) o) {
                if (!(e instanceof Map)) continue;
                Map<?, ?> m = (Map<?, ?>) e;
                Object name = m.get("name"), dtype = m.get("dtype"), shape = m.get("shape");
                if (!(name instanceof String) || !(dtype instanceof String) || !(shape instanceof List)) continue;
                List<?> dims = (List<?>) shape;
                int[] s = new int[dims.size()];
                for (int k = 0; k < s.length; k++) {
                    Object d = dims.get(k);
                    boolean whole = d instanceof Long || d instanceof Integer;
                    long v = whole ? ((Number) d).longValue() : -1;
                    s[k] = v > 0 && v <= Integer.MAX_VALUE ? (int) v : -1;
                }
                out.add(new TensorSpec((String) name, (String) dtype, s));
            }
            return Collections.unmodifiableList(out);
        }
    }

    public static final class Probe {
        public final int imageSize;
        /** Each image flattened CHW, 3 * imageSize * imageSize floats in [0, 1]. */
        public final float[][] images;
        public final int[][] tokenIds;
        public final float[][] refImage, refText;
        public final List<String> captions;

        Probe(int imageSize, float[][] images, int[][] tokenIds, float[][] refImage, float[][] refText, List<String> captions) {
            this.imageSize = imageSize;
            this.images = images;
            this.tokenIds = tokenIds;
            this.refImage = refImage;
            this.refText = refText;
            this.captions = captions;
        }
    }

    /** One entry of the manifest's integrity record. */
    private static final class Entry {
        final long size;
        final String sha256;

        Entry(long size, String sha256) {
            this.size = size;
            this.sha256 = sha256;
        }
    }

    private final File dir;
    /** The canonical (real) path of the bundle directory: every path the manifest names resolves inside it. */
    private final Path root;
    private final Map<String, Object> manifest;
    private final List<Artifact> artifacts;
    private final Map<String, Entry> integrity;
    private Probe probe;
    private Classifier classifier;

    private Bundle(File dir, Path root, Map<String, Object> manifest, List<Artifact> artifacts, Map<String, Entry> integrity) {
        this.dir = dir;
        this.root = root;
        this.manifest = manifest;
        this.artifacts = artifacts;
        this.integrity = integrity;
        for (Artifact a : artifacts) a.owner = this;
    }

    private static final String REEXPORT = "re-export the bundle with clip-export";
    private static final String RECOPY = "copy the bundle again (or re-export it)";

    /**
     * Opens the bundle in {@code dir}: the manifest (size limit, strict JSON, schema_version 2, the keys this reader
     * uses and their types, the integrity record), every path it names (safe, inside the bundle, listed) and a stat
     * of every listed file (present, regular, its recorded size). Hashes nothing: {@link #verify} does, before use.
     */
    public static Bundle open(File dir) throws BundleException {
        if (!dir.exists()) throw new BundleException(Kind.NOT_FOUND, dir + " does not exist: pass a bundle written by clip-export");
        if (!dir.isDirectory()) throw new BundleException(Kind.NOT_FOUND, dir + " is not a directory: pass a bundle written by clip-export");
        File mf = new File(dir, "manifest.json");
        Path mp = mf.toPath();
        if (Files.isSymbolicLink(mp)) {
            throw new BundleException(Kind.UNSAFE_PATH, mf + " is a symlink; a bundle's manifest must be a regular file: "
                    + "replace the link with the file");
        }
        if (!Files.isRegularFile(mp, LinkOption.NOFOLLOW_LINKS)) {
            throw new BundleException(Kind.NOT_FOUND, dir + " has no manifest.json: pass a bundle written by clip-export");
        }
        Path root;
        long size;
        try {
            root = dir.toPath().toRealPath();
            size = Files.size(mp);
        } catch (IOException e) {
            throw new BundleException(Kind.UNREADABLE, mf + " cannot be read (" + e.getMessage() + "): check the bundle's permissions");
        }
        if (size > MAX_MANIFEST_BYTES) {
            throw new BundleException(Kind.NOT_JSON, mf + " is " + size + " bytes, more than the " + MAX_MANIFEST_BYTES
                    + " a manifest may have: is it a clip-export manifest?");
        }
        if (size == 0) {
            throw new BundleException(Kind.INCOMPLETE, mf + " is empty: the bundle is incomplete (copied while it was "
                    + "written?); " + RECOPY);
        }
        Object parsed;
        try {
            parsed = Json.parse(mf, MAX_MANIFEST_BYTES);
        } catch (Json.JsonException e) {
            throw new BundleException(Kind.NOT_JSON, mf + " cannot be read: " + stripPrefix(e.getMessage(), mf + ": ")
                    + "; the bundle is incomplete or damaged: " + RECOPY);
        } catch (IOException e) {
            throw new BundleException(Kind.UNREADABLE, mf + " cannot be read (" + e.getMessage() + "): check the bundle's permissions");
        }
        Schema sc = new Schema(mf.toString());
        Map<String, Object> m = sc.manifest(parsed);
        Map<String, Entry> record = sc.integrity(m.get("integrity"));

        List<Artifact> arts = new ArrayList<>();
        List<Object> list = Json.list(m.get("artifacts"));
        for (int k = 0; k < list.size(); k++) {
            Map<String, Object> a = Json.map(list.get(k));
            String path = (String) a.get("path");
            String encoder = (String) a.get("encoder");
            ArtifactShapes shapes;
            try {
                shapes = ArtifactShapes.parse(a.get("shapes"), encoder, "artifact " + path + ": shapes");
            } catch (ShapeDescriptor.ShapeException e) {
                throw new BundleException(Kind.SCHEMA, mf + ": " + e.getMessage());
            }
            Object parity = a.get("parity");
            Artifact art = new Artifact((String) a.get("target"), (String) a.get("precision"), encoder, path,
                    new File(dir, path), parity instanceof Map ? Json.map(parity) : null,
                    !Boolean.FALSE.equals(a.get("default")), TensorSpec.parseList(a.get("inputs")),
                    TensorSpec.parseList(a.get("outputs")), shapes);
            List<String> files = new ArrayList<>();
            for (Object f : Json.list(a.get("files"))) files.add((String) f);
            art.files = Collections.unmodifiableList(files);
            arts.add(art);
        }
        try {
            PreprocessSpec.fromManifest(m);          // every value the apps derive from the manifest, checked at open
            embeddingDim(m);
        } catch (RuntimeException e) {
            throw new BundleException(Kind.SCHEMA, mf + ": manifest preprocessing / embedding_dim: " + e.getMessage() + "; "
                    + REEXPORT);
        }
        Bundle b = new Bundle(dir, root, m, Collections.unmodifiableList(arts), record);
        for (String rel : b.namedPaths()) b.checkPath(rel);
        b.statAll();
        return b;
    }

    private static String stripPrefix(String s, String prefix) {
        return s != null && s.startsWith(prefix) ? s.substring(prefix.length()) : String.valueOf(s);
    }

    /** Every path the manifest names: artifacts and their files, the probe set, the tokenizer files, the classifier's. */
    List<String> namedPaths() {
        Set<String> out = new LinkedHashSet<>();
        for (Artifact a : artifacts) {
            out.add(a.path);
            out.addAll(a.files);
        }
        Map<String, Object> p = Json.map(manifest.get("probe"));
        Map<String, Object> ref = Json.map(p.get("reference"));
        out.add((String) p.get("images"));
        out.add((String) p.get("token_ids"));
        out.add((String) ref.get("image"));
        out.add((String) ref.get("text"));
        if (p.get("captions") != null) out.add((String) p.get("captions"));
        Map<String, Object> tok = Json.map(manifest.get("tokenizer"));
        for (String k : TOKENIZER_PATHS) if (tok.get(k) != null) out.add((String) tok.get(k));
        if (manifest.get("classifier") instanceof Map) {
            Map<String, Object> c = Json.map(manifest.get("classifier"));
            out.add((String) c.get("class_embeddings"));
            if (c.get("labels_file") != null) out.add((String) c.get("labels_file"));
        }
        return new ArrayList<>(out);
    }

    private static final String[] TOKENIZER_PATHS = {"config", "vocab", "merges", "bpe"};

    // ------------------------------------------------------------------------------------------ the path rule

    /** Why {@code rel} is not a safe bundle-relative path, or null (no filesystem access). */
    public static String unsafeReason(String rel) {
        if (rel == null || rel.isEmpty()) return "is not a non-empty string";
        if (rel.length() > MAX_PATH_CHARS) return "is longer than " + MAX_PATH_CHARS + " characters";
        if (rel.indexOf('\0') >= 0) return "holds a NUL character";
        if (rel.indexOf('\\') >= 0) return "holds a backslash (bundle paths use '/')";
        if (rel.startsWith("/") || (rel.length() >= 2 && rel.charAt(1) == ':' && isAsciiLetter(rel.charAt(0)))) return "is absolute";
        String[] parts = rel.split("/", -1);
        for (String part : parts) if (part.equals("..")) return "contains '..'";
        for (String part : parts) if (part.isEmpty() || part.equals(".")) return "has an empty or '.' component";
        return null;
    }

    private static boolean isAsciiLetter(char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
    }

    /** A path for a message: quoted, control characters escaped, at most 200 characters. */
    static String q(String s) {
        if (s == null) return "null";
        StringBuilder b = new StringBuilder("'");
        for (int k = 0; k < s.length() && b.length() < 200; k++) {
            char c = s.charAt(k);
            if (c < 0x20 || c == 0x7f) b.append(String.format(Locale.ROOT, "\\x%02x", (int) c));
            else b.append(c);
        }
        if (b.length() >= 200) b.append("...");
        return b.append('\'').toString();
    }

    /**
     * {@code rel} under the bundle after the lexical check, with symlinks resolved (the longest existing prefix
     * canonicalized, the rest appended), refused unless it is the bundle's canonical directory or inside it.
     */
    private Path resolveInside(String rel) throws BundleException {
        String why = unsafeReason(rel);
        if (why != null) {
            throw new BundleException(Kind.UNSAFE_PATH, "bundle " + dir + ": manifest path " + q(rel) + " " + why
                    + ": a bundle may only name files inside itself; " + REEXPORT);
        }
        Path p = root.resolve(rel);
        Path existing = p;
        List<String> rest = new ArrayList<>();
        while (existing != null && !Files.exists(existing, LinkOption.NOFOLLOW_LINKS)) {
            rest.add(0, existing.getFileName().toString());
            existing = existing.getParent();
        }
        Path real;
        try {
            real = existing == null ? p : existing.toRealPath();
        } catch (IOException e) {
            throw new BundleException(Kind.UNSAFE_PATH, "bundle " + dir + ": manifest path " + q(rel) + " goes through a "
                    + "broken symlink: a bundle holds regular files only; replace the link with the file");
        }
        for (String r : rest) real = real.resolve(r);
        if (!real.startsWith(root)) {
            throw new BundleException(Kind.UNSAFE_PATH, "bundle " + dir + ": manifest path " + q(rel) + " resolves outside "
                    + "the bundle (to " + real + ") through a symlink: a bundle may only name files inside itself; "
                    + "replace the link with the file");
        }
        return real;
    }

    /** The listed files that make up {@code rel}: the file itself, or every listed file under a directory. */
    private List<String> listed(String rel) throws BundleException {
        if (integrity.containsKey(rel)) return Collections.singletonList(rel);
        String prefix = rel + "/";
        List<String> inner = new ArrayList<>();
        for (String k : integrity.keySet()) if (k.startsWith(prefix)) inner.add(k);
        if (inner.isEmpty()) {
            throw new BundleException(Kind.INTEGRITY, "bundle " + dir + ": " + q(rel) + " is named by the manifest but has "
                    + "no integrity record; " + REEXPORT);
        }
        return inner;
    }

    /** The lexical and symlink check and the listing of a path the manifest names (no hashing). */
    private Path checkPath(String rel) throws BundleException {
        Path real = resolveInside(rel);
        listed(rel);
        return real;
    }

    /** Every listed file exists inside the bundle, is a regular file and has its recorded size. */
    private void statAll() throws BundleException {
        for (Map.Entry<String, Entry> e : integrity.entrySet()) {
            String rel = e.getKey();
            Path real = resolveInside(rel);
            BasicFileAttributes at;
            try {
                at = Files.readAttributes(real, BasicFileAttributes.class);
            } catch (NoSuchFileException ex) {
                throw new BundleException(Kind.INCOMPLETE, "bundle " + dir + " is incomplete: " + rel + " is missing; " + RECOPY);
            } catch (IOException ex) {
                throw new BundleException(Kind.UNREADABLE, "bundle " + dir + ": cannot stat " + rel + " (" + ex.getMessage()
                        + "): check the bundle's permissions");
            }
            if (!at.isRegularFile()) {
                throw new BundleException(Kind.INTEGRITY, "bundle " + dir + ": " + rel + " is not a regular file; " + REEXPORT);
            }
            long want = e.getValue().size;
            if (at.size() != want) {
                String state = at.size() < want ? "incomplete" : "modified";
                throw new BundleException(Kind.INCOMPLETE, "bundle " + dir + " is " + state + ": " + rel + " is " + at.size()
                        + " bytes, the manifest records " + want + "; " + RECOPY);
            }
        }
    }

    // ------------------------------------------------------------------------------------------ digests

    /** Verified digests of this process: key (canonical path, size, mtime, file key) -> sha256. */
    private static final Map<String, String> DIGESTS = Collections.synchronizedMap(new LinkedHashMap<String, String>(64, 0.75f, true) {
        private static final long serialVersionUID = 1L;

        @Override
        protected boolean removeEldestEntry(Map.Entry<String, String> eldest) {
            return size() > 20000;
        }
    });
    private static final AtomicLong HASHED_BYTES = new AtomicLong();
    private static final AtomicLong CACHE_HITS = new AtomicLong();

    /** Bytes this process has hashed (tests: the cache answers a second verification). */
    static long hashedBytes() {
        return HASHED_BYTES.get();
    }

    static long cacheHits() {
        return CACHE_HITS.get();
    }

    /**
     * Checks every file of {@code a} (its {@code path} and {@code files}) against the manifest's sha256 (a directory
     * artifact: also that it holds no unlisted file) and returns the canonical file to load. Cached per file for the
     * process; a file that changed (size, mtime) is hashed again. Call before handing the artifact to a runtime.
     */
    public File verify(Artifact a) throws BundleException {
        if (a.owner != this) {
            throw new BundleException(Kind.INTEGRITY, "bundle " + dir + ": artifact " + a.path + " is not from this bundle: "
                    + "select it from the bundle it belongs to");
        }
        Set<String> rels = new LinkedHashSet<>();
        rels.add(a.path);
        rels.addAll(a.files);
        for (String rel : rels) verifyPath(rel);
        return resolveInside(a.path).toFile();
    }

    /**
     * Every file of the integrity record against its sha256, and every directory artifact for files the record does
     * not list: what to run on a bundle that was just copied or pushed (cached per file like {@link #verify}).
     */
    public void verifyAll() throws BundleException {
        for (Artifact a : artifacts) verify(a);
        for (String rel : integrity.keySet()) verifyOne(rel);
    }

    /**
     * Checks the file (or directory) {@code rel} the manifest names against its sha256 and returns its canonical
     * file: what to call before reading a bundle file.
     */
    public File verifyFile(String rel) throws BundleException {
        return verifyPath(rel).toFile();
    }

    private Path verifyPath(String rel) throws BundleException {
        final Path real = checkPath(rel);
        List<String> members = listed(rel);
        if (Files.isDirectory(real, LinkOption.NOFOLLOW_LINKS)) {
            final Set<String> known = new HashSet<>(members);
            final String base = rel;
            final String[] unlisted = {null};
            try {
                Files.walkFileTree(real, new SimpleFileVisitor<Path>() {
                    @Override
                    public FileVisitResult visitFile(Path file, BasicFileAttributes attrs) {
                        String sub = base + "/" + real.relativize(file).toString().replace(File.separatorChar, '/');
                        if (!known.contains(sub)) {
                            unlisted[0] = sub;
                            return FileVisitResult.TERMINATE;
                        }
                        return FileVisitResult.CONTINUE;
                    }

                    @Override
                    public FileVisitResult visitFileFailed(Path file, IOException exc) {
                        unlisted[0] = base + "/" + real.relativize(file).toString().replace(File.separatorChar, '/');
                        return FileVisitResult.TERMINATE;
                    }
                });
            } catch (IOException e) {
                throw new BundleException(Kind.UNREADABLE, "bundle " + dir + ": cannot list " + rel + " (" + e.getMessage()
                        + "): check the bundle's permissions");
            }
            if (unlisted[0] != null) {
                throw new BundleException(Kind.INTEGRITY, "bundle " + dir + ": " + q(unlisted[0]) + " is not in the manifest's "
                        + "integrity record (a file was added to " + rel + "); " + RECOPY);
            }
        }
        for (String m : members) verifyOne(m);
        return real;
    }

    private void verifyOne(String rel) throws BundleException {
        Entry ent = integrity.get(rel);
        Path real = resolveInside(rel);
        try {
            BasicFileAttributes at;
            try {
                at = Files.readAttributes(real, BasicFileAttributes.class);
            } catch (NoSuchFileException e) {
                throw new BundleException(Kind.INCOMPLETE, "bundle " + dir + ": " + rel + " is missing (removed since the "
                        + "bundle was opened?); " + RECOPY);
            }
            if (!at.isRegularFile()) {
                throw new BundleException(Kind.INTEGRITY, "bundle " + dir + ": " + rel + " is not a regular file; " + REEXPORT);
            }
            if (at.size() != ent.size) {
                throw new BundleException(Kind.INTEGRITY, "bundle " + dir + ": " + rel + " is " + at.size() + " bytes, the "
                        + "manifest records " + ent.size + ": the file was modified or cut short; re-copy the bundle (or "
                        + "re-export it)");
            }
            String key = cacheKey(real, at);
            String h = DIGESTS.get(key);
            if (h != null) {
                CACHE_HITS.incrementAndGet();
            } else {
                h = sha256(real);
                HASHED_BYTES.addAndGet(at.size());
                BasicFileAttributes after = Files.readAttributes(real, BasicFileAttributes.class);
                if (cacheKey(real, after).equals(key)) DIGESTS.put(key, h);      // unchanged while it was hashed
            }
            if (!h.equals(ent.sha256)) {
                throw new BundleException(Kind.INTEGRITY, "bundle " + dir + ": " + rel + " does not match the manifest (sha256 "
                        + h.substring(0, 12) + "... != " + ent.sha256.substring(0, 12) + "...): the file was modified or "
                        + "corrupted; re-copy the bundle (or re-export it)");
            }
        } catch (BundleException e) {
            throw e;
        } catch (IOException e) {
            throw new BundleException(Kind.UNREADABLE, "bundle " + dir + ": cannot read " + rel + " (" + e.getMessage()
                    + "); re-copy the bundle");
        }
    }

    private static String cacheKey(Path real, BasicFileAttributes at) {
        return real + "\0" + at.size() + "\0" + at.lastModifiedTime().to(TimeUnit.NANOSECONDS) + "\0" + at.fileKey();
    }

    /** The sha256 of a file, streamed (lowercase hex). */
    static String sha256(Path file) throws IOException {
        MessageDigest md;
        try {
            md = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IOException("this platform has no SHA-256", e);
        }
        byte[] buf = new byte[1 << 18];
        try (InputStream in = new FileInputStream(file.toFile())) {
            int n;
            while ((n = in.read(buf)) >= 0) md.update(buf, 0, n);
        }
        return hex(md.digest());
    }

    static String hex(byte[] b) {
        char[] out = new char[b.length * 2];
        final char[] digits = "0123456789abcdef".toCharArray();
        for (int k = 0; k < b.length; k++) {
            out[2 * k] = digits[(b[k] >> 4) & 0xf];
            out[2 * k + 1] = digits[b[k] & 0xf];
        }
        return new String(out);
    }

    // ------------------------------------------------------------------------------------------ selection

    /** The runtime an artifact's target runs on (clip-export's target -> runtime names, as in clip-latency). */
    public static String runtimeForTarget(String target) {
        switch (target) {
            case "onnx": return "onnxruntime";
            case "executorch": case "executorch-coreml": return "executorch";
            case "coreml": return "coreml";
            case LiteRtSpec.TARGET: return LiteRtSpec.RUNTIME;
            default: return target;
        }
    }

    /** Whether the Android app's runtime called {@code runtime} runs this artifact (target and file type). */
    public static boolean runsOn(String runtime, Artifact a) {
        switch (runtime) {
            case "executorch": return "executorch".equals(a.target) && a.path.endsWith(".pte");
            case "onnxruntime": return "onnx".equals(a.target) && a.path.endsWith(".onnx");
            case LiteRtSpec.RUNTIME: return LiteRtSpec.isLiteRt(a);
            case "reference": return "reference".equals(a.target) && a.path.endsWith(".npy");
            default: return false;
        }
    }

    /** The artifacts the runtime called {@code runtime} runs ({@link #runsOn}), in manifest order. */
    public List<Artifact> artifactsFor(String runtime) {
        List<Artifact> out = new ArrayList<>();
        for (Artifact a : artifacts) if (runsOn(runtime, a)) out.add(a);
        return out;
    }

    /**
     * The artifact {@code runtime} runs for {@code encoder} ("image" / "text" / "classifier"): the requested {@code precision} if
     * not null, else the manifest's default one, else fp32, else the first. For {@code litert} the artifact's declared
     * inputs and outputs are checked ({@link LiteRtSpec#check}). The chosen artifact is then {@link #verify verified}
     * (sha256 of its files), so what is returned may be handed to a runtime. Failures are one-line
     * {@link BundleException}s that name the problem and the fix.
     */
    public Artifact select(String runtime, String encoder, String precision) throws BundleException {
        List<Artifact> candidates = new ArrayList<>();
        List<String> precisions = new ArrayList<>();
        for (Artifact a : artifactsFor(runtime)) {
            if (!a.encoder.equals(encoder)) continue;
            candidates.add(a);
            precisions.add(a.precision);
        }
        if (candidates.isEmpty()) {
            String target = LiteRtSpec.RUNTIME.equals(runtime) ? LiteRtSpec.TARGET
                    : "onnxruntime".equals(runtime) ? "onnx" : runtime;
            throw new BundleException(Kind.NO_ARTIFACT, dir + ": no " + encoder + " encoder for runtime " + runtime
                    + ": export one with clip-export --target " + target);
        }
        Artifact chosen = null;
        if (precision != null) {
            for (Artifact a : candidates) if (a.precision.equals(precision)) { chosen = a; break; }
            if (chosen == null) {
                throw new BundleException(Kind.NO_ARTIFACT, dir + ": no " + precision + " " + encoder + " encoder for runtime "
                        + runtime + " (it has " + String.join(", ", precisions) + "): pick one of those or export " + precision);
            }
        } else {
            for (Artifact a : candidates) if (a.isDefault) { chosen = a; break; }
            if (chosen == null) for (Artifact a : candidates) if ("fp32".equals(a.precision)) { chosen = a; break; }
            if (chosen == null) chosen = candidates.get(0);
        }
        if (LiteRtSpec.RUNTIME.equals(runtime)) LiteRtSpec.check(this, chosen);
        verify(chosen);
        return chosen;
    }

    public File dir() {
        return dir;
    }

    public String model() {
        return Json.str(manifest.get("model"));
    }

    public Map<String, Object> manifest() {
        return manifest;
    }

    public List<Artifact> artifacts() {
        return artifacts;
    }

    /** {@code relPath} under the bundle directory, lexically (not checked: {@link #verifyFile} checks and hashes). */
    public File resolve(String relPath) {
        return new File(dir, relPath);
    }

    public PreprocessSpec preprocessSpec() {
        return PreprocessSpec.fromManifest(manifest);
    }

    public double logitScale() {
        return Json.num(manifest.get("logit_scale"));
    }

    /** The manifest's {@code embedding_dim} (else {@code spec.embed_dim}); a {@link Json.JsonException} if it has neither. */
    public int embeddingDim() {
        return embeddingDim(manifest);
    }

    private static int embeddingDim(Map<String, Object> manifest) {
        Object d = manifest.get("embedding_dim");
        if (d == null) {
            Object spec = manifest.get("spec");
            d = spec instanceof Map ? ((Map<?, ?>) spec).get("embed_dim") : null;
            if (d == null) throw new Json.JsonException("the manifest has no embedding_dim");
        }
        return (int) Json.num(d);
    }

    /** The manifest's tokenizer path {@code key} ("vocab", "merges"), else the standard location. */
    String tokenizerPath(String key) {
        Object v = Json.map(manifest.get("tokenizer")).get(key);
        return v instanceof String ? (String) v : "merges".equals(key) ? "tokenizer/merges.txt" : "tokenizer/" + key + ".json";
    }

    public File tokenizerVocab() {
        return resolve(tokenizerPath("vocab"));
    }

    public File tokenizerMerges() {
        return resolve(tokenizerPath("merges"));
    }

    /** The probe set, read on first use: each file's sha256 checked first, then the arrays and how they fit. */
    public synchronized Probe probe() throws BundleException {
        if (probe != null) return probe;
        Map<String, Object> p = Json.map(manifest.get("probe"));
        Map<String, Object> ref = Json.map(p.get("reference"));
        String imagesRel = (String) p.get("images"), idsRel = (String) p.get("token_ids");
        String refImageRel = (String) ref.get("image"), refTextRel = (String) ref.get("text");
        String captionsRel = (String) p.get("captions");
        for (String rel : new String[] {imagesRel, idsRel, refImageRel, refTextRel, captionsRel}) if (rel != null) verifyFile(rel);
        Npy images = probeArray(imagesRel), ids = probeArray(idsRel), ri = probeArray(refImageRel), rt = probeArray(refTextRel);
        int[] im = images.shape, id = ids.shape, a = ri.shape, t = rt.shape;
        boolean ok = im.length == 4 && im[0] > 0 && im[1] == 3 && im[2] > 0 && im[2] == im[3] && id.length == 2 && id[0] > 0
                && id[1] > 0 && a.length == 2 && t.length == 2 && a[0] == im[0] && t[0] == id[0] && a[1] > 0 && a[1] == t[1];
        if (!ok) {
            throw new BundleException(Kind.ARRAY, "bundle " + dir + ": probe arrays do not fit together (images "
                    + java.util.Arrays.toString(im) + ", token ids " + java.util.Arrays.toString(id) + ", reference "
                    + java.util.Arrays.toString(a) + " / " + java.util.Arrays.toString(t)
                    + "; expected [N, 3, R, R], [M, L], [N, D], [M, D]); " + REEXPORT);
        }
        List<String> captions = new ArrayList<>();
        if (captionsRel != null) {
            Object c;
            try {
                c = Json.parse(resolveInside(captionsRel).toFile(), MAX_MANIFEST_BYTES);
            } catch (Json.JsonException e) {
                throw new BundleException(Kind.NOT_JSON, "bundle " + dir + ": " + captionsRel + " is not JSON ("
                        + e.getMessage() + "); " + REEXPORT);
            } catch (IOException e) {
                throw new BundleException(Kind.UNREADABLE, "bundle " + dir + ": cannot read " + captionsRel + " ("
                        + e.getMessage() + "); re-copy the bundle");
            }
            if (!(c instanceof List)) {
                throw new BundleException(Kind.SCHEMA, "bundle " + dir + ": " + captionsRel + " must be a list of strings, got "
                        + Json.kind(c) + "; " + REEXPORT);
            }
            for (Object o : (List<?>) c) {
                if (!(o instanceof String)) {
                    throw new BundleException(Kind.SCHEMA, "bundle " + dir + ": " + captionsRel + " must be a list of strings, "
                            + "it holds " + Json.kind(o) + "; " + REEXPORT);
                }
                captions.add((String) o);
            }
        }
        try {
            probe = new Probe(im[2], images.rows(), ids.intRows(), ri.rows(), rt.rows(), Collections.unmodifiableList(captions));
        } catch (Npy.NpyException e) {
            throw new BundleException(Kind.ARRAY, "bundle " + dir + ": probe set cannot be read: " + e.getMessage() + "; " + REEXPORT);
        }
        return probe;
    }

    /** Whether the manifest has a zero-shot {@code classifier} block (labels, templates, class matrix). */
    public boolean hasClassifier() {
        return manifest.get("classifier") instanceof Map;
    }

    /**
     * The zero-shot classifier (issue 23), read on first use: the class matrix {@code classifier.class_embeddings}
     * (float32 [N, D], N the manifest's labels, D its embedding_dim, finite L2-normalized rows) and the label file
     * {@code classifier.labels_file} (a JSON list equal to the manifest's labels), each through its sha256 first.
     * {@link Kind#NO_ARTIFACT} when the manifest has no classifier, {@link Kind#ARRAY} for a matrix that does not
     * fit, {@link Kind#SCHEMA} for a label file that disagrees with the manifest.
     */
    public synchronized Classifier classifier() throws BundleException {
        if (classifier != null) return classifier;
        if (!hasClassifier()) {
            throw new BundleException(Kind.NO_ARTIFACT, "bundle " + dir + " has no zero-shot classifier: export one with "
                    + "clip-export --classifier LABELS.txt");
        }
        Map<String, Object> c = Json.map(manifest.get("classifier"));
        List<String> labels = new ArrayList<>();
        for (Object o : Json.list(c.get("labels"))) labels.add((String) o);
        List<String> templates = new ArrayList<>();
        for (Object o : Json.list(c.get("templates"))) templates.add((String) o);
        String matrixRel = (String) c.get("class_embeddings"), labelsRel = (String) c.get("labels_file");
        int dim;
        try {
            dim = c.get("embedding_dim") != null ? (int) Json.num(c.get("embedding_dim")) : embeddingDim();
        } catch (RuntimeException e) {
            throw new BundleException(Kind.SCHEMA, "bundle " + dir + ": the classifier's embedding_dim is unknown ("
                    + e.getMessage() + "); " + REEXPORT);
        }
        verifyFile(matrixRel);
        if (labelsRel != null) verifyFile(labelsRel);
        Npy npy;
        try {
            npy = Npy.read(resolveInside(matrixRel).toFile(), MAX_PROBE_BYTES);
        } catch (Npy.NpyException e) {
            throw new BundleException(Kind.ARRAY, "bundle " + dir + ": class matrix " + matrixRel + " cannot be read: "
                    + stripPrefix(e.getMessage(), resolveInside(matrixRel) + ": ") + "; " + REEXPORT);
        } catch (IOException e) {
            throw new BundleException(Kind.UNREADABLE, "bundle " + dir + ": cannot read " + matrixRel + " (" + e.getMessage()
                    + "); re-copy the bundle");
        }
        int[] sh = npy.shape;
        if (!"<f4".equals(npy.dtype) || sh.length != 2 || sh[0] != labels.size() || sh[1] != dim) {
            throw new BundleException(Kind.ARRAY, "bundle " + dir + ": class matrix " + matrixRel + " is " + npy.dtype + " "
                    + java.util.Arrays.toString(sh) + ", expected float32 [" + labels.size() + ", " + dim + "] (one row per "
                    + "label of the manifest, the model's embedding_dim); " + REEXPORT);
        }
        float[][] rows;
        try {
            rows = npy.rows();
        } catch (Npy.NpyException e) {
            throw new BundleException(Kind.ARRAY, "bundle " + dir + ": class matrix " + matrixRel + " cannot be read: "
                    + e.getMessage() + "; " + REEXPORT);
        }
        for (int r = 0; r < rows.length; r++) {
            double norm = Vectors.allFinite(rows[r]) ? Vectors.norm(rows[r]) : Double.NaN;
            if (!(Math.abs(norm - 1.0) <= 1e-3)) {
                throw new BundleException(Kind.ARRAY, "bundle " + dir + ": class matrix " + matrixRel + " row " + r + " ("
                        + q(labels.get(r)) + ") is not a unit vector (norm " + norm + "); " + REEXPORT);
            }
        }
        if (labelsRel != null) {
            Object parsed;
            try {
                parsed = Json.parse(resolveInside(labelsRel).toFile(), MAX_MANIFEST_BYTES);
            } catch (Json.JsonException e) {
                throw new BundleException(Kind.NOT_JSON, "bundle " + dir + ": " + labelsRel + " is not JSON ("
                        + stripPrefix(e.getMessage(), resolveInside(labelsRel) + ": ") + "); " + REEXPORT);
            } catch (IOException e) {
                throw new BundleException(Kind.UNREADABLE, "bundle " + dir + ": cannot read " + labelsRel + " ("
                        + e.getMessage() + "); re-copy the bundle");
            }
            if (!(parsed instanceof List)) {
                throw new BundleException(Kind.SCHEMA, "bundle " + dir + ": " + labelsRel + " must be a list of labels, got "
                        + Json.kind(parsed) + "; " + REEXPORT);
            }
            List<?> got = (List<?>) parsed;
            for (int k = 0; k < Math.max(got.size(), labels.size()); k++) {
                Object g = k < got.size() ? got.get(k) : null;
                String want = k < labels.size() ? labels.get(k) : null;
                if (want == null || !want.equals(g)) {
                    String has = g instanceof String ? q((String) g) : k < got.size() ? Json.kind(g) : "nothing";
                    throw new BundleException(Kind.SCHEMA, "bundle " + dir + ": " + labelsRel + " disagrees with the "
                            + "manifest's classifier.labels at " + k + " (" + has + ", the manifest has "
                            + (want == null ? "nothing" : q(want)) + "; " + got.size() + " vs " + labels.size()
                            + " labels); " + REEXPORT);
                }
            }
        }
        double scale = Json.num(c.get("logit_scale"));
        Object src = c.get("template_source");
        classifier = new Classifier(labels, templates, src instanceof String ? (String) src : null, scale, rows, matrixRel,
                labelsRel);
        return classifier;
    }

    private Npy probeArray(String rel) throws BundleException {
        try {
            return Npy.read(resolveInside(rel).toFile(), MAX_PROBE_BYTES);
        } catch (Npy.NpyException e) {
            throw new BundleException(Kind.ARRAY, "bundle " + dir + ": probe file " + rel + " cannot be read: "
                    + stripPrefix(e.getMessage(), resolveInside(rel) + ": ") + "; " + REEXPORT);
        } catch (IOException e) {
            throw new BundleException(Kind.UNREADABLE, "bundle " + dir + ": cannot read " + rel + " (" + e.getMessage()
                    + "); re-copy the bundle");
        }
    }

    // ------------------------------------------------------------------------------------------ the schema

    /**
     * The manifest's schema (latency/manifest.schema.json) for the keys this reader uses: types, ranges, the
     * integrity record. Failures are {@link Kind#SCHEMA} errors naming the key.
     */
    private static final class Schema {
        private static final Pattern HEX64 = Pattern.compile("[0-9a-f]{64}");
        private final String where;

        Schema(String where) {
            this.where = where;
        }

        private BundleException bad(String key, String want, Object got) {
            return new BundleException(Kind.SCHEMA, where + ": manifest key '" + key + "' must be " + want + ", got "
                    + describe(got) + "; " + REEXPORT);
        }

        private static String describe(Object o) {
            if (o instanceof String) return "the string " + q((String) o);
            if (o instanceof Number || o instanceof Boolean) return Json.kind(o) + " " + o;
            return Json.kind(o);
        }

        private static boolean isInt(Object o) {
            return o instanceof Long || o instanceof Integer;
        }

        private Map<String, Object> obj(Map<String, Object> m, String key, String path, boolean required) throws BundleException {
            Object v = m.get(key);
            if (v == null && !m.containsKey(key) && !required) return null;
            if (v == null && !m.containsKey(key)) {
                throw new BundleException(Kind.SCHEMA, where + ": manifest has no '" + path + "'; " + REEXPORT);
            }
            if (!(v instanceof Map)) throw bad(path, "an object", v);
            return Json.map(v);
        }

        private String str(Map<String, Object> m, String key, String path, boolean required, int maxLen) throws BundleException {
            if (!m.containsKey(key) && !required) return null;
            if (!m.containsKey(key)) throw new BundleException(Kind.SCHEMA, where + ": manifest has no '" + path + "'; " + REEXPORT);
            Object v = m.get(key);
            if (!(v instanceof String) || ((String) v).isEmpty() || ((String) v).length() > maxLen) {
                throw bad(path, "a string of 1 to " + maxLen + " characters", v);
            }
            return (String) v;
        }

        private void integer(Map<String, Object> m, String key, String path, long min, long max, boolean nullable) throws BundleException {
            if (!m.containsKey(key)) return;
            Object v = m.get(key);
            if (v == null && nullable) return;
            if (!isInt(v) || ((Number) v).longValue() < min || ((Number) v).longValue() > max) {
                throw bad(path, "an integer in " + min + " .. " + max + (nullable ? " or null" : ""), v);
            }
        }

        Map<String, Object> manifest(Object parsed) throws BundleException {
            if (!(parsed instanceof Map)) {
                throw new BundleException(Kind.SCHEMA, where + " is not a clipdeploy manifest (a JSON object expected, got "
                        + Json.kind(parsed) + "); " + REEXPORT);
            }
            Map<String, Object> m = Json.map(parsed);
            Object ver = m.get("schema_version");
            if (!(isInt(ver) && ((Number) ver).longValue() == SCHEMA_VERSION)) {
                if (isInt(ver) && ((Number) ver).longValue() == 1) {
                    throw new BundleException(Kind.SCHEMA, where + ": manifest schema_version 1 has no integrity record; "
                            + REEXPORT);
                }
                throw new BundleException(Kind.SCHEMA, where + ": manifest schema_version " + describe(ver) + " is not "
                        + "supported (this reader reads " + SCHEMA_VERSION + "); " + REEXPORT);
            }
            for (String key : new String[] {"model", "preprocessing", "probe", "artifacts", "tokenizer", "logit_scale", "integrity"}) {
                if (!m.containsKey(key)) throw new BundleException(Kind.SCHEMA, where + ": manifest has no '" + key + "'; " + REEXPORT);
            }
            str(m, "model", "model", true, 200);
            Object ls = m.get("logit_scale");
            if (!(ls instanceof Number) || !(((Number) ls).doubleValue() >= 0 && ((Number) ls).doubleValue() <= 1000)) {
                throw bad("logit_scale", "a number in 0 .. 1000", ls);
            }
            integer(m, "embedding_dim", "embedding_dim", 1, 65536, false);
            Map<String, Object> spec = obj(m, "spec", "spec", false);
            if (spec != null) integer(spec, "embed_dim", "spec.embed_dim", 1, 65536, false);
            preprocessing(obj(m, "preprocessing", "preprocessing", true));
            Map<String, Object> ck = obj(m, "checkpoint", "checkpoint", false);
            if (ck != null) {
                for (String k : new String[] {"source", "sha256"}) {
                    if (ck.get(k) != null && !(ck.get(k) instanceof String)) throw bad("checkpoint." + k, "a string or null", ck.get(k));
                }
                integer(ck, "random_weights", "checkpoint.random_weights", Long.MIN_VALUE, Long.MAX_VALUE, true);
            }
            Map<String, Object> tok = obj(m, "tokenizer", "tokenizer", true);
            for (String k : TOKENIZER_PATHS) str(tok, k, "tokenizer." + k, false, MAX_PATH_CHARS);
            integer(tok, "context_length", "tokenizer.context_length", 1, 1 << 16, false);
            Map<String, Object> probe = obj(m, "probe", "probe", true);
            str(probe, "images", "probe.images", true, MAX_PATH_CHARS);
            str(probe, "token_ids", "probe.token_ids", true, MAX_PATH_CHARS);
            str(probe, "captions", "probe.captions", false, MAX_PATH_CHARS);
            Map<String, Object> ref = obj(probe, "reference", "probe.reference", true);
            str(ref, "image", "probe.reference.image", true, MAX_PATH_CHARS);
            str(ref, "text", "probe.reference.text", true, MAX_PATH_CHARS);
            Object arts = m.get("artifacts");
            if (!(arts instanceof List) || ((List<?>) arts).size() > 1000) throw bad("artifacts", "an array of at most 1000 artifacts", arts);
            List<Object> list = Json.list(arts);
            for (int k = 0; k < list.size(); k++) artifact(list.get(k), "artifacts[" + k + "]");
            classifier(m, list);
            return m;
        }

        /**
         * The {@code classifier} block: required when an artifact's encoder is "classifier"; labels 1..100000 unique
         * non-empty strings, templates 1..1000 strings, logit_scale a number in 0..1000, class_embeddings a path,
         * embedding_dim (if given) the manifest's, and a classifier artifact's declared output [1, N] for N labels.
         */
        private void classifier(Map<String, Object> m, List<Object> arts) throws BundleException {
            String first = null;
            for (int k = 0; k < arts.size() && first == null; k++) {
                if ("classifier".equals(Json.map(arts.get(k)).get("encoder"))) first = "artifacts[" + k + "]";
            }
            Map<String, Object> c = obj(m, "classifier", "classifier", false);
            if (c == null) {
                if (first != null) {
                    throw new BundleException(Kind.SCHEMA, where + ": manifest has no 'classifier' (labels, templates, "
                            + "class matrix), but " + first + " is a classifier; " + REEXPORT);
                }
                return;
            }
            Object labels = c.get("labels");
            if (!c.containsKey("labels")) throw new BundleException(Kind.SCHEMA, where + ": manifest has no 'classifier.labels'; " + REEXPORT);
            if (!(labels instanceof List) || ((List<?>) labels).isEmpty() || ((List<?>) labels).size() > Classifier.MAX_LABELS) {
                throw bad("classifier.labels", "a list of 1 to " + Classifier.MAX_LABELS + " labels", labels);
            }
            Set<String> seen = new HashSet<>();
            List<?> ll = (List<?>) labels;
            for (int k = 0; k < ll.size(); k++) {
                Object l = ll.get(k);
                if (!(l instanceof String) || ((String) l).isEmpty() || ((String) l).length() > Classifier.MAX_STRING_CHARS) {
                    throw bad("classifier.labels[" + k + "]", "a string of 1 to " + Classifier.MAX_STRING_CHARS + " characters", l);
                }
                if (!seen.add((String) l)) {
                    throw new BundleException(Kind.SCHEMA, where + ": manifest key 'classifier.labels[" + k + "]' repeats the "
                            + "label " + q((String) l) + ": each label once; " + REEXPORT);
                }
            }
            Object templates = c.get("templates");
            if (!c.containsKey("templates")) throw new BundleException(Kind.SCHEMA, where + ": manifest has no 'classifier.templates'; " + REEXPORT);
            if (!(templates instanceof List) || ((List<?>) templates).isEmpty() || ((List<?>) templates).size() > Classifier.MAX_TEMPLATES) {
                throw bad("classifier.templates", "a list of 1 to " + Classifier.MAX_TEMPLATES + " templates", templates);
            }
            List<?> tl = (List<?>) templates;
            for (int k = 0; k < tl.size(); k++) {
                Object t = tl.get(k);
                if (!(t instanceof String) || ((String) t).length() < 2 || ((String) t).length() > Classifier.MAX_STRING_CHARS) {
                    throw bad("classifier.templates[" + k + "]", "a string of 2 to " + Classifier.MAX_STRING_CHARS + " characters", t);
                }
            }
            if (c.containsKey("template_source") && !(c.get("template_source") instanceof String)) {
                throw bad("classifier.template_source", "a string", c.get("template_source"));
            }
            Object ls = c.get("logit_scale");
            if (!c.containsKey("logit_scale")) throw new BundleException(Kind.SCHEMA, where + ": manifest has no 'classifier.logit_scale'; " + REEXPORT);
            if (!(ls instanceof Number) || !(((Number) ls).doubleValue() >= 0 && ((Number) ls).doubleValue() <= 1000)) {
                throw bad("classifier.logit_scale", "a number in 0 .. 1000", ls);
            }
            integer(c, "embedding_dim", "classifier.embedding_dim", 1, 65536, false);
            Object dim = c.get("embedding_dim"), top = m.get("embedding_dim");
            if (dim != null && top != null && ((Number) dim).longValue() != ((Number) top).longValue()) {
                throw new BundleException(Kind.SCHEMA, where + ": manifest key 'classifier.embedding_dim' is " + dim
                        + ", the manifest's embedding_dim " + top + ": the class matrix is not this model's; " + REEXPORT);
            }
            str(c, "class_embeddings", "classifier.class_embeddings", true, MAX_PATH_CHARS);
            str(c, "labels_file", "classifier.labels_file", false, MAX_PATH_CHARS);
            int n = ll.size();
            for (int k = 0; k < arts.size(); k++) {
                Map<String, Object> a = Json.map(arts.get(k));
                if (!"classifier".equals(a.get("encoder"))) continue;
                for (TensorSpec out : TensorSpec.parseList(a.get("outputs"))) {
                    int last = out.shape.length == 0 ? -1 : out.shape[out.shape.length - 1];
                    if (last > 0 && last != n) {
                        throw new BundleException(Kind.SCHEMA, where + ": artifacts[" + k + "] output '" + out.name + "' has "
                                + last + " classes, the classifier has " + n + " labels; " + REEXPORT);
                    }
                }
            }
        }

        private void preprocessing(Map<String, Object> p) throws BundleException {
            integer(p, "image_size", "preprocessing.image_size", 1, 1 << 14, false);
            integer(p, "resize_shorter_side_to", "preprocessing.resize_shorter_side_to", 1, 1 << 14, false);
            integer(p, "center_crop", "preprocessing.center_crop", 1, 1 << 14, true);
            if (p.containsKey("interpolation") && !(p.get("interpolation") instanceof String)) {
                throw bad("preprocessing.interpolation", "a string (bilinear or bicubic)", p.get("interpolation"));
            }
        }

        private void artifact(Object o, String at) throws BundleException {
            if (!(o instanceof Map)) throw bad(at, "an object", o);
            Map<String, Object> a = Json.map(o);
            str(a, "target", at + ".target", true, 64);
            str(a, "precision", at + ".precision", true, 32);
            Object enc = a.get("encoder");
            if (!a.containsKey("encoder")) throw new BundleException(Kind.SCHEMA, where + ": manifest has no '" + at + ".encoder'; " + REEXPORT);
            if (!"image".equals(enc) && !"text".equals(enc) && !"classifier".equals(enc)) {
                throw bad(at + ".encoder", "\"image\", \"text\" or \"classifier\"", enc);
            }
            str(a, "path", at + ".path", true, MAX_PATH_CHARS);
            Object files = a.get("files");
            if (!a.containsKey("files")) throw new BundleException(Kind.SCHEMA, where + ": manifest has no '" + at + ".files'; " + REEXPORT);
            if (!(files instanceof List) || ((List<?>) files).isEmpty() || ((List<?>) files).size() > 10000) {
                throw bad(at + ".files", "a list of 1 to 10000 paths", files);
            }
            List<?> fl = (List<?>) files;
            for (int k = 0; k < fl.size(); k++) {
                Object f = fl.get(k);
                if (!(f instanceof String) || ((String) f).isEmpty() || ((String) f).length() > MAX_PATH_CHARS) {
                    throw bad(at + ".files[" + k + "]", "a path (a string of 1 to " + MAX_PATH_CHARS + " characters)", f);
                }
            }
            for (String k : new String[] {"inputs", "outputs"}) {
                if (a.containsKey(k) && !(a.get(k) instanceof List)) throw bad(at + "." + k, "an array", a.get(k));
            }
            // shapes: ArtifactShapes.parse checks it, with the phrases the Python and Swift readers share
            if (a.containsKey("parity") && !(a.get("parity") instanceof Map)) throw bad(at + ".parity", "an object", a.get("parity"));
            if (a.containsKey("default") && !(a.get("default") instanceof Boolean)) throw bad(at + ".default", "true or false", a.get("default"));
            integer(a, "size_bytes", at + ".size_bytes", 0, Long.MAX_VALUE, false);
        }

        Map<String, Entry> integrity(Object block) throws BundleException {
            String fix = REEXPORT + " (bundles from before schema_version 2 have no digests)";
            if (!(block instanceof Map)) {
                throw new BundleException(Kind.SCHEMA, where + ": manifest has no 'integrity' record (got " + Json.kind(block)
                        + "); " + fix);
            }
            Map<String, Object> b = Json.map(block);
            if (!ALGORITHM.equals(b.get("algorithm"))) {
                throw new BundleException(Kind.SCHEMA, where + ": integrity algorithm " + describe(b.get("algorithm"))
                        + " is not supported ('" + ALGORITHM + "'); " + fix);
            }
            Object files = b.get("files");
            if (!(files instanceof Map) || ((Map<?, ?>) files).isEmpty() || ((Map<?, ?>) files).size() > 100000) {
                throw new BundleException(Kind.SCHEMA, where + ": integrity record lists no files (or more than 100000); " + fix);
            }
            Map<String, Entry> out = new LinkedHashMap<>();
            for (Map.Entry<String, Object> e : Json.map(files).entrySet()) {
                String rel = e.getKey();
                String why = unsafeReason(rel);
                if (why != null) {
                    throw new BundleException(Kind.UNSAFE_PATH, where + ": integrity path " + q(rel) + " " + why
                            + ": a bundle may only name files inside itself; " + REEXPORT);
                }
                if (rel.equals("manifest.json")) {
                    throw new BundleException(Kind.SCHEMA, where + ": integrity record lists manifest.json itself; " + REEXPORT);
                }
                Object v = e.getValue();
                Object size = v instanceof Map ? ((Map<?, ?>) v).get("size") : null;
                Object sha = v instanceof Map ? ((Map<?, ?>) v).get("sha256") : null;
                if (!isInt(size) || ((Number) size).longValue() < 0 || !(sha instanceof String) || !HEX64.matcher((String) sha).matches()) {
                    throw new BundleException(Kind.SCHEMA, where + ": integrity entry for " + q(rel) + " is not {size: int >= 0, "
                            + "sha256: 64 lowercase hex digits}; " + REEXPORT);
                }
                out.put(rel, new Entry(((Number) size).longValue(), (String) sha));
            }
            return Collections.unmodifiableMap(out);
        }
    }
}
