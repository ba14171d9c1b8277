package org.clipdeploy.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * A bundle's zero-shot classifier (issue 23): the manifest's {@code classifier} block with its class matrix, read by
 * {@link Bundle#classifier()} from the verified {@code classifier/class_embeddings.npy} (float32 [N, D], rows
 * L2-normalized, in label order) and checked against {@code classifier/labels.json}. An image embedding's logits are
 * {@code logitScale * C . embedding} ({@link ZeroShot#logits}), its probabilities their softmax; a classifier
 * artifact ({@code encoder "classifier"}) computes the same logits from the image in one call.
 */
public final class Classifier {
    /** Limits of the manifest's block (latency/manifest.schema.json). */
    public static final int MAX_LABELS = 100000;
    public static final int MAX_TEMPLATES = 1000;
    public static final int MAX_STRING_CHARS = 1000;

    /** The labels, in the order of the class matrix's rows and of the logits. */
    public final List<String> labels;
    /** The prompt templates the class matrix was made with ({} is the label). */
    public final List<String> templates;
    /** Where the templates came from (openai, cifar10, simple, file), or null. */
    public final String templateSource;
    public final double logitScale;
    public final int embeddingDim;
    /** The bundle paths of the class matrix and of the label file (null when the manifest names none). */
    public final String classEmbeddingsPath, labelsFile;
    private final float[][] classes;

    Classifier(List<String> labels, List<String> templates, String templateSource, double logitScale, float[][] classes,
               String classEmbeddingsPath, String labelsFile) {
        if (labels.size() != classes.length) {
            throw new IllegalArgumentException(labels.size() + " labels but " + classes.length + " class embeddings");
        }
        this.labels = Collections.unmodifiableList(new ArrayList<>(labels));
        this.templates = Collections.unmodifiableList(new ArrayList<>(templates));
        this.templateSource = templateSource;
        this.logitScale = logitScale;
        this.classes = classes;
        this.embeddingDim = classes.length == 0 ? 0 : classes[0].length;
        this.classEmbeddingsPath = classEmbeddingsPath;
        this.labelsFile = labelsFile;
    }

    public int size() {
        return labels.size();
    }

    /** Row {@code c} of the class matrix (a copy). */
    public float[] classEmbedding(int c) {
        return classes[c].clone();
    }

    /** The class matrix, one row per label (copies: the classifier stays as read). */
    public List<float[]> classEmbeddings() {
        List<float[]> out = new ArrayList<>(classes.length);
        for (float[] row : classes) out.add(row.clone());
        return out;
    }

    /** {@code logitScale * C . imageEmbedding} ({@link ZeroShot#logits}). */
    public float[] logits(float[] imageEmbedding) {
        return ZeroShot.logits(imageEmbedding, rows(), logitScale);
    }

    /** softmax of {@link #logits} ({@link ZeroShot#probabilities}). */
    public float[] probabilities(float[] imageEmbedding) {
        return ZeroShot.probabilities(imageEmbedding, rows(), logitScale);
    }

    /** The rows without copying (package-internal: the reference runtime and the benchmark read them). */
    List<float[]> rows() {
        List<float[]> out = new ArrayList<>(classes.length);
        Collections.addAll(out, classes);
        return out;
    }

    @Override
    public String toString() {
        return classes.length + " classes x " + templates.size() + " templates, d " + embeddingDim + ", scale " + logitScale;
    }
}
