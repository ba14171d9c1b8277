import CLIPDeployKit
import Foundation
import SwiftUI

/// One open bundle with its tokenizer and Core ML encoders. The encoders are loaded on first use and every
/// inference runs on `queue` (one serial queue: Core ML models are used from one thread at a time).
/// Text (zero-shot prompts, search queries) goes through the kit's `TextEncoder`: tokenized to the shortest
/// length the text artifact's `shapes.length` accepts (Core ML: 8, 16, 32 or 77). Photo indexing goes through
/// `indexBuilder`: batches the image artifact's `shapes.batch` accepts (Core ML: 1, 4 or 8). A bundle exported with a
/// zero-shot classifier (issue 23) has its labels, templates and class matrix in `classifier` and, for Core ML, a
/// classifier artifact (`classify`: image -> `logits` -> softmax over those labels, no text encoder).
final class Engine {
    let bundle: ModelBundle
    let tokenizer: CLIPTokenizer
    let spec: PreprocessSpec
    let logitScale: Double
    let computeUnits: ComputeUnits
    let queue = DispatchQueue(label: "org.clipdeploy.inference", qos: .userInitiated)
    private var imageSession: CoreMLEncoder?
    private var textSession: CoreMLEncoder?
    private var classifierSession: CoreMLEncoder?
    private var text: TextEncoder?
    /// The bundle's zero-shot classifier (labels, templates, class matrix; verified), or nil.
    let classifier: ZeroShotClassifier?

    /// Checks before anything runs: the tokenizer files and the Core ML encoders the tabs use are verified
    /// against the manifest's sha256 here (the tokenizer by `CLIPTokenizer.fromBundle`, the encoders by
    /// `verifyArtifact`; cached, so the later `CoreMLEncoder.load` only re-stats them), so a tampered or
    /// incomplete bundle fails `AppModel.open` with its refusal instead of failing inside a tab.
    init(bundle: ModelBundle, computeUnits: ComputeUnits) throws {
        self.bundle = bundle
        self.tokenizer = try CLIPTokenizer.fromBundle(bundle)
        self.spec = try bundle.preprocessSpec()
        self.logitScale = (try? bundle.logitScale()) ?? 100.0
        self.computeUnits = computeUnits
        for encoder in ["image", "text", "classifier"] {
            if let a = Engine.artifact(bundle, encoder: encoder) { try bundle.verifyArtifact(a) }
        }
        // the class matrix and labels.json through their sha256, checked against the manifest's labels
        self.classifier = bundle.hasClassifier ? try bundle.classifier() : nil
    }

    /// Whether prompts can be encoded (edited labels, search queries).
    var hasTextEncoder: Bool { Engine.artifact(bundle, encoder: "text") != nil }

    /// Whether the bundle has a Core ML classifier artifact (and the labels it classifies into).
    var hasClassifierArtifact: Bool { classifier != nil && Engine.artifact(bundle, encoder: "classifier") != nil }

    /// The artifact the demo tabs use for an encoder: the manifest's default Core ML one (an int8 variant only
    /// where it passed and ran faster at export), else fp16, else whatever there is.
    static func artifact(_ bundle: ModelBundle, encoder: String) -> ModelBundle.Artifact? {
        let arts = bundle.artifacts.filter { $0.target == "coreml" && $0.encoder == encoder }
        return arts.first { $0.isDefault } ?? arts.first { $0.precision == "fp16" } ?? arts.first
    }

    /// On `queue` only.
    func imageEncoder() throws -> CoreMLEncoder {
        if let e = imageSession { return e }
        guard let a = Engine.artifact(bundle, encoder: "image") else {
            throw CLIPDeployError(.bundle, "\(bundle.model) has no Core ML image encoder: export with --target coreml")
        }
        let e = try CoreMLEncoder.load(a, computeUnits: computeUnits)
        imageSession = e
        return e
    }

    /// On `queue` only.
    func textEncoder() throws -> CoreMLEncoder {
        if let e = textSession { return e }
        guard let a = Engine.artifact(bundle, encoder: "text") else {
            throw CLIPDeployError(.bundle, "\(bundle.model) has no Core ML text encoder: export with --target coreml")
        }
        let e = try CoreMLEncoder.load(a, computeUnits: computeUnits)
        textSession = e
        return e
    }

    /// On `queue` only: the Core ML classifier artifact (`image` -> `logits` over `classifier.labels`).
    func classifierEncoder() throws -> CoreMLEncoder {
        if let e = classifierSession { return e }
        guard let a = Engine.artifact(bundle, encoder: "classifier") else {
            throw CLIPDeployError(.bundle, "\(bundle.model) has no Core ML classifier: export with --target coreml "
                                  + "--classifier LABELS.txt")
        }
        let e = try CoreMLEncoder.load(a, computeUnits: computeUnits)
        classifierSession = e
        return e
    }

    /// On `queue` only: preprocessing, then the classifier artifact; the softmax of its logits, in label order.
    func classify(image: RGBImage) throws -> [Float] {
        let logits = try classifierEncoder().encodeImage(preprocess(image), size: spec.imageSize)
        guard logits.count == classifier?.count else {
            throw CLIPDeployError(.encoder, "the classifier gave \(logits.count) logits for \(classifier?.count ?? 0) labels")
        }
        return ZeroShot.softmax(logits)
    }

    /// On `queue` only: the text encoder with the tokenizer in front, at the text artifact's shortest lengths.
    func textInput() throws -> TextEncoder {
        if let t = text { return t }
        guard let a = Engine.artifact(bundle, encoder: "text") else {
            throw CLIPDeployError(.bundle, "\(bundle.model) has no Core ML text encoder: export with --target coreml")
        }
        let t = TextEncoder(session: try textEncoder(), tokenizer: tokenizer, artifact: a)
        text = t
        return t
    }

    /// The batch sizes the image artifact accepts (its manifest `shapes.batch`; fixed [1] for older bundles).
    var imageBatch: ShapeDescriptor {
        return Engine.artifact(bundle, encoder: "image")?.shapes.batch ?? .fixed(1)
    }

    /// Python-exact preprocessing (resize the shorter side, center crop, /255): the image encoder's input.
    func preprocess(_ image: RGBImage) throws -> [Float] {
        return try Preprocess.apply(image, spec: spec)
    }

    /// Preprocessing, then the image encoder.
    func embed(image: RGBImage) throws -> [Float] {
        return try imageEncoder().encodeImage(preprocess(image), size: spec.imageSize)
    }

    /// On `queue` only: a builder that adds preprocessed images to `index` in batches the image artifact accepts
    /// (chunks of its largest batch; the last one padded with copies of its last image, padded outputs dropped).
    func indexBuilder(_ index: ImageSearch) throws -> ImageIndexBuilder {
        return ImageIndexBuilder(session: try imageEncoder(), batch: imageBatch, size: spec.imageSize, index: index)
    }

    /// The query tokenized to the shortest length the text artifact accepts, then the text encoder.
    func embed(text: String) throws -> [Float] {
        return try textInput().embed(text)
    }

    /// One prompt-ensembled class embedding per label, each prompt at its shortest accepted length.
    func classEmbeddings(labels: [String], templates: [String]) throws -> [[Float]] {
        return try textInput().classEmbeddings(labels: labels, templates: templates)
    }

    /// Runs `work` on the inference queue; `done` gets its result on the main queue.
    func run<T>(_ work: @escaping () throws -> T, then done: @escaping (Result<T, Error>) -> Void) {
        queue.async {
            let result = Result<T, Error>(catching: work)
            DispatchQueue.main.async { done(result) }
        }
    }
}

/// What the tabs share: the engine of the open bundle and a status line. Published properties change on the
/// main queue only.
final class AppModel: ObservableObject {
    @Published private(set) var engine: Engine?
    @Published var message = "Looking for a bundle…"
    /// The kind of the last refusal (`CLIPDeployError.Kind.rawValue`: integrity, unsafe_path, incomplete, ...)
    /// when the bundle could not be opened; nil otherwise. `message` holds its one line.
    @Published var refusal: String?
    @Published var showImporter = false
    @Published var computeUnits: ComputeUnits = .all

    static var documents: URL {
        FileManager.default.urls(for: .documentDirectory, in: .userDomainMask)[0]
    }

    var appVersion: String {
        (Bundle.main.infoDictionary?["CFBundleShortVersionString"] as? String) ?? "0.1.0"
    }

    /// The bundle copied into the app as the folder resource "Bundle", else the first bundle under
    /// Documents/Bundles or Documents (Files app / Finder file sharing put them there).
    func loadInitialBundle() {
        guard engine == nil else { return }
        if let url = AppModel.findBundle() {
            open(url)
        } else {
            message = "No bundle in the app: copy one into ios_app/App/Bundle before building, or open a bundle "
                + "folder from Files."
            AppModel.writeBenchmarkError(message)
        }
    }

    /// With `-benchmark YES` on the launch command line, a bundle that cannot be opened (or is refused: integrity,
    /// unsafe path, incomplete copy, schema) never reaches the Benchmark tab: the run's `Documents/NAME.error`
    /// gets the one line here, so a scripted run learns why (the Android app's contract).
    static func writeBenchmarkError(_ line: String) {
        let args = UserDefaults.standard.volatileDomain(forName: UserDefaults.argumentDomain)
        guard BenchmarkRequest.isRequested(args) else { return }
        try? LatencyReport.writeError(to: documents.appendingPathComponent(BenchmarkRequest.reportName(args)),
                                      message: line)
    }

    static func findBundle() -> URL? {
        let fm = FileManager.default
        func isBundle(_ u: URL) -> Bool { fm.fileExists(atPath: u.appendingPathComponent("manifest.json").path) }
        if let res = Bundle.main.url(forResource: "Bundle", withExtension: nil), isBundle(res) { return res }
        for base in [documents.appendingPathComponent("Bundles"), documents] {
            if isBundle(base) { return base }
            let items = (try? fm.contentsOfDirectory(at: base, includingPropertiesForKeys: nil)) ?? []
            for d in items.sorted(by: { $0.lastPathComponent < $1.lastPathComponent }) where isBundle(d) { return d }
        }
        return nil
    }

    func open(_ url: URL) {
        message = "Opening \(url.lastPathComponent)…"
        let units = computeUnits
        DispatchQueue.global(qos: .userInitiated).async {
            let result = Result<Engine, Error>(catching: { try Engine(bundle: ModelBundle.open(url), computeUnits: units) })
            DispatchQueue.main.async {
                switch result {
                case .success(let e):
                    self.engine = e
                    self.refusal = nil
                    self.message = "\(e.bundle.model): \(e.spec)"
                case .failure(let error):
                    // nothing runs on a bundle that was refused: NoBundleView shows the kind and the one line
                    self.engine = nil
                    self.refusal = (error as? CLIPDeployError).flatMap { $0.isBundleRefusal ? $0.kind.rawValue : nil }
                    self.message = oneLineWithKind(error)
                    AppModel.writeBenchmarkError(self.message)
                }
            }
        }
    }

    /// A bundle folder picked in Files: copied into Documents/Bundles (the pick's access does not last), then
    /// opened.
    func importBundle(from picked: URL) {
        message = "Copying \(picked.lastPathComponent)…"
        DispatchQueue.global(qos: .userInitiated).async {
            let scoped = picked.startAccessingSecurityScopedResource()
            defer { if scoped { picked.stopAccessingSecurityScopedResource() } }
            let fm = FileManager.default
            let dest = AppModel.documents.appendingPathComponent("Bundles", isDirectory: true)
                .appendingPathComponent(picked.lastPathComponent, isDirectory: true)
            do {
                if picked.standardizedFileURL.path != dest.standardizedFileURL.path {
                    try fm.createDirectory(at: dest.deletingLastPathComponent(), withIntermediateDirectories: true)
                    if fm.fileExists(atPath: dest.path) { try fm.removeItem(at: dest) }
                    try fm.copyItem(at: picked, to: dest)
                }
                DispatchQueue.main.async {
                    self.engine = nil
                    self.open(dest)
                }
            } catch {
                DispatchQueue.main.async { self.message = "Cannot import \(picked.lastPathComponent): \(oneLine(error))" }
            }
        }
    }
}
