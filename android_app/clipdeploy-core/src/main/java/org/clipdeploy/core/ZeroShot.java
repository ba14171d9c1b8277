package org.clipdeploy.core;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;

/**
 * Zero-shot classification: each label becomes several prompts ("a photo of a {}."), their text
 * embeddings are L2-normalized, averaged and re-normalized (the prompt ensemble), an image's logits are
 * {@code logit_scale * image . class} and its probabilities their softmax. A bundle's own class matrix and labels
 * are {@link Bundle#classifier()}; a classifier artifact returns the logits directly.
 */
public final class ZeroShot {
    private ZeroShot() {}

    /** A few of OpenAI's ImageNet prompt templates; {} is replaced by the label. */
    public static final List<String> DEFAULT_TEMPLATES = Collections.unmodifiableList(Arrays.asList(
            "a photo of a {}.", "a blurry photo of a {}.", "a photo of the large {}.", "a photo of the small {}.",
            "a close-up photo of a {}.", "a bright photo of a {}.", "a dark photo of a {}.", "a drawing of a {}."));

    public static List<String> prompts(String label, List<String> templates) {
        List<String> out = new ArrayList<>(templates.size());
        for (String t : templates) out.add(t.replace("{}", label));
        return out;
    }

    /** normalize(mean(normalize(e) for e in promptEmbeddings)), in double. */
    public static float[] ensemble(List<float[]> promptEmbeddings) {
        if (promptEmbeddings.isEmpty()) throw new IllegalArgumentException("no prompt embeddings");
        int d = promptEmbeddings.get(0).length;
        double[] acc = new double[d];
        for (float[] e : promptEmbeddings) {
            double[] u = Vectors.unit(e);
            for (int k = 0; k < d; k++) acc[k] += u[k];
        }
        double n = 0;
        for (int k = 0; k < d; k++) {
            acc[k] /= promptEmbeddings.size();
            n += acc[k] * acc[k];
        }
        n = Math.max(Math.sqrt(n), 1e-12);
        float[] out = new float[d];
        for (int k = 0; k < d; k++) out[k] = (float) (acc[k] / n);
        return out;
    }

    /** {@code logitScale * class_c . image} for every class, accumulated in double (the logits of a classifier). */
    public static float[] logits(float[] image, List<float[]> classEmbeddings, double logitScale) {
        double[] z = logits64(image, classEmbeddings, logitScale);
        float[] out = new float[z.length];
        for (int c = 0; c < z.length; c++) out[c] = (float) z[c];
        return out;
    }

    static double[] logits64(float[] image, List<float[]> classEmbeddings, double logitScale) {
        double[] logits = new double[classEmbeddings.size()];
        for (int c = 0; c < logits.length; c++) logits[c] = logitScale * Vectors.dot(classEmbeddings.get(c), image);
        return logits;
    }

    /** softmax(logit_scale * image . class) over the classes ({@link #logits}, then {@link #softmax}, in double). */
    public static float[] probabilities(float[] image, List<float[]> classEmbeddings, double logitScale) {
        return softmax(logits64(image, classEmbeddings, logitScale));
    }

    /** The softmax of logits (max subtracted, in double): what a classifier artifact's output becomes. */
    public static float[] softmax(float[] logits) {
        double[] z = new double[logits.length];
        for (int c = 0; c < z.length; c++) z[c] = logits[c];
        return softmax(z);
    }

    static float[] softmax(double[] logits) {
        double max = Double.NEGATIVE_INFINITY;
        for (double v : logits) max = Math.max(max, v);
        double[] e = new double[logits.length];
        double sum = 0;
        for (int c = 0; c < logits.length; c++) {
            e[c] = Math.exp(logits[c] - max);
            sum += e[c];
        }
        float[] p = new float[logits.length];
        for (int c = 0; c < p.length; c++) p[c] = (float) (e[c] / sum);
        return p;
    }

    /** Indices of the k largest scores, largest first, lower index first on ties. */
    public static int[] topK(float[] scores, int k) {
        Integer[] idx = new Integer[scores.length];
        for (int i = 0; i < idx.length; i++) idx[i] = i;
        Arrays.sort(idx, (a, b) -> scores[a] != scores[b] ? Float.compare(scores[b], scores[a]) : Integer.compare(a, b));
        int n = Math.min(k, scores.length);
        int[] out = new int[n];
        for (int i = 0; i < n; i++) out[i] = idx[i];
        return out;
    }
}
