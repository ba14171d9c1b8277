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
        return m
    }

    private func artifact(_ o: Any, _ at: String) throws {
        guard let a = o as? [String: Any] else { throw bad(at, "an object", o) }
        try str(a, "target", at + ".target", required: true, maxLen: 64)
        try str(a, "precision", at + ".precision", required: true, maxLen: 32)
        guard present(a, "encoder") else { throw missing(at + ".encoder") }
        guard let enc = a["encoder"] as? String, enc == "image" || enc == "text" else {
            throw bad(at + ".encoder", "\"image\" or \"text\"", a["encoder"])
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
