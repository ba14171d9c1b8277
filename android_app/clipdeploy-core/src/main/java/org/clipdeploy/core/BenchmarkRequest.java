package org.clipdeploy.core;

import java.io.File;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Map;

/**
 * The benchmark activity's intent extras, the contract {@code clip-latency android} drives
 * (latency/android.py, docs/latency.md): {@code bundle} (string, a bundle directory on the device),
 * {@code runtime} ("executorch" | "onnxruntime" | "litert"), {@code runs}, {@code warmup}, {@code threads} (ints;
 * 0 threads = the runtime's default), {@code report} (string, a path) and, optional, {@code min_seconds}
 * (a float, {@code --ef}; seconds of timed work, at least; default 2.0) and {@code min_blocks} (an int;
 * steady-state blocks, at least; default 8). Parsed here, from the extras as a
 * plain map, so that the contract is unit-tested on the JVM; the Android activity only copies its Bundle
 * into a map. Bad extras raise {@link IllegalArgumentException} with a one-line message.
 */
public final class BenchmarkRequest {
    public static final String EXTRA_BUNDLE = "bundle";
    public static final String EXTRA_RUNTIME = "runtime";
    public static final String EXTRA_RUNS = "runs";
    public static final String EXTRA_WARMUP = "warmup";
    public static final String EXTRA_THREADS = "threads";
    public static final String EXTRA_REPORT = "report";
    public static final String EXTRA_MIN_SECONDS = "min_seconds";
    public static final String EXTRA_MIN_BLOCKS = "min_blocks";

    /** clip-latency's defaults. */
    public static final String DEFAULT_RUNTIME = "executorch";
    public static final int DEFAULT_RUNS = 50;
    public static final int DEFAULT_WARMUP = 10;
    public static final double DEFAULT_MIN_SECONDS = 2.0;
    public static final int DEFAULT_MIN_BLOCKS = 8;

    /** The contract's runtimes; "reference" (the goldens' linear model) is also accepted, for tests. */
    public static final List<String> RUNTIMES = Collections.unmodifiableList(Arrays.asList("executorch", "onnxruntime", "litert"));
    private static final List<String> ACCEPTED = Arrays.asList("executorch", "onnxruntime", "litert", "reference");

    public final File bundleDir;
    public final String runtime;
    public final int runs;
    public final int warmup;
    public final int threads;
    public final File report;
    public final double minSeconds;
    public final int minBlocks;

    public BenchmarkRequest(File bundleDir, String runtime, int runs, int warmup, int threads, File report) {
        this(bundleDir, runtime, runs, warmup, threads, report, DEFAULT_MIN_SECONDS, DEFAULT_MIN_BLOCKS);
    }

    public BenchmarkRequest(File bundleDir, String runtime, int runs, int warmup, int threads, File report,
                            double minSeconds, int minBlocks) {
        this.bundleDir = bundleDir;
        this.runtime = runtime;
        this.runs = runs;
        this.warmup = warmup;
        this.threads = threads;
        this.report = report;
        this.minSeconds = minSeconds;
        this.minBlocks = minBlocks;
    }

    /** The core's settings for this request. */
    public BenchmarkSettings settings() {
        return new BenchmarkSettings(runtime, runs, warmup, threads, minSeconds, minBlocks);
    }

    /** Where the report goes: the {@code report} extra, else {@code defaultReport} (even when other extras are bad,
     * so that the error line lands where the caller polls). */
    public static File reportPath(Map<String, ?> extras, File defaultReport) {
        Object v = extras.get(EXTRA_REPORT);
        if (v instanceof String && !((String) v).trim().isEmpty()) return new File(((String) v).trim());
        return defaultReport;
    }

    /** Reads and checks the extras. {@code defaultBundle} is used when there is no {@code bundle} extra. */
    public static BenchmarkRequest parse(Map<String, ?> extras, File defaultReport, File defaultBundle) {
        Object b = extras.get(EXTRA_BUNDLE);
        File bundle = b instanceof String && !((String) b).trim().isEmpty() ? new File(((String) b).trim()) : defaultBundle;
        if (bundle == null) {
            throw new IllegalArgumentException("no bundle: pass --es bundle /data/local/tmp/clipdeploy/<model>");
        }
        Object r = extras.get(EXTRA_RUNTIME);
        String runtime = r instanceof String && !((String) r).trim().isEmpty() ? ((String) r).trim() : DEFAULT_RUNTIME;
        if (!ACCEPTED.contains(runtime)) {
            throw new IllegalArgumentException("unknown runtime '" + runtime + "': use executorch, onnxruntime or litert");
        }
        int runs = intExtra(extras, EXTRA_RUNS, DEFAULT_RUNS);
        int warmup = intExtra(extras, EXTRA_WARMUP, DEFAULT_WARMUP);
        int threads = intExtra(extras, EXTRA_THREADS, 0);
        double minSeconds = doubleExtra(extras, EXTRA_MIN_SECONDS, DEFAULT_MIN_SECONDS);
        int minBlocks = intExtra(extras, EXTRA_MIN_BLOCKS, DEFAULT_MIN_BLOCKS);
        if (runs < 1) throw new IllegalArgumentException("runs must be at least 1, got " + runs);
        if (warmup < 0) throw new IllegalArgumentException("warmup must be 0 or more, got " + warmup);
        if (threads < 0) throw new IllegalArgumentException("threads must be 0 (the runtime's default) or more, got " + threads);
        if (Double.isNaN(minSeconds) || Double.isInfinite(minSeconds)) {
            throw new IllegalArgumentException("min_seconds must be a finite number, got " + minSeconds);
        }
        if (minSeconds < 0) throw new IllegalArgumentException("min_seconds must be 0 or more, got " + minSeconds);
        if (minBlocks < 1) throw new IllegalArgumentException("min_blocks must be at least 1, got " + minBlocks);
        return new BenchmarkRequest(bundle, runtime, runs, warmup, threads, reportPath(extras, defaultReport),
                minSeconds, minBlocks);
    }

    /** A number extra: {@code --ef} gives a Float, {@code --ed} a Double, {@code --ei}/{@code --el} an Integer/Long,
     * {@code --es} a String; all are accepted. */
    private static double doubleExtra(Map<String, ?> extras, String key, double dflt) {
        Object v = extras.get(key);
        if (v == null) return dflt;
        // a Float through its decimal text: --ef min_seconds 0.1 is 0.1, not 0.10000000149011612
        if (v instanceof Float) return Double.parseDouble(v.toString());
        if (v instanceof Double || v instanceof Integer || v instanceof Long) return ((Number) v).doubleValue();
        if (v instanceof String) {
            try {
                return Double.parseDouble(((String) v).trim());
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException(key + " must be a number, got '" + v + "'");
            }
        }
        throw new IllegalArgumentException(key + " must be a number (--ef " + key + " S), got " + v);
    }

    /** An int extra: {@code --ei} gives an Integer, {@code --es}/{@code --el} a String/Long; all are accepted. */
    private static int intExtra(Map<String, ?> extras, String key, int dflt) {
        Object v = extras.get(key);
        if (v == null) return dflt;
        if (v instanceof Integer) return (Integer) v;
        if (v instanceof Long) {
            long l = (Long) v;
            if (l < Integer.MIN_VALUE || l > Integer.MAX_VALUE) throw new IllegalArgumentException(key + " is out of range: " + l);
            return (int) l;
        }
        if (v instanceof String) {
            try {
                return Integer.parseInt(((String) v).trim());
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException(key + " must be an integer, got '" + v + "'");
            }
        }
        throw new IllegalArgumentException(key + " must be an integer (--ei " + key + " N), got " + v);
    }

    @Override
    public String toString() {
        return "BenchmarkRequest(bundle=" + bundleDir + ", runtime=" + runtime + ", runs=" + runs + ", warmup=" + warmup
                + ", threads=" + threads + ", minSeconds=" + minSeconds + ", minBlocks=" + minBlocks + ", report=" + report + ")";
    }
}
