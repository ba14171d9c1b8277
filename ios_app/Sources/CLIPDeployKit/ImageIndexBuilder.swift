import Foundation

/// Builds an `ImageSearch` index in batches the image artifact accepts (`shapes.batch`), through
/// `EncoderSession.encodeImages` (the JVM core's `ImageIndexBuilder`):
/// - images are gathered into chunks of the largest accepted batch: a dynamic batch's max, or
///   `max(maxBatch, min)` (`defaultMaxBatch` 8) when it has none; fixed [1]: one at a time;
/// - the last, partial chunk is **padded** up to the shortest accepted batch that holds it (enumerated [1, 4, 8]:
///   3 images -> a batch of 4) with copies of its last image, and the padded rows' outputs are dropped. Padding,
///   not splitting into smaller accepted sizes: one call instead of several.
///
/// The index equals the one built one image at a time (same ids, order and embeddings, L2-normalized).
/// `plan` gives the batches for N images (`goldens/token_lengths.json` "image_batches"). Not thread-safe: one
/// builder per indexing job.
public final class ImageIndexBuilder {
    public static let defaultMaxBatch = 8

    /// One call: `images` real rows fed as a batch of `size` (`size - images` padded rows).
    public struct Batch: Equatable, CustomStringConvertible {
        public let start: Int
        public let images: Int
        public let size: Int

        public init(start: Int, images: Int, size: Int) {
            self.start = start
            self.images = images
            self.size = size
        }

        public var description: String { "[\(images) -> \(size) @\(start)]" }
    }

    private let session: EncoderSession
    public let batch: ShapeDescriptor
    private let size: Int
    private let chunk: Int
    private let index: ImageSearch
    private var pendingIds: [String] = []
    private var pendingRows: [[Float]] = []
    public private(set) var calls: [Batch] = []
    /// Images added to the index so far.
    public private(set) var added = 0

    /// Into `index`, with `session` of an image artifact whose `shapes.batch` is `batch`; `maxBatch` is the chunk
    /// when the batch has no upper bound (memory: maxBatch * 3 * size^2 floats).
    public init(session: EncoderSession, batch: ShapeDescriptor, size: Int, index: ImageSearch,
                maxBatch: Int = ImageIndexBuilder.defaultMaxBatch) {
        precondition(maxBatch >= 1, "maxBatch must be at least 1")
        self.session = session
        self.batch = batch
        self.size = size
        self.index = index
        self.chunk = ImageIndexBuilder.chunk(batch, maxBatch: maxBatch)
    }

    static func chunk(_ batch: ShapeDescriptor, maxBatch: Int) -> Int {
        return batch.largest ?? Swift.max(maxBatch, batch.min)
    }

    /// The calls that encode `n` images.
    public static func plan(_ batch: ShapeDescriptor, images n: Int,
                            maxBatch: Int = ImageIndexBuilder.defaultMaxBatch) throws -> [Batch] {
        let c = chunk(batch, maxBatch: maxBatch)
        var out: [Batch] = []
        var start = 0
        while start < n {
            let k = Swift.min(n - start, c)
            out.append(Batch(start: start, images: k, size: try batch.shortestAccepted(k)))
            start += k
        }
        return out
    }

    /// Images queued and not yet encoded.
    public var pending: Int { pendingRows.count }

    /// Queues one preprocessed image (`chw` float32 [3, size, size]); a full chunk is encoded and added to the
    /// index. Returns the ids added by this call, in order (empty while the chunk fills). When the encoder fails,
    /// the chunk's images are dropped (none is added) and the error is thrown: `pending` was their count.
    @discardableResult
    public func add(id: String, chw: [Float]) throws -> [String] {
        guard chw.count == 3 * size * size else {
            throw CLIPDeployError(.encoder, "\(id): expected 3*\(size)*\(size) floats, got \(chw.count)")
        }
        pendingIds.append(id)
        pendingRows.append(chw)
        return pendingRows.count >= chunk ? try encodePending() : []
    }

    /// Encodes what is queued (the last, partial chunk, padded); the ids added.
    @discardableResult
    public func flush() throws -> [String] {
        return pendingRows.isEmpty ? [] : try encodePending()
    }

    private func encodePending() throws -> [String] {
        let k = pendingRows.count
        let ids = pendingIds
        var rows = pendingRows
        pendingRows.removeAll()
        pendingIds.removeAll()
        let n = try batch.shortestAccepted(k)
        if n > k { rows += [[Float]](repeating: rows[k - 1], count: n - k) }      // padded with the last image
        let y = try session.encodeImages(rows, size: size)
        guard y.count == n else {
            throw CLIPDeployError(.encoder, "the encoder returned \(y.count) embeddings for a batch of \(n)")
        }
        calls.append(Batch(start: added, images: k, size: n))
        for r in 0..<k { try index.add(id: ids[r], embedding: Vectors.l2normalize(y[r])) }
        added += k
        return ids
    }

    /// Every image in batches, into `index`: `add` each, then `flush`.
    public static func addAll(_ index: ImageSearch, session: EncoderSession, batch: ShapeDescriptor, size: Int,
                              ids: [String], chws: [[Float]]) throws {
        guard ids.count == chws.count else {
            throw CLIPDeployError(.encoder, "\(ids.count) ids but \(chws.count) images")
        }
        let b = ImageIndexBuilder(session: session, batch: batch, size: size, index: index)
        for k in 0..<ids.count { try b.add(id: ids[k], chw: chws[k]) }
        try b.flush()
    }
}

/// A text artifact's session with the tokenizer in front (the JVM core's `TextEncoder`): captions, zero-shot
/// prompts and search queries are tokenized to the shortest length the artifact accepts (`shapes.length`,
/// `CLIPTokenizer.tokenize(_:for:)`) and passed as [1, L]; an artifact without shapes (or a non-causal tower,
/// fixed [77]) gets 77 as before. Embeddings are L2-normalized. What the app's `Engine` uses for every text input.
public final class TextEncoder {
    private let session: EncoderSession
    private let tokenizer: CLIPTokenizer
    public let length: ShapeDescriptor

    public init(session: EncoderSession, tokenizer: CLIPTokenizer, length: ShapeDescriptor) {
        self.session = session
        self.tokenizer = tokenizer
        self.length = length
    }

    public convenience init(session: EncoderSession, tokenizer: CLIPTokenizer, artifact: ModelBundle.Artifact) {
        self.init(session: session, tokenizer: tokenizer,
                  length: artifact.shapes.length ?? .fixed(ArtifactShapes.defaultLength))
    }

    /// The ids the artifact gets for `text`: int32 [L].
    public func ids(_ text: String) throws -> [Int32] {
        return try tokenizer.tokenize(text, for: length)
    }

    public func embed(_ text: String) throws -> [Float] {
        return Vectors.l2normalize(try session.encodeText(ids(text)))
    }

    /// One prompt-ensembled embedding per label (`ZeroShot.ensemble` over `templates`).
    public func classEmbeddings(labels: [String], templates: [String]) throws -> [[Float]] {
        return try labels.map { label in
            try ZeroShot.ensemble(try ZeroShot.prompts(label: label, templates: templates).map { try embed($0) })
        }
    }
}
