package org.clipdeploy.app

import android.content.res.AssetManager
import android.os.ParcelFileDescriptor
import androidx.test.ext.junit.runners.AndroidJUnit4
import androidx.test.platform.app.InstrumentationRegistry
import java.io.File
import org.clipdeploy.core.Json
import org.clipdeploy.core.LatencyReport
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNotNull
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Before
import org.junit.Test
import org.junit.runner.RunWith

/**
 * The adb contract of [BenchmarkActivity], driven the way `clip-latency android` drives it: the same
 * `am start` command line (through the instrumentation's shell), then polling for the report or its
 * `.error`. The bundle is goldens/bundle (packed as test assets): its artifacts are the linear reference
 * model, which the "reference" runtime runs, so the whole benchmark runs on any device or emulator.
 */
@RunWith(AndroidJUnit4::class)
class BenchmarkActivityContractTest {
    private val instrumentation = InstrumentationRegistry.getInstrumentation()
    private val target = instrumentation.targetContext
    private lateinit var bundleDir: File
    private lateinit var report: File

    @Before
    fun setUp() {
        bundleDir = File(target.filesDir, "test-bundles/golden_linear")
        bundleDir.deleteRecursively()
        copyAssets(instrumentation.context.assets, "bundle", bundleDir)
        assertTrue(File(bundleDir, "manifest.json").isFile)
        report = File(target.getExternalFilesDir(null) ?: target.filesDir, "contract-test/report.json")
        report.parentFile!!.mkdirs()
        for (f in outputs()) f.delete()
    }

    private fun outputs() = listOf(report, File(report.path + ".tmp"), File(report.path + ".error"))

    private fun copyAssets(assets: AssetManager, path: String, dest: File) {
        val children = assets.list(path).orEmpty()
        if (children.isEmpty()) {
            dest.parentFile!!.mkdirs()
            assets.open(path).use { input -> dest.outputStream().use { input.copyTo(it) } }
        } else {
            for (c in children) copyAssets(assets, "$path/$c", File(dest, c))
        }
    }

    /**
     * `am start -W -n org.clipdeploy.app/.BenchmarkActivity --es bundle … --es report …` (latency/android.py).
     * min_seconds 0 / min_blocks 1: the smallest run, one 0.25 s block (the defaults, 2 s in 8 blocks, are for
     * real models).
     */
    private fun amStart(bundle: String, runtime: String, runs: Int = 5, warmup: Int = 1, threads: Int = 0,
                        minSeconds: Double = 0.0, minBlocks: Int = 1) {
        val cmd = "am start -W -n ${target.packageName}/.BenchmarkActivity --es bundle $bundle --es runtime $runtime " +
            "--ei runs $runs --ei warmup $warmup --ei threads $threads --ef min_seconds $minSeconds " +
            "--ei min_blocks $minBlocks --es report ${report.path}"
        val pfd = instrumentation.uiAutomation.executeShellCommand(cmd)
        val out = ParcelFileDescriptor.AutoCloseInputStream(pfd).use { String(it.readBytes()) }
        assertFalse("am start failed: $out", out.contains("Error"))
    }

    /** Polls until the report or its .error appears (what clip-latency android does). */
    private fun awaitOutcome(timeoutMs: Long = 180_000): File {
        val error = File(report.path + ".error")
        val deadline = System.currentTimeMillis() + timeoutMs
        while (System.currentTimeMillis() < deadline) {
            if (report.isFile) return report
            if (error.isFile) return error
            Thread.sleep(200)
        }
        fail("neither ${report.path} nor its .error after $timeoutMs ms")
        throw AssertionError()
    }

    @Suppress("UNCHECKED_CAST")
    private fun records(m: Map<String, Any?>): List<Map<String, Any?>> =
        Json.list(m["records"]).map { it as Map<String, Any?> }

    @Test
    fun referenceRuntimeWritesAValidReport() {
        amStart(bundleDir.path, "reference", runs = 5, warmup = 1)
        val outcome = awaitOutcome()
        if (outcome != report) fail("the app reported an error: ${outcome.readText()}")
        assertFalse("the .tmp is renamed, not left behind", File(report.path + ".tmp").exists())

        val m = LatencyReport.read(report)
        assertEquals("android-app", m["source"])
        assertEquals("clipdeploy-android BenchmarkActivity", Json.map(m["tool"])["name"])
        assertEquals("golden_linear", Json.map(m["bundle"])["model"])
        assertEquals(bundleDir.path, Json.map(m["bundle"])["path"])
        val host = Json.map(m["host"])
        assertEquals("Android", host["os"])
        assertTrue((host["device"] as String).isNotEmpty())
        val settings = Json.map(m["settings"])
        assertEquals(listOf<Any>("reference"), Json.list(settings["runtimes"]))
        assertEquals(5L, (settings["runs"] as Number).toLong())
        assertEquals(1L, (settings["min_blocks"] as Number).toLong())

        val recs = records(m)
        assertEquals(3, recs.size)            // image, text and the zero-shot classifier
        for (r in recs) {
            assertEquals("${r["id"]}: ${r["reason"]}", "ok", r["status"])
            val steady = Json.map(r["steady"])
            assertTrue(Json.list(steady["samples_ms"]).size >= 5)
            val parity = Json.map(r["parity"])
            assertEquals(true, parity["finite"])
            assertTrue("${r["id"]} max_abs ${parity["max_abs"]}", (parity["max_abs"] as Number).toDouble() <= 1e-5)
            assertEquals(1.0, (parity["zero_shot_agreement"] as Number).toDouble(), 0.0)
            val memory = Json.map(r["memory"])
            assertEquals("Debug.getMemoryInfo totalPss", memory["source"])
            assertTrue((memory["peak_rss_mb"] as Number).toDouble() > 0)
        }
    }

    @Test
    fun otherRuntimesArtifactsAreListedAsSkipped() {
        amStart(bundleDir.path, "executorch", runs = 2, warmup = 0)
        val outcome = awaitOutcome()
        if (outcome != report) fail("the app reported an error: ${outcome.readText()}")
        val m = LatencyReport.read(report)
        val recs = records(m)
        assertEquals(3, recs.size)            // image, text and the zero-shot classifier
        for (r in recs) {
            assertEquals("skipped", r["status"])
            assertNotNull(r["reason"])
        }
        assertEquals(listOf<Any>("executorch"), Json.list(Json.map(m["settings"])["runtimes"]))
    }

    @Test
    fun liteRtIsAcceptedAndTheOtherArtifactsAreSkipped() {
        amStart(bundleDir.path, "litert", runs = 2, warmup = 0, threads = 2)
        val outcome = awaitOutcome()
        if (outcome != report) fail("the app reported an error: ${outcome.readText()}")
        val m = LatencyReport.read(report)
        val recs = records(m)
        assertEquals(3, recs.size)            // image, text and the zero-shot classifier
        for (r in recs) {
            assertEquals("skipped", r["status"])
            assertEquals("runtime not requested (runtime litert)", r["reason"])
        }
        assertEquals(listOf<Any>("litert"), Json.list(Json.map(m["settings"])["runtimes"]))
    }

    @Test
    fun missingBundleWritesOneErrorLine() {
        amStart(File(target.filesDir, "no-such-bundle").path, "executorch")
        val outcome = awaitOutcome()
        assertEquals(File(report.path + ".error"), outcome)
        val text = outcome.readText()
        assertEquals("one line", 1, text.trimEnd('\n').lines().size)
        assertTrue(text, text.contains("no-such-bundle"))
        assertFalse(report.exists())
    }

    @Test
    fun unknownRuntimeWritesOneErrorLine() {
        amStart(bundleDir.path, "coreml")
        val outcome = awaitOutcome(60_000)
        assertEquals(File(report.path + ".error"), outcome)
        val text = outcome.readText()
        assertTrue(text, text.contains("unknown runtime 'coreml': use executorch, onnxruntime or litert"))
    }
}
