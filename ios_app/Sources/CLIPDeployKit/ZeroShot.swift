import Foundation

/// Zero-shot classification (the JVM core's `ZeroShot`): each label becomes several prompts
/// ("a photo of a {}."), their text embeddings are L2-normalized, averaged and re-normalized (the prompt
/// ensemble), and an image's probabilities are `softmax(logit_scale * image . class)`.
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

    /// softmax(logitScale * class_i . image) over the classes (double, max subtracted).
    public static func probabilities(image: [Float], classEmbeddings: [[Float]], logitScale: Double) -> [Float] {
        guard !classEmbeddings.isEmpty else { return [] }
        var logits = classEmbeddings.map { logitScale * Vectors.dot($0, image) }
        let top = logits.max() ?? 0
        var sum = 0.0
        for c in 0..<logits.count {
            logits[c] = exp(logits[c] - top)
            sum += logits[c]
        }
        return logits.map { Float($0 / sum) }
    }

    /// Indices of the k largest scores, largest first, lower index first on ties.
    public static func topK(_ scores: [Float], _ k: Int) -> [Int] {
        let order = scores.indices.sorted { a, b in
            scores[a] != scores[b] ? scores[a] > scores[b] : a < b
        }
        return Array(order.prefix(max(0, min(k, scores.count))))
    }
}
