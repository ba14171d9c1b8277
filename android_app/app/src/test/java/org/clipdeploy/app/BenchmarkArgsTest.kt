package org.clipdeploy.app

import java.io.File
import org.junit.Assert.assertEquals
import org.junit.Assert.assertThrows
import org.junit.Assert.assertTrue
import org.junit.Test

/** The benchmark activity's extras, as `clip-latency android` sends them (latency/android.py). Plain JVM. */
class BenchmarkArgsTest {
    private val defaultReport = File("/sdcard/Android/data/org.clipdeploy.app/files/report.json")

    @Test
    fun extrasOfTheAdbContract() {
        val a = BenchmarkArgs.parse(
            mapOf(
                "bundle" to "/data/local/tmp/clipdeploy/mobileclip_s0", "runtime" to "onnxruntime",
                "runs" to 30, "warmup" to 5, "threads" to 4, "report" to "/sdcard/r.json",
            ),
            defaultReport,
        )
        assertEquals(File("/data/local/tmp/clipdeploy/mobileclip_s0"), a.bundleDir)
        assertEquals("onnxruntime", a.runtime)
        assertEquals(30, a.runs)
        assertEquals(5, a.warmup)
        assertEquals(4, a.threads)
        assertEquals(File("/sdcard/r.json"), a.report)
    }

    @Test
    fun defaultsAreClipLatencyOnes() {
        val a = BenchmarkArgs.parse(mapOf("bundle" to "/b"), defaultReport)
        assertEquals("executorch", a.runtime)
        assertEquals(50, a.runs)
        assertEquals(10, a.warmup)
        assertEquals(0, a.threads)
        assertEquals(defaultReport, a.report)
        // no bundle extra: the first bundle found on the device
        assertEquals(File("/found"), BenchmarkArgs.parse(emptyMap(), defaultReport, File("/found")).bundleDir)
    }

    @Test
    fun stringAndLongNumbersAreAccepted() {
        val a = BenchmarkArgs.parse(mapOf("bundle" to "/b", "runs" to "7", "warmup" to 2L), defaultReport)
        assertEquals(7, a.runs)
        assertEquals(2, a.warmup)
    }

    @Test
    fun badExtrasAreOneLineErrors() {
        fun bad(extras: Map<String, Any?>, fragment: String) {
            val e = assertThrows(IllegalArgumentException::class.java) { BenchmarkArgs.parse(extras, defaultReport) }
            assertTrue(e.message!!, e.message!!.contains(fragment))
            assertTrue(!e.message!!.contains('\n'))
        }
        bad(emptyMap(), "no bundle")
        bad(mapOf("bundle" to "/b", "runtime" to "coreml"), "unknown runtime 'coreml'")
        bad(mapOf("bundle" to "/b", "runs" to 0), "runs must be at least 1")
        bad(mapOf("bundle" to "/b", "warmup" to -1), "warmup")
        bad(mapOf("bundle" to "/b", "threads" to -2), "threads")
        bad(mapOf("bundle" to "/b", "runs" to "many"), "runs must be an integer")
    }

    @Test
    fun reportPathEvenWhenTheOtherExtrasAreBad() {
        // the error line must go next to the requested report
        assertEquals(File("/x/r.json"), BenchmarkArgs.reportPath(mapOf("report" to "/x/r.json", "runs" to "?"), defaultReport))
        assertEquals(defaultReport, BenchmarkArgs.reportPath(mapOf("report" to "  "), defaultReport))
    }
}
