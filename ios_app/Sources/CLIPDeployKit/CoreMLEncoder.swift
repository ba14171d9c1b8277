#if canImport(CoreML)
import CoreML
import CoreVideo
import Foundation

/// Compiles `.mlpackage` / `.mlmodel` files once and keeps the `.mlmodelc` in the app's Caches directory
/// (`Caches/CLIPDeployKit/compiled/<name>-<fingerprint>.mlmodelc`); the fingerprint is made of the
/// package's file sizes and modification dates, so a replaced bundle is compiled again.
public enum CoreMLModelCache {
    private static let lock = NSLock()

    public static var directory: URL {
        let caches = FileManager.default.urls(for: .cachesDirectory, in: .userDomainMask).first
            ?? URL(fileURLWithPath: NSTemporaryDirectory())
        return caches.appendingPathComponent("CLIPDeployKit/compiled", isDirectory: true)
    }

    /// The compiled model of `source`: itself when it is already an `.mlmodelc`, else the cached compile.
    public static func compiledURL(for source: URL) throws -> URL {
        if source.pathExtension == "mlmodelc" { return source }
        guard FileManager.default.fileExists(atPath: source.path) else {
            throw CLIPDeployError(.encoder, "\(source.path) does not exist")
        }
        lock.lock()
        defer { lock.unlock() }
        let fm = FileManager.default
        let dest = directory.appendingPathComponent(
            "\(source.deletingPathExtension().lastPathComponent)-\(fingerprint(source)).mlmodelc", isDirectory: true)
        if fm.fileExists(atPath: dest.path) { return dest }
        let compiled: URL
        do {
            compiled = try MLModel.compileModel(at: source)
        } catch {
            throw CLIPDeployError(.encoder, "Core ML cannot compile \(source.lastPathComponent): \(oneLine(error))")
        }
        do {
            try fm.createDirectory(at: directory, withIntermediateDirectories: true)
            if fm.fileExists(atPath: dest.path) { try fm.removeItem(at: dest) }
            do {
                try fm.moveItem(at: compiled, to: dest)
            } catch {
                try fm.copyItem(at: compiled, to: dest)        // across volumes
                try? fm.removeItem(at: compiled)
            }
        } catch {
            throw CLIPDeployError(.encoder, "cannot cache the compiled model at \(dest.path): \(oneLine(error))")
        }
        return dest
    }

    /// Removes every cached compile.
    public static func clear() throws {
        lock.lock()
        defer { lock.unlock() }
        if FileManager.default.fileExists(atPath: directory.path) {
            try FileManager.default.removeItem(at: directory)
        }
    }

    /// FNV-1a 64 of the relative paths, sizes and modification times of every file under `url`.
    static func fingerprint(_ url: URL) -> String {
        let fm = FileManager.default
        var lines: [String] = []
        let keys: [URLResourceKey] = [.fileSizeKey, .contentModificationDateKey, .isRegularFileKey]
        var files: [URL] = [url]
        if let e = fm.enumerator(at: url, includingPropertiesForKeys: keys) {
            files = e.compactMap { $0 as? URL }
        }
        for f in files {
            guard let v = try? f.resourceValues(forKeys: Set(keys)), v.isRegularFile ?? false else { continue }
            let rel = String(f.path.dropFirst(min(url.path.count, f.path.count)))
            let mtime = v.contentModificationDate?.timeIntervalSince1970 ?? 0
            lines.append("\(rel) \(v.fileSize ?? 0) \(Int64(mtime * 1000))")
        }
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in lines.sorted().joined(separator: "\n").utf8 {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01b3
        }
        return String(h, radix: 16)
    }
}

/// `MLComputeUnits` by the names clip-latency uses (`--compute-units ALL|CPU_ONLY|CPU_AND_GPU|CPU_AND_NE`).
public enum ComputeUnits: String, CaseIterable, Identifiable {
    case all = "ALL"
    case cpuOnly = "CPU_ONLY"
    case cpuAndGPU = "CPU_AND_GPU"
    case cpuAndNeuralEngine = "CPU_AND_NE"

    public var id: String { rawValue }

    public var mlComputeUnits: MLComputeUnits {
        switch self {
        case .all: return .all
        case .cpuOnly: return .cpuOnly
        case .cpuAndGPU: return .cpuAndGPU
        case .cpuAndNeuralEngine: return .cpuAndNeuralEngine
        }
    }
}

/// One Core ML encoder (an `EncoderSession`): the tensor variant takes `image` float32 [N, 3, R, R] (RGB in
/// [0, 1]) or `text` int32 [1, L]; the ImageType variant (`*_imagetype.mlpackage`) takes `image` as a
/// CVPixelBuffer R x R, one at a time. The output `embedding` float32 [N, D] is already L2-normalized. N and L are
/// sizes of the artifact's `shapes` (Core ML: EnumeratedShapes, e.g. batch [1, 4, 8], text length [8, 16, 32, 77]);
/// `ImageIndexBuilder` and `CLIPTokenizer.tokenize(_:for:)` choose them, this class passes them through. A zero-shot
/// classifier (`encoder` "classifier", issue 23) takes `image` like the image encoder and its output is `logits`
/// float32 [1, N] over the bundle's classifier labels (not normalized): `encodeImage` returns them.
public final class CoreMLEncoder: EncoderSession {
    public private(set) var model: MLModel?
    public let encoder: String
    /// True for the ImageType variant.
    public let takesPixels: Bool
    /// The output read: `embedding`, or `logits` for a classifier.
    public var outputName: String { encoder == "classifier" ? "logits" : "embedding" }
    private var takesImage: Bool { encoder == "image" || encoder == "classifier" }

    public init(model: MLModel, encoder: String, takesPixels: Bool) {
        self.model = model
        self.encoder = encoder
        self.takesPixels = takesPixels
    }

    /// Compile (cached) and load a package: e.g. `coreml-fp16/image_encoder.mlpackage`. Not verified: for a
    /// bundle's artifact use `load(_ artifact:)`, which checks it against the manifest first.
    public static func load(_ url: URL, encoder: String, takesPixels: Bool = false,
                            computeUnits: ComputeUnits = .all) throws -> CoreMLEncoder {
        let compiled = try CoreMLModelCache.compiledURL(for: url)
        let config = MLModelConfiguration()
        config.computeUnits = computeUnits.mlComputeUnits
        do {
            let model = try MLModel(contentsOf: compiled, configuration: config)
            return CoreMLEncoder(model: model, encoder: encoder, takesPixels: takesPixels)
        } catch {
            throw CLIPDeployError(.encoder, "Core ML cannot load \(url.lastPathComponent): \(oneLine(error))")
        }
    }

    /// Load an artifact of a bundle (its ImageType variant when `artifact.takesPixels`): every file of the package
    /// is checked against the manifest's sha256 first (`Artifact.verifiedURL`; an unlisted file in the package is
    /// refused too), so a tampered or incomplete package never reaches Core ML.
    public static func load(_ artifact: ModelBundle.Artifact, computeUnits: ComputeUnits = .all) throws -> CoreMLEncoder {
        return try load(try artifact.verifiedURL(), encoder: artifact.encoder, takesPixels: artifact.takesPixels,
                        computeUnits: computeUnits)
    }

    public func encodeImage(_ chw: [Float], size: Int) throws -> [Float] {
        guard takesImage else { throw CLIPDeployError(.encoder, "a text encoder got an image") }
        guard chw.count == 3 * size * size else {
            throw CLIPDeployError(.encoder, "\(chw.count) values are not a [3, \(size), \(size)] image")
        }
        if takesPixels {
            // the ImageType variant: 8-bit pixels, as clip-latency's Core ML runtime feeds it (round(x * 255))
            return try encode(pixelBuffer: RGBImage.fromCHW(chw, size: size).pixelBuffer())
        }
        let shape = [1, 3, size, size].map { NSNumber(value: $0) }
        let input = try MLMultiArray(shape: shape, dataType: .float32)
        input.withUnsafeMutableBufferPointer(ofType: Float.self) { ptr, strides in
            let n = size * size
            for c in 0..<3 {
                for y in 0..<size {
                    for x in 0..<size {
                        ptr[c * strides[1] + y * strides[2] + x * strides[3]] = chw[c * n + y * size + x]
                    }
                }
            }
        }
        return try predict(["image": MLFeatureValue(multiArray: input)])
    }

    /// One prediction on an `image` MLMultiArray [N, 3, size, size] (N = `chws.count`, a batch the artifact's
    /// enumerated `shapes.batch` accepts), N embeddings. The ImageType variant (pixel buffers) and N = 1 go
    /// through `encodeImage` row by row.
    public func encodeImages(_ chws: [[Float]], size: Int) throws -> [[Float]] {
        guard takesImage else { throw CLIPDeployError(.encoder, "a text encoder got an image") }
        if takesPixels || chws.count <= 1 { return try chws.map { try encodeImage($0, size: size) } }
        let n = size * size
        for (k, chw) in chws.enumerated() where chw.count != 3 * n {
            throw CLIPDeployError(.encoder, "row \(k): \(chw.count) values are not a [3, \(size), \(size)] image")
        }
        let shape = [chws.count, 3, size, size].map { NSNumber(value: $0) }
        let input = try MLMultiArray(shape: shape, dataType: .float32)
        input.withUnsafeMutableBufferPointer(ofType: Float.self) { ptr, strides in
            for (b, chw) in chws.enumerated() {
                for c in 0..<3 {
                    for y in 0..<size {
                        for x in 0..<size {
                            ptr[b * strides[0] + c * strides[1] + y * strides[2] + x * strides[3]] = chw[c * n + y * size + x]
                        }
                    }
                }
            }
        }
        let rows = try CoreMLEncoder.rows(try predictArray(["image": MLFeatureValue(multiArray: input)]))
        guard rows.count == chws.count else {
            throw CLIPDeployError(.encoder, "a batch of \(chws.count) gave \(rows.count) embeddings")
        }
        return rows
    }

    /// The ImageType variant on a pixel buffer of the model's R x R (e.g. `RGBImage.pixelBuffer()` of
    /// `Preprocess.resizeAndCrop`).
    public func encode(pixelBuffer: CVPixelBuffer) throws -> [Float] {
        guard takesImage, takesPixels else {
            throw CLIPDeployError(.encoder, "this model takes a tensor, not a pixel buffer: use encodeImage")
        }
        return try predict(["image": MLFeatureValue(pixelBuffer: pixelBuffer)])
    }

    /// `ids` at the length the tokenizer chose (one of the artifact's enumerated `shapes.length`, e.g. 8, 16, 32
    /// or 77): a `text` MLMultiArray [1, ids.count].
    public func encodeText(_ ids: [Int32]) throws -> [Float] {
        guard encoder == "text" else { throw CLIPDeployError(.encoder, "an image encoder got token ids") }
        let shape = [1, ids.count].map { NSNumber(value: $0) }
        let input = try MLMultiArray(shape: shape, dataType: .int32)
        input.withUnsafeMutableBufferPointer(ofType: Int32.self) { ptr, strides in
            for k in 0..<ids.count { ptr[k * strides[1]] = ids[k] }
        }
        return try predict(["text": MLFeatureValue(multiArray: input)])
    }

    public func close() {
        model = nil
    }

    private func predict(_ inputs: [String: MLFeatureValue]) throws -> [Float] {
        return try CoreMLEncoder.floats(try predictArray(inputs))
    }

    private func predictArray(_ inputs: [String: MLFeatureValue]) throws -> MLMultiArray {
        guard let model = model else { throw CLIPDeployError(.encoder, "the Core ML session is closed") }
        let provider = try MLDictionaryFeatureProvider(dictionary: inputs)
        let out = try model.prediction(from: provider)
        guard let array = out.featureValue(for: outputName)?.multiArrayValue else {
            throw CLIPDeployError(.encoder, "the model has no multi-array output '\(outputName)'")
        }
        return array
    }

    /// The rows of an [N, D] multi-array of any data type, honoring its strides.
    static func rows(_ array: MLMultiArray) throws -> [[Float]] {
        let shape = array.shape.map { $0.intValue }
        let strides = array.strides.map { $0.intValue }
        guard shape.count == 2 else {
            throw CLIPDeployError(.encoder, "expected a batched embedding [N, D], got shape \(shape)")
        }
        let (n, d) = (shape[0], shape[1])
        if array.dataType == .float32 {
            return array.withUnsafeBufferPointer(ofType: Float.self) { ptr in
                (0..<n).map { r in (0..<d).map { ptr[r * strides[0] + $0 * strides[1]] } }
            }
        }
        return (0..<n).map { r in (0..<d).map { array[[NSNumber(value: r), NSNumber(value: $0)]].floatValue } }
    }

    /// The values of a [1, D] (or [D]) multi-array of any data type, honoring its strides.
    static func floats(_ array: MLMultiArray) throws -> [Float] {
        let shape = array.shape.map { $0.intValue }
        let strides = array.strides.map { $0.intValue }
        guard let d = shape.last, shape.dropLast().reduce(1, *) == 1 else {
            throw CLIPDeployError(.encoder, "expected a batch-1 embedding, got shape \(shape)")
        }
        let step = strides.last ?? 1
        if array.dataType == .float32 {
            return array.withUnsafeBufferPointer(ofType: Float.self) { ptr in (0..<d).map { ptr[$0 * step] } }
        }
        let lead = [NSNumber](repeating: 0, count: shape.count - 1)
        return (0..<d).map { array[lead + [NSNumber(value: $0)]].floatValue }
    }
}

/// Core ML as an `EncoderRuntime` for the benchmark: every `coreml` artifact (`.mlpackage`), and the
/// ImageType variants listed by `ModelBundle.artifactsWithVariants()`. Core ML has no thread setting:
/// `configure(threads:)` is recorded, not applied.
public final class CoreMLRuntime: EncoderRuntime {
    public let computeUnits: ComputeUnits
    private var requestedThreads = 0

    public init(computeUnits: ComputeUnits = .all) {
        self.computeUnits = computeUnits
    }

    public var name: String { "coreml" }

    public func supports(_ artifact: ModelBundle.Artifact) -> Bool {
        let ext = artifact.url.pathExtension
        return artifact.target == "coreml" && (ext == "mlpackage" || ext == "mlmodel" || ext == "mlmodelc")
    }

    public func configure(threads: Int) {
        requestedThreads = threads
    }

    public func versions() -> [String: Any] {
        let v = ProcessInfo.processInfo.operatingSystemVersion
        return ["coreml": "\(v.majorVersion).\(v.minorVersion).\(v.patchVersion)"]
    }

    public func options() -> [String: Any] {
        return ["threads": NSNull(), "requested_threads": requestedThreads, "compute_units": computeUnits.rawValue]
    }

    public func prepare(_ artifact: ModelBundle.Artifact) throws {
        _ = try CoreMLModelCache.compiledURL(for: try artifact.verifiedURL())
    }

    public func load(_ artifact: ModelBundle.Artifact) throws -> EncoderSession {
        return try CoreMLEncoder.load(artifact, computeUnits: computeUnits)
    }
}
#endif
