package org.clipdeploy.core;

/**
 * What a benchmark run does; the defaults are clip-latency run's. The steady state samples until all of:
 * {@link #runs} samples, {@link #minSeconds} of timed work and {@link #minBlocks} blocks (see
 * {@link Benchmark}); a block closes after a sample once it holds {@link #BLOCK_SECONDS} of timed work and at
 * least {@link #BLOCK_MIN_SAMPLES} samples, and the last, partial block closes when sampling stops.
 */
public final class BenchmarkSettings {
    /** A steady-state block closes once its own timed work reaches this (seconds) ... */
    public static final double BLOCK_SECONDS = 0.25;
    /** ... and it holds at least this many samples. */
    public static final int BLOCK_MIN_SAMPLES = 3;

    /** Timed samples, at least. */
    public int runs = 50;
    /** Untimed calls before timing. */
    public int warmup = 10;
    /** Runtime threads; 0 = the runtime's default. */
    public int threads = 0;
    /** Keep sampling until this much timed work (seconds). */
    public double minSeconds = 2.0;
    /** Keep sampling until this many blocks have closed (the last, partial block does not count). */
    public int minBlocks = 8;
    /** The runtime to measure ("executorch", "onnxruntime", "litert", "coreml", "reference"); artifacts of others are skipped. */
    public String runtime;

    public BenchmarkSettings() {}

    public BenchmarkSettings(String runtime, int runs, int warmup, int threads) {
        this.runtime = runtime;
        this.runs = runs;
        this.warmup = warmup;
        this.threads = threads;
    }

    public BenchmarkSettings(String runtime, int runs, int warmup, int threads, double minSeconds, int minBlocks) {
        this(runtime, runs, warmup, threads);
        this.minSeconds = minSeconds;
        this.minBlocks = minBlocks;
    }

    public void validate() {
        if (runs < 1) throw new IllegalArgumentException("runs must be at least 1, got " + runs);
        if (warmup < 0) throw new IllegalArgumentException("warmup must be 0 or more, got " + warmup);
        if (threads < 0) throw new IllegalArgumentException("threads must be 0 (default) or more, got " + threads);
        if (!(minSeconds >= 0) || Double.isInfinite(minSeconds)) {
            throw new IllegalArgumentException("minSeconds must be 0 or more (and finite), got " + minSeconds);
        }
        if (minBlocks < 1) throw new IllegalArgumentException("minBlocks must be at least 1, got " + minBlocks);
    }
}
