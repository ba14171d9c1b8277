package org.clipdeploy.core;

/** One loaded encoder: batch 1 in, the L2-normalized embedding out. */
public interface EncoderSession extends AutoCloseable {
    /** {@code chw}: float32 [3, size, size] RGB in [0, 1] (mean/std, if any, is inside the artifact). */
    float[] encodeImage(float[] chw, int size) throws Exception;

    /** {@code ids}: int32 [77] CLIP token ids. */
    float[] encodeText(int[] ids) throws Exception;

    @Override
    void close();
}
