package org.clipdeploy.android

import com.google.ai.edge.litert.Accelerator
import com.google.ai.edge.litert.CompiledModel
import com.google.ai.edge.litert.TensorBuffer
import org.clipdeploy.core.Bundle
import org.clipdeploy.core.EncoderRuntime
import org.clipdeploy.core.EncoderSession
import org.clipdeploy.core.LiteRtSpec
import org.clipdeploy.core.XnnpackThreads

/**
 * LiteRT (`com.google.ai.edge.litert:litert`) on the CPU through XNNPACK, for the `litert-{fp32,fp16,int8}`
 * artifacts of `clip-export --target litert`: signature `serving_default`, input `image` float32 [1,3,R,R]
 * or `text` int32 [1,77], output `embedding` float32 [1,D] (a zero-shot classifier, `litert-<p>/classifier.tflite`:
 * input `image`, signature output `logits` float32 [1,N labels], [LiteRtSpec.outputName]). The manifest entry is checked first
 * ([LiteRtSpec.check]: one-line error naming the problem and the fix), then the loaded model's signature tensors.
 *
 * Threads: LiteRT's `Interpreter.Options.setNumThreads` does not reach XNNPACK (the Java interpreter applies
 * its default XNNPACK delegate with `TfLiteXNNPackDelegateOptionsDefault()`, no thread pool, whatever the count;
 * and the AAR has no Java XNNPACK delegate class to pass options to). So this runner uses LiteRT's
 * `CompiledModel` API with the CPU accelerator, which is the XNNPACK delegate, and sets its own thread count,
 * `CpuOptions(numThreads)`, which LiteRT copies into the delegate's `num_threads`. 0 leaves it unset (LiteRT's
 * default). [XnnpackThreads] resolves the option; each load counts the process's threads before and after and
 * the report's `runtime_options` records the option, the threads in effect and that check.
 */
class LiteRtRuntime : EncoderRuntime {
    @Volatile
    private var threads: XnnpackThreads = XnnpackThreads.resolve(0)

    /** The thread check of the latest load (XnnpackThreads.verify). */
    @Volatile
    private var lastLoad: Map<String, Any?> = emptyMap()

    override fun name(): String = NAME

    override fun supports(artifact: Bundle.Artifact): Boolean = LiteRtSpec.isLiteRt(artifact)

    override fun configure(threads: Int) {
        this.threads = XnnpackThreads.resolve(threads)   // IllegalArgumentException for < 0 or > MAX_THREADS
        lastLoad = emptyMap()
    }

    override fun versions(): MutableMap<String, Any?> = linkedMapOf("litert" to BuildConfig.LITERT_VERSION)

    override fun options(): MutableMap<String, Any?> {
        val m = LinkedHashMap<String, Any?>(threads.toMap())
        m["delegate"] = "XNNPACK"
        m["api"] = "CompiledModel (Accelerator.CPU)"
        m["signature"] = LiteRtSpec.SIGNATURE
        m.putAll(lastLoad)
        return m
    }

    override fun load(artifact: Bundle.Artifact): EncoderSession {
        val spec = LiteRtSpec.check(artifact)
        val file = artifact.verifiedFile()  // sha256 against the manifest before the runtime sees it (BundleException)
        val t = threads
        val options = CompiledModel.Options(Accelerator.CPU)
        // XNNPACK's own thread count; null (threads 0) leaves LiteRT's default.
        options.cpuOptions = CompiledModel.CpuOptions(numThreads = t.option)
        val before = XnnpackThreads.liveThreads(XnnpackThreads.PROC_TASKS)
        val model = CompiledModel.create(file.absolutePath, options)
        val after = XnnpackThreads.liveThreads(XnnpackThreads.PROC_TASKS)
        var input: TensorBuffer? = null
        try {
            val inType = model.getInputTensorType(spec.inputName, LiteRtSpec.SIGNATURE)
            spec.inputMismatch(inType.elementType.name, inType.layout?.dimensions?.toIntArray())
                ?.let { throw IllegalArgumentException(it) }
            val outType = model.getOutputTensorType(spec.outputName, LiteRtSpec.SIGNATURE)
            spec.outputMismatch(outType.elementType.name, outType.layout?.dimensions?.toIntArray())
                ?.let { throw IllegalArgumentException(it) }
            input = model.createInputBuffer(spec.inputName, LiteRtSpec.SIGNATURE)
            val output = model.createOutputBuffer(spec.outputName, LiteRtSpec.SIGNATURE)
            lastLoad = t.verify(before, after)
            return LiteRtSession(model, input, output, spec)
        } catch (e: Throwable) {
            input?.close()
            model.close()
            throw e
        }
    }

    companion object {
        const val NAME = LiteRtSpec.RUNTIME
    }
}

/** One compiled `.tflite`: its `serving_default` signature with preallocated input and output buffers. */
class LiteRtSession internal constructor(
    private val model: CompiledModel,
    private val input: TensorBuffer,
    private val output: TensorBuffer,
    private val spec: LiteRtSpec,
) : EncoderSession {
    private val inputs = mapOf(spec.inputName to input)
    private val outputs = mapOf(spec.outputName to output)
    private val name = spec.artifact.path

    @Synchronized
    override fun encodeImage(chw: FloatArray, size: Int): FloatArray {
        check(spec.inputName == "image") { "$name: a text encoder got an image" }
        require(chw.size == spec.inputElements()) { "$name: expected ${spec.inputElements()} floats, got ${chw.size}" }
        input.writeFloat(chw)
        return run()
    }

    /**
     * LiteRT artifacts have static shapes (manifest `shapes.batch` fixed [1], text length fixed [77]): a batch runs
     * row by row through the preallocated batch-1 buffers, one embedding per row.
     */
    @Synchronized
    override fun encodeImages(chws: Array<FloatArray>, size: Int): Array<FloatArray> =
        Array(chws.size) { k -> encodeImage(chws[k], size) }

    @Synchronized
    override fun encodeText(ids: IntArray): FloatArray {
        check(spec.inputName == "text") { "$name: an image encoder got token ids" }
        require(ids.size == spec.inputElements()) { "$name: expected ${spec.inputElements()} token ids, got ${ids.size}" }
        input.writeInt(ids)
        return run()
    }

    private fun run(): FloatArray {
        model.run(inputs, outputs, LiteRtSpec.SIGNATURE)
        val y = output.readFloat()
        check(y.size == spec.outputDim) { "$name: '${spec.outputName}' has ${y.size} values, expected ${spec.outputDim}" }
        return y
    }

    @Synchronized
    override fun close() {
        try {
            input.close()
            output.close()
        } finally {
            model.close()
        }
    }
}
