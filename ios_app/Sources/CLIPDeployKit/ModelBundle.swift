import Foundation

/// An artifact bundle written by `clip-export` (`out/<model>/`): its manifest, artifacts, preprocessing,
/// tokenizer files and probe set (inputs and PyTorch reference embeddings). The JVM core's `Bundle`
/// (named `ModelBundle` here so it does not shadow `Foundation.Bundle`).
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

        public init(target: String, precision: String, encoder: String, path: String, url: URL,
                    parity: [String: Any]?, imageTypeVariant: String? = nil, takesPixels: Bool = false,
                    isDefault: Bool = true, shapes: ArtifactShapes? = nil) {
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
        }

        public var isImage: Bool { encoder == "image" }
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

    public let dir: URL
    public let manifest: [String: Any]
    public let artifacts: [Artifact]
    private var cachedProbe: Probe?
    private let lock = NSLock()

    private init(dir: URL, manifest: [String: Any], artifacts: [Artifact]) {
        self.dir = dir
        self.manifest = manifest
        self.artifacts = artifacts
    }

    public static func open(_ dir: URL) throws -> ModelBundle {
        var isDir: ObjCBool = false
        let mf = dir.appendingPathComponent("manifest.json")
        guard FileManager.default.fileExists(atPath: dir.path, isDirectory: &isDir), isDir.boolValue else {
            throw CLIPDeployError(.bundle, "\(dir.path) is not a directory: pass a bundle written by clip-export")
        }
        guard FileManager.default.fileExists(atPath: mf.path) else {
            throw CLIPDeployError(.bundle, "\(dir.path) has no manifest.json: pass a bundle written by clip-export")
        }
        let m: [String: Any]
        do {
            m = try Json.map(Json.parse(contentsOf: mf))
        } catch {
            throw CLIPDeployError(.bundle, "\(mf.path) cannot be read: \(oneLine(error))")
        }
        guard let version = Json.optionalNumber(m["schema_version"]), version == 1 else {
            throw CLIPDeployError(.bundle, "\(mf.path): manifest schema_version \(m["schema_version"] ?? "null") "
                                  + "is not supported (1)")
        }
        for key in ["model", "preprocessing", "probe", "artifacts", "tokenizer", "logit_scale"] where m[key] == nil {
            throw CLIPDeployError(.bundle, "\(mf.path): manifest has no '\(key)'")
        }
        var arts: [Artifact] = []
        do {
            for o in try Json.list(m["artifacts"]) {
                let a = try Json.map(o)
                let path = try Json.str(a["path"])
                let info = a["info"] as? [String: Any]
                var variant: String? = nil
                if let v = info?["image_type_variant"] as? [String: Any], let file = v["file"] as? String {
                    variant = (path as NSString).deletingLastPathComponent.isEmpty
                        ? file : (path as NSString).deletingLastPathComponent + "/" + file
                }
                let encoder = try Json.str(a["encoder"])
                let shapes: ArtifactShapes
                do {
                    shapes = try ArtifactShapes.parse(a["shapes"], encoder: encoder, what: "artifact \(path): shapes")
                } catch {
                    throw ShapesError(message: oneLine(error))
                }
                arts.append(Artifact(target: try Json.str(a["target"]), precision: try Json.str(a["precision"]),
                                     encoder: encoder, path: path,
                                     url: dir.appendingPathComponent(path), parity: a["parity"] as? [String: Any],
                                     imageTypeVariant: variant, isDefault: (a["default"] as? Bool) ?? true,
                                     shapes: shapes))
            }
        } catch let e as ShapesError {
            throw CLIPDeployError(.bundle, "\(mf.path): \(e.message)")
        } catch {
            throw CLIPDeployError(.bundle, "\(mf.path): bad artifacts list: \(oneLine(error))")
        }
        return ModelBundle(dir: dir, manifest: m, artifacts: arts)
    }

    /// A malformed `shapes` entry: reported as it is, not as "bad artifacts list".
    private struct ShapesError: Error {
        let message: String
    }

    public var model: String { (manifest["model"] as? String) ?? "unknown" }

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
        if !Json.isNull(manifest["embedding_dim"]) { return try Json.int(manifest["embedding_dim"]) }
        return try Json.int(Json.map(manifest["spec"])["embed_dim"])
    }

    /// `tokenizer.vocab` of the manifest, else `tokenizer/vocab.json`.
    public var tokenizerVocab: URL {
        let t = manifest["tokenizer"] as? [String: Any]
        return resolve((t?["vocab"] as? String) ?? "tokenizer/vocab.json")
    }

    /// `tokenizer.merges` of the manifest when it is a path, else `tokenizer/merges.txt` (clip-export writes
    /// the merge *count* under that key).
    public var tokenizerMerges: URL {
        let t = manifest["tokenizer"] as? [String: Any]
        return resolve((t?["merges"] as? String) ?? "tokenizer/merges.txt")
    }

    /// The probe set, read on first use.
    public func probe() throws -> Probe {
        lock.lock()
        defer { lock.unlock() }
        if let p = cachedProbe { return p }
        do {
            let p = try Json.map(manifest["probe"])
            let ref = try Json.map(p["reference"])
            let images = try Npy.read(contentsOf: resolve(try Json.str(p["images"])))
            guard images.shape.count == 4, images.shape[1] == 3, images.shape[2] == images.shape[3] else {
                throw CLIPDeployError(.bundle, "probe images must be [N, 3, R, R], got \(images.shape)")
            }
            let ids = try Npy.read(contentsOf: resolve(try Json.str(p["token_ids"])))
            var captions: [String] = []
            if let capPath = p["captions"] as? String {
                captions = try Json.strings(Json.parse(contentsOf: resolve(capPath)))
            }
            let probe = Probe(imageSize: images.shape[2], images: images.rows(), tokenIds: try ids.intRows(),
                              refImage: try Npy.read(contentsOf: resolve(try Json.str(ref["image"]))).rows(),
                              refText: try Npy.read(contentsOf: resolve(try Json.str(ref["text"]))).rows(),
                              captions: captions)
            cachedProbe = probe
            return probe
        } catch let e as CLIPDeployError where e.kind == .bundle {
            throw e
        } catch {
            throw CLIPDeployError(.bundle, "\(dir.path): probe set cannot be read: \(oneLine(error))")
        }
    }

    /// The artifacts plus, for Core ML image encoders that ship one, their ImageType variant as an entry of
    /// its own (same target/precision/encoder, `takesPixels`, no export parity).
    public func artifactsWithVariants() -> [Artifact] {
        var out: [Artifact] = []
        for a in artifacts {
            out.append(a)
            if let v = a.imageTypeVariant, FileManager.default.fileExists(atPath: resolve(v).path) {
                let variantParity = (a.parity?["image_type_variant"]) as? [String: Any]
                out.append(Artifact(target: a.target, precision: a.precision, encoder: a.encoder, path: v,
                                    url: resolve(v), parity: variantParity, takesPixels: true,
                                    isDefault: a.isDefault, shapes: a.shapes))
            }
        }
        return out
    }
}
