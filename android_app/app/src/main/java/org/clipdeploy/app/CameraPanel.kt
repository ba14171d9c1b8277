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
 * turned upright, preprocessed exactly like the Python pipeline and classified; the top 3 are shown with their
 * probabilities. A bundle with a classifier artifact for the runtime (issue 23) starts with its labels and runs the
 * artifact (image -> logits -> softmax, no text encoder). Edited labels are embedded with the text encoder (the
 * bundle's prompt templates if it has them, else ZeroShot.DEFAULT_TEMPLATES); without a text encoder the panel
 * says so and keeps the bundle's labels.
 */
class CameraPanel(private val activity: MainActivity, root: View) {
    private val preview: PreviewView = root.findViewById(R.id.preview)
    private val labels: EditText = root.findViewById(R.id.labels)
    private val predictions: TextView = root.findViewById(R.id.predictions)
    private val analysisExecutor: ExecutorService = Executors.newSingleThreadExecutor()
    private var provider: ProcessCameraProvider? = null
    private var wanted = false

    /** Labels with their class embeddings (null: the pipeline's classifier artifact), for the pipeline that made them. */
    private class Classes(val labels: List<String>, val embeddings: List<FloatArray>?, val pipeline: ClipPipeline)

    @Volatile
    private var classes: Classes? = null

    /** The label text shown for the bundle's classifier (unchanged text: the classifier artifact runs). */
    private var bundleLabelsText: String? = null

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

    /** A new pipeline: its classifier's labels when it has a classifier artifact, else the label embeddings are
     * recomputed with its text encoder. */
    fun onPipeline(p: ClipPipeline) {
        classes = null
        bundleLabelsText = null
        val c = p.classifier
        val artifact = p.classifierArtifact
        if (artifact != null && c != null) {
            val text = c.labels.joinToString(", ")
            bundleLabelsText = text
            labels.setText(text)
            classes = Classes(c.labels, null, p)
            showMessage("${c.labels.size} labels of the bundle's classifier (${artifact.path})")
            return
        }
        applyLabels(p)
    }

    private fun applyLabels(p: ClipPipeline? = activity.pipeline) {
        if (p == null) {
            showMessage(activity.getString(R.string.no_bundle))
            return
        }
        val c = p.classifier
        if (p.classifierArtifact != null && c != null && labels.text.toString() == bundleLabelsText) {
            classes = Classes(c.labels, null, p)          // the bundle's labels as they are: its classifier artifact
            showMessage("${c.labels.size} labels of the bundle's classifier")
            return
        }
        val names = labels.text.toString().split(',').map { it.trim() }.filter { it.isNotEmpty() }.distinct()
        if (names.isEmpty()) {
            showMessage("type some labels, comma-separated")
            return
        }
        if (!p.hasTextEncoder) {
            // one line on the field (frames keep overwriting the predictions); the bundle's classifier keeps running
            val why = "this bundle has no text encoder for ${p.runtime.name()}: only its classifier's labels can be shown"
            labels.error = why
            showMessage(why)
            return
        }
        labels.error = null
        val templates = c?.templates ?: org.clipdeploy.core.ZeroShot.DEFAULT_TEMPLATES
        showMessage("embedding ${names.size} labels × ${templates.size} prompts …")
        activity.worker.execute {
            try {
                val embeddings = p.classEmbeddings(names, templates)
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
            val frame = BitmapPixels.fromImageProxy(image)
            val top = if (c.embeddings == null) {
                p.classifyImage(frame, 3)                 // the classifier artifact: logits -> softmax
            } else {
                p.classify(p.encodeImage(frame), c.labels, c.embeddings, 3)
            }
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
