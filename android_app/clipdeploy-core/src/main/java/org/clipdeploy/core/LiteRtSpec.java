package org.clipdeploy.core;

import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Map;

/**
 * What the LiteRT runner ({@code runtime=litert}, clipdeploy-android's {@code LiteRtRuntime}) expects of a
 * {@code clip-export --target litert} artifact, checked against the manifest before anything is loaded:
 * {@code litert-<fp32|fp16|int8>/{image,text}_encoder.tflite}, one signature {@value #SIGNATURE} with one input
 * ({@code image} float32 {@code [1, 3, R, R]}, R the bundle's image size, RGB in [0, 1], mean/std inside the model; or
 * {@code text} int32 {@code [1, L]}, L the tokenizer's context length) and one output {@code embedding} float32
 * {@code [1, D]}, D the bundle's embedding size. A zero-shot classifier artifact ({@code litert-<p>/classifier.tflite},
 * encoder "classifier") takes the image input and has one output {@value #LOGITS} float32 {@code [1, N]}, N the
 * manifest's classifier labels. Static batch 1. Every failure is one line naming the problem and the fix.
 */
public final class LiteRtSpec {
    public static final String TARGET = "litert";
    public static final String RUNTIME = "litert";
    public static final String EXTENSION = ".tflite";
    public static final String SIGNATURE = "serving_default";
    public static final String OUTPUT = "embedding";
    /** A classifier artifact's signature output. */
    public static final String LOGITS = "logits";
    public static final List<String> PRECISIONS = Collections.unmodifiableList(Arrays.asList("fp32", "fp16", "int8"));
    private static final String FIX = "re-export it with clip-export --target litert";

    public final Bundle.Artifact artifact;
    /** "image" or "text". */
    public final String inputName;
    /** "float32" (image) or "int32" (text). */
    public final String inputDtype;
    public final int[] inputShape;
    public final int embeddingDim;
    /** The signature output the runner reads: {@value #OUTPUT} (an encoder) or {@value #LOGITS} (a classifier). */
    public final String outputName;
    /** Its size: the embedding size, or a classifier's number of labels. */
    public final int outputDim;

    private LiteRtSpec(Bundle.Artifact artifact, String inputName, String inputDtype, int[] inputShape, int embeddingDim,
                       String outputName, int outputDim) {
        this.artifact = artifact;
        this.inputName = inputName;
        this.inputDtype = inputDtype;
        this.inputShape = inputShape;
        this.embeddingDim = embeddingDim;
        this.outputName = outputName;
        this.outputDim = outputDim;
    }

    /** A LiteRT artifact: target {@code litert} and a {@code .tflite} file. */
    public static boolean isLiteRt(Bundle.Artifact a) {
        return TARGET.equals(a.target) && a.path.endsWith(EXTENSION);
    }

    /** Values the input holds: 3*R*R or L. */
    public int inputElements() {
        int n = 1;
        for (int d : inputShape) n *= d;
        return n;
    }

    public List<Integer> outputShape() {
        return Arrays.asList(1, outputDim);
    }

    /** {@link #check(Bundle, Bundle.Artifact)} against the bundle {@code a} was read from (what the runner calls on load). */
    public static LiteRtSpec check(Bundle.Artifact a) throws Bundle.BundleException {
        if (a.bundle() == null) {
            throw new Bundle.BundleException(Bundle.BundleException.Kind.INTEGRITY, a.path + ": the artifact belongs to no bundle: "
                    + "open the bundle with Bundle.open");
        }
        return check(a.bundle(), a);
    }

    /** Checks {@code a}'s manifest entry against what the runner feeds and reads; returns what it declares. */
    public static LiteRtSpec check(Bundle bundle, Bundle.Artifact a) throws Bundle.BundleException {
        String p = a.path;
        if (!TARGET.equals(a.target)) throw fail(p, "not a LiteRT artifact (target " + a.target + ")", "pick a litert-* artifact");
        if (!p.endsWith(EXTENSION)) throw fail(p, "a litert artifact must be a " + EXTENSION + " file", FIX);
        if (!PRECISIONS.contains(a.precision)) {
            throw fail(p, "unknown precision '" + a.precision + "' (LiteRT artifacts are fp32, fp16 or int8)", FIX);
        }
        String dir = "litert-" + a.precision + "/";
        if (!p.startsWith(dir)) throw fail(p, "a " + a.precision + " LiteRT artifact belongs in " + dir, FIX);
        boolean classifier = a.isClassifier();
        boolean image = a.takesImage();
        if (!image && !"text".equals(a.encoder)) {
            throw fail(p, "unknown encoder '" + a.encoder + "' (image, text or classifier)", FIX);
        }

        String name = image ? "image" : "text";
        String dtype = image ? "float32" : "int32";
        int[] want;
        try {
            want = image ? new int[] {1, 3, bundle.preprocessSpec().imageSize, bundle.preprocessSpec().imageSize}
                    : new int[] {1, contextLength(bundle)};
        } catch (RuntimeException e) {
            throw fail(p, "the manifest's preprocessing/tokenizer cannot be read (" + e.getMessage() + ")",
                    "use a bundle written by clip-export");
        }
        int dim;
        try {
            dim = bundle.embeddingDim();
        } catch (RuntimeException e) {
            throw fail(p, "the manifest has no embedding size (" + e.getMessage() + ")", "use a bundle written by clip-export");
        }
        String outName = classifier ? LOGITS : OUTPUT;
        int outDim = dim;
        if (classifier) {
            if (!bundle.hasClassifier()) throw fail(p, "a classifier artifact in a bundle without a classifier block", FIX);
            outDim = Json.list(Json.map(bundle.manifest().get("classifier")).get("labels")).size();
        }

        if (a.inputs.size() != 1) {
            throw fail(p, "declares " + a.inputs.size() + " inputs " + a.inputs + ", expected one ('" + name + "')", FIX);
        }
        Bundle.TensorSpec in = a.inputs.get(0);
        if (!name.equals(in.name)) {
            throw fail(p, "input is named '" + in.name + "', expected '" + name + "' (the runner feeds signature "
                    + SIGNATURE + " by name)", FIX);
        }
        if (!dtype.equals(in.dtype)) {
            throw fail(p, "input '" + name + "' is " + in.dtype + ", expected " + dtype
                    + (image ? " (RGB in [0, 1], NCHW)" : " (token ids)"), FIX);
        }
        if (!in.isStatic()) {
            throw fail(p, "input '" + name + "' has a dynamic shape " + Bundle.TensorSpec.shapeString(in.shape)
                    + " (LiteRT artifacts have a static batch of 1)", FIX + " (static batch 1)");
        }
        if (!Arrays.equals(want, in.shape)) {
            throw fail(p, "input '" + name + "' has shape " + Bundle.TensorSpec.shapeString(in.shape) + ", expected "
                    + Bundle.TensorSpec.shapeString(want) + (image ? " (the bundle's preprocessing image_size)"
                    : " (the tokenizer's context_length)"), FIX + " from this model");
        }

        if (a.outputs.size() != 1) {
            throw fail(p, "declares " + a.outputs.size() + " outputs " + a.outputs + ", expected one ('" + outName + "')", FIX);
        }
        Bundle.TensorSpec out = a.outputs.get(0);
        if (!outName.equals(out.name)) throw fail(p, "output is named '" + out.name + "', expected '" + outName + "'", FIX);
        if (!"float32".equals(out.dtype)) throw fail(p, "output '" + outName + "' is " + out.dtype + ", expected float32", FIX);
        if (!out.isStatic()) {
            throw fail(p, "output '" + outName + "' has a dynamic shape " + Bundle.TensorSpec.shapeString(out.shape)
                    + " (LiteRT artifacts have a static batch of 1)", FIX + " (static batch 1)");
        }
        int[] wantOut = {1, outDim};
        if (!Arrays.equals(wantOut, out.shape)) {
            throw fail(p, "output '" + outName + "' has shape " + Bundle.TensorSpec.shapeString(out.shape) + ", expected "
                    + Bundle.TensorSpec.shapeString(wantOut) + (classifier ? " (the classifier's labels)"
                    : " (the bundle's embedding_dim)"), FIX + " from this model");
        }
        return new LiteRtSpec(a, name, dtype, want, dim, outName, outDim);
    }

    /**
     * Compares a tensor of the loaded model (its signature's element type as LiteRT names it, FLOAT / INT, and its
     * dimensions) with what the manifest declared; null when they agree, else the one-line problem.
     */
    public String mismatch(String what, String tensorName, String elementType, int[] dims, String wantDtype, int[] wantDims) {
        String want = "float32".equals(wantDtype) ? "FLOAT" : "int32".equals(wantDtype) ? "INT" : wantDtype;
        if (elementType != null && !want.equalsIgnoreCase(elementType)) {
            return artifact.path + ": the model's " + what + " '" + tensorName + "' is " + elementType + ", the manifest says "
                    + wantDtype + ": the bundle is inconsistent; " + FIX;
        }
        if (dims != null && !Arrays.equals(dims, wantDims)) {
            return artifact.path + ": the model's " + what + " '" + tensorName + "' has shape " + Arrays.toString(dims)
                    + ", the manifest says " + Arrays.toString(wantDims) + ": the bundle is inconsistent; " + FIX;
        }
        return null;
    }

    /** {@link #mismatch} for the input. */
    public String inputMismatch(String elementType, int[] dims) {
        return mismatch("input", inputName, elementType, dims, inputDtype, inputShape);
    }

    /** {@link #mismatch} for the output. */
    public String outputMismatch(String elementType, int[] dims) {
        return mismatch("output", outputName, elementType, dims, "float32", new int[] {1, outputDim});
    }

    private static int contextLength(Bundle bundle) {
        Map<String, Object> tok = Json.map(bundle.manifest().get("tokenizer"));
        Object n = tok.get("context_length");
        return n == null ? 77 : (int) Json.num(n);
    }

    private static Bundle.BundleException fail(String path, String problem, String fix) {
        return new Bundle.BundleException(Bundle.BundleException.Kind.SCHEMA, (path + ": " + problem + ": " + fix).replace('\n', ' '));
    }
}
