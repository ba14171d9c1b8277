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
        double mean = pairwiseSum(samples, 0, n) / n;
        double ss = 0;
        for (double v : samples) ss += (v - mean) * (v - mean);
        double std = n > 1 ? Math.sqrt(ss / (n - 1)) : 0.0;
        int k = (int) Math.floor(0.1 * n);
        double trimmed = pairwiseSum(x, k, n - k) / (n - 2 * k);
        return new Summary(n, percentile(x, 50), percentile(x, 90), percentile(x, 95), percentile(x, 99), x[0],
                x[n - 1], mean, std, trimmed);
    }

    /** numpy's pairwise summation (blocks of 8 unrolled below 128 elements), so means agree to the last bit more often. */
    static double pairwiseSum(double[] a, int from, int to) {
        int n = to - from;
        if (n < 8) {
            double s = 0;
            for (int i = from; i < to; i++) s += a[i];
            return s;
        }
        if (n <= 128) {
            double[] r = new double[8];
            for (int j = 0; j < 8; j++) r[j] = a[from + j];
            int i;
            for (i = 8; i < n - (n % 8); i += 8) {
                for (int j = 0; j < 8; j++) r[j] += a[from + i + j];
            }
            double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
            for (; i < n; i++) res += a[from + i];
            return res;
        }
        int n2 = n / 2;
        n2 -= n2 % 8;
        return pairwiseSum(a, from, from + n2) + pairwiseSum(a, from + n2, to);
    }
}
