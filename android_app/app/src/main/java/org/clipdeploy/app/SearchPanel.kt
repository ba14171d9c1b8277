package org.clipdeploy.app

import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.graphics.ImageDecoder
import android.net.Uri
import android.os.Build
import android.util.Log
import android.view.View
import android.view.inputmethod.EditorInfo
import android.widget.Button
import android.widget.EditText
import android.widget.ImageView
import android.widget.LinearLayout
import android.widget.TextView
import androidx.activity.result.PickVisualMediaRequest
import androidx.activity.result.contract.ActivityResultContracts
import java.io.IOException
import java.util.Locale
import org.clipdeploy.android.ClipPipeline
import org.clipdeploy.core.ImageSearch

/**
 * Text -> image search: photos chosen with the system photo picker are decoded, preprocessed and embedded with
 * the image encoder in batches the image artifact accepts (the core's ImageIndexBuilder via
 * [ClipPipeline.indexBuilder]: e.g. 8 at a time for ExecuTorch, the last batch padded for Core ML-style
 * enumerated batches, one at a time for LiteRT) into a core [ImageSearch] index; a query is embedded with the
 * text encoder (tokenized to the shortest length the text artifact accepts) and the photos are listed best first
 * with their cosine scores. The index belongs to one pipeline (embeddings of
 * different models do not mix) and is cleared when the pipeline changes.
 */
class SearchPanel(private val activity: MainActivity, root: View) {
    private val query: EditText = root.findViewById(R.id.query)
    private val status: TextView = root.findViewById(R.id.search_status)
    private val results: LinearLayout = root.findViewById(R.id.results)
    private val index = ImageSearch()
    private val thumbnails = ArrayList<Bitmap>()   // by index position; touched on the worker thread only
    private var indexedWith: ClipPipeline? = null

    init {
        root.findViewById<Button>(R.id.pick_images).setOnClickListener {
            activity.pickImages.launch(PickVisualMediaRequest(ActivityResultContracts.PickVisualMedia.ImageOnly))
        }
        root.findViewById<Button>(R.id.search).setOnClickListener { search() }
        query.setOnEditorActionListener { _, actionId, _ ->
            if (actionId == EditorInfo.IME_ACTION_SEARCH) {
                search()
                true
            } else {
                false
            }
        }
    }

    fun onPipeline(p: ClipPipeline) {
        activity.worker.execute {
            if (indexedWith !== p && index.size() > 0) {
                index.clear()
                thumbnails.clear()
                activity.runOnUiThread {
                    results.removeAllViews()
                    status.text = "model changed: pick the photos again"
                }
            }
            indexedWith = p
        }
    }

    /** Decodes and embeds the picked photos (on the worker thread). */
    fun add(uris: List<Uri>) {
        status.text = "embedding ${uris.size} photos …"
        activity.worker.execute {
            val p = activity.pipeline
            if (p == null) {
                activity.runOnUiThread { status.text = activity.getString(R.string.no_bundle) }
                return@execute
            }
            if (indexedWith !== p) {
                index.clear()
                thumbnails.clear()
                indexedWith = p
            }
            val minSide = maxOf(p.spec.resizeShorterSideTo, p.spec.imageSize)
            var failed = 0
            val t0 = System.nanoTime()
            // thumbnails of the photos queued in the builder, in order; they join `thumbnails` when their batch
            // is in the index (ids come back in the order they were added), and are dropped with a failed batch
            val queued = ArrayDeque<Bitmap>()
            val builder = p.indexBuilder(index)
            fun commit(ids: List<String>) {
                repeat(ids.size) { thumbnails.add(queued.removeFirst()) }
            }
            fun dropQueued(e: Exception) {
                failed += queued.size
                Log.w(MainActivity.TAG, "cannot embed a batch of ${queued.size} photos: ${e.message}")
                queued.clear()
            }
            for (uri in uris) {
                val chw = try {
                    val bitmap = decode(uri, minSide)
                    val x = p.preprocessBitmap(bitmap)
                    queued.addLast(thumbnail(bitmap, 160))
                    bitmap.recycle()
                    x
                } catch (e: Exception) {
                    failed++
                    Log.w(MainActivity.TAG, "cannot read $uri: ${e.message}")
                    continue
                }
                try {
                    commit(builder.add(uri.toString(), chw))
                } catch (e: Exception) {
                    dropQueued(e)
                }
            }
            try {
                commit(builder.flush())
            } catch (e: Exception) {
                dropQueued(e)
            }
            val batches = builder.calls().size
            val ms = (System.nanoTime() - t0) / 1e6 / maxOf(1, uris.size - failed)
            val n = index.size()
            activity.runOnUiThread {
                status.text = String.format(Locale.ROOT, "%d photos indexed (%.0f ms each, %d batches of up to %s)%s", n,
                    ms, batches, p.imageBatch.toString(), if (failed > 0) ", $failed could not be read" else "")
            }
        }
    }

    private fun search() {
        val text = query.text.toString().trim()
        if (text.isEmpty()) return
        activity.worker.execute {
            val p = activity.pipeline
            if (p == null || indexedWith !== p || index.size() == 0) {
                activity.runOnUiThread { status.text = "pick some photos first" }
                return@execute
            }
            if (!p.hasTextEncoder) {
                activity.runOnUiThread { status.text = "this bundle has no text encoder for ${p.runtime.name()}: no text search" }
                return@execute
            }
            val hits = p.search(index, text, 20)
            val rows = hits.map { hit -> thumbnails[hit.index] to String.format(Locale.ROOT, "%.4f", hit.score) }
            activity.runOnUiThread { show(text, rows) }
        }
    }

    private fun show(text: String, rows: List<Pair<Bitmap, String>>) {
        status.text = "\"$text\": ${rows.size} photos, best first (cosine similarity)"
        results.removeAllViews()
        val pad = (8 * activity.resources.displayMetrics.density).toInt()
        for ((thumb, score) in rows) {
            val row = LinearLayout(activity).apply {
                orientation = LinearLayout.HORIZONTAL
                setPadding(0, pad / 2, 0, pad / 2)
            }
            row.addView(ImageView(activity).apply { setImageBitmap(thumb) })
            row.addView(TextView(activity).apply {
                this.text = score
                textSize = 16f
                setPadding(pad * 2, 0, 0, 0)
            })
            results.addView(row)
        }
    }

    /**
     * The photo, EXIF-rotated (ImageDecoder, API 28+), subsampled by a power of two while its shorter side
     * stays at least [minSide] (the exact Pillow-style resize then does the rest).
     */
    private fun decode(uri: Uri, minSide: Int): Bitmap {
        val resolver = activity.contentResolver
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.P) {
            val source = ImageDecoder.createSource(resolver, uri)
            return ImageDecoder.decodeBitmap(source) { decoder, info, _ ->
                decoder.setTargetSampleSize(sampleSize(minOf(info.size.width, info.size.height), minSide))
                decoder.allocator = ImageDecoder.ALLOCATOR_SOFTWARE
            }
        }
        val bounds = BitmapFactory.Options().apply { inJustDecodeBounds = true }
        resolver.openInputStream(uri).use { BitmapFactory.decodeStream(it, null, bounds) }
        val options = BitmapFactory.Options().apply {
            inSampleSize = sampleSize(minOf(bounds.outWidth, bounds.outHeight), minSide)
            inPreferredConfig = Bitmap.Config.ARGB_8888
        }
        return resolver.openInputStream(uri).use { BitmapFactory.decodeStream(it, null, options) }
            ?: throw IOException("cannot decode $uri")
    }

    private fun sampleSize(shorter: Int, minSide: Int): Int {
        var sample = 1
        while (shorter / (sample * 2) >= minSide) sample *= 2
        return sample
    }

    private fun thumbnail(bitmap: Bitmap, size: Int): Bitmap {
        val scale = size.toFloat() / maxOf(bitmap.width, bitmap.height)
        return Bitmap.createScaledBitmap(bitmap, maxOf(1, (bitmap.width * scale).toInt()),
            maxOf(1, (bitmap.height * scale).toInt()), true)
    }
}
