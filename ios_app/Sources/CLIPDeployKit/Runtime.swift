import Foundation

/// A runtime that runs a bundle's encoder artifacts (the JVM core's `EncoderRuntime`): Core ML on iOS
/// (`CoreMLRuntime`), the linear `ReferenceRuntime` in tests.
public protocol EncoderRuntime: AnyObject {
    /// The report's runtime name: "coreml", "reference", ...
    var name: String { get }

    /// Whether this runtime runs that artifact (target, file type).
    func supports(_ artifact: ModelBundle.Artifact) -> Bool

    /// Threads for the sessions loaded after this call; 0 keeps the runtime's default.
    func configure(threads: Int)

    /// Library versions for the report's `runtime_versions`.
    func versions() -> [String: Any]

    /// Options in effect (threads, compute units, ...) for the report's `runtime_options`.
    func options() -> [String: Any]

    /// Untimed work the benchmark does before the cold load (Core ML: compile the package once, cached on
    /// disk). Not in the JVM interface; the default does nothing.
    func prepare(_ artifact: ModelBundle.Artifact) throws

    func load(_ artifact: ModelBundle.Artifact) throws -> EncoderSession
}

extension EncoderRuntime {
    public func prepare(_ artifact: ModelBundle.Artifact) throws {}
}

/// One loaded encoder (the JVM core's `EncoderSession`): the L2-normalized embedding of one input, or of a batch.
public protocol EncoderSession: AnyObject {
    /// `chw`: float32 [3, size, size] RGB in [0, 1] (mean/std, if any, is inside the artifact).
    func encodeImage(_ chw: [Float], size: Int) throws -> [Float]

    /// A batch [N, 3, size, size] in one call (N = `chws.count`, each row as `encodeImage`), one embedding per
    /// row. The caller passes a batch size the artifact accepts (`shapes.batch`; `ImageIndexBuilder` plans them).
    /// The default runs the rows one at a time; `CoreMLEncoder` overrides it with one [N, 3, R, R] prediction.
    func encodeImages(_ chws: [[Float]], size: Int) throws -> [[Float]]

    /// `ids`: int32 [L] CLIP token ids, L a length the artifact accepts (`shapes.length`; 77 when the manifest
    /// has no shapes): `CLIPTokenizer.tokenize(_:for:)` makes them.
    func encodeText(_ ids: [Int32]) throws -> [Float]

    /// Releases the loaded model (also released when the session is deallocated).
    func close()
}

extension EncoderSession {
    public func encodeImages(_ chws: [[Float]], size: Int) throws -> [[Float]] {
        return try chws.map { try encodeImage($0, size: size) }
    }
}

/// The process's memory as the platform reports it (the JVM core's `MemoryProbe`).
public protocol MemoryProbe: AnyObject {
    /// Current memory in MB.
    func currentMb() -> Double
    /// The largest value seen (this probe's samples, or the platform's own peak when it has one).
    func peakMb() -> Double
    /// What is measured, for the report's `memory.source`.
    var source: String { get }
}

/// What a benchmark run does; the defaults are `clip-latency run`'s (the JVM core's `BenchmarkSettings`).
/// The steady state samples until all of: `runs` samples, `minSeconds` of timed work and `minBlocks` blocks
/// (see `Benchmark`); a block closes after a sample once it holds `blockSeconds` of timed work and at least
/// `blockMinSamples` samples, and the last, partial block closes when sampling stops.
public struct BenchmarkSettings {
    /// A steady-state block closes once its own timed work reaches this (seconds) ... (Java: `BLOCK_SECONDS`)
    public static let blockSeconds: Double = 0.25
    /// ... and it holds at least this many samples. (Java: `BLOCK_MIN_SAMPLES`)
    public static let blockMinSamples: Int = 3

    /// Timed samples, at least.
    public var runs: Int = 50
    /// Untimed calls before timing.
    public var warmup: Int = 10
    /// Runtime threads; 0 = the runtime's default.
    public var threads: Int = 0
    /// Keep sampling until this much timed work (seconds).
    public var minSeconds: Double = 2.0
    /// Keep sampling until this many blocks have closed (the last, partial block does not count).
    public var minBlocks: Int = 8
    /// The runtime to measure ("coreml", "reference"); artifacts of others are skipped. nil: any.
    public var runtime: String?

    public init(runtime: String? = nil, runs: Int = 50, warmup: Int = 10, threads: Int = 0, minSeconds: Double = 2.0,
                minBlocks: Int = 8) {
        self.runtime = runtime
        self.runs = runs
        self.warmup = warmup
        self.threads = threads
        self.minSeconds = minSeconds
        self.minBlocks = minBlocks
    }

    public func validate() throws {
        if runs < 1 { throw CLIPDeployError(.benchmark, "runs must be at least 1, got \(runs)") }
        if warmup < 0 { throw CLIPDeployError(.benchmark, "warmup must be 0 or more, got \(warmup)") }
        if threads < 0 { throw CLIPDeployError(.benchmark, "threads must be 0 (default) or more, got \(threads)") }
        if !(minSeconds >= 0) || minSeconds.isInfinite {
            throw CLIPDeployError(.benchmark, "minSeconds must be 0 or more (and finite), got \(minSeconds)")
        }
        if minBlocks < 1 { throw CLIPDeployError(.benchmark, "minBlocks must be at least 1, got \(minBlocks)") }
    }
}

/// A monotonic clock in nanoseconds (`DispatchTime`, i.e. mach_absolute_time).
public enum MonotonicClock {
    public static func nanos() -> UInt64 {
        return DispatchTime.now().uptimeNanoseconds
    }

    public static func millis(since start: UInt64) -> Double {
        return Double(nanos() &- start) / 1e6
    }

    public static func seconds(since start: UInt64) -> Double {
        return Double(nanos() &- start) / 1e9
    }
}
