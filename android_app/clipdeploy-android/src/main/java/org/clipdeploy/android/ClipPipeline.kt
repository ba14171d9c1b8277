package org.clipdeploy.android

import android.graphics.Bitmap
import java.io.Closeable
import java.io.File
import org.clipdeploy.core.Bundle
import org.clipdeploy.core.Classifier
import org.clipdeploy.core.ClipTokenizer
import org.clipdeploy.core.EncoderRuntime
import org.clipdeploy.core.EncoderSession
import org.clipdeploy.core.ImageIndexBuilder
import org.clipdeploy.core.ImageSearch
import org.clipdeploy.core.Preprocess
import org.clipdeploy.core.PreprocessSpec
import org.clipdeploy.core.ReferenceRuntime
import org.clipdeploy.core.RgbImage
import org.clipdeploy.core.ShapeDescriptor
import org.clipdeploy.core.TextEncoder
import org.clipdeploy.core.Vectors
import org.clipdeploy.core.ZeroShot

/**
 * A bundle's image and text encoders loaded on one runtime, with the core's preprocessing and tokenizer
 * in front: what the demo screens use. Pixels -> [RgbImage] ([BitmapPixels]) -> [Preprocess.apply]
 * (Pillow-exact resize + center crop) -> image encoder; text -> [TextEncoder] (the core's tokenizer at the shortest
 * length the text artifact's `shapes.length` accepts, passed as [1, L]; 77 for an artifact without shapes or a
 * non-causal tower) -> text encoder. Photo indexing goes through [indexBuilder]: batches the image artifact's
 * `shapes.batch` accepts, one [N,3,R,R] call each. Embeddings are L2-normalized.
 *
 * A bundle exported with a zero-shot classifier (issue 23) for this runtime also loads its classifier artifact
 * ([classifierArtifact]: image -> `logits` over [classifier]'s labels, [classifyImage]); the text encoder is then
 * optional ([hasTextEncoder]: without one, labels cannot be edited and text search is off). Calls are serialized (one
 * encoder call at a time); [close] releases every session.
 */
class ClipPipeline private constructor(
    val bundle: Bundle,
    val runtime: EncoderRuntime,
    val imageArtifact: Bundle.Artifact,
    /** Null when the bundle has no text encoder for this runtime (then it has a classifier artifact). */
    val textArtifact: Bundle.Artifact?,
    private val imageSession: EncoderSession,
    private val textSession: EncoderSession?,
    val tokenizer: ClipTokenizer,
    /** The bundle's classifier artifact for this runtime, or null. */
    val classifierArtifact: Bundle.Artifact?,
    private val classifierSession: EncoderSession?,
    /** The bundle's labels, templates and class matrix (verified), or null when the manifest has none. */
    val classifier: Classifier?,
) : Closeable {

    val spec: PreprocessSpec = bundle.preprocessSpec()
    val logitScale: Double = bundle.logitScale()
    private var closed = false
    private val text = textSession?.let { TextEncoder(it, tokenizer, textArtifact!!) }

    /** Whether prompts can be encoded (edited labels, search queries). */
    val hasTextEncoder: Boolean get() = text != null

    /** The text lengths the text artifact accepts (its manifest `shapes.length`). */
    val textLength: ShapeDescriptor get() = textInput().length

    private fun textInput(): TextEncoder = text ?: throw IllegalStateException(
        "${bundle.model()} has no text encoder for ${runtime.name()}: export one (clip-export --target ...) to edit " +
            "labels or search by text")

    /** The batch sizes the image artifact accepts (its manifest `shapes.batch`). */
    val imageBatch: ShapeDescriptor get() = imageArtifact.shapes.batch

    /** The image session behind this pipeline's lock, for [ImageIndexBuilder] (which calls it batch by batch). */
    private val lockedImageSession = object : EncoderSession {
        override fun encodeImage(chw: FloatArray, size: Int): FloatArray = synchronized(this@ClipPipeline) {
            check(!closed) { "pipeline is closed" }
            imageSession.encodeImage(chw, size)
        }

        override fun encodeImages(chws: Array<FloatArray>, size: Int): Array<FloatArray> = synchronized(this@ClipPipeline) {
            check(!closed) { "pipeline is closed" }
            imageSession.encodeImages(chws, size)
        }

        override fun encodeText(ids: IntArray): FloatArray =
            throw IllegalStateException("an image encoder got token ids")

        override fun close() {}
    }

    /** One class with its probability, for zero-shot results. */
    data class Prediction(val label: String, val probability: Float)

    @Synchronized
    fun encodeImage(image: RgbImage): FloatArray {
        check(!closed) { "pipeline is closed" }
        val chw = Preprocess.apply(image, spec)
        return Vectors.l2normalize(imageSession.encodeImage(chw, spec.imageSize))
    }

    fun encodeBitmap(bitmap: Bitmap): FloatArray = encodeImage(BitmapPixels.fromBitmap(bitmap))

    /** The image encoder's input for [image]: Pillow-exact resize + center crop, float32 [3, R, R]. */
    fun preprocess(image: RgbImage): FloatArray = Preprocess.apply(image, spec)

    fun preprocessBitmap(bitmap: Bitmap): FloatArray = preprocess(BitmapPixels.fromBitmap(bitmap))

    /**
     * A builder that adds preprocessed images ([preprocessBitmap]) to [index] in batches the image artifact accepts
     * (ImageIndexBuilder: chunks of its largest batch, the last one padded with copies of its last image, the
     * padded outputs dropped); the index equals the one-at-a-time index of [encodeImage].
     */
    fun indexBuilder(index: ImageSearch): ImageIndexBuilder =
        ImageIndexBuilder(lockedImageSession, imageBatch, spec.imageSize, index)

    /** The ids the text encoder gets for [text]: the shortest length its `shapes.length` accepts. */
    fun textIds(text: String): IntArray = tokenizer.tokenizeShortest(text, textLength)

    @Synchronized
    fun encodeText(text: String): FloatArray {
        check(!closed) { "pipeline is closed" }
        return textInput().embed(text)
    }

    /** One embedding per label: the prompt ensemble over [templates] (ZeroShot.ensemble), each prompt tokenized to
     * the shortest length the text artifact accepts. */
    @Synchronized
    fun classEmbeddings(labels: List<String>, templates: List<String> = ZeroShot.DEFAULT_TEMPLATES): List<FloatArray> {
        check(!closed) { "pipeline is closed" }
        return textInput().classEmbeddings(labels, templates)
    }

    /**
     * The bundle's classifier artifact on [image] (preprocessed like the image encoder's input): softmax of its
     * `logits` over [classifier]'s labels, the [k] most probable first. No text encoder involved.
     */
    @Synchronized
    fun classifyImage(image: RgbImage, k: Int = 3): List<Prediction> {
        check(!closed) { "pipeline is closed" }
        val session = classifierSession
            ?: throw IllegalStateException("${bundle.model()} has no classifier artifact for ${runtime.name()}")
        val labels = classifier!!.labels
        val logits = session.encodeImage(Preprocess.apply(image, spec), spec.imageSize)
        check(logits.size == labels.size) { "${classifierArtifact!!.path}: ${logits.size} logits for ${labels.size} labels" }
        val p = ZeroShot.softmax(logits)
        return ZeroShot.topK(p, k).map { Prediction(labels[it], p[it]) }
    }

    /** softmax(logit_scale * image . class) over the classes, the [k] most probable first. */
    fun classify(imageEmbedding: FloatArray, labels: List<String>, classEmbeddings: List<FloatArray>, k: Int = 3): List<Prediction> {
        require(labels.size == classEmbeddings.size) { "${labels.size} labels but ${classEmbeddings.size} class embeddings" }
        if (labels.isEmpty()) return emptyList()
        val p = ZeroShot.probabilities(imageEmbedding, classEmbeddings, logitScale)
        return ZeroShot.topK(p, k).map { Prediction(labels[it], p[it]) }
    }

    /** Text -> image search over an index of image embeddings (see [encodeBitmap]). */
    fun search(index: ImageSearch, query: String, k: Int): List<ImageSearch.Hit> = index.query(encodeText(query), k)

    @Synchronized
    override fun close() {
        if (closed) return
        closed = true
        try {
            imageSession.close()
        } finally {
            try {
                textSession?.close()
            } finally {
                classifierSession?.close()
            }
        }
    }

    companion object {
        /** The runtimes this library provides, by report name ("reference" runs the goldens' linear model). */
        @JvmStatic
        fun runtime(name: String): EncoderRuntime = when (name) {
            ExecuTorchRuntime.NAME -> ExecuTorchRuntime()
            OrtRuntime.NAME -> OrtRuntime()
            LiteRtRuntime.NAME -> LiteRtRuntime()
            "reference" -> ReferenceRuntime()
            else -> throw IllegalArgumentException("unknown runtime '$name': use executorch, onnxruntime or litert")
        }

        /**
         * The artifact [runtime] runs for [encoder] ("image" / "text" / "classifier"): the requested [precision] if given,
         * else the manifest's default one (an int8 variant only where it passed and ran faster at export),
         * else fp32, else whatever precision there is. Null when the bundle has none for that runtime.
         */
        @JvmStatic
        fun pickArtifact(bundle: Bundle, runtime: EncoderRuntime, encoder: String, precision: String? = null): Bundle.Artifact? {
            val candidates = bundle.artifacts().filter { it.encoder == encoder && runtime.supports(it) }
            if (precision != null) return candidates.firstOrNull { it.precision == precision }
            return candidates.firstOrNull { it.isDefault } ?: candidates.firstOrNull { it.precision == "fp32" }
                ?: candidates.firstOrNull()
        }

        /** The first of [names] that runs the image encoder of [bundle] and its text encoder or classifier, or null. */
        @JvmStatic
        fun firstUsableRuntime(bundle: Bundle, names: List<String>): String? = names.firstOrNull { name ->
            val rt = runtime(name)
            pickArtifact(bundle, rt, "image") != null &&
                (pickArtifact(bundle, rt, "text") != null || pickArtifact(bundle, rt, "classifier") != null)
        }

        /**
         * Opens [bundleDir] and loads its image and text encoders on the runtime called [runtimeName]
         * ([threads] 0 = the runtime's default), and its classifier artifact when the bundle has one for that
         * runtime (then the text encoder is optional). Slow (model loads): call it off the main thread.
         */
        @JvmStatic
        @JvmOverloads
        fun open(bundleDir: File, runtimeName: String, threads: Int = 0, precision: String? = null): ClipPipeline {
            val bundle = Bundle.open(bundleDir)
            val rt = runtime(runtimeName)
            rt.configure(threads)
            // the core's selection (the same rule as pickArtifact; for litert it also checks the declared
            // inputs/outputs and fails with one line naming the problem and the fix)
            val image = bundle.select(runtimeName, "image", precision)
            val classifierArtifact = pickArtifact(bundle, rt, "classifier", precision)
                ?.let { bundle.select(runtimeName, "classifier", it.precision) }
            // no text encoder is fine when the classifier artifact is there; else select() says what is missing
            val text = if (classifierArtifact == null || pickArtifact(bundle, rt, "text", precision) != null) {
                bundle.select(runtimeName, "text", precision)
            } else {
                null
            }
            // the labels and class matrix, verified (sha256) before any session is loaded
            val classifier = if (bundle.hasClassifier()) bundle.classifier() else null
            val tokenizer = ClipTokenizer.fromBundle(bundle)
            val loaded = ArrayList<EncoderSession>()
            try {
                val imageSession = rt.load(image).also { loaded.add(it) }
                val textSession = text?.let { rt.load(it) }?.also { loaded.add(it) }
                val classifierSession = classifierArtifact?.let { rt.load(it) }?.also { loaded.add(it) }
                return ClipPipeline(bundle, rt, image, text, imageSession, textSession, tokenizer, classifierArtifact,
                    classifierSession, classifier)
            } catch (e: Throwable) {
                for (s in loaded) s.close()
                throw e
            }
        }
    }
}
