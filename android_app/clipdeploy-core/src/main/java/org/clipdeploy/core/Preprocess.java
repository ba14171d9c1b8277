package org.clipdeploy.core;

/**
 * The model input from an RGB image, bit-identical to clipdeploy's Python preprocessing
 * ({@code torchvision} resize of a PIL image = Pillow's resampler; center crop; {@code to_tensor}):
 * <ol>
 * <li>resize so the shorter side is {@code S}: the longer becomes {@code floor(S * long / short)};
 *     Pillow's separable convolution resampling (antialiased: the filter widens by the downscale factor),
 *     horizontal pass then vertical, each rounding to 8 bits in 22-bit fixed point;</li>
 * <li>center crop {@code R x R} at {@code round((H - R) / 2), round((W - R) / 2)} with Python's round (half to even);</li>
 * <li>float32 CHW, value / 255.</li>
 * </ol>
 */
public final class Preprocess {
    private Preprocess() {}

    static final int PRECISION_BITS = 32 - 8 - 2;

    /** {width, height} after resizing the shorter side to {@code shorter} (torchvision's rule). */
    public static int[] resizedSize(int w, int h, int shorter) {
        if (w <= h) return new int[] {shorter, (int) ((double) ((long) shorter * h) / w)};
        return new int[] {(int) ((double) ((long) shorter * w) / h), shorter};
    }

    /** {top, left} of the center crop (Python's round: half to even). */
    public static int[] cropOffsets(int w, int h, int size) {
        if (w < size || h < size) throw new IllegalArgumentException("cannot crop " + size + " from " + w + "x" + h);
        return new int[] {(int) Math.rint((h - size) / 2.0), (int) Math.rint((w - size) / 2.0)};
    }

    public static float[] apply(RgbImage image, PreprocessSpec spec) {
        int[] size = resizedSize(image.width, image.height, spec.resizeShorterSideTo);
        RgbImage resized = resize(image, size[0], size[1], spec.interpolation);
        return toChw(centerCrop(resized, spec.imageSize));
    }

    public static RgbImage centerCrop(RgbImage im, int size) {
        int[] tl = cropOffsets(im.width, im.height, size);
        byte[] out = new byte[size * size * 3];
        for (int y = 0; y < size; y++) {
            System.arraycopy(im.rgb, ((tl[0] + y) * im.width + tl[1]) * 3, out, y * size * 3, size * 3);
        }
        return new RgbImage(size, size, out);
    }

    public static float[] toChw(RgbImage im) {
        int n = im.width * im.height;
        float[] out = new float[3 * n];
        for (int p = 0; p < n; p++) {
            for (int c = 0; c < 3; c++) out[c * n + p] = (im.rgb[3 * p + c] & 0xff) / 255.0f;
        }
        return out;
    }

    /** Pillow's {@code Image.resize(size, filter)} for RGB images: horizontal pass, then vertical, each only when
     * that size changes. */
    public static RgbImage resize(RgbImage im, int outW, int outH, Interpolation filter) {
        if (outW <= 0 || outH <= 0) throw new IllegalArgumentException("bad output size " + outW + "x" + outH);
        RgbImage cur = im;
        if (outW != cur.width) {
            // along x: one line per row, pixels 3 bytes apart
            byte[] out = new byte[outW * cur.height * 3];
            pass(cur.rgb, out, coeffs(cur.width, outW, filter), cur.height, cur.width * 3, 3, outW * 3, 3);
            cur = new RgbImage(outW, cur.height, out);
        }
        if (outH != cur.height) {
            // along y: one line per column, pixels a row apart
            byte[] out = new byte[outW * outH * 3];
            pass(cur.rgb, out, coeffs(cur.height, outH, filter), outW, 3, outW * 3, 3, outW * 3);
            cur = new RgbImage(outW, outH, out);
        }
        return cur == im ? new RgbImage(im.width, im.height, im.rgb.clone()) : cur;
    }

    /** One resampling pass over {@code lines} lines: line {@code l}'s pixel {@code i} is at
     * {@code l * lineStep + i * pixelStep} in {@code src} (and with the {@code out} steps in {@code dst}). */
    private static void pass(byte[] src, byte[] dst, Coeffs c, int lines, int lineStep, int pixelStep,
                             int outLineStep, int outPixelStep) {
        int outLen = c.bounds.length / 2;
        for (int l = 0; l < lines; l++) {
            for (int o = 0; o < outLen; o++) {
                int min = c.bounds[2 * o], len = c.bounds[2 * o + 1], k0 = o * c.ksize;
                int s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
                for (int j = 0; j < len; j++) {
                    int w = c.k[k0 + j], p = l * lineStep + (min + j) * pixelStep;
                    s0 += (src[p] & 0xff) * w;
                    s1 += (src[p + 1] & 0xff) * w;
                    s2 += (src[p + 2] & 0xff) * w;
                }
                int d = l * outLineStep + o * outPixelStep;
                dst[d] = clip8(s0);
                dst[d + 1] = clip8(s1);
                dst[d + 2] = clip8(s2);
            }
        }
    }

    private static byte clip8(int acc) {
        int v = acc >> PRECISION_BITS;
        return (byte) (v < 0 ? 0 : (v > 255 ? 255 : v));
    }

    static final class Coeffs {
        final int ksize;
        final int[] bounds;   // per output index: first input index, count
        final int[] k;        // fixed-point weights, ksize per output index
        Coeffs(int ksize, int[] bounds, int[] k) {
            this.ksize = ksize;
            this.bounds = bounds;
            this.k = k;
        }
    }

    /** Pillow's {@code precompute_coeffs} + {@code normalize_coeffs_8bpc} for one axis. */
    static Coeffs coeffs(int inSize, int outSize, Interpolation filter) {
        double scale = (double) inSize / outSize;
        double filterscale = Math.max(scale, 1.0);
        double support = filter.support * filterscale;
        int ksize = (int) Math.ceil(support) * 2 + 1;
        int[] bounds = new int[2 * outSize];
        int[] kk = new int[outSize * ksize];
        double[] w = new double[ksize];
        for (int xx = 0; xx < outSize; xx++) {
            double center = (xx + 0.5) * scale;
            double ss = 1.0 / filterscale;
            int xmin = (int) (center - support + 0.5);
            if (xmin < 0) xmin = 0;
            int xmax = (int) (center + support + 0.5);
            if (xmax > inSize) xmax = inSize;
            xmax -= xmin;
            double ww = 0.0;
            for (int x = 0; x < xmax; x++) {
                w[x] = filter.weight((x + xmin - center + 0.5) * ss);
                ww += w[x];
            }
            for (int x = 0; x < xmax; x++) {
                double v = ww != 0.0 ? w[x] / ww : w[x];
                kk[xx * ksize + x] = v < 0 ? (int) (-0.5 + v * (1 << PRECISION_BITS)) : (int) (0.5 + v * (1 << PRECISION_BITS));
            }
            bounds[2 * xx] = xmin;
            bounds[2 * xx + 1] = xmax;
        }
        return new Coeffs(ksize, bounds, kk);
    }
}
