package org.clipdeploy.app

import android.content.Intent
import android.graphics.Typeface
import android.os.Bundle
import android.os.Handler
import android.os.Looper
import android.os.Process
import android.util.Log
import android.view.WindowManager
import android.widget.ScrollView
import android.widget.TextView
import androidx.appcompat.app.AppCompatActivity
import java.io.File
import java.util.concurrent.atomic.AtomicBoolean
import kotlin.concurrent.thread
import org.clipdeploy.core.LatencyReport
import org.clipdeploy.core.BenchmarkRequest

/**
 * The adb benchmark contract (docs/latency.md; driven by `clip-latency android`):
 *
 *     adb shell am start -W -n org.clipdeploy.app/.BenchmarkActivity --es bundle /data/local/tmp/clipdeploy/<model> \
 *         --es runtime executorch --ei runs 50 --ei warmup 10 --ei threads 0 \
 *         [--ef min_seconds 2.0 --ei min_blocks 8] \
 *         --es report /sdcard/Android/data/org.clipdeploy.app/files/report.json
 *
 * `runtime` is `executorch`, `onnxruntime` or `litert` (BenchmarkRequest.RUNTIMES; `reference` for the tests).
 * Runs the core benchmark on a background thread with the chosen runtime (the other runtimes' artifacts are
 * listed as skipped), writes `<report>.tmp` and renames it to `<report>`; on any failure writes one line to
 * `<report>.error`. Shows its progress, then finishes; its process (":benchmark") then exits so that the
 * next run starts cold. The screen is kept on and the activity in front while it runs (a foreground app
 * gets the big cores).
 */
class BenchmarkActivity : AppCompatActivity() {
    private lateinit var log: TextView
    private var ranHere = false

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        window.addFlags(WindowManager.LayoutParams.FLAG_KEEP_SCREEN_ON)
        log = TextView(this).apply {
            typeface = Typeface.MONOSPACE
            textSize = 11f
            setPadding(24, 24, 24, 24)
            setTextIsSelectable(true)
        }
        setContentView(ScrollView(this).apply { addView(log) })

        val extras = extrasOf(intent)
        val defaultReport = File(getExternalFilesDir(null) ?: filesDir, "report.json")
        val report = BenchmarkRequest.reportPath(extras, defaultReport)
        val args = try {
            BenchmarkRequest.parse(extras, defaultReport, BundleLocator.find(this).firstOrNull())
        } catch (e: IllegalArgumentException) {
            failAndFinish(report, e.message ?: "bad extras")
            return
        }
        if (!RUNNING.compareAndSet(false, true)) {
            failAndFinish(report, "a benchmark is already running in this process")
            return
        }
        ranHere = true
        show("bundle  ${args.bundleDir}\nruntime ${args.runtime}  runs ${args.runs}  warmup ${args.warmup}  " +
            "threads ${if (args.threads == 0) "default" else args.threads}  " +
            "min_seconds ${args.minSeconds}  min_blocks ${args.minBlocks}\nreport  ${args.report}\n")
        Log.i(TAG, "benchmark: $args")

        thread(name = "clipdeploy-benchmark") {
            try {
                val result = BenchmarkRunner.run(applicationContext, args) { line -> show(line) }
                result.writeAtomically(args.report)
                show("\n" + BenchmarkRunner.table(result.records()))
                show("report written: ${args.report}")
                Log.i(TAG, "report written: ${args.report}")
                runOnUiThread { setResult(RESULT_OK) }
            } catch (t: Throwable) {
                Log.e(TAG, "benchmark failed", t)
                writeError(args.report, oneLine(t))
            } finally {
                RUNNING.set(false)
                runOnUiThread { finish() }
            }
        }
    }

    override fun onDestroy() {
        super.onDestroy()
        if (ranHere && isFinishing && !RUNNING.get()) {
            // A fresh process for the next run: its first load is cold and its PSS is its own.
            Handler(Looper.getMainLooper()).postDelayed({ Process.killProcess(Process.myPid()) }, 500)
        }
    }

    private fun show(line: String) {
        Log.i(TAG, line)
        runOnUiThread { log.append(line + "\n") }
    }

    private fun failAndFinish(report: File, message: String) {
        writeError(report, message)
        finish()
    }

    private fun writeError(report: File, message: String) {
        show("error: $message")
        try {
            LatencyReport.writeError(report, message)
        } catch (e: Exception) {
            Log.e(TAG, "cannot write ${report.path}.error", e)
        }
    }

    companion object {
        private const val TAG = "clipdeploy"
        private val RUNNING = AtomicBoolean(false)

        /** The intent's extras as a plain map (`--ei` ints, `--es` strings, `--el` longs). */
        @Suppress("DEPRECATION")
        fun extrasOf(intent: Intent?): Map<String, Any?> {
            val b = intent?.extras ?: return emptyMap()
            return b.keySet().associateWith { b.get(it) }
        }

        /**
         * One line for the screen and the `.error` file. A bundle the core refused (integrity, unsafe path,
         * incomplete copy, schema) says so with its kind, so nothing is run on it and the user sees why.
         */
        fun oneLine(t: Throwable): String {
            val msg = t.message?.replace('\n', ' ')?.trim().orEmpty()
            if (t is org.clipdeploy.core.Bundle.BundleException) {
                return "bundle refused (${t.kind().name.lowercase(java.util.Locale.ROOT)}): $msg"
            }
            return if (msg.isEmpty()) t.javaClass.simpleName else "${t.javaClass.simpleName}: $msg"
        }
    }
}
