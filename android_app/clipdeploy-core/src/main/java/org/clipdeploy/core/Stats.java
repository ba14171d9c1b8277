package org.clipdeploy.core;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Latency statistics with clip-latency's definitions (clipdeploy.latency.stats): numpy's linear
 * percentiles, sample standard deviation (n - 1), 10-90 % trimmed mean. The report keeps the raw samples;
 * {@code clip-latency ingest} recomputes these from them.
 */
public final class Stats {
    private Stats() {}

    public static final class Summary {
        public final int n;
        public final double median, p90, p95, p99, min, max, mean, std, trimmedMean;

        Summary(int n, double median, double p90, double p95, double p99, double min, double max, double mean,
                double std, double trimmedMean) {
            this.n = n;
            this.median = median;
            this.p90 = p90;
            this.p95 = p95;
            this.p99 = p99;
            this.min = min;
            this.max = max;
            this.mean = mean;
            this.std = std;
            this.trimmedMean = trimmedMean;
        }

        public Map<String, Object> toMap() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("n", (long) n);
            m.put("median", median);
            m.put("p90", p90);
            m.put("p95", p95);
            m.put("p99", p99);
            m.put("min", min);
            m.put("max", max);
            m.put("mean", mean);
            m.put("std", std);
            m.put("trimmed_mean", trimmedMean);
            return m;
        }
    }

    /** The q-th percentile of sorted samples, linear interpolation at (n - 1) q / 100. */
    public static double percentile(double[] sorted, double q) {
        if (sorted.length == 0) throw new IllegalArgumentException("no samples");
        double pos = (sorted.length - 1) * q / 100.0;
        int lo = (int) Math.floor(pos);
        int hi = Math.min(lo + 1, sorted.length - 1);
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
    }

    public static Summary summarize(double[] samples) {
        if (samples.length == 0) throw new IllegalArgumentException("no samples to summarize");
        for (double v : samples) {
            if (Double.isNaN(v) || Double.isInfinite(v)) throw new IllegalArgumentException("non-finite latency sample");
        }
        double[] x = samples.clone();
        Arrays.sort(x);
        int n = x.length;
        double mean = 0;
        for (double v : samples) mean += v;
        mean /= n;
        double ss = 0;
        for (double v : samples) ss += (v - mean) * (v - mean);
        double std = n > 1 ? Math.sqrt(ss / (n - 1)) : 0.0;
        int k = (int) Math.floor(0.1 * n);
        double trimmed = 0;
        for (int i = k; i < n - k; i++) trimmed += x[i];
        trimmed /= n - 2 * k;
        return new Summary(n, percentile(x, 50), percentile(x, 90), percentile(x, 95), percentile(x, 99), x[0],
                x[n - 1], mean, std, trimmed);
    }
}
