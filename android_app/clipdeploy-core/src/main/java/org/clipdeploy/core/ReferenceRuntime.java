package org.clipdeploy.core;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Runs the goldens' linear reference artifacts ({@code goldens/bundle/reference-fp32/*.npy}):
 * image: {@code normalize(W @ flatten(chw))}; text: {@code normalize(sum of T[id % V] over non-pad ids)};
 * classifier (the manifest's {@code reference_model.classifier}): {@code logits = logit_scale * C @ normalize(W @
 * flatten(chw))}, W the image encoder's matrix (the artifact's path), C the bundle's verified class matrix
 * ({@link Bundle#classifier()}), applied to the float32 embedding as the exported classifier module applies it to its
 * image wrapper's output; all accumulated in double. Real arithmetic on real inputs, so the benchmark runner, parity and report are
 * tested end to end where no phone runtime exists. {@code scale} perturbs the weights (tests of the bars).
 */
public final class ReferenceRuntime implements EncoderRuntime {
    private final double perturb;
    private int threads;

    public ReferenceRuntime() {
        this(0.0);
    }

    /** {@code perturb}: add this relative amount to every other weight (0: exact). */
    public ReferenceRuntime(double perturb) {
        this.perturb = perturb;
    }

    @Override
    public String name() {
        return "reference";
    }

    @Override
    public boolean supports(Bundle.Artifact a) {
        return "reference".equals(a.target) && a.path.endsWith(".npy");
    }

    @Override
    public void configure(int threads) {
        this.threads = threads;
    }

    @Override
    public Map<String, Object> versions() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("java", System.getProperty("java.version"));
        return m;
    }

    @Override
    public Map<String, Object> options() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("threads", 1L);
        m.put("requested_threads", (long) threads);
        m.put("delegate", "none (linear reference model)");
        return Collections.unmodifiableMap(m);
    }

    @Override
    public EncoderSession load(Bundle.Artifact a) throws Exception {
        Npy w = Npy.read(a.verifiedFile());          // sha256 against the manifest first (BundleException)
        if (w.shape.length != 2) throw new IllegalArgumentException(a.path + ": expected a 2-d weight, got " + java.util.Arrays.toString(w.shape));
        final float[] data = w.floats();
        if (perturb != 0) for (int k = 0; k < data.length; k += 2) data[k] *= (float) (1.0 + perturb);
        final int rows = w.shape[0], cols = w.shape[1];
        final boolean image = a.takesImage();
        final float[][] classes;
        final double scale;
        if (a.isClassifier()) {
            if (a.bundle() == null) throw new IllegalArgumentException(a.path + ": a classifier artifact needs its bundle");
            Classifier c = a.bundle().classifier();         // the class matrix, verified (sha256) and checked
            if (c.embeddingDim != rows) {
                throw new IllegalArgumentException(a.path + ": the image matrix has " + rows + " rows, the class matrix "
                        + c.embeddingDim + " columns");
            }
            classes = c.rows().toArray(new float[0][]);
            scale = c.logitScale;
        } else {
            classes = null;
            scale = 0;
        }
        return new EncoderSession() {
            @Override
            public float[] encodeImage(float[] chw, int size) {
                if (!image) throw new IllegalStateException("a text encoder got an image");
                if (chw.length != cols) throw new IllegalArgumentException("image has " + chw.length + " values, the model takes " + cols);
                double[] y = new double[rows];
                for (int r = 0; r < rows; r++) {
                    double s = 0;
                    int off = r * cols;
                    for (int c = 0; c < cols; c++) s += (double) data[off + c] * chw[c];
                    y[r] = s;
                }
                float[] e = normalized(y);
                if (classes == null) return e;
                // the head on the image encoder's float32 embedding (as the exported Classifier module: image
                // wrapper, then logit_scale * embedding @ C.T), accumulated in double
                float[] logits = new float[classes.length];
                for (int c = 0; c < classes.length; c++) logits[c] = (float) (scale * Vectors.dot(classes[c], e));
                return logits;
            }

            @Override
            public float[] encodeText(int[] ids) {
                if (image) throw new IllegalStateException("an image encoder got token ids");
                double[] y = new double[cols];
                for (int id : ids) {
                    if (id == 0) continue;
                    int row = Math.floorMod(id, rows);
                    for (int c = 0; c < cols; c++) y[c] += data[row * cols + c];
                }
                return normalized(y);
            }

            @Override
            public void close() {
            }
        };
    }

    static float[] normalized(double[] y) {
        double n = 0;
        for (double v : y) n += v * v;
        n = Math.sqrt(n);
        float[] out = new float[y.length];
        for (int k = 0; k < y.length; k++) out[k] = (float) (y[k] / n);
        return out;
    }
}
