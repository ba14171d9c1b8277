import Foundation

/// The manifest's schema (`latency/manifest.schema.json`, schema_version 2) for the keys this reader uses: types,
/// ranges, `schema_version`. Failures are one-line `.invalidManifest` (`.unsupportedSchema` for the version)
/// errors naming the key, the value found and the fix; the JVM core's `Bundle.Schema`.
struct ManifestSchema {
    static let version: Int64 = 2
    static let tokenizerPaths = ["config", "vocab", "merges", "bpe"]

    /// The manifest's path, for messages.
    let mf: String

    private var fix: String { BundleIntegrity.reexport }

    /// A value for a message: "the string 'x'", "a number 5", "a boolean true", "an object", ...
    static func describe(_ v: Any?) -> String {
        if let s = v as? String { return "the string " + BundleIntegrity.q(s) }
        if let b = Json.bool(v) { return "a boolean \(b)" }
        if let n = Json.number(of: v) { return "a number \(n.stringValue)" }
        return Json.kind(v)
    }

    private func bad(_ key: String, _ want: String, _ got: Any?) -> CLIPDeployError {
        return CLIPDeployError(.invalidManifest, "\(mf): manifest key '\(key)' must be \(want), got "
                               + "\(ManifestSchema.describe(got)); \(fix)")
    }

    private func missing(_ key: String) -> CLIPDeployError {
        return CLIPDeployError(.invalidManifest, "\(mf): manifest has no '\(key)'; \(fix)")
    }

    private func present(_ m: [String: Any], _ key: String) -> Bool {
        return m.keys.contains(key)
    }

    func obj(_ m: [String: Any], _ key: String, _ path: String, required: Bool) throws -> [String: Any]? {
        guard present(m, key) else {
            if required { throw missing(path) }
            return nil
        }
        guard let o = m[key] as? [String: Any] else { throw bad(path, "an object", m[key]) }
        return o
    }

    @discardableResult
    func str(_ m: [String: Any], _ key: String, _ path: String, required: Bool, maxLen: Int) throws -> String? {
        guard present(m, key) else {
            if required { throw missing(path) }
            return nil
        }
        guard let s = m[key] as? String, !s.isEmpty, s.unicodeScalars.count <= maxLen else {
            throw bad(path, "a string of 1 to \(maxLen) characters", m[key])
        }
        return s
    }

    func integer(_ m: [String: Any], _ key: String, _ path: String, _ lo: Int64, _ hi: Int64,
                 nullable: Bool = false) throws {
        guard present(m, key) else { return }
        let v = m[key]
        if nullable && Json.isNull(v) { return }
        guard let x = Json.integer(of: v), x >= lo, x <= hi else {
            throw bad(path, "an integer in \(lo) .. \(hi)" + (nullable ? " or null" : ""), v)
        }
    }

    /// The parsed manifest, checked; returns it as an object.
    func manifest(_ parsed: Any) throws -> [String: Any] {
        guard let m = parsed as? [String: Any] else {
            throw CLIPDeployError(.invalidManifest, "\(mf) is not a clipdeploy manifest (a JSON object expected, got "
                                  + "\(Json.kind(parsed))); \(fix)")
        }
        let ver = m["schema_version"]
        if Json.integer(of: ver) != ManifestSchema.version {
            if Json.integer(of: ver) == 1 {
                throw CLIPDeployError(.unsupportedSchema, "\(mf): manifest schema_version 1 has no integrity record; "
                                      + "re-export the bundle with clip-export")
            }
            throw CLIPDeployError(.unsupportedSchema, "\(mf): manifest schema_version \(ManifestSchema.describe(ver)) is "
                                  + "not supported (this reader reads \(ManifestSchema.version)); \(fix)")
        }
        for key in ["model", "preprocessing", "probe", "artifacts", "tokenizer", "logit_scale", "integrity"]
            where !present(m, key) {
            throw missing(key)
        }
        try str(m, "model", "model", required: true, maxLen: 200)
        let ls = m["logit_scale"]
        guard let scale = Json.number(of: ls)?.doubleValue, scale >= 0, scale <= 1000 else {
            throw bad("logit_scale", "a number in 0 .. 1000", ls)
        }
        try integer(m, "embedding_dim", "embedding_dim", 1, 65536)
        if let spec = try obj(m, "spec", "spec", required: false) {
            try integer(spec, "embed_dim", "spec.embed_dim", 1, 65536)
        }
        let pre = try obj(m, "preprocessing", "preprocessing", required: true)!
        try integer(pre, "image_size", "preprocessing.image_size", 1, 1 << 14)
        try integer(pre, "resize_shorter_side_to", "preprocessing.resize_shorter_side_to", 1, 1 << 14)
        try integer(pre, "center_crop", "preprocessing.center_crop", 1, 1 << 14, nullable: true)
        if present(pre, "interpolation") && !(pre["interpolation"] is String) {
            throw bad("preprocessing.interpolation", "a string (bilinear or bicubic)", pre["interpolation"])
        }
        if let ck = try obj(m, "checkpoint", "checkpoint", required: false) {
            for k in ["source", "sha256"] where present(ck, k) && !Json.isNull(ck[k]) && !(ck[k] is String) {
                throw bad("checkpoint." + k, "a string or null", ck[k])
            }
            try integer(ck, "random_weights", "checkpoint.random_weights", Int64.min, Int64.max, nullable: true)
        }
        let tok = try obj(m, "tokenizer", "tokenizer", required: true)!
        for k in ManifestSchema.tokenizerPaths {
            try str(tok, k, "tokenizer." + k, required: false, maxLen: BundleIntegrity.maxPathChars)
        }
        try integer(tok, "context_length", "tokenizer.context_length", 1, 1 << 16)
        let probe = try obj(m, "probe", "probe", required: true)!
        try str(probe, "images", "probe.images", required: true, maxLen: BundleIntegrity.maxPathChars)
        try str(probe, "token_ids", "probe.token_ids", required: true, maxLen: BundleIntegrity.maxPathChars)
        try str(probe, "captions", "probe.captions", required: false, maxLen: BundleIntegrity.maxPathChars)
        let ref = try obj(probe, "reference", "probe.reference", required: true)!
        try str(ref, "image", "probe.reference.image", required: true, maxLen: BundleIntegrity.maxPathChars)
        try str(ref, "text", "probe.reference.text", required: true, maxLen: BundleIntegrity.maxPathChars)
        guard let arts = m["artifacts"] as? [Any], arts.count <= 1000 else {
            throw bad("artifacts", "an array of at most 1000 artifacts", m["artifacts"])
        }
        for (k, a) in arts.enumerated() { try artifact(a, "artifacts[\(k)]") }
        try classifier(m, arts)
        return m
    }

    /// Limits of the `classifier` block (latency/manifest.schema.json).
    static let maxLabels = 100_000
    static let maxTemplates = 1000
    static let maxClassifierString = 1000

    /// The `classifier` block (issue 23): required when an artifact's encoder is "classifier"; labels 1..100000
    /// unique non-empty strings, templates 1..1000 strings, logit_scale a number in 0..1000, class_embeddings a
    /// path, embedding_dim (if given) the manifest's, and a classifier artifact's declared outputs [1, N] for its
    /// N labels. The JVM core's `Schema.classifier`, with its phrases.
    private func classifier(_ m: [String: Any], _ arts: [Any]) throws {
        let first = arts.indices.first { ((arts[$0] as? [String: Any])?["encoder"] as? String) == "classifier" }
        guard let c = try obj(m, "classifier", "classifier", required: false) else {
            if let k = first {
                throw CLIPDeployError(.invalidManifest, "\(mf): manifest has no 'classifier' (labels, templates, class "
                                      + "matrix), but artifacts[\(k)] is a classifier; \(fix)")
            }
            return
        }
        guard present(c, "labels") else { throw missing("classifier.labels") }
        guard let labels = c["labels"] as? [Any], !labels.isEmpty, labels.count <= ManifestSchema.maxLabels else {
            throw bad("classifier.labels", "a list of 1 to \(ManifestSchema.maxLabels) labels", c["labels"])
        }
        // unique as Python and the JVM compare them: by code points (Swift's == would also equate NFC and NFD forms)
        var seen = Set<[Unicode.Scalar]>()
        for (k, l) in labels.enumerated() {
            guard let s = l as? String, !s.isEmpty, s.unicodeScalars.count <= ManifestSchema.maxClassifierString else {
                throw bad("classifier.labels[\(k)]", "a string of 1 to \(ManifestSchema.maxClassifierString) characters", l)
            }
            guard seen.insert(Array(s.unicodeScalars)).inserted else {
                throw CLIPDeployError(.invalidManifest, "\(mf): manifest key 'classifier.labels[\(k)]' repeats the label "
                                      + "\(BundleIntegrity.q(s)): each label once; \(fix)")
            }
        }
        guard present(c, "templates") else { throw missing("classifier.templates") }
        guard let templates = c["templates"] as? [Any], !templates.isEmpty, templates.count <= ManifestSchema.maxTemplates else {
            throw bad("classifier.templates", "a list of 1 to \(ManifestSchema.maxTemplates) templates", c["templates"])
        }
        for (k, t) in templates.enumerated() {
            guard let s = t as? String, s.unicodeScalars.count >= 2,
                  s.unicodeScalars.count <= ManifestSchema.maxClassifierString else {
                throw bad("classifier.templates[\(k)]", "a string of 2 to \(ManifestSchema.maxClassifierString) characters", t)
            }
        }
        if present(c, "template_source") && !(c["template_source"] is String) {
            throw bad("classifier.template_source", "a string", c["template_source"])
        }
        guard present(c, "logit_scale") else { throw missing("classifier.logit_scale") }
        guard let scale = Json.number(of: c["logit_scale"])?.doubleValue, scale >= 0, scale <= 1000 else {
            throw bad("classifier.logit_scale", "a number in 0 .. 1000", c["logit_scale"])
        }
        try integer(c, "embedding_dim", "classifier.embedding_dim", 1, 65536)
        if let d = Json.integer(of: c["embedding_dim"]), let top = Json.integer(of: m["embedding_dim"]), d != top {
            throw CLIPDeployError(.invalidManifest, "\(mf): manifest key 'classifier.embedding_dim' is \(d), the "
                                  + "manifest's embedding_dim \(top): the class matrix is not this model's; \(fix)")
        }
        try str(c, "class_embeddings", "classifier.class_embeddings", required: true, maxLen: BundleIntegrity.maxPathChars)
        try str(c, "labels_file", "classifier.labels_file", required: false, maxLen: BundleIntegrity.maxPathChars)
        for (k, o) in arts.enumerated() {
            guard let a = o as? [String: Any], a["encoder"] as? String == "classifier" else { continue }
            for case let out as [String: Any] in (a["outputs"] as? [Any]) ?? [] {
                guard let name = out["name"] as? String, let shape = out["shape"] as? [Any], let last = shape.last,
                      let n = Json.integer(of: last), n > 0, n != Int64(labels.count) else { continue }
                throw CLIPDeployError(.invalidManifest, "\(mf): artifacts[\(k)] output '\(name)' has \(n) classes, the "
                                      + "classifier has \(labels.count) labels; \(fix)")
            }
        }
    }

    private func artifact(_ o: Any, _ at: String) throws {
        guard let a = o as? [String: Any] else { throw bad(at, "an object", o) }
        try str(a, "target", at + ".target", required: true, maxLen: 64)
        try str(a, "precision", at + ".precision", required: true, maxLen: 32)
        guard present(a, "encoder") else { throw missing(at + ".encoder") }
        guard let enc = a["encoder"] as? String, enc == "image" || enc == "text" || enc == "classifier" else {
            throw bad(at + ".encoder", "\"image\", \"text\" or \"classifier\"", a["encoder"])
        }
        try str(a, "path", at + ".path", required: true, maxLen: BundleIntegrity.maxPathChars)
        guard present(a, "files") else { throw missing(at + ".files") }
        guard let files = a["files"] as? [Any], !files.isEmpty, files.count <= 10000 else {
            throw bad(at + ".files", "a list of 1 to 10000 paths", a["files"])
        }
        for (k, f) in files.enumerated() {
            guard let s = f as? String, !s.isEmpty, s.unicodeScalars.count <= BundleIntegrity.maxPathChars else {
                throw bad(at + ".files[\(k)]", "a path (a string of 1 to \(BundleIntegrity.maxPathChars) characters)", f)
            }
        }
        for k in ["inputs", "outputs"] where present(a, k) && !(a[k] is [Any]) {
            throw bad(at + "." + k, "an array", a[k])
        }
        // shapes: ArtifactShapes.parse checks it, with the phrases the Python and JVM readers share
        if present(a, "parity") && !(a["parity"] is [String: Any]) { throw bad(at + ".parity", "an object", a["parity"]) }
        if present(a, "default") && Json.bool(a["default"]) == nil { throw bad(at + ".default", "true or false", a["default"]) }
        try integer(a, "size_bytes", at + ".size_bytes", 0, Int64.max)
        if present(a, "info"), !Json.isNull(a["info"]) {
            guard let info = a["info"] as? [String: Any] else { throw bad(at + ".info", "an object", a["info"]) }
            if present(info, "image_type_variant"), !Json.isNull(info["image_type_variant"]) {
                guard let v = info["image_type_variant"] as? [String: Any] else {
                    throw bad(at + ".info.image_type_variant", "an object", info["image_type_variant"])
                }
                try str(v, "file", at + ".info.image_type_variant.file", required: false,
                        maxLen: BundleIntegrity.maxPathChars)
            }
        }
    }
}
