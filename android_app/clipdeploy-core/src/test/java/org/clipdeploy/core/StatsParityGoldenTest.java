package org.clipdeploy.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;

import java.util.List;
import java.util.Map;
import org.junit.Test;

public class StatsParityGoldenTest {
    static void close(String what, double want, double got) {
        assertEquals(what, want, got, 1e-12 * Math.max(1.0, Math.abs(want)));
    }

    @Test
    public void summariesEqualClipLatencys() throws Exception {
        List<Object> sets = Json.list(Goldens.json("stats.json").get("summaries"));
        assertTrue(sets.size() >= 5);
        for (Object o : sets) {
            Map<String, Object> c = Json.map(o);
            double[] samples = Json.doubles(c.get("samples_ms"));
            Map<String, Object> want = Json.map(c.get("stats"));
            Map<String, Object> got = Stats.summarize(samples).toMap();
            assertEquals(want.keySet(), got.keySet());
            for (String k : want.keySet()) close("n=" + samples.length + " " + k, Json.num(want.get(k)), Json.num(got.get(k)));
        }
    }

    @Test
    public void summarizeRejectsEmptyAndNonFinite() {
        try {
            Stats.summarize(new double[0]);
            throw new AssertionError("no samples accepted");
        } catch (IllegalArgumentException expected) {
            assertTrue(expected.getMessage().contains("no samples"));
        }
        try {
            Stats.summarize(new double[] {1, Double.NaN});
            throw new AssertionError("NaN accepted");
        } catch (IllegalArgumentException expected) {
            assertTrue(expected.getMessage().contains("non-finite"));
        }
    }

    @Test
    public void parityFiguresAndBarsEqualClipLatencys() throws Exception {
        List<Object> cases = Json.list(Goldens.json("stats.json").get("parity"));
        assertEquals(7, cases.size());
        for (Object o : cases) {
            Map<String, Object> c = Json.map(o);
            String name = Json.str(c.get("name"));
            Parity.Figures f = Parity.measure(Json.floatRows(c.get("reference")), Json.floatRows(c.get("got")),
                    Json.floatRows(c.get("other")));
            Map<String, Object> want = Json.map(c.get("figures"));
            assertEquals(name, want.get("finite"), f.finite);
            assertEquals(name, (int) Json.num(want.get("n")), f.n);
            assertEquals(name, Json.num(want.get("zero_shot_agreement")), f.zeroShotAgreement, 0.0);
            if (f.finite) {
                close(name + " max_abs", Json.num(want.get("max_abs")), f.maxAbs);
                close(name + " cosine_min", Json.num(want.get("cosine_min")), f.cosineMin);
                close(name + " cosine_mean", Json.num(want.get("cosine_mean")), f.cosineMean);
            } else {
                assertTrue(Double.isInfinite(f.maxAbs) && Double.isNaN(f.cosineMin));
                assertEquals(null, want.get("max_abs"));
            }
            Map<String, Object> fails = Json.map(c.get("failures"));
            for (String p : new String[] {"fp32", "fp16", "int8"}) {
                List<Object> wantF = Json.list(fails.get(p));
                List<String> gotF = Parity.failures(f, p);
                assertEquals(name + " " + p + " " + gotF, wantF.size(), gotF.size());
                for (int k = 0; k < wantF.size(); k++) assertEquals(name + " " + p, Json.str(wantF.get(k)), gotF.get(k));
            }
        }
    }

    @Test
    public void failureNumbersAreFormattedLikePython() {
        assertEquals("0.00031", Parity.pyG(3.1e-4, 3));
        assertEquals("1.23e-05", Parity.pyG(1.234e-5, 3));
        assertEquals("1", Parity.pyG(1.0, 3));
        assertEquals("0.05", Parity.pyG(0.05, 3));
        assertEquals("inf", Parity.pyG(Double.POSITIVE_INFINITY, 3));
        assertEquals("1e-05", Parity.pyG(1e-5, 6));      // the bars, as Python's {:g}
        assertEquals("0.002", Parity.pyG(2e-3, 6));
        Parity.Figures f = Parity.measure(new float[][] {{1, 0}, {0, 1}, {1, 1}, {0, 1}, {1, 0}, {1, 0}, {0, 1}, {1, 0}},
                new float[][] {{0, 1}, {0, 1}, {1, 1}, {0, 1}, {1, 0}, {1, 0}, {0, 1}, {1, 0}}, new float[][] {{1, 0}, {0, 1}});
        assertEquals(0.875, f.zeroShotAgreement, 0);
        assertTrue(Parity.failures(f, "fp32").contains("zero-shot top-1 agreement 88% < 100%"));   // 87.5 -> 88 (half to even)
    }

    @Test
    public void parityIsNotCosineAlone() {
        float[][] ref = {{1, 0, 0}, {0, 1, 0}};
        float[][] scaled = {{2, 0, 0}, {0, 2, 0}};          // cosine 1, max abs 1
        float[][] other = {{1, 0, 0}, {0, 1, 0}};
        Parity.Figures f = Parity.measure(ref, scaled, other);
        assertEquals(1.0, f.cosineMin, 1e-12);
        assertFalse(Parity.failures(f, "fp32").isEmpty());
        assertFalse(Parity.failures(f, "fp16").isEmpty());
    }
}
