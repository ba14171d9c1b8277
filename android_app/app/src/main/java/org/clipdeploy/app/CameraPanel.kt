package org.clipdeploy.app

import android.os.SystemClock
import android.util.Log
import android.view.View
import android.view.inputmethod.EditorInfo
import android.widget.Button
import android.widget.EditText
import android.widget.TextView
import androidx.camera.core.CameraSelector
import androidx.camera.core.ImageAnalysis
import androidx.camera.core.ImageProxy
import androidx.camera.core.Preview
import androidx.camera.lifecycle.ProcessCameraProvider
import androidx.camera.view.PreviewView
import androidx.core.content.ContextCompat
import java.util.Locale
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors
import org.clipdeploy.android.BitmapPixels
import org.clipdeploy.android.ClipPipeline

/**
 * Live zero-shot: CameraX Preview + ImageAnalysis (RGBA_8888 frames, keep only the latest), each frame
 * turned upright, preprocessed exactly like the Python pipeline and classified against the labels'
 * prompt-ensemble embeddings; the top 3 are shown with their probabilities.
 */
class CameraPanel(private val activity: MainActivity, root: View) {
    private val preview: PreviewView = root.findViewById(R.id.preview)
    private val labels: EditText = root.findViewById(R.id.labels)
    private val predictions: TextView = root.findViewById(R.id.predictions)
    private val analysisExecutor: ExecutorService = Executors.newSingleThreadExecutor()
    private var provider: ProcessCameraProvider? = null
    private var wanted = false

    /** Labels with their class embeddings, for the pipeline that computed them. */
    private class Classes(val labels: List<String>, val embeddings: List<FloatArray>, val pipeline: ClipPipeline)

    @Volatile
    private var classes: Classes? = null

    init {
        root.findViewById<Button>(R.id.apply_labels).setOnClickListener { applyLabels() }
        labels.setOnEditorActionListener { _, actionId, _ ->
            if (actionId == EditorInfo.IME_ACTION_DONE) {
                applyLabels()
                true
            } else {
                false
            }
        }
    }

    fun showMessage(text: String) {
        predictions.text = text
    }

    /** A new pipeline: the label embeddings are recomputed with its text encoder. */
    fun onPipeline(p: ClipPipeline) {
        classes = null
        applyLabels(p)
    }

    private fun applyLabels(p: ClipPipeline? = activity.pipeline) {
        if (p == null) {
            showMessage(activity.getString(R.string.no_bundle))
            return
        }
        val names = labels.text.toString().split(',').map { it.trim() }.filter { it.isNotEmpty() }.distinct()
        if (names.isEmpty()) {
            showMessage("type some labels, comma-separated")
            return
        }
        showMessage("embedding ${names.size} labels × ${org.clipdeploy.core.ZeroShot.DEFAULT_TEMPLATES.size} prompts …")
        activity.worker.execute {
            try {
                val embeddings = p.classEmbeddings(names)
                classes = Classes(names, embeddings, p)
            } catch (e: Exception) {
                Log.e(MainActivity.TAG, "label embedding failed", e)
                activity.runOnUiThread { showMessage("cannot embed the labels: ${BenchmarkActivity.oneLine(e)}") }
            }
        }
    }

    /** Binds the camera (the Camera tab is visible and the permission granted). */
    fun start() {
        wanted = true
        val future = ProcessCameraProvider.getInstance(activity)
        future.addListener({
            val cameraProvider = future.get()
            provider = cameraProvider
            if (!wanted || activity.isDestroyed) return@addListener
            val previewUseCase = Preview.Builder().build().also { it.setSurfaceProvider(preview.surfaceProvider) }
            val analysis = ImageAnalysis.Builder()
                .setBackpressureStrategy(ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST)
                .setOutputImageFormat(ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888)
                .build()
            analysis.setAnalyzer(analysisExecutor) { image -> image.use { analyze(it) } }
            try {
                cameraProvider.unbindAll()
                cameraProvider.bindToLifecycle(activity, CameraSelector.DEFAULT_BACK_CAMERA, previewUseCase, analysis)
            } catch (e: Exception) {
                Log.e(MainActivity.TAG, "camera bind failed", e)
                showMessage("no camera: ${BenchmarkActivity.oneLine(e)}")
            }
        }, ContextCompat.getMainExecutor(activity))
    }

    /** Unbinds the camera (another tab is visible). */
    fun stop() {
        wanted = false
        provider?.unbindAll()
    }

    fun shutdown() {
        stop()
        analysisExecutor.shutdown()
    }

    private fun analyze(image: ImageProxy) {
        val c = classes ?: return
        val p = activity.pipeline
        if (p == null || p !== c.pipeline) return
        try {
            val t0 = SystemClock.elapsedRealtimeNanos()
            val embedding = p.encodeImage(BitmapPixels.fromImageProxy(image))
            val top = p.classify(embedding, c.labels, c.embeddings, 3)
            val ms = (SystemClock.elapsedRealtimeNanos() - t0) / 1e6
            val text = top.joinToString("\n") { String.format(Locale.ROOT, "%5.1f%%  %s", 100f * it.probability, it.label) } +
                String.format(Locale.ROOT, "\n%.0f ms/frame (%dx%d, %s)", ms, image.width, image.height, p.runtime.name())
            activity.runOnUiThread { predictions.text = text }
        } catch (e: Exception) {
            // the pipeline may have been closed under us (bundle or runtime changed): skip the frame
            Log.w(MainActivity.TAG, "frame skipped: ${e.message}")
        }
    }
}
