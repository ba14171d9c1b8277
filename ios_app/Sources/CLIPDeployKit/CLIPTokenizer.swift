import Foundation

/// OpenAI CLIP byte-level BPE, as open_clip's `SimpleTokenizer` (the JVM core's `ClipTokenizer`), reading a
/// bundle's `tokenizer/vocab.json` and `tokenizer/merges.txt` (Hugging Face CLIP format). `tokenize` returns
/// what the exported text encoders take: int32 [77], SOT, BPE ids, EOT, zeros. Thread-safe.
public final class CLIPTokenizer: CustomStringConvertible {
    public static let sot: Int32 = 49406
    public static let eot: Int32 = 49407
    public static let pad: Int32 = 0
    public static let defaultContextLength = 77
    static let sotLiteral = Array("<start_of_text>".unicodeScalars)
    static let eotLiteral = Array("<end_of_text>".unicodeScalars)
    static let contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"].map { Array($0.unicodeScalars) }

    private let encoder: [String: Int32]
    private let ranks: [String: Int]
    private let byteEncoder: [String]
    /// Keyed by code points: Swift `String` keys compare by canonical equivalence, and an NFD piece must not
    /// share an entry with its NFC twin (their UTF-8 bytes, hence their BPE, differ).
    private var cache: [[Unicode.Scalar]: [Int32]] = [:]
    private let lock = NSLock()
    public let contextLength: Int

    private init(encoder: [String: Int32], ranks: [String: Int], contextLength: Int) {
        self.encoder = encoder
        self.ranks = ranks
        self.contextLength = contextLength
        self.byteEncoder = CLIPTokenizer.bytesToUnicode().map { String(Character(Unicode.Scalar($0)!)) }
    }

    /// The tokenizer of a vocab.json and a merges.txt (each at most `ModelBundle.maxTokenizerBytes`, checked
    /// before it is read).
    public static func fromFiles(vocab: URL, merges: URL) throws -> CLIPTokenizer {
        let v: Data, m: Data
        do {
            v = try FileIO.read(vocab, maxBytes: ModelBundle.maxTokenizerBytes, tooLarge: .tokenizer)
            m = try FileIO.read(merges, maxBytes: ModelBundle.maxTokenizerBytes, tooLarge: .tokenizer)
        } catch {
            throw CLIPDeployError(.tokenizer, "cannot read the tokenizer files: \(oneLine(error))")
        }
        return try fromData(vocab: v, merges: m)
    }

    /// The bundle's tokenizer: its vocab.json and merges.txt checked against the manifest's sha256 first
    /// (`ModelBundle.verifyFile`), then read. A file that fails its record is the bundle's refusal (`.integrity`,
    /// `.incomplete`, `.unsafePath`, ...); files that verify but cannot be parsed are `.tokenizer` errors naming
    /// the bundle and the fix.
    public static func fromBundle(_ bundle: ModelBundle) throws -> CLIPTokenizer {
        let vocabRel = bundle.tokenizerPath("vocab"), mergesRel = bundle.tokenizerPath("merges")
        let vocab = try bundle.verifyFile(vocabRel)
        let merges = try bundle.verifyFile(mergesRel)
        do {
            return try fromFiles(vocab: vocab, merges: merges)
        } catch {
            throw CLIPDeployError(.tokenizer, "bundle \(bundle.dir.path): tokenizer files \(vocabRel) / \(mergesRel): "
                                  + "\(oneLine(error)); re-export the bundle with clip-export")
        }
    }

    public static func fromData(vocab: Data, merges: Data) throws -> CLIPTokenizer {
        let raw = try Json.map(Json.parse(vocab, maxBytes: ModelBundle.maxTokenizerBytes))
        var enc = [String: Int32](minimumCapacity: raw.count)
        for (token, id) in raw {
            guard let n = Json.optionalNumber(id), let v = Int32(exactly: n) else {
                throw CLIPDeployError(.tokenizer, "vocab.json: id of \(token) is not an integer")
            }
            enc[token] = v
        }
        guard enc["<|startoftext|>"] == sot, enc["<|endoftext|>"] == eot else {
            throw CLIPDeployError(.tokenizer, "vocab.json is not the OpenAI CLIP vocabulary (<|startoftext|> must be "
                                  + "\(sot) and <|endoftext|> \(eot))")
        }
        let text = String(decoding: merges, as: UTF8.self)
        var ranks = [String: Int](minimumCapacity: 50000)
        var rank = 0
        var first = true
        for line in text.split(whereSeparator: { $0.isNewline }) {
            if first && line.hasPrefix("#version") {
                first = false
                continue
            }
            first = false
            let parts = line.split(separator: " ")
            guard parts.count == 2 else {
                throw CLIPDeployError(.tokenizer, "merges.txt line \(rank + 2) is not a pair: \(line)")
            }
            ranks[String(parts[0]) + " " + String(parts[1])] = rank
            rank += 1
        }
        return CLIPTokenizer(encoder: enc, ranks: ranks, contextLength: defaultContextLength)
    }

    public var vocabSize: Int { encoder.count }

    /// SOT, the BPE ids, EOT, padded with 0. Over-long text keeps the first `contextLength - 2` ids, so EOT
    /// stays last (open_clip: `tokens[:context_length]` with the last replaced by EOT).
    public func tokenize(_ text: String) throws -> [Int32] {
        return CLIPTokenizer.ids(try encode(text), length: contextLength)
    }

    public func tokenize(_ texts: [String]) throws -> [[Int32]] {
        return try texts.map { try tokenize($0) }
    }

    /// `tokenize` at `length` positions: SOT, the BPE ids, EOT, 0-padded; longer text is cut to `length` with EOT
    /// last (open_clip's tokenizer called with `context_length=length`).
    public func tokenize(_ text: String, length: Int) throws -> [Int32] {
        guard length >= 1 else { throw CLIPDeployError(.tokenizer, "length must be at least 1, got \(length)") }
        return CLIPTokenizer.ids(try encode(text), length: length)
    }

    /// Tokens of `text` as the encoder sees them at `contextLength`: SOT, the BPE ids, EOT, at most
    /// `contextLength` (Python's `tokenizer.token_count`).
    public func tokenCount(_ text: String) throws -> Int {
        return Swift.min(try encode(text).count + 2, contextLength)
    }

    /// The shortest length a text artifact whose `shapes.length` is `length` accepts for `text`:
    /// `shortestAccepted` of its `tokenCount` (Python's `tokenizer.shortest_length`).
    public func shortestLength(_ text: String, for length: ShapeDescriptor) throws -> Int {
        return try length.shortestAccepted(tokenCount(text))
    }

    /// The ids at the shortest accepted length (`shortestLength`); for a causal text tower the same embedding as
    /// 77 positions. Text with more tokens than the largest accepted length is cut to it, EOT last (Python's
    /// `tokenize(text, length=descriptor)`; the JVM core's `tokenizeShortest`).
    public func tokenize(_ text: String, for length: ShapeDescriptor) throws -> [Int32] {
        let bpe = try encode(text)
        return CLIPTokenizer.ids(bpe, length: try length.shortestAccepted(Swift.min(bpe.count + 2, contextLength)))
    }

    /// Several texts at one length: the shortest accepted length that holds the longest (a batch).
    public func tokenize(_ texts: [String], for length: ShapeDescriptor) throws -> [[Int32]] {
        let bpe = try texts.map { try encode($0) }
        let need = bpe.reduce(2) { Swift.max($0, Swift.min($1.count + 2, contextLength)) }
        let l = try length.shortestAccepted(need)
        return bpe.map { CLIPTokenizer.ids($0, length: l) }
    }

    /// SOT + bpe + EOT in `length` positions: cut to length with the last set to EOT, or 0-padded.
    static func ids(_ bpe: [Int32], length: Int) -> [Int32] {
        var out = [Int32](repeating: CLIPTokenizer.pad, count: length)
        let n = Swift.min(bpe.count + 2, length)          // tokens kept
        out[0] = CLIPTokenizer.sot
        let copied = Swift.max(0, Swift.min(bpe.count, n - 1))
        for k in 0..<copied { out[k + 1] = bpe[k] }
        out[n - 1] = CLIPTokenizer.eot
        return out
    }

    /// The BPE ids of the cleaned text, without SOT/EOT.
    public func encode(_ text: String) throws -> [Int32] {
        let t = TextCleaner.cleanScalars(Array(text.unicodeScalars))
        var ids: [Int32] = []
        for piece in CLIPTokenizer.pretokenize(t) {
            if piece == CLIPTokenizer.sotLiteral {
                ids.append(CLIPTokenizer.sot)
            } else if piece == CLIPTokenizer.eotLiteral {
                ids.append(CLIPTokenizer.eot)
            } else {
                ids.append(contentsOf: try bpe(piece))
            }
        }
        return ids
    }

    // MARK: pre-tokenization

    /// `\p{L}`: general categories Lu, Ll, Lt, Lm, Lo.
    static func isLetter(_ s: Unicode.Scalar) -> Bool {
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }

    /// `\p{N}`: general categories Nd, Nl, No.
    static func isNumber(_ s: Unicode.Scalar) -> Bool {
        switch s.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }

    private static func startsWith(_ t: [Unicode.Scalar], _ lit: [Unicode.Scalar], at k: Int) -> Bool {
        guard k + lit.count <= t.count else { return false }
        for j in 0..<lit.count where t[k + j] != lit[j] { return false }
        return true
    }

    /// open_clip's pattern `<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`,
    /// matched left to right (findall: unmatched characters, i.e. whitespace, are skipped).
    static func pretokenize(_ t: [Unicode.Scalar]) -> [[Unicode.Scalar]] {
        var out: [[Unicode.Scalar]] = []
        var k = 0
        scan: while k < t.count {
            let c = t[k]
            if TextCleaner.isPySpace(c) {
                k += 1
                continue
            }
            for lit in [sotLiteral, eotLiteral] where startsWith(t, lit, at: k) {
                out.append(lit)
                k += lit.count
                continue scan
            }
            if c == "'" {
                for ct in contractions where startsWith(t, ct, at: k) {
                    out.append(ct)
                    k += ct.count
                    continue scan
                }
            }
            let start = k
            if isLetter(c) {
                while k < t.count && isLetter(t[k]) { k += 1 }
            } else if isNumber(c) {
                k += 1
            } else {
                while k < t.count && !(TextCleaner.isPySpace(t[k]) || isLetter(t[k]) || isNumber(t[k])) { k += 1 }
            }
            out.append(Array(t[start..<k]))
        }
        return out
    }

    // MARK: BPE

    /// GPT-2's reversible byte -> printable code point table.
    static func bytesToUnicode() -> [UInt32] {
        var cs = [UInt32](repeating: 0, count: 256)
        var n: UInt32 = 0
        for b in 0..<256 {
            let direct = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff)
            if direct {
                cs[b] = UInt32(b)
            } else {
                cs[b] = 256 + n
                n += 1
            }
        }
        return cs
    }

    private func bpe(_ piece: [Unicode.Scalar]) throws -> [Int32] {
        lock.lock()
        let hit = cache[piece]
        lock.unlock()
        if let ids = hit { return ids }

        var word = Array(TextCleaner.string(piece).utf8).map { byteEncoder[Int($0)] }
        guard !word.isEmpty else { return [] }
        word[word.count - 1] += "</w>"
        while word.count > 1 {
            var bestRank = Int.max
            var best: (String, String)? = nil
            for k in 0..<(word.count - 1) {
                if let r = ranks[word[k] + " " + word[k + 1]], r < bestRank {
                    bestRank = r
                    best = (word[k], word[k + 1])
                }
            }
            guard let pair = best else { break }
            let (a, b) = pair
            var merged: [String] = []
            merged.reserveCapacity(word.count)
            var k = 0
            while k < word.count {
                if k + 1 < word.count && word[k] == a && word[k + 1] == b {
                    merged.append(a + b)
                    k += 2
                } else {
                    merged.append(word[k])
                    k += 1
                }
            }
            word = merged
        }
        var ids: [Int32] = []
        ids.reserveCapacity(word.count)
        for symbol in word {
            guard let id = encoder[symbol] else {
                throw CLIPDeployError(.tokenizer, "BPE symbol not in vocab.json: \(symbol)")
            }
            ids.append(id)
        }
        lock.lock()
        if cache.count < 100_000 { cache[piece] = ids }
        lock.unlock()
        return ids
    }

    public var description: String {
        return "CLIPTokenizer(vocab \(encoder.count), merges \(ranks.count), context \(contextLength))"
    }
}
