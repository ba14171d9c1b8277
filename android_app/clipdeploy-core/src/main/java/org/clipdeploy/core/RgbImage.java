package org.clipdeploy.core;

/** An 8-bit RGB image, interleaved, row-major: what every platform's pixels are turned into before preprocessing. */
public final class RgbImage {
    public final int width;
    public final int height;
    /** width * height * 3 bytes, R G B per pixel. */
    public final byte[] rgb;

    public RgbImage(int width, int height, byte[] rgb) {
        if (width <= 0 || height <= 0) throw new IllegalArgumentException("image size must be positive, got " + width + "x" + height);
        if (rgb.length != width * height * 3) {
            throw new IllegalArgumentException("expected " + width * height * 3 + " RGB bytes for " + width + "x" + height
                    + ", got " + rgb.length);
        }
        this.width = width;
        this.height = height;
        this.rgb = rgb;
    }

    public int get(int x, int y, int channel) {
        return rgb[(y * width + x) * 3 + channel] & 0xff;
    }

    /** Packed ARGB ints, as Android's {@code Bitmap.getPixels} and Java's {@code BufferedImage.getRGB} give them (alpha dropped). */
    public static RgbImage fromArgb(int[] argb, int width, int height) {
        if (argb.length < width * height) throw new IllegalArgumentException("too few pixels for " + width + "x" + height);
        byte[] out = new byte[width * height * 3];
        for (int p = 0; p < width * height; p++) {
            int v = argb[p];
            out[3 * p] = (byte) (v >> 16);
            out[3 * p + 1] = (byte) (v >> 8);
            out[3 * p + 2] = (byte) v;
        }
        return new RgbImage(width, height, out);
    }

    /** RGBA bytes with a row stride (CameraX {@code OUTPUT_IMAGE_FORMAT_RGBA_8888}); alpha dropped. */
    public static RgbImage fromRgba(byte[] rgba, int width, int height, int rowStrideBytes) {
        return fromFourChannel(rgba, width, height, rowStrideBytes, 0, 1, 2);
    }

    /** BGRA bytes with a row stride (iOS {@code kCVPixelFormatType_32BGRA}); alpha dropped. */
    public static RgbImage fromBgra(byte[] bgra, int width, int height, int rowStrideBytes) {
        return fromFourChannel(bgra, width, height, rowStrideBytes, 2, 1, 0);
    }

    private static RgbImage fromFourChannel(byte[] src, int width, int height, int stride, int r, int g, int b) {
        if (stride < width * 4) throw new IllegalArgumentException("row stride " + stride + " < width * 4 = " + width * 4);
        if (src.length < stride * (height - 1) + width * 4) throw new IllegalArgumentException("buffer too small for " + width + "x" + height);
        byte[] out = new byte[width * height * 3];
        for (int y = 0; y < height; y++) {
            int row = y * stride;
            for (int x = 0; x < width; x++) {
                int s = row + 4 * x, d = 3 * (y * width + x);
                out[d] = src[s + r];
                out[d + 1] = src[s + g];
                out[d + 2] = src[s + b];
            }
        }
        return new RgbImage(width, height, out);
    }

    /**
     * The image turned clockwise by {@code degrees} (0, 90, 180, 270; CameraX's {@code ImageInfo.rotationDegrees}
     * is the clockwise turn that makes a frame upright). 0 returns this image.
     */
    public RgbImage rotated(int degrees) {
        int d = ((degrees % 360) + 360) % 360;
        if (d == 0) return this;
        if (d != 90 && d != 180 && d != 270) throw new IllegalArgumentException("rotation must be a multiple of 90 degrees, got " + degrees);
        int outW = d == 180 ? width : height, outH = d == 180 ? height : width;
        byte[] out = new byte[rgb.length];
        for (int y = 0; y < height; y++) {
            for (int x = 0; x < width; x++) {
                int dx, dy;
                if (d == 90) {
                    dx = height - 1 - y;
                    dy = x;
                } else if (d == 180) {
                    dx = width - 1 - x;
                    dy = height - 1 - y;
                } else {
                    dx = y;
                    dy = width - 1 - x;
                }
                System.arraycopy(rgb, (y * width + x) * 3, out, (dy * outW + dx) * 3, 3);
            }
        }
        return new RgbImage(outW, outH, out);
    }
}
