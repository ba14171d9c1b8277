import Foundation

/// Runs the goldens' linear reference artifacts (`goldens/bundle/reference-fp32/*.npy`), as the JVM core's
/// `ReferenceRuntime`: image `normalize(W @ flatten(chw))` with W float32 [D, 3*R*R]; text
/// `normalize(sum of T[id % V] over non-pad ids)` with T float32 [V, D]; classifier (the manifest's
/// `reference_model.classifier`) `logits = logit_scale * C @ normalize(W @ flatten(chw))`, W the image encoder's
/// matrix (the artifact's path), C the bundle's verified class matrix (`ModelBundle.classifier()`), applied to the
/// float32 embedding as the exported classifier module applies it to its image wrapper's output; all accumulated
/// in double. Real
/// arithmetic on real inputs, so the benchmark runner, parity and report are tested end to end where no
/// phone runtime exists. `perturb` corrupts the weights (tests of the parity bars).
public final class ReferenceRuntime: EncoderRuntime {
    private let perturb: Double
    private var threads = 0

    /// `perturb`: multiply every other weight by (1 + perturb) (0: exact).
    public init(perturb: Double = 0) {
        self.perturb = perturb
    }

    public var name: String { "reference" }

    public func supports(_ artifact: ModelBundle.Artifact) -> Bool {
        return artifact.target == "reference" && artifact.path.hasSuffix(".npy")
    }

    public func configure(threads: Int) {
        self.threads = threads
    }

    public func versions() -> [String: Any] {
        return ["os": ProcessInfo.processInfo.operatingSystemVersionString, "clipdeploykit": KitInfo.version]
    }

    public func options() -> [String: Any] {
        return ["threads": 1, "requested_threads": threads, "delegate": "none (linear reference model)"]
    }

    public func load(_ artifact: ModelBundle.Artifact) throws -> EncoderSession {
        let w = try Npy.read(contentsOf: try artifact.verifiedURL())   // sha256 against the manifest first
        guard w.shape.count == 2 else {
            throw CLIPDeployError(.encoder, "\(artifact.path): expected a 2-d weight, got \(w.shape)")
        }
        var data = w.floats()
        if perturb != 0 {
            let f = Float(1.0 + perturb)
            for k in stride(from: 0, to: data.count, by: 2) { data[k] *= f }
        }
        var head: ClassHead?
        if artifact.isClassifier {
            guard let bundle = artifact.bundle else {
                throw CLIPDeployError(.encoder, "\(artifact.path): a classifier artifact needs its open bundle")
            }
            let c = try bundle.classifier()          // the class matrix, verified (sha256) and checked
            guard c.embeddingDim == w.shape[0] else {
                throw CLIPDeployError(.encoder, "\(artifact.path): the image matrix has \(w.shape[0]) rows, the class "
                                      + "matrix \(c.embeddingDim) columns")
            }
            head = ClassHead(classes: c.classEmbeddings, scale: c.logitScale)
        }
        return LinearSession(weights: data, rows: w.shape[0], cols: w.shape[1], image: artifact.takesImage, head: head)
    }

    /// A classifier's head: `scale * C . embedding`.
    struct ClassHead {
        let classes: [[Float]]
        let scale: Double
    }

    static func normalized(_ y: [Double]) -> [Float] {
        var n = 0.0
        for v in y { n += v * v }
        n = n.squareRoot()
        return y.map { Float($0 / n) }
    }

    final class LinearSession: EncoderSession {
        private var weights: [Float]
        private let rows: Int
        private let cols: Int
        private let image: Bool
        private let head: ClassHead?

        init(weights: [Float], rows: Int, cols: Int, image: Bool, head: ClassHead? = nil) {
            self.weights = weights
            self.rows = rows
            self.cols = cols
            self.image = image
            self.head = head
        }

        func encodeImage(_ chw: [Float], size: Int) throws -> [Float] {
            guard image else { throw CLIPDeployError(.encoder, "a text encoder got an image") }
            guard chw.count == cols else {
                throw CLIPDeployError(.encoder, "image has \(chw.count) values, the model takes \(cols)")
            }
            var y = [Double](repeating: 0, count: rows)
            weights.withUnsafeBufferPointer { w in
                for r in 0..<rows {
                    var s = 0.0
                    let off = r * cols
                    for c in 0..<cols { s += Double(w[off + c]) * Double(chw[c]) }
                    y[r] = s
                }
            }
            let e = ReferenceRuntime.normalized(y)
            guard let head = head else { return e }
            // the head on the image encoder's float32 embedding, accumulated in double
            return head.classes.map { Float(head.scale * Vectors.dot($0, e)) }
        }

        func encodeText(_ ids: [Int32]) throws -> [Float] {
            guard !image else { throw CLIPDeployError(.encoder, "an image encoder got token ids") }
            var y = [Double](repeating: 0, count: cols)
            for id in ids where id != 0 {
                let m = Int(id) % rows
                let row = m < 0 ? m + rows : m          // floor modulo, as Java's Math.floorMod / numpy's %
                for c in 0..<cols { y[c] += Double(weights[row * cols + c]) }
            }
            return ReferenceRuntime.normalized(y)
        }

        func close() {
            weights = []
        }
    }
}

/// The kit's version (reports' `tool.version`, `host.libraries`).
public enum KitInfo {
    public static let version = "0.1.0"
}
