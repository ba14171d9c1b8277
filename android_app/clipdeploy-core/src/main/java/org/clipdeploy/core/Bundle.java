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

        Artifact(String target, String precision, String encoder, String path, File file, Map<String, Object> parity,
                 boolean isDefault) {
            this.target = target;
            this.precision = precision;
            this.encoder = encoder;
            this.path = path;
            this.file = file;
            this.parity = parity;
            this.isDefault = isDefault;
        }

        @Override
        public String toString() {
            return path;
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
            arts.add(new Artifact(Json.str(a.get("target")), Json.str(a.get("precision")), Json.str(a.get("encoder")), path,
                    new File(dir, path), parity instanceof Map ? Json.map(parity) : null,
                    !Boolean.FALSE.equals(a.get("default"))));
        }
        return new Bundle(dir, m, Collections.unmodifiableList(arts));
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
