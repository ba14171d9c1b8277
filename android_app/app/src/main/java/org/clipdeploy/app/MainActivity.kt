package org.clipdeploy.app

import android.Manifest
import android.content.pm.PackageManager
import android.os.Bundle
import android.util.Log
import android.view.View
import android.widget.ArrayAdapter
import android.widget.Button
import android.widget.EditText
import android.widget.Spinner
import android.widget.TextView
import androidx.activity.result.contract.ActivityResultContracts
import androidx.appcompat.app.AppCompatActivity
import androidx.core.content.ContextCompat
import com.google.android.material.bottomnavigation.BottomNavigationView
import java.io.File
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors
import org.clipdeploy.android.ClipPipeline
import org.clipdeploy.core.Bundle as ClipBundle
import org.clipdeploy.core.BenchmarkRequest

/**
 * The demo: a bundle bar (bundle directory + runtime + Load) over three tabs.
 *  - Camera: CameraX preview with live zero-shot over editable labels (top 3); the bundle's classifier artifact
 *    and labels when it has one.
 *  - Search: pick photos (photo picker), embed them, rank them by a text query.
 *  - Benchmark: the bundle's probe set through [BenchmarkActivity] (its own process), then the table.
 * Model loads and encoder calls run on [worker] (camera frames on the camera panel's analysis thread).
 */
class MainActivity : AppCompatActivity() {
    private lateinit var bundlePath: EditText
    private lateinit var runtimeSpinner: Spinner
    private lateinit var status: TextView
    private lateinit var panels: Map<Int, View>
    private lateinit var camera: CameraPanel
    private lateinit var search: SearchPanel
    private lateinit var bench: BenchmarkPanel
    private var currentTab = R.id.tab_camera

    /** Model loads, search embedding, label embedding: one at a time, off the main thread. */
    val worker: ExecutorService = Executors.newSingleThreadExecutor()

    /** The loaded encoders (null until Load succeeds); replaced as a whole when the bundle or runtime changes. */
    @Volatile
    var pipeline: ClipPipeline? = null
        private set

    private val cameraPermission =
        registerForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
            if (granted) {
                if (currentTab == R.id.tab_camera) camera.start()
            } else {
                camera.showMessage(getString(R.string.camera_permission_needed))
            }
        }

    val pickImages =
        registerForActivityResult(ActivityResultContracts.PickMultipleVisualMedia(MAX_IMAGES)) { uris ->
            if (uris.isNotEmpty()) search.add(uris)
        }

    val runBenchmark =
        registerForActivityResult(ActivityResultContracts.StartActivityForResult()) { bench.onFinished() }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        bundlePath = findViewById(R.id.bundle_path)
        runtimeSpinner = findViewById(R.id.runtime)
        status = findViewById(R.id.status)
        runtimeSpinner.adapter =
            ArrayAdapter(this, android.R.layout.simple_spinner_dropdown_item, BenchmarkRequest.RUNTIMES)
        panels = mapOf(
            R.id.tab_camera to findViewById(R.id.panel_camera),
            R.id.tab_search to findViewById(R.id.panel_search),
            R.id.tab_benchmark to findViewById(R.id.panel_benchmark),
        )
        camera = CameraPanel(this, findViewById(R.id.panel_camera))
        search = SearchPanel(this, findViewById(R.id.panel_search))
        bench = BenchmarkPanel(this, findViewById(R.id.panel_benchmark))

        val found = BundleLocator.find(this)
        val initial = intent.getStringExtra(BenchmarkRequest.EXTRA_BUNDLE)
            ?: found.firstOrNull()?.path
            ?: "${BundleLocator.DEVICE_ROOT}/mobileclip_s0"
        bundlePath.setText(initial)
        findViewById<Button>(R.id.load).setOnClickListener { load(autoRuntime = false) }

        findViewById<BottomNavigationView>(R.id.bottom_nav).setOnItemSelectedListener { item ->
            select(item.itemId)
            true
        }
        select(R.id.tab_camera)
        if (File(initial, "manifest.json").isFile) load(autoRuntime = true)
    }

    override fun onDestroy() {
        super.onDestroy()
        camera.shutdown()
        val p = pipeline
        pipeline = null
        worker.execute { p?.close() }
        worker.shutdown()
    }

    fun bundleDir(): File = File(bundlePath.text.toString().trim())

    fun selectedRuntime(): String = runtimeSpinner.selectedItem as String

    private fun select(tab: Int) {
        currentTab = tab
        for ((id, panel) in panels) panel.visibility = if (id == tab) View.VISIBLE else View.GONE
        if (tab == R.id.tab_camera) {
            if (ContextCompat.checkSelfPermission(this, Manifest.permission.CAMERA) == PackageManager.PERMISSION_GRANTED) {
                camera.start()
            } else {
                cameraPermission.launch(Manifest.permission.CAMERA)
            }
        } else {
            camera.stop()
        }
    }

    /**
     * Loads the bundle's encoders on the selected runtime (with [autoRuntime], on the first runtime the
     * bundle has both encoders for). The previous pipeline is closed first.
     */
    private fun load(autoRuntime: Boolean) {
        val dir = bundleDir()
        val requested = selectedRuntime()
        status.text = getString(R.string.app_name) + ": loading ${dir.path} …"
        val old = pipeline
        pipeline = null
        worker.execute {
            old?.close()
            try {
                val runtime = if (autoRuntime) {
                    ClipPipeline.firstUsableRuntime(ClipBundle.open(dir), BenchmarkRequest.RUNTIMES) ?: requested
                } else {
                    requested
                }
                val p = ClipPipeline.open(dir, runtime)
                pipeline = p
                runOnUiThread {
                    runtimeSpinner.setSelection(BenchmarkRequest.RUNTIMES.indexOf(runtime).coerceAtLeast(0))
                    val arts = listOfNotNull(p.imageArtifact, p.textArtifact, p.classifierArtifact)
                    status.text = "${p.bundle.model()} on ${p.runtime.name()}: ${arts.joinToString(", ") { it.path }}"
                    camera.onPipeline(p)
                    search.onPipeline(p)
                }
            } catch (e: Throwable) {
                Log.e(TAG, "cannot load $dir", e)
                runOnUiThread { status.text = "cannot load ${dir.path} on $requested: ${BenchmarkActivity.oneLine(e)}" }
            }
        }
    }

    companion object {
        const val TAG = "clipdeploy"
        const val MAX_IMAGES = 50
    }
}
