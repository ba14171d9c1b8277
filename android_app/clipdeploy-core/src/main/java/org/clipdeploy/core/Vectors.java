package org.clipdeploy.core;

/** Small vector helpers on embeddings. */
public final class Vectors {
    private Vectors() {}

    public static double dot(float[] a, float[] b) {
        if (a.length != b.length) throw new IllegalArgumentException("dimension " + a.length + " != " + b.length);
        double s = 0;
        for (int k = 0; k < a.length; k++) s += (double) a[k] * b[k];
        return s;
    }

    public static double norm(float[] a) {
        return Math.sqrt(dot(a, a));
    }

    /** {@code a / max(|a|, 1e-12)} (norm in double). */
    public static float[] l2normalize(float[] a) {
        double n = Math.max(norm(a), 1e-12);
        float[] out = new float[a.length];
        for (int k = 0; k < a.length; k++) out[k] = (float) (a[k] / n);
        return out;
    }

    static double[] unit(float[] a) {
        double n = 0;
        for (float v : a) n += (double) v * v;
        n = Math.max(Math.sqrt(n), 1e-12);
        double[] out = new double[a.length];
        for (int k = 0; k < a.length; k++) out[k] = a[k] / n;
        return out;
    }

    /** Index of the largest value, the first one on ties (numpy's argmax). */
    public static int argmax(double[] v) {
        int best = 0;
        for (int k = 1; k < v.length; k++) if (v[k] > v[best]) best = k;
        return best;
    }

    public static int argmax(float[] v) {
        int best = 0;
        for (int k = 1; k < v.length; k++) if (v[k] > v[best]) best = k;
        return best;
    }

    public static boolean allFinite(float[] v) {
        for (float x : v) if (Float.isNaN(x) || Float.isInfinite(x)) return false;
        return true;
    }

    /**
     * Rows of {@code per} values each, back to back (a batch [N, ...] for a runtime's flat input buffer). Every row
     * must have {@code per} values.
     */
    public static float[] concatRows(float[][] rows, int per) {
        if (rows.length == 0) throw new IllegalArgumentException("an empty batch");
        float[] out = new float[rows.length * per];
        for (int k = 0; k < rows.length; k++) {
            if (rows[k].length != per) {
                throw new IllegalArgumentException("row " + k + " has " + rows[k].length + " values, expected " + per);
            }
            System.arraycopy(rows[k], 0, out, k * per, per);
        }
        return out;
    }

    /** A runtime's flat batched output [N, D] as N rows of D. */
    public static float[][] splitRows(float[] flat, int n) {
        if (n < 1 || flat.length % n != 0 || flat.length == 0) {
            throw new IllegalArgumentException("an output of " + flat.length + " values is not " + n + " embeddings");
        }
        int d = flat.length / n;
        float[][] out = new float[n][];
        for (int k = 0; k < n; k++) out[k] = java.util.Arrays.copyOfRange(flat, k * d, (k + 1) * d);
        return out;
    }
}
