package org.clipdeploy.app

import java.io.File

/**
 * The benchmark activity's intent extras (docs/latency.md, "Android benchmark contract"):
 * `bundle` (string, a bundle directory on the device), `runtime` ("executorch" | "onnxruntime"),
 * `runs`, `warmup`, `threads` (ints; 0 threads = the runtime's default) and `report` (string, a path).
 * Plain Kotlin (extras as a map) so that it is unit-tested on the JVM.
 */
data class BenchmarkArgs(
    val bundleDir: File,
    val runtime: String,
    val runs: Int,
    val warmup: Int,
    val threads: Int,
    val report: File,
) {
    companion object {
        const val EXTRA_BUNDLE = "bundle"
        const val EXTRA_RUNTIME = "runtime"
        const val EXTRA_RUNS = "runs"
        const val EXTRA_WARMUP = "warmup"
        const val EXTRA_THREADS = "threads"
        const val EXTRA_REPORT = "report"

        /** clip-latency's defaults. */
        const val DEFAULT_RUNTIME = "executorch"
        const val DEFAULT_RUNS = 50
        const val DEFAULT_WARMUP = 10

        /** The contract's runtimes; "reference" (the goldens' linear model) is accepted for tests. */
        val RUNTIMES = listOf("executorch", "onnxruntime")
        private val ACCEPTED = RUNTIMES + "reference"

        /** Where the report goes: the `report` extra, else [defaultReport] (getExternalFilesDir(null)/report.json). */
        @JvmStatic
        fun reportPath(extras: Map<String, Any?>, defaultReport: File): File =
            (extras[EXTRA_REPORT] as? String)?.trim()?.takeIf { it.isNotEmpty() }?.let { File(it) } ?: defaultReport

        /**
         * Reads and checks the extras; throws IllegalArgumentException with a one-line message on bad input.
         * [defaultBundle] is used when no `bundle` extra is given (the first bundle found on the device).
         */
        @JvmStatic
        fun parse(extras: Map<String, Any?>, defaultReport: File, defaultBundle: File? = null): BenchmarkArgs {
            val bundle = (extras[EXTRA_BUNDLE] as? String)?.trim()?.takeIf { it.isNotEmpty() }?.let { File(it) }
                ?: defaultBundle
                ?: throw IllegalArgumentException("no bundle: pass --es bundle /data/local/tmp/clipdeploy/<model>")
            val runtime = (extras[EXTRA_RUNTIME] as? String)?.trim()?.takeIf { it.isNotEmpty() } ?: DEFAULT_RUNTIME
            require(runtime in ACCEPTED) { "unknown runtime '$runtime': use ${RUNTIMES.joinToString(" or ")}" }
            val runs = int(extras, EXTRA_RUNS, DEFAULT_RUNS)
            val warmup = int(extras, EXTRA_WARMUP, DEFAULT_WARMUP)
            val threads = int(extras, EXTRA_THREADS, 0)
            require(runs >= 1) { "runs must be at least 1, got $runs" }
            require(warmup >= 0) { "warmup must be 0 or more, got $warmup" }
            require(threads >= 0) { "threads must be 0 (the runtime's default) or more, got $threads" }
            return BenchmarkArgs(bundle, runtime, runs, warmup, threads, reportPath(extras, defaultReport))
        }

        /** An int extra: `--ei` gives an Int, `--es`/`--el` a String/Long; all are accepted. */
        private fun int(extras: Map<String, Any?>, key: String, default: Int): Int =
            when (val v = extras[key]) {
                null -> default
                is Int -> v
                is Long -> if (v in Int.MIN_VALUE..Int.MAX_VALUE) v.toInt()
                else throw IllegalArgumentException("$key is out of range: $v")
                is String -> v.trim().toIntOrNull() ?: throw IllegalArgumentException("$key must be an integer, got '$v'")
                else -> throw IllegalArgumentException("$key must be an integer (--ei $key N), got $v")
            }
    }
}
