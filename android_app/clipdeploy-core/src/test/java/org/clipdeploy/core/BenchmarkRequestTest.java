package org.clipdeploy.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;

import java.io.File;
import java.util.Collections;
import java.util.HashMap;
import java.util.Map;
import org.junit.Test;

/** The benchmark activity's extras, as `clip-latency android` sends them (latency/android.py). */
public class BenchmarkRequestTest {
    private final File defaultReport = new File("/sdcard/Android/data/org.clipdeploy.app/files/report.json");

    private static Map<String, Object> extras(Object... kv) {
        Map<String, Object> m = new HashMap<>();
        for (int k = 0; k < kv.length; k += 2) m.put((String) kv[k], kv[k + 1]);
        return m;
    }

    @Test
    public void extrasOfTheAdbContract() {
        // what `am start ... --es bundle B --es runtime R --ei runs 30 --ei warmup 5 --ei threads 4 --es report P` gives
        BenchmarkRequest a = BenchmarkRequest.parse(extras("bundle", "/data/local/tmp/clipdeploy/mobileclip_s0",
                "runtime", "onnxruntime", "runs", 30, "warmup", 5, "threads", 4, "report", "/sdcard/r.json"), defaultReport, null);
        assertEquals(new File("/data/local/tmp/clipdeploy/mobileclip_s0"), a.bundleDir);
        assertEquals("onnxruntime", a.runtime);
        assertEquals(30, a.runs);
        assertEquals(5, a.warmup);
        assertEquals(4, a.threads);
        assertEquals(new File("/sdcard/r.json"), a.report);
        BenchmarkSettings s = a.settings();
        assertEquals("onnxruntime", s.runtime);
        assertEquals(30, s.runs);
        assertEquals(4, s.threads);
    }

    @Test
    public void defaultsAreClipLatencyOnes() {
        BenchmarkRequest a = BenchmarkRequest.parse(extras("bundle", "/b"), defaultReport, null);
        assertEquals("executorch", a.runtime);
        assertEquals(50, a.runs);
        assertEquals(10, a.warmup);
        assertEquals(0, a.threads);
        assertEquals(2.0, a.minSeconds, 0);
        assertEquals(8, a.minBlocks);
        assertEquals(defaultReport, a.report);
        BenchmarkSettings s = a.settings();
        assertEquals(2.0, s.minSeconds, 0);
        assertEquals(8, s.minBlocks);
        // no bundle extra: the first bundle found on the device
        assertEquals(new File("/found"), BenchmarkRequest.parse(Collections.<String, Object>emptyMap(), defaultReport,
                new File("/found")).bundleDir);
    }

    @Test
    public void stringAndLongNumbersAreAccepted() {
        BenchmarkRequest a = BenchmarkRequest.parse(extras("bundle", "/b", "runs", "7", "warmup", 2L), defaultReport, null);
        assertEquals(7, a.runs);
        assertEquals(2, a.warmup);
    }

    @Test
    public void minSecondsAndMinBlocksExtras() {
        // --ef min_seconds 0.5 --ei min_blocks 3
        BenchmarkRequest a = BenchmarkRequest.parse(extras("bundle", "/b", "min_seconds", 0.5f, "min_blocks", 3), defaultReport, null);
        assertEquals(0.5, a.minSeconds, 0);
        assertEquals(3, a.minBlocks);
        BenchmarkSettings s = a.settings();
        assertEquals(0.5, s.minSeconds, 0);
        assertEquals(3, s.minBlocks);
        s.validate();
        // a float extra keeps its decimal value (0.1f is not 0.10000000149011612 in the report)
        assertEquals(0.1, BenchmarkRequest.parse(extras("bundle", "/b", "min_seconds", 0.1f), defaultReport, null).minSeconds, 0);
        // --ed, --ei, --el and --es work too; 0 seconds and 1 block are the smallest
        assertEquals(3.0, BenchmarkRequest.parse(extras("bundle", "/b", "min_seconds", 3.0), defaultReport, null).minSeconds, 0);
        assertEquals(0.0, BenchmarkRequest.parse(extras("bundle", "/b", "min_seconds", 0), defaultReport, null).minSeconds, 0);
        assertEquals(4.0, BenchmarkRequest.parse(extras("bundle", "/b", "min_seconds", 4L), defaultReport, null).minSeconds, 0);
        BenchmarkRequest c = BenchmarkRequest.parse(extras("bundle", "/b", "min_seconds", " 1.5 ", "min_blocks", "1"), defaultReport, null);
        assertEquals(1.5, c.minSeconds, 0);
        assertEquals(1, c.minBlocks);
        assertEquals(12, BenchmarkRequest.parse(extras("bundle", "/b", "min_blocks", 12L), defaultReport, null).minBlocks);
        assertTrue(c.toString(), c.toString().contains("minSeconds=1.5, minBlocks=1"));
    }

    @Test
    public void badExtrasAreOneLineErrors() {
        Object[][] cases = {
            {extras(), "no bundle"},
            {extras("bundle", "/b", "runtime", "coreml"), "unknown runtime 'coreml'"},
            {extras("bundle", "/b", "runs", 0), "runs must be at least 1"},
            {extras("bundle", "/b", "warmup", -1), "warmup"},
            {extras("bundle", "/b", "threads", -2), "threads"},
            {extras("bundle", "/b", "runs", "many"), "runs must be an integer"},
            {extras("bundle", "/b", "runs", 1L << 40), "out of range"},
            {extras("bundle", "/b", "runs", 1.5), "--ei runs N"},
            {extras("bundle", "/b", "min_seconds", -0.5f), "min_seconds must be 0 or more, got -0.5"},
            {extras("bundle", "/b", "min_seconds", "soon"), "min_seconds must be a number, got 'soon'"},
            {extras("bundle", "/b", "min_seconds", "NaN"), "min_seconds must be a finite number"},
            {extras("bundle", "/b", "min_seconds", Double.POSITIVE_INFINITY), "min_seconds must be a finite number"},
            {extras("bundle", "/b", "min_seconds", true), "--ef min_seconds S"},
            {extras("bundle", "/b", "min_blocks", 0), "min_blocks must be at least 1, got 0"},
            {extras("bundle", "/b", "min_blocks", "eight"), "min_blocks must be an integer"},
            {extras("bundle", "/b", "min_blocks", 2.5f), "--ei min_blocks N"},
        };
        for (Object[] c : cases) {
            @SuppressWarnings("unchecked")
            Map<String, Object> e = (Map<String, Object>) c[0];
            try {
                BenchmarkRequest.parse(e, defaultReport, null);
                throw new AssertionError("accepted " + e);
            } catch (IllegalArgumentException ex) {
                assertTrue(ex.getMessage(), ex.getMessage().contains((String) c[1]));
                assertFalse(ex.getMessage().contains("\n"));
            }
        }
    }

    @Test
    public void reportPathEvenWhenTheOtherExtrasAreBad() {
        // the error line must go next to the requested report
        assertEquals(new File("/x/r.json"), BenchmarkRequest.reportPath(extras("report", "/x/r.json", "runs", "?"), defaultReport));
        assertEquals(defaultReport, BenchmarkRequest.reportPath(extras("report", "  "), defaultReport));
    }
}
