import AVFoundation
import CLIPDeployKit
import CoreMedia
import SwiftUI
import UIKit

/// Live zero-shot classification: camera frames (32BGRA) -> RGBImage (turned upright) -> Python-exact
/// preprocessing -> Core ML image encoder -> softmax over the labels' prompt-ensembled text embeddings.
/// A bundle with a classifier artifact (issue 23) starts with its labels and runs the artifact instead (image ->
/// logits -> softmax, no text encoder); edited labels go through the text encoder (the bundle's templates when it
/// has them), and without one the status line says so and the bundle's labels stay.
/// One inference is in flight at a time; frames that arrive meanwhile are dropped.
struct CameraView: View {
    let engine: Engine
    @StateObject private var camera = CameraModel()
    @State private var editing = false

    var body: some View {
        ZStack(alignment: .bottom) {
            CameraPreview(session: camera.session)
                .ignoresSafeArea(edges: .top)
            VStack(alignment: .leading, spacing: 8) {
                BundleBar(engine: engine)
                ForEach(camera.guesses) { g in
                    VStack(alignment: .leading, spacing: 2) {
                        HStack {
                            Text(g.label).bold()
                            Spacer()
                            Text(String(format: "%.1f %%", Double(g.probability) * 100)).monospacedDigit()
                        }
                        ProgressView(value: Double(g.probability))
                    }
                }
                HStack {
                    Text(camera.status).font(.caption).foregroundStyle(.secondary)
                    Spacer()
                    Button("Labels…") { editing = true }
                }
            }
            .padding()
            .background(.ultraThinMaterial)
            .clipShape(RoundedRectangle(cornerRadius: 12))
            .padding()
        }
        .onAppear { camera.start(engine: engine) }
        .onDisappear { camera.stop() }
        .sheet(isPresented: $editing, onDismiss: { camera.applyLabels() }) {
            LabelEditor(labels: $camera.labels, useTemplates: $camera.useTemplates,
                        bundleTemplates: engine.classifier?.templates.count, canEdit: engine.hasTextEncoder)
        }
    }
}

/// Editable labels and the prompt-template switch.
struct LabelEditor: View {
    @Binding var labels: [CameraModel.LabelItem]
    @Binding var useTemplates: Bool
    /// The number of the bundle's own prompt templates (its classifier's), nil when it has none.
    var bundleTemplates: Int? = nil
    /// False without a text encoder: only the bundle's classifier labels can be used.
    var canEdit = true
    @Environment(\.dismiss) private var dismiss

    var body: some View {
        NavigationStack {
            List {
                Section("Labels") {
                    ForEach($labels) { $item in
                        TextField("label", text: $item.text)
                            .textInputAutocapitalization(.never)
                            .autocorrectionDisabled()
                    }
                    .onDelete { labels.remove(atOffsets: $0) }
                    Button {
                        labels.append(CameraModel.LabelItem(text: ""))
                    } label: {
                        Label("Add a label", systemImage: "plus")
                    }
                }
                Section {
                    Toggle("Prompt ensemble", isOn: $useTemplates)
                } footer: {
                    if !canEdit {
                        Text("This bundle has no text encoder: only its classifier's labels can be used.")
                    } else if useTemplates, let n = bundleTemplates {
                        Text("The bundle's labels run its classifier; edited labels are embedded with its \(n) templates, averaged.")
                    } else {
                        Text(useTemplates
                             ? "Each label is embedded with \(ZeroShot.defaultTemplates.count) templates "
                               + "(\"a photo of a {}.\", \"a blurry photo of a {}.\", …), averaged."
                             : "Each label is embedded as \"a photo of a {}.\".")
                    }
                }
            }
            .navigationTitle("Labels")
            .toolbar {
                ToolbarItem(placement: .confirmationAction) {
                    Button("Done") { dismiss() }
                }
            }
        }
    }
}

/// The capture session and the throttled classification loop.
final class CameraModel: NSObject, ObservableObject, AVCaptureVideoDataOutputSampleBufferDelegate {
    struct LabelItem: Identifiable, Hashable {
        let id = UUID()
        var text: String
    }

    struct Guess: Identifiable {
        let id: Int
        let label: String
        let probability: Float
    }

    @Published var guesses: [Guess] = []
    @Published var status = "Starting the camera…"
    @Published var labels: [LabelItem] = ["dog", "cat", "person", "car", "tree", "cup", "keyboard", "phone", "book",
                                          "plant"].map { LabelItem(text: $0) }
    @Published var useTemplates = true

    let session = AVCaptureSession()
    private let output = AVCaptureVideoDataOutput()
    private let videoQueue = DispatchQueue(label: "org.clipdeploy.camera")
    private let lock = NSLock()
    // guarded by lock
    private var engine: Engine?
    private var inFlight = false
    private var classes: [[Float]] = []
    private var activeLabels: [String] = []
    /// True while the bundle's classifier artifact classifies (its labels unedited).
    private var useArtifact = false
    // videoQueue only
    private var configured = false

    func start(engine: Engine) {
        lock.lock()
        let changed = self.engine !== engine
        self.engine = engine
        let idle = classes.isEmpty && !useArtifact
        lock.unlock()
        if changed, engine.hasClassifierArtifact, let c = engine.classifier {
            labels = c.labels.map { LabelItem(text: $0) }      // the bundle's own labels: its classifier artifact
        }
        if changed || idle { applyLabels() }
        AVCaptureDevice.requestAccess(for: .video) { granted in
            guard granted else {
                DispatchQueue.main.async { self.status = "Camera access is off: allow it in Settings › CLIPDeploy." }
                return
            }
            self.videoQueue.async {
                if !self.configured { self.configure() }
                if self.configured && !self.session.isRunning { self.session.startRunning() }
            }
        }
    }

    func stop() {
        videoQueue.async {
            if self.session.isRunning { self.session.stopRunning() }
        }
    }

    /// Embeds the labels (prompt ensemble or a single template) on the inference queue.
    func applyLabels() {
        lock.lock()
        let engine = self.engine
        lock.unlock()
        guard let engine = engine else { return }
        let names = labels.map { $0.text.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
        if engine.hasClassifierArtifact, let c = engine.classifier, names == c.labels {
            lock.lock()
            useArtifact = true
            classes = []
            activeLabels = c.labels
            lock.unlock()
            status = "\(c.count) labels of the bundle's classifier"
            return
        }
        guard engine.hasTextEncoder else {
            status = "This bundle has no text encoder: only its classifier's labels can be used."
            return
        }
        let templates = useTemplates ? (engine.classifier?.templates ?? ZeroShot.defaultTemplates) : ["a photo of a {}."]
        status = "Embedding \(names.count) labels…"
        engine.run({ try engine.classEmbeddings(labels: names, templates: templates) }, then: { result in
            switch result {
            case .success(let c):
                self.lock.lock()
                self.classes = c
                self.activeLabels = names
                self.useArtifact = false
                self.lock.unlock()
                self.status = "\(names.count) labels × \(templates.count) prompts"
            case .failure(let error):
                self.status = oneLineWithKind(error)
            }
        })
    }

    private func configure() {
        session.beginConfiguration()
        defer { session.commitConfiguration() }
        session.sessionPreset = .vga640x480
        guard let device = AVCaptureDevice.default(.builtInWideAngleCamera, for: .video, position: .back),
              let input = try? AVCaptureDeviceInput(device: device), session.canAddInput(input) else {
            DispatchQueue.main.async { self.status = "No camera available" }
            return
        }
        session.addInput(input)
        output.videoSettings = [kCVPixelBufferPixelFormatTypeKey as String: kCVPixelFormatType_32BGRA]
        output.alwaysDiscardsLateVideoFrames = true
        output.setSampleBufferDelegate(self, queue: videoQueue)
        guard session.canAddOutput(output) else {
            DispatchQueue.main.async { self.status = "Cannot read camera frames" }
            return
        }
        session.addOutput(output)
        configured = true
    }

    func captureOutput(_ output: AVCaptureOutput, didOutput sampleBuffer: CMSampleBuffer,
                       from connection: AVCaptureConnection) {
        lock.lock()
        guard !inFlight, useArtifact || !classes.isEmpty, let engine = engine else {
            lock.unlock()
            return
        }
        inFlight = true
        let classes = self.classes
        let names = activeLabels
        let artifact = useArtifact
        lock.unlock()
        // Copy the pixels now (the buffer goes back to the capture pool); the back camera's frames are
        // landscape: turned 90 degrees clockwise they are upright in portrait.
        guard let buffer = CMSampleBufferGetImageBuffer(sampleBuffer),
              let frame = try? RGBImage(pixelBuffer: buffer).rotated(90) else {
            finish()
            return
        }
        engine.run({ () -> [Float] in
            if artifact { return try engine.classify(image: frame) }      // logits -> softmax, no text encoder
            let e = try engine.embed(image: frame)
            return ZeroShot.probabilities(image: e, classEmbeddings: classes, logitScale: engine.logitScale)
        }, then: { result in
            self.finish()
            switch result {
            case .success(let p):
                self.guesses = ZeroShot.topK(p, 3).map { Guess(id: $0, label: names[$0], probability: p[$0]) }
            case .failure(let error):
                self.status = oneLineWithKind(error)
            }
        })
    }

    private func finish() {
        lock.lock()
        inFlight = false
        lock.unlock()
    }
}

/// The camera preview (AVCaptureVideoPreviewLayer).
struct CameraPreview: UIViewRepresentable {
    let session: AVCaptureSession

    final class PreviewView: UIView {
        override class var layerClass: AnyClass { AVCaptureVideoPreviewLayer.self }
        var previewLayer: AVCaptureVideoPreviewLayer { layer as! AVCaptureVideoPreviewLayer }
    }

    func makeUIView(context: Context) -> PreviewView {
        let view = PreviewView()
        view.previewLayer.session = session
        view.previewLayer.videoGravity = .resizeAspectFill
        return view
    }

    func updateUIView(_ uiView: PreviewView, context: Context) {}
}
