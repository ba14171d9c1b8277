package org.clipdeploy.core;

/** One loaded encoder: the L2-normalized embedding of one input, or of a batch. */
public interface EncoderSession extends AutoCloseable {
    /** {@code chw}: float32 [3, size, size] RGB in [0, 1] (mean/std, if any, is inside the artifact). */
    float[] encodeImage(float[] chw, int size) throws Exception;

    /**
     * A batch {@code [N, 3, size, size]} in one call ({@code N = chws.length}, each row as {@link #encodeImage}), one
     * embedding per row. The caller passes a batch size the artifact accepts ({@code shapes.batch}; the
     * {@link ImageIndexBuilder} plans them). This default runs the rows one at a time; runtimes with a batched
     * input (ONNX Runtime, ExecuTorch, Core ML) override it with one [N, 3, R, R] call.
     */
    default float[][] encodeImages(float[][] chws, int size) throws Exception {
        float[][] out = new float[chws.length][];
        for (int k = 0; k < chws.length; k++) out[k] = encodeImage(chws[k], size);
        return out;
    }

    /** {@code ids}: int32 [L] CLIP token ids, L a length the artifact accepts ({@code shapes.length}; 77 when the
     * manifest has no shapes): {@link ClipTokenizer#tokenizeShortest} makes them. */
    float[] encodeText(int[] ids) throws Exception;

    @Override
    void close();
}
