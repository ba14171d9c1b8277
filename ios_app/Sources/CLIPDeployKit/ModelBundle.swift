import Foundation

/// An artifact bundle written by `clip-export` (`out/<model>/`): its manifest, artifacts, preprocessing,
/// tokenizer files and probe set (inputs and PyTorch reference embeddings). The JVM core's `Bundle`
/// (named `ModelBundle` here so it does not shadow `Foundation.Bundle`).
///
/// A bundle is untrusted input (the contract of `clipdeploy.latency.integrity`, the same in Python and the JVM
/// core). `open` reads a manifest of at most `maxManifestBytes` (strict JSON, `schema_version` 2), checks the
/// type of every key this reader uses and the `integrity` record, refuses a path that is not a plain relative path
/// or whose real path (symlinks resolved) leaves the bundle, requires every named path to be listed in the record,
/// and stats every listed file (missing, or not its recorded size: `.incomplete`). No file is read and no artifact
/// handed to a runtime before its sha256 matched the record: `verifyArtifact` (called by `Artifact.verifiedURL`,
/// hence by `ReferenceRuntime`, `CoreMLEncoder.load` / `CoreMLRuntime` and `Benchmark`), `verifyFile` (the probe
/// set, `CLIPTokenizer.fromBundle`), `verifyAll`; a directory artifact (`.mlpackage`) may hold no file the record
/// does not list. Every failure is a one-line `CLIPDeployError` naming the file and the fix, with a refusal kind
/// (`CLIPDeployError.Kind.bundleRefusals`).
public final class ModelBundle {
    public struct Artifact: CustomStringConvertible {
        public let target: String
        public let precision: String
        public let encoder: String
        /// Relative to the bundle (the report's `artifact`).
        public let path: String
        public let url: URL
        /// The parity figures measured at export time (the manifest's), or nil.
        public let parity: [String: Any]?
        /// Core ML image encoders: the ImageType variant's path (`<dir>/image_encoder_imagetype.mlpackage`).
        public let imageTypeVariant: String?
        /// True for an entry made from `imageTypeVariant`: it takes pixels (a CVPixelBuffer), not a tensor.
        public let takesPixels: Bool
        /// The manifest's `default`: false for a variant (e.g. int8) its float artifact beat or that missed
        /// its bars; true when the manifest predates the flag (the JVM core's `Artifact.isDefault`).
        public let isDefault: Bool
        /// The input shapes it accepts (the manifest's `shapes`: batch, and a text encoder's length); an older
        /// manifest without the key: batch fixed [1], length fixed [77] (the JVM core's `Artifact.shapes`).
        public let shapes: ArtifactShapes
        /// The manifest's `files`: the bundle-relative files (or directories) the artifact is made of.
        public let files: [String]
        /// The integrity record of the bundle it came from (nil: made by hand, cannot be verified).
        let integrity: BundleIntegrity?

        public init(target: String, precision: String, encoder: String, path: String, url: URL,
                    parity: [String: Any]?, imageTypeVariant: String? = nil, takesPixels: Bool = false,
                    isDefault: Bool = true, shapes: ArtifactShapes? = nil, files: [String] = []) {
            self.init(target: target, precision: precision, encoder: encoder, path: path, url: url, parity: parity,
                      imageTypeVariant: imageTypeVariant, takesPixels: takesPixels, isDefault: isDefault,
                      shapes: shapes, files: files, integrity: nil)
        }

        init(target: String, precision: String, encoder: String, path: String, url: URL,
             parity: [String: Any]?, imageTypeVariant: String?, takesPixels: Bool,
             isDefault: Bool, shapes: ArtifactShapes?, files: [String], integrity: BundleIntegrity?) {
            self.target = target
            self.precision = precision
            self.encoder = encoder
            self.path = path
            self.url = url
            self.parity = parity
            self.imageTypeVariant = imageTypeVariant
            self.takesPixels = takesPixels
            self.isDefault = isDefault
            self.shapes = shapes ?? ArtifactShapes.defaults(encoder: encoder)
            self.files = files
            self.integrity = integrity
        }

        public var isImage: Bool { encoder == "image" }

        /// A zero-shot classifier artifact (`encoder` "classifier": `image` in, `logits` [1, N] out; issue 23).
        public var isClassifier: Bool { encoder == "classifier" }

        /// Whether it takes an image (`encoder` "image" or "classifier"); else token ids ("text").
        public var takesImage: Bool { encoder == "image" || encoder == "classifier" }

        /// The open bundle it came from (nil: made by hand, or its bundle was released).
        public var bundle: ModelBundle? { integrity?.owner }

        /// `ModelBundle.verifyArtifact`: the sha256 of every file of the artifact (`path` and `files`; a directory:
        /// also no unlisted file in it) checked against the bundle's record, cached per file; the real URL to load.
        /// What every runtime's `load` calls first.
        public func verifiedURL() throws -> URL {
            guard let integrity = integrity else {
                throw CLIPDeployError(.integrity, "\(path): the artifact belongs to no bundle, so it cannot be verified: "
                                      + "open the bundle with ModelBundle.open and use its artifacts")
            }
            var seen = Set<String>()
            for rel in [path] + files where seen.insert(rel).inserted {
                try integrity.verify(rel)
            }
            return URL(fileURLWithPath: try integrity.resolveInside(path))
        }
        public var description: String { path }
    }

    public struct Probe {
        public let imageSize: Int
        /// Each image flattened CHW, 3 * imageSize * imageSize floats in [0, 1].
        public let images: [[Float]]
        public let tokenIds: [[Int32]]
        public let refImage: [[Float]]
        public let refText: [[Float]]
        public let captions: [String]
    }

    /// The largest manifest.json `open` reads.
    public static let maxManifestBytes = 32 << 20
    /// The largest tokenizer file (vocab.json, merges.txt) `CLIPTokenizer.fromBundle` reads.
    public static let maxTokenizerBytes = 64 << 20
    /// The largest probe array `probe()` reads (a real probe set is a few MB).
    public static let maxProbeBytes = 1 << 30

    public let dir: URL
    public let manifest: [String: Any]
    public let artifacts: [Artifact]
    /// The manifest's integrity record and the checks against it.
    public let integrity: BundleIntegrity
    private var cachedProbe: Probe?
    private var cachedClassifier: ZeroShotClassifier?
    private let lock = NSLock()

    private init(dir: URL, manifest: [String: Any], artifacts: [Artifact], integrity: BundleIntegrity) {
        self.dir = dir
        self.manifest = manifest
        self.artifacts = artifacts
        self.integrity = integrity
        integrity.owner = self
    }

    private static let reexport = BundleIntegrity.reexport
    private static let recopy = BundleIntegrity.recopy

    /// Opens the bundle in `dir`: the manifest (size limit, strict JSON, schema_version 2, the keys this reader
    /// uses and their types, the integrity record), every path it names (safe, inside the bundle, listed), and a
    /// stat of every listed file (present, regular, its recorded size). Hashes nothing: `verifyArtifact`,
    /// `verifyFile`, `verifyAll` do, before use. Failures are one-line errors of a refusal kind.
    public static func open(_ dir: URL) throws -> ModelBundle {
        let mf = dir.appendingPathComponent("manifest.json")
        let dirStat = FileIO.stat(dir.path)
        guard case .success(let ds) = dirStat, ds.isDirectory else {
            if case .success = dirStat {
                throw CLIPDeployError(.notFound, "\(dir.path) is not a directory: pass a bundle written by clip-export")
            }
            throw CLIPDeployError(.notFound, "\(dir.path) does not exist or is not a directory: pass a bundle written "
                                  + "by clip-export")
        }
        switch FileIO.lstat(mf.path) {
        case .failure:
            throw CLIPDeployError(.notFound, "\(dir.path) has no manifest.json: pass a bundle written by clip-export")
        case .success(let st) where st.isSymlink:
            throw CLIPDeployError(.unsafePath, "\(mf.path) is a symlink; a bundle's manifest must be a regular file: "
                                  + "replace the link with the file")
        case .success(let st) where !st.isRegular:
            throw CLIPDeployError(.notFound, "\(dir.path) has no manifest.json (it is not a regular file): pass a "
                                  + "bundle written by clip-export")
        case .success(let st) where st.size > Int64(maxManifestBytes):
            throw CLIPDeployError(.invalidManifest, "\(mf.path) is \(st.size) bytes, more than the \(maxManifestBytes) a "
                                  + "manifest may have: is it a clip-export manifest?")
        case .success(let st) where st.size == 0:
            throw CLIPDeployError(.incomplete, "\(mf.path) is empty: the bundle is incomplete (copied while it was "
                                  + "written?); \(recopy)")
        case .success:
            break
        }
        guard let root = FileIO.realpath(dir.path) else {
            throw CLIPDeployError(.unreadable, "\(dir.path) cannot be resolved: check the bundle's permissions")
        }
        let parsed: Any
        do {
            let data = try FileIO.read(mf, maxBytes: maxManifestBytes, tooLarge: .invalidManifest)
            parsed = try Json.parse(data, maxBytes: maxManifestBytes)
        } catch let e as CLIPDeployError where e.kind == .json {
            throw CLIPDeployError(.invalidManifest, "\(mf.path) cannot be read: \(e.message); the bundle is incomplete "
                                  + "or damaged: re-copy it (or re-export it)")
        }
        let schema = ManifestSchema(mf: mf.path)
        let m = try schema.manifest(parsed)
        let record = try BundleIntegrity.parse(m["integrity"], where: mf.path)
        let integrity = BundleIntegrity(dir: dir, root: root, files: record)

        var arts: [Artifact] = []
        for o in m["artifacts"] as! [Any] {
            let a = o as! [String: Any]
            let path = a["path"] as! String
            let encoder = a["encoder"] as! String
            let files = (a["files"] as! [Any]).map { $0 as! String }
            let info = a["info"] as? [String: Any]
            var variant: String? = nil
            if let v = info?["image_type_variant"] as? [String: Any], let file = v["file"] as? String {
                let parent = (path as NSString).deletingLastPathComponent
                variant = parent.isEmpty ? file : parent + "/" + file
            }
            let shapes: ArtifactShapes
            do {
                shapes = try ArtifactShapes.parse(a["shapes"], encoder: encoder, what: "artifact \(path): shapes")
            } catch {
                throw CLIPDeployError(.invalidManifest, "\(mf.path): \(oneLine(error)); \(reexport)")
            }
            arts.append(Artifact(target: a["target"] as! String, precision: a["precision"] as! String,
                                 encoder: encoder, path: path, url: dir.appendingPathComponent(path),
                                 parity: a["parity"] as? [String: Any], imageTypeVariant: variant, takesPixels: false,
                                 isDefault: Json.bool(a["default"]) ?? true, shapes: shapes, files: files,
                                 integrity: integrity))
        }
        do {
            // every value the apps derive from the manifest, checked at open (not on first use)
            _ = try PreprocessSpec.fromManifest(m)
            _ = try embeddingDim(m)
        } catch {
            throw CLIPDeployError(.invalidManifest, "\(mf.path): manifest preprocessing / embedding_dim: \(oneLine(error)); "
                                  + reexport)
        }
        let b = ModelBundle(dir: dir, manifest: m, artifacts: arts, integrity: integrity)
        for rel in b.namedPaths() { try integrity.checkPath(rel) }
        for a in arts {
            if let v = a.imageTypeVariant, let why = BundleIntegrity.unsafeReason(v) {
                throw CLIPDeployError(.unsafePath, "\(mf.path): artifact \(a.path): image type variant "
                                      + "\(BundleIntegrity.q(v)) \(why): a bundle may only name files inside itself; "
                                      + reexport)
            }
        }
        try integrity.statAll()
        return b
    }

    /// Every path the manifest names: artifacts and their files, the probe set, the tokenizer files, the classifier's.
    public func namedPaths() -> [String] {
        var out: [String] = []
        var seen = Set<String>()
        func add(_ s: String?) {
            if let s = s, seen.insert(s).inserted { out.append(s) }
        }
        for a in artifacts {
            add(a.path)
            a.files.forEach { add($0) }
        }
        let p = manifest["probe"] as? [String: Any]
        let ref = p?["reference"] as? [String: Any]
        add(p?["images"] as? String)
        add(p?["token_ids"] as? String)
        add(ref?["image"] as? String)
        add(ref?["text"] as? String)
        add(p?["captions"] as? String)
        let tok = manifest["tokenizer"] as? [String: Any]
        for k in ManifestSchema.tokenizerPaths { add(tok?[k] as? String) }
        let c = manifest["classifier"] as? [String: Any]
        add(c?["class_embeddings"] as? String)
        add(c?["labels_file"] as? String)
        return out
    }

    // MARK: integrity

    /// The sha256 of every file of `artifact` checked against the record (its `path` and `files`; a directory
    /// artifact such as an `.mlpackage`: also no file the record does not list), cached per file for the process;
    /// returns the real URL to hand to a runtime. Call before loading an artifact.
    @discardableResult
    public func verifyArtifact(_ artifact: Artifact) throws -> URL {
        guard artifact.integrity === integrity else {
            throw CLIPDeployError(.integrity, "bundle \(dir.path): artifact \(artifact.path) is not from this bundle: "
                                  + "use the artifacts of the bundle it belongs to")
        }
        return try artifact.verifiedURL()
    }

    /// The file (or directory) `rel` the manifest names, checked against its sha256; its real URL. Call before
    /// reading a bundle file.
    @discardableResult
    public func verifyFile(_ rel: String) throws -> URL {
        return try integrity.verify(rel)
    }

    /// What `verifyAll` checked.
    public struct VerifySummary {
        public let files: Int
        public let bytes: Int64
    }

    /// Every file of the record against its sha256, and every artifact (a directory artifact: no unlisted file):
    /// what to run on a bundle that was just copied (cached per file like `verifyArtifact`).
    @discardableResult
    public func verifyAll() throws -> VerifySummary {
        for a in artifacts { try verifyArtifact(a) }
        try integrity.verifyAll()
        return VerifySummary(files: integrity.files.count, bytes: integrity.files.values.reduce(0) { $0 + $1.size })
    }

    public var model: String { (manifest["model"] as? String) ?? "unknown" }

    /// `relPath` under the bundle directory, lexically (not checked: `verifyFile` checks and hashes).
    public func resolve(_ relPath: String) -> URL {
        return dir.appendingPathComponent(relPath)
    }

    public func preprocessSpec() throws -> PreprocessSpec {
        return try PreprocessSpec.fromManifest(manifest)
    }

    public func logitScale() throws -> Double {
        return try Json.num(manifest["logit_scale"])
    }

    public func embeddingDim() throws -> Int {
        return try ModelBundle.embeddingDim(manifest)
    }

    private static func embeddingDim(_ manifest: [String: Any]) throws -> Int {
        if !Json.isNull(manifest["embedding_dim"]) { return try Json.int(manifest["embedding_dim"]) }
        return try Json.int(Json.map(manifest["spec"])["embed_dim"])
    }

    /// The manifest's tokenizer path `key` ("vocab", "merges"), else the standard location.
    func tokenizerPath(_ key: String) -> String {
        let t = manifest["tokenizer"] as? [String: Any]
        if let s = t?[key] as? String { return s }
        return key == "merges" ? "tokenizer/merges.txt" : "tokenizer/\(key).json"
    }

    /// `tokenizer.vocab` of the manifest, else `tokenizer/vocab.json` (lexical; `CLIPTokenizer.fromBundle` verifies).
    public var tokenizerVocab: URL { resolve(tokenizerPath("vocab")) }

    /// `tokenizer.merges` of the manifest, else `tokenizer/merges.txt` (lexical; `CLIPTokenizer.fromBundle` verifies).
    public var tokenizerMerges: URL { resolve(tokenizerPath("merges")) }

    /// A verified `.npy` of the bundle (`what` names it in the error: "probe file", "class matrix"), bounded, with
    /// the bundle's one-line errors: unreadable (re-copy) or malformed (re-export).
    func readArray(_ rel: String, _ what: String) throws -> Npy {
        let where_ = "bundle \(dir.path)"
        let real = try integrity.resolveInside(rel)
        do {
            return try Npy.read(contentsOf: URL(fileURLWithPath: real), maxBytes: ModelBundle.maxProbeBytes)
        } catch let e as CLIPDeployError where e.kind == .unreadable {
            throw CLIPDeployError(.unreadable, "\(where_): cannot read \(rel) (\(e.message)); re-copy the bundle")
        } catch let e as CLIPDeployError {
            let msg = e.message.hasPrefix(real + ": ") ? String(e.message.dropFirst(real.count + 2)) : e.message
            throw CLIPDeployError(.malformedArray, "\(where_): \(what) \(rel) cannot be read: \(msg); "
                                  + ModelBundle.reexport)
        }
    }

    /// The probe set, read on first use: each file's sha256 checked first, then the arrays and how they fit.
    public func probe() throws -> Probe {
        lock.lock()
        defer { lock.unlock() }
        if let p = cachedProbe { return p }
        let where_ = "bundle \(dir.path)"
        let p = manifest["probe"] as? [String: Any] ?? [:]
        let ref = p["reference"] as? [String: Any] ?? [:]
        guard let imagesRel = p["images"] as? String, let idsRel = p["token_ids"] as? String,
              let refImageRel = ref["image"] as? String, let refTextRel = ref["text"] as? String else {
            throw CLIPDeployError(.invalidManifest, "\(where_)/manifest.json has no probe set; \(ModelBundle.reexport)")
        }
        let captionsRel = p["captions"] as? String
        for rel in [imagesRel, idsRel, refImageRel, refTextRel] + (captionsRel.map { [$0] } ?? []) {
            try verifyFile(rel)
        }
        func array(_ rel: String) throws -> Npy { try readArray(rel, "probe file") }
        let images = try array(imagesRel), ids = try array(idsRel), ri = try array(refImageRel), rt = try array(refTextRel)
        let im = images.shape, id = ids.shape, a = ri.shape, t = rt.shape
        let ok = im.count == 4 && im[0] > 0 && im[1] == 3 && im[2] > 0 && im[2] == im[3] && id.count == 2 && id[0] > 0
            && id[1] > 0 && a.count == 2 && t.count == 2 && a[0] == im[0] && t[0] == id[0] && a[1] > 0 && a[1] == t[1]
        guard ok else {
            throw CLIPDeployError(.malformedArray, "\(where_): probe arrays do not fit together (images \(im), token ids "
                                  + "\(id), reference \(a) / \(t); expected [N, 3, R, R], [M, L], [N, D], [M, D]); "
                                  + ModelBundle.reexport)
        }
        var captions: [String] = []
        if let capRel = captionsRel {
            let c: Any
            do {
                c = try Json.parse(contentsOf: URL(fileURLWithPath: try integrity.resolveInside(capRel)))
            } catch let e as CLIPDeployError {
                throw CLIPDeployError(.invalidManifest, "\(where_): \(capRel) is not JSON (\(e.message)); "
                                      + ModelBundle.reexport)
            }
            guard let list = c as? [Any], let strings = list as? [String], strings.count == list.count else {
                throw CLIPDeployError(.invalidManifest, "\(where_): \(capRel) must be a list of strings, got "
                                      + "\(Json.kind(c)); \(ModelBundle.reexport)")
            }
            captions = strings
        }
        let tokenIds: [[Int32]]
        do {
            tokenIds = try ids.intRows()
        } catch {
            throw CLIPDeployError(.malformedArray, "\(where_): probe file \(idsRel) cannot be read: \(oneLine(error)); "
                                  + ModelBundle.reexport)
        }
        let probe = Probe(imageSize: im[2], images: images.rows(), tokenIds: tokenIds, refImage: ri.rows(),
                          refText: rt.rows(), captions: captions)
        cachedProbe = probe
        return probe
    }

    /// Whether the manifest has a zero-shot `classifier` block (labels, templates, class matrix).
    public var hasClassifier: Bool { manifest["classifier"] is [String: Any] }

    /// The zero-shot classifier (issue 23), read on first use: the class matrix `classifier.class_embeddings`
    /// (float32 [N, D], N the manifest's labels, D its embedding_dim, finite L2-normalized rows) and the label file
    /// `classifier.labels_file` (a JSON list equal to the manifest's labels), each through its sha256 first. The
    /// JVM core's `Bundle.classifier()`: `.bundle` when the manifest has no classifier, `.malformedArray` for a
    /// matrix that does not fit, `.invalidManifest` for a label file that disagrees with the manifest.
    public func classifier() throws -> ZeroShotClassifier {
        lock.lock()
        defer { lock.unlock() }
        if let c = cachedClassifier { return c }
        let where_ = "bundle \(dir.path)"
        guard let c = manifest["classifier"] as? [String: Any], let matrixRel = c["class_embeddings"] as? String,
              let labelValues = c["labels"] as? [Any], let labels = labelValues as? [String],
              let templates = c["templates"] as? [String], let scale = Json.number(of: c["logit_scale"])?.doubleValue else {
            throw CLIPDeployError(.bundle, "\(where_) has no zero-shot classifier: export one with clip-export "
                                  + "--classifier LABELS.txt")
        }
        let labelsRel = c["labels_file"] as? String
        let dim: Int
        do {
            dim = Json.isNull(c["embedding_dim"]) ? try embeddingDim() : try Json.int(c["embedding_dim"])
        } catch {
            throw CLIPDeployError(.invalidManifest, "\(where_): the classifier's embedding_dim is unknown "
                                  + "(\(oneLine(error))); \(ModelBundle.reexport)")
        }
        try verifyFile(matrixRel)
        if let l = labelsRel { try verifyFile(l) }
        let npy = try readArray(matrixRel, "class matrix")
        let sh = npy.shape
        guard npy.dtype == "<f4", sh.count == 2, sh[0] == labels.count, sh[1] == dim else {
            throw CLIPDeployError(.malformedArray, "\(where_): class matrix \(matrixRel) is \(npy.dtype) \(sh), expected "
                                  + "float32 [\(labels.count), \(dim)] (one row per label of the manifest, the model's "
                                  + "embedding_dim); \(ModelBundle.reexport)")
        }
        let rows = npy.rows()
        for (r, row) in rows.enumerated() {
            let norm = Vectors.allFinite(row) ? Vectors.norm(row) : .nan
            guard abs(norm - 1) <= 1e-3 else {
                throw CLIPDeployError(.malformedArray, "\(where_): class matrix \(matrixRel) row \(r) "
                                      + "(\(BundleIntegrity.q(labels[r]))) is not a unit vector (norm \(norm)); "
                                      + ModelBundle.reexport)
            }
        }
        if let labelsRel = labelsRel {
            let parsed: Any
            do {
                parsed = try Json.parse(contentsOf: URL(fileURLWithPath: try integrity.resolveInside(labelsRel)),
                                        maxBytes: ModelBundle.maxManifestBytes)
            } catch let e as CLIPDeployError where e.kind == .unreadable {
                throw CLIPDeployError(.unreadable, "\(where_): cannot read \(labelsRel) (\(e.message)); re-copy the bundle")
            } catch let e as CLIPDeployError {
                throw CLIPDeployError(.invalidManifest, "\(where_): \(labelsRel) is not JSON (\(e.message)); "
                                      + ModelBundle.reexport)
            }
            guard let got = parsed as? [Any] else {
                throw CLIPDeployError(.invalidManifest, "\(where_): \(labelsRel) must be a list of labels, got "
                                      + "\(Json.kind(parsed)); \(ModelBundle.reexport)")
            }
            // compared by code points, as Python and the JVM compare them
            for k in 0..<max(got.count, labels.count) {
                let g: Any? = k < got.count ? got[k] : nil
                let want: String? = k < labels.count ? labels[k] : nil
                if let w = want, let s = g as? String, Array(s.unicodeScalars) == Array(w.unicodeScalars) { continue }
                let has = (g as? String).map { BundleIntegrity.q($0) } ?? (k < got.count ? Json.kind(g) : "nothing")
                throw CLIPDeployError(.invalidManifest, "\(where_): \(labelsRel) disagrees with the manifest's "
                                      + "classifier.labels at \(k) (\(has), the manifest has "
                                      + "\(want.map { BundleIntegrity.q($0) } ?? "nothing"); \(got.count) vs "
                                      + "\(labels.count) labels); \(ModelBundle.reexport)")
            }
        }
        let classifier = ZeroShotClassifier(labels: labels, templates: templates,
                                            templateSource: c["template_source"] as? String, logitScale: scale,
                                            classEmbeddings: rows, classEmbeddingsPath: matrixRel, labelsFile: labelsRel)
        cachedClassifier = classifier
        return classifier
    }

    /// The artifacts plus, for Core ML image encoders that ship one, their ImageType variant as an entry of
    /// its own (same target/precision/encoder, `takesPixels`, no export parity).
    public func artifactsWithVariants() -> [Artifact] {
        var out: [Artifact] = []
        for a in artifacts {
            out.append(a)
            if let v = a.imageTypeVariant, BundleIntegrity.unsafeReason(v) == nil, FileIO.exists(resolve(v).path) {
                let variantParity = (a.parity?["image_type_variant"]) as? [String: Any]
                out.append(Artifact(target: a.target, precision: a.precision, encoder: a.encoder, path: v,
                                    url: resolve(v), parity: variantParity, imageTypeVariant: nil, takesPixels: true,
                                    isDefault: a.isDefault, shapes: a.shapes, files: [], integrity: integrity))
            }
        }
        return out
    }
}
