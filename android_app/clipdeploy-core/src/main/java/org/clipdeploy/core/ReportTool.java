package org.clipdeploy.core;

import java.io.File;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

/**
 * {@code java -cp ... org.clipdeploy.core.ReportTool BUNDLE REPORT [runs] [warmup] [min_seconds] [min_blocks]}:
 * the core's benchmark on a plain JVM, with the {@link ReferenceRuntime} (the goldens' linear bundle), writing a
 * report in the clip-latency schema (source "jvm-core"). The Python suite validates and ingests what it writes,
 * so the report writer the apps use is checked against the schema here. Defaults: 20 runs, 3 warmup,
 * min_seconds 0 and min_blocks 1 (the smallest settings: at least {@code runs} samples and one block of
 * {@link BenchmarkSettings#BLOCK_SECONDS}, a quick check of the writer rather than the apps' defaults).
 * Exit 0 (skipped artifacts included), 1 (an artifact failed), 2 (bad input).
 */
public final class ReportTool {
    private ReportTool() {}

    public static void main(String[] args) {
        System.exit(run(args));
    }

    static int run(String[] args) {
        if (args.length < 2) {
            System.err.println("usage: ReportTool BUNDLE REPORT [runs] [warmup] [min_seconds] [min_blocks]");
            return 2;
        }
        File report = new File(args[1]);
        BenchmarkSettings s;
        try {
            s = new BenchmarkSettings("reference", args.length > 2 ? Integer.parseInt(args[2]) : 20,
                    args.length > 3 ? Integer.parseInt(args[3]) : 3, 1,
                    args.length > 4 ? Double.parseDouble(args[4]) : 0.0, args.length > 5 ? Integer.parseInt(args[5]) : 1);
            s.validate();
        } catch (IllegalArgumentException e) {          // NumberFormatException included
            System.err.println("error: " + e.getMessage());
            return 2;
        }
        try {
            Bundle b = Bundle.open(new File(args[0]));
            List<EncoderRuntime> rts = Arrays.<EncoderRuntime>asList(new ReferenceRuntime());
            LatencyReport rep = new LatencyReport("jvm-core", "clipdeploy-core ReportTool", "0.1.0")
                    .bundle(b, null).host(HostInfo.jvm()).settings(s, Arrays.asList("reference"));
            boolean failed = false;
            for (Map<String, Object> r : Benchmark.runAll(b, rts, s, new MemoryProbe.JvmHeap(),
                    (a, phase, done, total) -> System.err.println("[" + a + "] " + phase + (total > 0 ? " " + done + "/" + total : "")))) {
                rep.addRecord(r);
                failed |= "error".equals(r.get("status")) || "timeout".equals(r.get("status"));
            }
            rep.writeAtomically(report);
            System.out.println("wrote " + report + " (" + rep.records().size() + " records)");
            return failed ? 1 : 0;
        } catch (Bundle.BundleException e) {
            System.err.println("error: " + e.getMessage());
            return 2;
        } catch (Exception e) {
            System.err.println("error: " + e);
            try {
                LatencyReport.writeError(report, e.toString());
            } catch (Exception ignored) {
                // nothing more to do
            }
            return 1;
        }
    }
}
