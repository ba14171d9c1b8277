import Foundation

/// Text -> image search over image embeddings (the JVM core's `ImageSearch`): the score is the dot
/// product of L2-normalized embeddings (cosine), best first; equal scores keep insertion order.
/// Thread-safe.
public final class ImageSearch {
    public struct Hit: Equatable {
        public let id: String
        public let index: Int
        public let score: Double
    }

    private var ids: [String] = []
    private var embeddings: [[Float]] = []
    private let lock = NSLock()

    public init() {}

    public func add(id: String, embedding: [Float]) throws {
        lock.lock()
        defer { lock.unlock() }
        if let first = embeddings.first, first.count != embedding.count {
            throw CLIPDeployError(.parity, "embedding dimension \(embedding.count) != \(first.count)")
        }
        ids.append(id)
        embeddings.append(embedding)
    }

    public var count: Int {
        lock.lock()
        defer { lock.unlock() }
        return ids.count
    }

    public func clear() {
        lock.lock()
        defer { lock.unlock() }
        ids.removeAll()
        embeddings.removeAll()
    }

    /// The k best images for a text embedding.
    public func query(_ textEmbedding: [Float], k: Int) -> [Hit] {
        lock.lock()
        defer { lock.unlock() }
        var hits: [Hit] = []
        hits.reserveCapacity(ids.count)
        for i in 0..<ids.count {
            hits.append(Hit(id: ids[i], index: i, score: Vectors.dot(embeddings[i], textEmbedding)))
        }
        hits.sort { a, b in a.score != b.score ? a.score > b.score : a.index < b.index }
        return Array(hits.prefix(max(0, k)))
    }
}
