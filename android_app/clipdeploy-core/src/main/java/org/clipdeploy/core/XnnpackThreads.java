package org.clipdeploy.core;

import java.io.File;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The XNNPACK thread option the LiteRT runner passes, resolved from the benchmark's {@code threads}
 * (0 = the runtime's default, else exactly that many), and the check of what the load applied.
 *
 * <p>Why the runner sets XNNPACK's own option: LiteRT's {@code Interpreter.Options.setNumThreads} sizes the
 * interpreter's built-in kernels only; the XNNPACK delegate that the Java interpreter applies by default is created
 * with {@code TfLiteXNNPackDelegateOptionsDefault()} ({@code num_threads} 0: no thread pool, one thread) whatever
 * that count is. The runner therefore uses the CPU (XNNPACK) accelerator's own {@code num_threads}
 * ({@code CompiledModel.CpuOptions(numThreads)}, which LiteRT copies into the XNNPACK delegate's options).
 *
 * <p>XNNPACK makes a thread pool only for more than one thread; a pool of n threads is the calling thread plus
 * n - 1 workers, started when the delegate is created (at model load). {@link #verify} compares the threads the
 * process gained during a load ({@code /proc/self/task}) with those n - 1.
 */
public final class XnnpackThreads {
    /** More than this is refused as a typo (phones have at most a dozen or so cores). */
    public static final int MAX_THREADS = 64;
    /** The process's threads on Linux / Android, one directory each. */
    public static final File PROC_TASKS = new File("/proc/self/task");

    /** The benchmark's request: 0 = the runtime's default. */
    public final int requested;
    /** What is passed as XNNPACK's {@code num_threads}; null: not set (LiteRT's default). */
    public final Integer option;
    /** The threads XNNPACK runs on with that option. */
    public final int effective;

    private XnnpackThreads(int requested, Integer option, int effective) {
        this.requested = requested;
        this.option = option;
        this.effective = effective;
    }

    /** Resolves a request; negative or more than {@link #MAX_THREADS} is an {@link IllegalArgumentException}. */
    public static XnnpackThreads resolve(int requested) {
        if (requested < 0) {
            throw new IllegalArgumentException("threads must be 0 (the runtime's default) or more, got " + requested);
        }
        if (requested > MAX_THREADS) {
            throw new IllegalArgumentException("threads " + requested + " is more than " + MAX_THREADS
                    + ": pass the number of CPU cores to use, or 0 for the runtime's default");
        }
        if (requested == 0) return new XnnpackThreads(0, null, 1);
        return new XnnpackThreads(requested, requested, requested);
    }

    /** Threads the delegate's pool starts: n - 1 workers for n > 1, none otherwise. */
    public int expectedNewThreads() {
        return effective > 1 ? effective - 1 : 0;
    }

    /** For the report's runtime_options. */
    public Map<String, Object> toMap() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("threads", (long) effective);
        m.put("requested_threads", (long) requested);
        m.put("xnnpack_num_threads", option == null ? null : (long) (int) option);
        m.put("xnnpack_threads_source", option == null
                ? "LiteRT default (XNNPACK num_threads unset: no thread pool, 1 thread)"
                : "CompiledModel.CpuOptions(numThreads = " + option + ") -> XNNPACK delegate num_threads");
        return m;
    }

    /** The threads of the process, or -1 where {@code taskDir} cannot be listed (not Linux). */
    public static int liveThreads(File taskDir) {
        String[] names = taskDir.list();
        if (names == null) return -1;
        int n = 0;
        for (String s : names) if (!s.isEmpty() && Character.isDigit(s.charAt(0))) n++;
        return n;
    }

    /**
     * What one load did to the process's threads: {@code threads_before_load}, {@code threads_after_load},
     * {@code new_threads}, {@code expected_new_threads} and {@code threads_applied}: true when at least the
     * expected workers appeared (other threads may start too, so more is not a failure), false when fewer did,
     * null when the counts are unknown (-1).
     */
    public Map<String, Object> verify(int before, int after) {
        Map<String, Object> m = new LinkedHashMap<>();
        boolean known = before >= 0 && after >= 0;
        m.put("threads_before_load", known ? (Object) (long) before : null);
        m.put("threads_after_load", known ? (Object) (long) after : null);
        m.put("new_threads", known ? (Object) (long) (after - before) : null);
        m.put("expected_new_threads", (long) expectedNewThreads());
        m.put("threads_applied", known ? (Object) (after - before >= expectedNewThreads()) : null);
        return m;
    }
}
