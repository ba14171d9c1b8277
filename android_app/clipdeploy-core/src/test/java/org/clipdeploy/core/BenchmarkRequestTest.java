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
        assertEquals(defaultReport, a.report);
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
