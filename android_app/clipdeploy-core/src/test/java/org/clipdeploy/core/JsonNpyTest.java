package org.clipdeploy.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.io.ByteArrayInputStream;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.Test;

public class JsonNpyTest {
    @Test
    public void roundTrip() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("s", "caf\u00e9 \"q\" \\ \n\t\u0001");
        m.put("i", 42L);
        m.put("d", 1.5e-7);
        m.put("nan", Double.NaN);
        m.put("inf", Double.POSITIVE_INFINITY);
        m.put("b", true);
        m.put("n", null);
        m.put("l", Arrays.asList(1L, 2.5, "x"));
        m.put("arr", new double[] {0.25, 3});
        for (boolean pretty : new boolean[] {false, true}) {
            Map<String, Object> back = Json.map(Json.parse(Json.write(m, pretty)));
            assertEquals(m.get("s"), back.get("s"));
            assertEquals(42L, back.get("i"));
            assertEquals(1.5e-7, Json.num(back.get("d")), 0);
            assertEquals(null, back.get("nan"));
            assertEquals(null, back.get("inf"));
            assertEquals(true, back.get("b"));
            assertTrue(back.containsKey("n"));
            assertEquals(Arrays.asList(1L, 2.5, "x"), back.get("l"));
            assertEquals(Arrays.asList(0.25, 3.0), back.get("arr"));
        }
        assertEquals("\ud83d\udc36", Json.parse("\"\\ud83d\\udc36\""));
    }

    @Test
    public void badJsonIsOneLineWithAPosition() {
        for (String bad : new String[] {"{", "[1,]", "{\"a\" 1}", "tru", "\"x", "1 2", "{\"a\":01x}"}) {
            try {
                Json.parse(bad);
                throw new AssertionError("accepted " + bad);
            } catch (Json.JsonException e) {
                assertTrue(e.getMessage(), e.getMessage().startsWith("not JSON: ") && e.getMessage().contains("line 1"));
            }
        }
    }

    @Test
    public void npyOfTheGoldensAndTruncation() throws Exception {
        Npy ids = Npy.read(Goldens.file("bundle/probe/token_ids.npy"));
        assertEquals("<i4", ids.dtype);
        assertArrayEquals(new int[] {8, 77}, ids.shape);
        assertEquals(ClipTokenizer.SOT, ids.intRows()[0][0]);
        Npy img = Npy.read(Goldens.file("bundle/probe/images.npy"));
        assertArrayEquals(new int[] {6, 3, 32, 32}, img.shape);
        List<float[]> rows = Arrays.asList(img.rows());
        assertEquals(3 * 32 * 32, rows.get(5).length);
        byte[] all = java.nio.file.Files.readAllBytes(Goldens.file("bundle/probe/token_ids.npy").toPath());
        try {
            Npy.read(new ByteArrayInputStream(Arrays.copyOf(all, all.length - 4)));
            throw new AssertionError("a truncated .npy was read");
        } catch (java.io.IOException e) {
            assertTrue(e.getMessage().contains("truncated"));
        }
    }
}
