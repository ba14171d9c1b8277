package org.clipdeploy.app

import android.content.Context
import java.util.Locale
import org.clipdeploy.android.AndroidHostInfo
import org.clipdeploy.android.AndroidMemoryProbe
import org.clipdeploy.android.ClipPipeline
import org.clipdeploy.core.Benchmark
import org.clipdeploy.core.Bundle
import org.clipdeploy.core.LatencyReport
import org.clipdeploy.core.BenchmarkRequest

/**
 * Runs the core benchmark (clip-latency run's phases) on one runtime (executorch, onnxruntime or litert, by
 * [ClipPipeline.runtime]) and assembles the report.
 */
object BenchmarkRunner {
    const val SOURCE = "android-app"
    const val TOOL_NAME = "clipdeploy-android BenchmarkActivity"

    /**
     * Every artifact of the bundle: those [BenchmarkRequest.runtime] runs are measured, the others listed as
     * skipped. Slow (minutes): call it off the main thread. [progress] gets one line per phase.
     */
    fun run(context: Context, args: BenchmarkRequest, progress: (String) -> Unit): LatencyReport {
        val bundle = Bundle.open(args.bundleDir)
        val runtime = ClipPipeline.runtime(args.runtime)
        val settings = args.settings()
        settings.validate()
        val memory = AndroidMemoryProbe()
        val listener = memory.sampling { artifact, phase, done, total ->
            progress(if (total > 0) "$artifact: $phase $done/$total" else "$artifact: $phase")
        }
        val records = Benchmark.runAll(bundle, listOf(runtime), settings, memory, listener)

        val libraries = LinkedHashMap<String, String?>()
        for ((name, version) in runtime.versions()) libraries[name] = version?.toString()
        libraries["app"] = BuildConfig.VERSION_NAME
        val report = LatencyReport(SOURCE, TOOL_NAME, BuildConfig.VERSION_NAME)
            .bundle(bundle, args.bundleDir.path)
            .host(AndroidHostInfo.collect(context, libraries))
            .settings(settings, listOf(args.runtime))
        for (r in records) report.addRecord(r)
        return report
    }

    /** A fixed-width table of report records (what the Benchmark tab and the benchmark activity show). */
    fun table(records: List<Map<String, Any?>>): String {
        val sb = StringBuilder()
        val head = "%-44s %-7s %9s %9s %7s %9s %8s %9s %11s %4s%n"
        sb.append(String.format(Locale.ROOT, head, "artifact@runtime", "status", "median ms", "p90 ms", "cold s",
            "first ms", "peak MB", "max abs", "cos min", "zs"))
        for (r in records) {
            val id = r["id"]?.toString() ?: "?"
            val status = r["status"]?.toString() ?: "?"
            if (status != "ok") {
                sb.append(String.format(Locale.ROOT, "%-44s %-7s %s%n", id, status, r["reason"] ?: ""))
                continue
            }
            val stats = map(map(r["steady"])["stats"])
            val load = map(r["load"])
            val memory = map(r["memory"])
            val parity = map(r["parity"])
            sb.append(String.format(Locale.ROOT, "%-44s %-7s %9s %9s %7s %9s %8s %9s %11s %4s%n", id, status,
                fmt(stats["median"], "%.2f"), fmt(stats["p90"], "%.2f"), fmt(load["cold_s"], "%.3f"),
                fmt(r["first_inference_ms"], "%.1f"), fmt(memory["peak_rss_mb"], "%.0f"),
                fmt(parity["max_abs"], "%.1e"), fmt(parity["cosine_min"], "%.8f"),
                fmt(parity["zero_shot_agreement"], "%.2f")))
        }
        return sb.toString()
    }

    private fun map(v: Any?): Map<*, *> = v as? Map<*, *> ?: emptyMap<Any, Any>()

    private fun fmt(v: Any?, pattern: String): String =
        (v as? Number)?.let { String.format(Locale.ROOT, pattern, it.toDouble()) } ?: "-"
}
