package org.clipdeploy.core;

/** What a benchmark run does; the defaults are clip-latency run's. */
public final class BenchmarkSettings {
    /** Timed samples, at least. */
    public int runs = 50;
    /** Untimed calls before timing. */
    public int warmup = 10;
    /** Runtime threads; 0 = the runtime's default. */
    public int threads = 0;
    /** Keep sampling until this much timed work (seconds). */
    public double minSeconds = 0.0;
    /** The runtime to measure ("executorch", "onnxruntime", "coreml", "reference"); artifacts of others are skipped. */
    public String runtime;

    public BenchmarkSettings() {}

    public BenchmarkSettings(String runtime, int runs, int warmup, int threads) {
        this.runtime = runtime;
        this.runs = runs;
        this.warmup = warmup;
        this.threads = threads;
    }

    public void validate() {
        if (runs < 1) throw new IllegalArgumentException("runs must be at least 1, got " + runs);
        if (warmup < 0) throw new IllegalArgumentException("warmup must be 0 or more, got " + warmup);
        if (threads < 0) throw new IllegalArgumentException("threads must be 0 (default) or more, got " + threads);
        if (minSeconds < 0) throw new IllegalArgumentException("minSeconds must be 0 or more, got " + minSeconds);
    }
}
