package org.clipdeploy.android

import org.clipdeploy.core.Bundle
import org.clipdeploy.core.EncoderRuntime
import org.clipdeploy.core.EncoderSession
import org.clipdeploy.core.Vectors
import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor

/**
 * ExecuTorch with the XNNPACK delegate (`executorch-fp32/{image,text}_encoder.pte`, and a zero-shot classifier's
 * `executorch-fp32/classifier.pte`: the image input, `logits` [1, N labels] as its one output), through the
 * `org.pytorch:executorch-android` AAR's `Module` API.
 *
 * Threads: the AAR's `Module.load(path, loadMode, numThreads)` sizes ExecuTorch's process-wide
 * threadpool (the one XNNPACK runs on) when a module is created; `numThreads = 0` lets the JNI layer
 * pick "CPU cores / 2". The pool is global, so every module of a process should be loaded with the same
 * count ([configure] once, before the first [load]); the JNI layer leaves the pool alone when the count
 * does not change.
 *
 * The Core ML-delegated `.pte` (target `executorch-coreml`) runs only on Apple platforms and is not supported.
 */
class ExecuTorchRuntime : EncoderRuntime {
    @Volatile
    private var threads = 0

    override fun name(): String = NAME

    override fun supports(artifact: Bundle.Artifact): Boolean =
        artifact.target == "executorch" && artifact.path.endsWith(".pte")

    override fun configure(threads: Int) {
        require(threads >= 0) { "threads must be 0 (default) or more, got $threads" }
        this.threads = threads
    }

    override fun versions(): MutableMap<String, Any?> =
        linkedMapOf("executorch" to BuildConfig.EXECUTORCH_VERSION)

    override fun options(): MutableMap<String, Any?> = linkedMapOf(
        // what the JNI layer uses: the requested count, or its default of cores / 2
        "threads" to (if (threads > 0) threads else defaultThreads()).toLong(),
        "requested_threads" to threads.toLong(),
        "delegate" to "XNNPACK",
        "load_mode" to "file",
    )

    override fun load(artifact: Bundle.Artifact): EncoderSession {
        require(supports(artifact)) { "${artifact.path}: not an XNNPACK .pte (target ${artifact.target})" }
        val file = artifact.verifiedFile()  // sha256 against the manifest before the runtime sees it (BundleException)
        val module = Module.load(file.absolutePath, Module.LOAD_MODE_FILE, threads)
        try {
            // Load (plan, delegate init) now, so that the load phase includes it rather than the first call.
            module.loadMethod("forward")
        } catch (e: Throwable) {
            module.destroy()
            throw e
        }
        return ExecuTorchSession(module, artifact.path)
    }

    companion object {
        const val NAME = "executorch"

        /** The JNI layer's default threadpool size (it counts processors with cpuinfo; this is the JVM's count). */
        @JvmStatic
        fun defaultThreads(): Int = maxOf(1, Runtime.getRuntime().availableProcessors() / 2)
    }
}

/**
 * One loaded `.pte`: `forward(image float32 [N,3,R,R])` or `forward(text int32 [1,L])` -> `embedding [N,D]` (a
 * classifier: `forward(image [1,3,R,R])` -> `logits [1,N]`, its first and only output, returned as is). N and L
 * are within the manifest's `shapes` (ExecuTorch: dynamic batch 1..8, text length 1..77, exported with
 * `torch.export` dynamic dims); the core's index builder and tokenizer pick them.
 */
class ExecuTorchSession internal constructor(
    private val module: Module,
    private val name: String,
) : EncoderSession {

    override fun encodeImage(chw: FloatArray, size: Int): FloatArray {
        require(chw.size == 3 * size * size) { "$name: expected 3*$size*$size floats, got ${chw.size}" }
        val input = Tensor.fromBlob(chw, longArrayOf(1, 3, size.toLong(), size.toLong()))
        return embedding(module.forward(EValue.from(input)))
    }

    /** One forward on a [N,3,R,R] tensor (N = chws.size, accepted by the artifact's `shapes.batch`). */
    override fun encodeImages(chws: Array<FloatArray>, size: Int): Array<FloatArray> {
        val flat = Vectors.concatRows(chws, 3 * size * size)
        val input = Tensor.fromBlob(flat, longArrayOf(chws.size.toLong(), 3, size.toLong(), size.toLong()))
        return Vectors.splitRows(embedding(module.forward(EValue.from(input))), chws.size)
    }

    /** [ids] at the length the tokenizer chose (the artifact's `shapes.length`): a [1, ids.size] tensor. */
    override fun encodeText(ids: IntArray): FloatArray {
        val input = Tensor.fromBlob(ids, longArrayOf(1, ids.size.toLong()))
        return embedding(module.forward(EValue.from(input)))
    }

    private fun embedding(outputs: Array<EValue>): FloatArray {
        check(outputs.isNotEmpty()) { "$name: forward returned no output" }
        return outputs[0].toTensor().dataAsFloatArray
    }

    override fun close() {
        module.destroy()
    }
}
