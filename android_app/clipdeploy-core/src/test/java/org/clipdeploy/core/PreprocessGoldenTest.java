package org.clipdeploy.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.awt.image.BufferedImage;
import java.io.File;
import java.util.List;
import java.util.Map;
import javax.imageio.ImageIO;
import org.junit.Test;

public class PreprocessGoldenTest {
    /** Decode a PNG to RGB bytes through its raster (no color conversion). */
    static RgbImage readPng(File f) throws Exception {
        BufferedImage im = ImageIO.read(f);
        if (im == null) throw new AssertionError("cannot decode " + f);
        int w = im.getWidth(), h = im.getHeight();
        int bands = im.getRaster().getNumBands();
        int[] px = im.getRaster().getPixels(0, 0, w, h, (int[]) null);
        byte[] rgb = new byte[w * h * 3];
        for (int p = 0; p < w * h; p++) {
            for (int c = 0; c < 3; c++) rgb[3 * p + c] = (byte) px[p * bands + (bands >= 3 ? c : 0)];
        }
        return new RgbImage(w, h, rgb);
    }

    @Test
    public void everyGoldenImagePreprocessesBitExactly() throws Exception {
        List<Object> cases = Json.list(Goldens.json("preprocess.json").get("cases"));
        assertTrue(cases.size() >= 5);
        boolean bicubic = false, upscale = false;
        for (Object o : cases) {
            Map<String, Object> c = Json.map(o);
            String name = Json.str(c.get("name"));
            RgbImage src = readPng(Goldens.file(Json.str(c.get("source"))));
            assertEquals(name, (int) Json.num(c.get("width")), src.width);
            assertEquals(name, (int) Json.num(c.get("height")), src.height);
            PreprocessSpec spec = new PreprocessSpec((int) Json.num(c.get("image_size")),
                    (int) Json.num(c.get("resize_shorter_side_to")), Interpolation.of(Json.str(c.get("interpolation"))));
            int[] resized = Preprocess.resizedSize(src.width, src.height, spec.resizeShorterSideTo);
            assertArrayEquals(name, Json.ints(c.get("resized")), resized);
            assertArrayEquals(name, Json.ints(c.get("crop")), Preprocess.cropOffsets(resized[0], resized[1], spec.imageSize));
            Npy want = Npy.read(Goldens.file(Json.str(c.get("expected"))));
            assertArrayEquals(name, new int[] {3, spec.imageSize, spec.imageSize}, want.shape);
            float[] got = Preprocess.apply(src, spec);
            float[] exp = want.floats();
            assertEquals(exp.length, got.length);
            int diff = 0;
            for (int k = 0; k < exp.length; k++) if (Float.floatToIntBits(exp[k]) != Float.floatToIntBits(got[k])) diff++;
            assertEquals(name + ": values that differ from Python's preprocess", 0, diff);
            bicubic |= spec.interpolation == Interpolation.BICUBIC;
            upscale |= Math.min(src.width, src.height) < spec.resizeShorterSideTo;
        }
        assertTrue("goldens cover bicubic", bicubic);
        assertTrue("goldens cover upscaling", upscale);
    }

    @Test
    public void cropUsesPythonRoundHalfToEven() {
        assertArrayEquals(new int[] {0, 42}, Preprocess.cropOffsets(341, 256, 256));   // 42.5 -> 42
        assertArrayEquals(new int[] {2, 0}, Preprocess.cropOffsets(256, 259, 256));    // 1.5 -> 2
        assertArrayEquals(new int[] {341, 256}, Preprocess.resizedSize(640, 480, 256));   // {w, h}
        assertArrayEquals(new int[] {256, 384}, Preprocess.resizedSize(300, 451, 256));
    }

    @Test
    public void pixelLayoutsAgree() {
        int w = 3, h = 2, stride = 16;
        int[] argb = new int[w * h];
        byte[] rgba = new byte[stride * h], bgra = new byte[stride * h];
        for (int y = 0; y < h; y++) {
            for (int x = 0; x < w; x++) {
                int r = 10 * x + y, g = 100 + x, b = 200 + y;
                argb[y * w + x] = 0xff000000 | (r << 16) | (g << 8) | b;
                int s = y * stride + 4 * x;
                rgba[s] = (byte) r; rgba[s + 1] = (byte) g; rgba[s + 2] = (byte) b; rgba[s + 3] = (byte) 255;
                bgra[s] = (byte) b; bgra[s + 1] = (byte) g; bgra[s + 2] = (byte) r; bgra[s + 3] = (byte) 255;
            }
        }
        RgbImage a = RgbImage.fromArgb(argb, w, h);
        assertArrayEquals(a.rgb, RgbImage.fromRgba(rgba, w, h, stride).rgb);
        assertArrayEquals(a.rgb, RgbImage.fromBgra(bgra, w, h, stride).rgb);
        assertEquals(21, a.get(2, 1, 0));
    }

    @Test
    public void identityResizeAndChwLayout() {
        byte[] px = new byte[2 * 2 * 3];
        for (int k = 0; k < px.length; k++) px[k] = (byte) (k * 20);
        RgbImage im = new RgbImage(2, 2, px);
        assertArrayEquals(px, Preprocess.resize(im, 2, 2, Interpolation.BILINEAR).rgb);
        float[] chw = Preprocess.toChw(im);
        assertEquals(0f, chw[0], 0f);          // R of pixel 0
        assertEquals(60 / 255f, chw[1], 0f);   // R of pixel 1
        assertEquals(20 / 255f, chw[4], 0f);   // G of pixel 0
    }

    @Test
    public void rotationIsClockwise() {
        // 2x1 image: red, green  ->  90 cw: a 1x2 column red over green
        RgbImage im = new RgbImage(2, 1, new byte[] {(byte) 255, 0, 0, 0, (byte) 255, 0});
        RgbImage r90 = im.rotated(90);
        assertEquals(1, r90.width);
        assertEquals(2, r90.height);
        assertEquals(255, r90.get(0, 0, 0));
        assertEquals(255, r90.get(0, 1, 1));
        RgbImage r270 = im.rotated(-90);
        assertEquals(255, r270.get(0, 0, 1));
        assertArrayEquals(new byte[] {0, (byte) 255, 0, (byte) 255, 0, 0}, im.rotated(180).rgb);
        assertArrayEquals(im.rgb, im.rotated(90).rotated(270).rgb);
        assertTrue(im.rotated(360) == im);
        try {
            im.rotated(45);
            throw new AssertionError("45 degrees accepted");
        } catch (IllegalArgumentException expected) {
            assertTrue(expected.getMessage().contains("multiple of 90"));
        }
    }
}
