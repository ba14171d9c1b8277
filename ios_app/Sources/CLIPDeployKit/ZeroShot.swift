import Foundation

/// Zero-shot classification (the JVM core's `ZeroShot`): each label becomes several prompts
/// ("a photo of a {}."), their text embeddings are L2-normalized, averaged and re-normalized (the prompt
/// ensemble), an image's logits are `logit_scale * image . class` and its probabilities their softmax (the JVM
/// core's `ZeroShot`). A bundle's own class matrix and labels are `ModelBundle.classifier()`; a classifier artifact
/// returns the logits directly.
public enum ZeroShot {
    /// A few of OpenAI's ImageNet prompt templates; `{}` is replaced by the label.
    public static let defaultTemplates: [String] = [
        "a photo of a {}.", "a blurry photo of a {}.", "a photo of the large {}.", "a photo of the small {}.",
        "a close-up photo of a {}.", "a bright photo of a {}.", "a dark photo of a {}.", "a drawing of a {}.",
    ]

    public static func prompts(label: String, templates: [String]) -> [String] {
        return templates.map { $0.replacingOccurrences(of: "{}", with: label) }
    }

    /// normalize(mean(normalize(e) for e in promptEmbeddings)), in double.
    public static func ensemble(_ promptEmbeddings: [[Float]]) throws -> [Float] {
        guard let first = promptEmbeddings.first else {
            throw CLIPDeployError(.parity, "no prompt embeddings")
        }
        let d = first.count
        var acc = [Double](repeating: 0, count: d)
        for e in promptEmbeddings {
            guard e.count == d else { throw CLIPDeployError(.parity, "embedding dimension \(e.count) != \(d)") }
            let u = Vectors.unit(e)
            for k in 0..<d { acc[k] += u[k] }
        }
        var n = 0.0
        for k in 0..<d {
            acc[k] /= Double(promptEmbeddings.count)
            n += acc[k] * acc[k]
        }
        n = max(n.squareRoot(), 1e-12)
        return acc.map { Float($0 / n) }
    }

    /// `logitScale * class_i . image` for every class, accumulated in double (the logits of a classifier).
    public static func logits(image: [Float], classEmbeddings: [[Float]], logitScale: Double) -> [Float] {
        return logits64(image: image, classEmbeddings: classEmbeddings, logitScale: logitScale).map { Float($0) }
    }

    static func logits64(image: [Float], classEmbeddings: [[Float]], logitScale: Double) -> [Double] {
        return classEmbeddings.map { logitScale * Vectors.dot($0, image) }
    }

    /// softmax(logitScale * class_i . image) over the classes (`logits`, then `softmax`, in double).
    public static func probabilities(image: [Float], classEmbeddings: [[Float]], logitScale: Double) -> [Float] {
        return softmax(logits64(image: image, classEmbeddings: classEmbeddings, logitScale: logitScale))
    }

    /// The softmax of logits (max subtracted, in double): what a classifier artifact's output becomes.
    public static func softmax(_ logits: [Float]) -> [Float] {
        return softmax(logits.map { Double($0) })
    }

    static func softmax(_ logits: [Double]) -> [Float] {
        guard let top = logits.max() else { return [] }
        let e = logits.map { exp($0 - top) }
        let sum = e.reduce(0, +)
        return e.map { Float($0 / sum) }
    }

    /// Indices of the k largest scores, largest first, lower index first on ties.
    public static func topK(_ scores: [Float], _ k: Int) -> [Int] {
        let order = scores.indices.sorted { a, b in
            scores[a] != scores[b] ? scores[a] > scores[b] : a < b
        }
        return Array(order.prefix(max(0, min(k, scores.count))))
    }
}

/// A bundle's zero-shot classifier (issue 23; the JVM core's `Classifier`): the manifest's `classifier` block with
/// its class matrix, read by `ModelBundle.classifier()` from the verified `classifier/class_embeddings.npy` (float32
/// [N, D], rows L2-normalized, in label order) and checked against `classifier/labels.json`. An image embedding's
/// logits are `logitScale * C . embedding`, its probabilities their softmax; a classifier artifact (`encoder`
/// "classifier") computes the same logits from the image in one call.
public struct ZeroShotClassifier {
    /// The labels, in the order of the class matrix's rows and of the logits.
    public let labels: [String]
    /// The prompt templates the class matrix was made with (`{}` is the label).
    public let templates: [String]
    /// Where the templates came from (openai, cifar10, simple, file), or nil.
    public let templateSource: String?
    public let logitScale: Double
    /// One row per label.
    public let classEmbeddings: [[Float]]
    /// The bundle paths of the class matrix and of the label file (nil when the manifest names none).
    public let classEmbeddingsPath: String
    public let labelsFile: String?

    public var count: Int { labels.count }
    public var embeddingDim: Int { classEmbeddings.first?.count ?? 0 }

    /// `logitScale * C . imageEmbedding` (`ZeroShot.logits`); the embedding must have `embeddingDim` values.
    public func logits(_ imageEmbedding: [Float]) throws -> [Float] {
        try check(imageEmbedding)
        return ZeroShot.logits(image: imageEmbedding, classEmbeddings: classEmbeddings, logitScale: logitScale)
    }

    /// softmax of `logits` (`ZeroShot.probabilities`).
    public func probabilities(_ imageEmbedding: [Float]) throws -> [Float] {
        try check(imageEmbedding)
        return ZeroShot.probabilities(image: imageEmbedding, classEmbeddings: classEmbeddings, logitScale: logitScale)
    }

    private func check(_ e: [Float]) throws {
        guard e.count == embeddingDim else {
            throw CLIPDeployError(.parity, "an image embedding of \(e.count) values for a class matrix of width \(embeddingDim)")
        }
    }
}
