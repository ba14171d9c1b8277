package org.clipdeploy.core;

import java.io.File;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;

/**
 * An artifact bundle written by {@code clip-export} ({@code out/<model>/}): its manifest, artifacts,
 * preprocessing, tokenizer files and probe set (inputs and PyTorch reference embeddings).
 */
public final class Bundle {
    public static final class BundleException extends IOException {
        private static final long serialVersionUID = 1L;

        public BundleException(String message) {
            super(message);
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

        /** The bundle this artifact belongs to (its manifest gives the sizes the artifact is checked against). */
        public Bundle bundle() {
            return owner;
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

    private final File dir;
    private final Map<String, Object> manifest;
    private final List<Artifact> artifacts;
    private Probe probe;

    private Bundle(File dir, Map<String, Object> manifest, List<Artifact> artifacts) {
        this.dir = dir;
        this.manifest = manifest;
        this.artifacts = artifacts;
        for (Artifact a : artifacts) a.owner = this;
    }

    public static Bundle open(File dir) throws BundleException {
        File mf = new File(dir, "manifest.json");
        if (!dir.isDirectory()) throw new BundleException(dir + " is not a directory: pass a bundle written by clip-export");
        if (!mf.isFile()) throw new BundleException(dir + " has no manifest.json: pass a bundle written by clip-export");
        Map<String, Object> m;
        try {
            m = Json.map(Json.parse(mf));
        } catch (IOException | RuntimeException e) {
            throw new BundleException(mf + " cannot be read: " + e.getMessage());
        }
        Object ver = m.get("schema_version");
        if (!(ver instanceof Number) || ((Number) ver).intValue() != 1) {
            throw new BundleException(mf + ": manifest schema_version " + ver + " is not supported (1)");
        }
        for (String key : new String[] {"model", "preprocessing", "probe", "artifacts", "tokenizer", "logit_scale"}) {
            if (!m.containsKey(key)) throw new BundleException(mf + ": manifest has no '" + key + "'");
        }
        List<Artifact> arts = new ArrayList<>();
        for (Object o : Json.list(m.get("artifacts"))) {
            Map<String, Object> a = Json.map(o);
            String path = Json.str(a.get("path"));
            Object parity = a.get("parity");
            String encoder = Json.str(a.get("encoder"));
            ArtifactShapes shapes;
            try {
                shapes = ArtifactShapes.parse(a.get("shapes"), encoder, "artifact " + path + ": shapes");
            } catch (ShapeDescriptor.ShapeException e) {
                throw new BundleException(mf + ": " + e.getMessage());
            }
            arts.add(new Artifact(Json.str(a.get("target")), Json.str(a.get("precision")), encoder, path,
                    new File(dir, path), parity instanceof Map ? Json.map(parity) : null,
                    !Boolean.FALSE.equals(a.get("default")), TensorSpec.parseList(a.get("inputs")),
                    TensorSpec.parseList(a.get("outputs")), shapes));
        }
        return new Bundle(dir, m, Collections.unmodifiableList(arts));
    }

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
     * The artifact {@code runtime} runs for {@code encoder} ("image" / "text"): the requested {@code precision} if
     * not null, else the manifest's default one, else fp32, else the first. For {@code litert} the artifact's declared
     * inputs and outputs are checked ({@link LiteRtSpec#check}). Failures are one-line {@link BundleException}s that
     * name the problem and the fix.
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
            throw new BundleException(dir + ": no " + encoder + " encoder for runtime " + runtime
                    + ": export one with clip-export --target " + target);
        }
        Artifact chosen = null;
        if (precision != null) {
            for (Artifact a : candidates) if (a.precision.equals(precision)) { chosen = a; break; }
            if (chosen == null) {
                throw new BundleException(dir + ": no " + precision + " " + encoder + " encoder for runtime " + runtime
                        + " (it has " + String.join(", ", precisions) + "): pick one of those or export " + precision);
            }
        } else {
            for (Artifact a : candidates) if (a.isDefault) { chosen = a; break; }
            if (chosen == null) for (Artifact a : candidates) if ("fp32".equals(a.precision)) { chosen = a; break; }
            if (chosen == null) chosen = candidates.get(0);
        }
        if (LiteRtSpec.RUNTIME.equals(runtime)) LiteRtSpec.check(this, chosen);
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

    public File resolve(String relPath) {
        return new File(dir, relPath);
    }

    public PreprocessSpec preprocessSpec() {
        return PreprocessSpec.fromManifest(manifest);
    }

    public double logitScale() {
        return Json.num(manifest.get("logit_scale"));
    }

    public int embeddingDim() {
        Object d = manifest.get("embedding_dim");
        return d == null ? (int) Json.num(Json.map(manifest.get("spec")).get("embed_dim")) : (int) Json.num(d);
    }

    public File tokenizerVocab() {
        return tokenizerFile("vocab", "tokenizer/vocab.json");
    }

    public File tokenizerMerges() {
        return tokenizerFile("merges", "tokenizer/merges.txt");
    }

    /** A tokenizer file named in the manifest; bundles written before clipdeploy 0.1.0's fix stored the merge
     * count under "merges", so a non-string value falls back to the standard location. */
    private File tokenizerFile(String key, String standard) {
        Object v = Json.map(manifest.get("tokenizer")).get(key);
        return resolve(v instanceof String ? (String) v : standard);
    }

    /** The probe set, read on first use. */
    public synchronized Probe probe() throws BundleException {
        if (probe != null) return probe;
        Map<String, Object> p = Json.map(manifest.get("probe"));
        Map<String, Object> ref = Json.map(p.get("reference"));
        try {
            Npy images = Npy.read(resolve(Json.str(p.get("images"))));
            if (images.shape.length != 4 || images.shape[1] != 3 || images.shape[2] != images.shape[3]) {
                throw new BundleException("probe images must be [N, 3, R, R], got " + java.util.Arrays.toString(images.shape));
            }
            Npy ids = Npy.read(resolve(Json.str(p.get("token_ids"))));
            List<String> captions = new ArrayList<>();
            Object capPath = p.get("captions");
            if (capPath != null) {
                for (Object c : Json.list(Json.parse(resolve(Json.str(capPath))))) captions.add(Json.str(c));
            }
            probe = new Probe(images.shape[2], images.rows(), ids.intRows(), Npy.read(resolve(Json.str(ref.get("image")))).rows(),
                    Npy.read(resolve(Json.str(ref.get("text")))).rows(), Collections.unmodifiableList(captions));
        } catch (BundleException e) {
            throw e;
        } catch (IOException | RuntimeException e) {
            throw new BundleException(dir + ": probe set cannot be read: " + e.getMessage());
        }
        return probe;
    }
}
