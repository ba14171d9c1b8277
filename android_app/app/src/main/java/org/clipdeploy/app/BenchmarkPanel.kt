package org.clipdeploy.app

import android.content.Intent
import android.view.View
import android.widget.Button
import android.widget.EditText
import android.widget.TextView
import java.io.File
import org.clipdeploy.core.Json
import org.clipdeploy.core.LatencyReport
import org.clipdeploy.core.BenchmarkRequest

/**
 * The Benchmark tab: runs the bundle's probe set through [BenchmarkActivity] exactly as
 * `clip-latency android` does (its own process, so the demo's loaded models do not share its memory or
 * its first load), with the report in the app's files dir (report-app.json), then shows the table.
 */
class BenchmarkPanel(private val activity: MainActivity, root: View) {
    private val runs: EditText = root.findViewById(R.id.runs)
    private val warmup: EditText = root.findViewById(R.id.warmup)
    private val threads: EditText = root.findViewById(R.id.threads)
    private val table: TextView = root.findViewById(R.id.benchmark_table)
    private val report: File = File(activity.getExternalFilesDir(null) ?: activity.filesDir, "report-app.json")

    init {
        root.findViewById<Button>(R.id.run_benchmark).setOnClickListener { run() }
    }

    private fun number(field: EditText, default: Int): Int = field.text.toString().trim().toIntOrNull() ?: default

    private fun run() {
        for (f in listOf(report, File(report.path + ".tmp"), File(report.path + ".error"))) f.delete()
        val intent = Intent(activity, BenchmarkActivity::class.java)
            .putExtra(BenchmarkRequest.EXTRA_BUNDLE, activity.bundleDir().path)
            .putExtra(BenchmarkRequest.EXTRA_RUNTIME, activity.selectedRuntime())
            .putExtra(BenchmarkRequest.EXTRA_RUNS, number(runs, BenchmarkRequest.DEFAULT_RUNS))
            .putExtra(BenchmarkRequest.EXTRA_WARMUP, number(warmup, BenchmarkRequest.DEFAULT_WARMUP))
            .putExtra(BenchmarkRequest.EXTRA_THREADS, number(threads, 0))
            .putExtra(BenchmarkRequest.EXTRA_REPORT, report.path)
        table.text = "running …"
        activity.runBenchmark.launch(intent)
    }

    /** The benchmark activity finished: show its report (or its error line). */
    fun onFinished() {
        val error = File(report.path + ".error")
        table.text = when {
            report.isFile -> try {
                val m = LatencyReport.read(report)
                @Suppress("UNCHECKED_CAST")
                val records = Json.list(m["records"]).map { it as Map<String, Any?> }
                val host = Json.map(m["host"])
                "${host["device"]} · ${host["platform"]}\n${report.path}\n\n" + BenchmarkRunner.table(records)
            } catch (e: Exception) {
                "cannot read ${report.path}: ${BenchmarkActivity.oneLine(e)}"
            }
            error.isFile -> "benchmark failed: " + error.readText().trim()
            else -> "the benchmark did not finish (no report)"
        }
    }
}
