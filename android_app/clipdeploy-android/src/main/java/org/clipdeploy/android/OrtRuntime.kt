package org.clipdeploy.android

import ai.onnxruntime.OnnxTensor
import ai.onnxruntime.OrtEnvironment
import ai.onnxruntime.OrtSession
import java.nio.FloatBuffer
import java.nio.IntBuffer
import org.clipdeploy.core.Bundle
import org.clipdeploy.core.EncoderRuntime
import org.clipdeploy.core.EncoderSession
import org.clipdeploy.core.Vectors

/**
 * ONNX Runtime (`com.microsoft.onnxruntime:onnxruntime-android`, CPU execution provider) for the
 * `onnx-fp32` and `onnx-fp16` artifacts. fp16 artifacts keep float32 inputs/outputs (clip-export's
 * keep_io_types), so both precisions take the same tensors: input `image` float32 [N,3,R,R] or
 * `text` int32 [1,L], output `embedding` float32 [N,D]; a zero-shot classifier (`encoder` "classifier",
 * `onnx-<p>/classifier.onnx`) takes `image` and outputs `logits` float32 [1,N labels]. The batch N and the text
 * length L are the manifest's `shapes` (ONNX: dynamic batch, text length dynamic 1..77): [encodeImages] sends a
 * whole batch in one run, [encodeText] takes the ids at whatever length the core's tokenizer chose ([1, ids.size]).
 *
 * Threads: `SessionOptions.setIntraOpNumThreads` (0 leaves ONNX Runtime's default, one per core),
 * one inter-op thread, sequential execution, all graph optimizations, like clip-latency's onnxruntime runner.
 */
class OrtRuntime : EncoderRuntime {
    @Volatile
    private var threads = 0

    override fun name(): String = NAME

    override fun supports(artifact: Bundle.Artifact): Boolean =
        artifact.target == "onnx" && artifact.path.endsWith(".onnx") &&
            artifact.precision in setOf("fp32", "fp16", "int8")

    override fun configure(threads: Int) {
        require(threads >= 0) { "threads must be 0 (default) or more, got $threads" }
        this.threads = threads
    }

    override fun versions(): MutableMap<String, Any?> =
        linkedMapOf("onnxruntime" to BuildConfig.ONNXRUNTIME_VERSION)

    override fun options(): MutableMap<String, Any?> = linkedMapOf(
        "threads" to (if (threads > 0) threads.toLong() else null),
        "execution_provider" to "CPUExecutionProvider",
        "intra_op_num_threads" to (if (threads > 0) threads.toLong() else null),
        "inter_op_num_threads" to 1L,
        "execution_mode" to "sequential",
        "graph_optimization_level" to "ORT_ENABLE_ALL",
    )

    override fun load(artifact: Bundle.Artifact): EncoderSession {
        require(supports(artifact)) { "${artifact.path}: not an fp32/fp16 .onnx artifact (target ${artifact.target})" }
        val file = artifact.verifiedFile()  // sha256 against the manifest before the runtime sees it (BundleException)
        val env = OrtEnvironment.getEnvironment()
        // The options must stay open while a session made with them is alive: the session closes them.
        val options = OrtSession.SessionOptions()
        try {
            if (threads > 0) options.setIntraOpNumThreads(threads)
            options.setInterOpNumThreads(1)
            options.setExecutionMode(OrtSession.SessionOptions.ExecutionMode.SEQUENTIAL)
            options.setOptimizationLevel(OrtSession.SessionOptions.OptLevel.ALL_OPT)
            val session = env.createSession(file.absolutePath, options)
            val input = if (artifact.takesImage()) "image" else "text"
            if (input !in session.inputNames) {
                session.close()
                throw IllegalArgumentException("${artifact.path}: no input '$input' (inputs: ${session.inputNames})")
            }
            // a classifier's logits by name (an encoder's embedding falls back to the first output, as before)
            val output = if (artifact.isClassifier()) LOGITS else OUTPUT
            if (artifact.isClassifier() && output !in session.outputNames) {
                session.close()
                throw IllegalArgumentException("${artifact.path}: no output '$output' (outputs: ${session.outputNames})")
            }
            return OrtEncoderSession(env, session, options, input, artifact.path, output)
        } catch (e: Throwable) {
            options.close()
            throw e
        }
    }

    companion object {
        const val NAME = "onnxruntime"
        const val OUTPUT = "embedding"
        const val LOGITS = "logits"
    }
}

/** One ONNX Runtime session; safe to call from several threads (OrtSession.run is thread-safe). */
class OrtEncoderSession internal constructor(
    private val env: OrtEnvironment,
    private val session: OrtSession,
    private val options: OrtSession.SessionOptions,
    private val inputName: String,
    private val name: String,
    private val outputName: String = OrtRuntime.OUTPUT,
) : EncoderSession {

    override fun encodeImage(chw: FloatArray, size: Int): FloatArray {
        require(chw.size == 3 * size * size) { "$name: expected 3*$size*$size floats, got ${chw.size}" }
        val shape = longArrayOf(1, 3, size.toLong(), size.toLong())
        return OnnxTensor.createTensor(env, FloatBuffer.wrap(chw), shape).use { run(it) }
    }

    /** One run on [N,3,R,R] (N = chws.size, a batch the artifact's `shapes.batch` accepts): N embeddings. */
    override fun encodeImages(chws: Array<FloatArray>, size: Int): Array<FloatArray> {
        val per = 3 * size * size
        val flat = Vectors.concatRows(chws, per)     // IllegalArgumentException for a row of another size
        val shape = longArrayOf(chws.size.toLong(), 3, size.toLong(), size.toLong())
        val y = OnnxTensor.createTensor(env, FloatBuffer.wrap(flat), shape).use { run(it) }
        return Vectors.splitRows(y, chws.size)
    }

    /** [ids] at the length the tokenizer chose (the artifact's `shapes.length`): a [1, ids.size] tensor. */
    override fun encodeText(ids: IntArray): FloatArray {
        val shape = longArrayOf(1, ids.size.toLong())
        return OnnxTensor.createTensor(env, IntBuffer.wrap(ids), shape).use { run(it) }
    }

    private fun run(input: OnnxTensor): FloatArray =
        session.run(mapOf(inputName to input)).use { result ->
            val value = result.get(outputName).orElse(null) ?: result.get(0)
            val tensor = value as? OnnxTensor
                ?: throw IllegalStateException("$name: output '$outputName' is not a tensor")
            val buffer = tensor.floatBuffer
                ?: throw IllegalStateException("$name: output '$outputName' is not float32")
            val out = FloatArray(buffer.remaining())
            buffer.get(out)
            out
        }

    override fun close() {
        session.close()
        options.close()
    }
}
