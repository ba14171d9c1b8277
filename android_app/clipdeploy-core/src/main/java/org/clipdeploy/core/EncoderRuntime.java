package org.clipdeploy.core;

import java.util.Map;

/**
 * A runtime that runs a bundle's encoder artifacts: ExecuTorch, ONNX Runtime and LiteRT on Android
 * ({@code clipdeploy-android}), Core ML on iOS, the linear {@link ReferenceRuntime} in tests.
 */
public interface EncoderRuntime {
    /** The report's runtime name: "executorch", "onnxruntime", "litert", "coreml", "reference". */
    String name();

    /** Whether this runtime runs that artifact (target, file type, delegate). */
    boolean supports(Bundle.Artifact artifact);

    /** Threads for the sessions loaded after this call; 0 keeps the runtime's default. */
    void configure(int threads);

    /** Library versions for the report's {@code runtime_versions}. */
    Map<String, Object> versions();

    /** Options in effect (threads, delegate, ...) for the report's {@code runtime_options}. */
    Map<String, Object> options();

    EncoderSession load(Bundle.Artifact artifact) throws Exception;
}
