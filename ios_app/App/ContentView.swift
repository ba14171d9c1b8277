import CLIPDeployKit
import SwiftUI
import UniformTypeIdentifiers

/// Three tabs on the open bundle: Camera (live zero-shot), Search (text -> photos), Benchmark (report).
struct ContentView: View {
    @EnvironmentObject var model: AppModel
    @State private var tab = Tab.camera

    enum Tab: Hashable {
        case camera, search, benchmark
    }

    var body: some View {
        Group {
            if let engine = model.engine {
                TabView(selection: $tab) {
                    CameraView(engine: engine)
                        .tabItem { Label("Camera", systemImage: "camera") }
                        .tag(Tab.camera)
                    SearchView(engine: engine)
                        .tabItem { Label("Search", systemImage: "magnifyingglass") }
                        .tag(Tab.search)
                    BenchmarkView(engine: engine)
                        .tabItem { Label("Benchmark", systemImage: "speedometer") }
                        .tag(Tab.benchmark)
                }
                .id(ObjectIdentifier(engine))          // a new bundle starts every tab afresh
            } else {
                NoBundleView()
            }
        }
        .fileImporter(isPresented: $model.showImporter, allowedContentTypes: [.folder]) { result in
            switch result {
            case .success(let url): model.importBundle(from: url)
            case .failure(let error): model.message = oneLineWithKind(error)
            }
        }
        .onAppear {
            // `-benchmark YES` on the launch command line opens the Benchmark tab and runs it (BenchmarkView)
            if UserDefaults.standard.bool(forKey: "benchmark") { tab = .benchmark }
        }
    }
}

/// Shown until a bundle is open.
struct NoBundleView: View {
    @EnvironmentObject var model: AppModel

    var body: some View {
        VStack(spacing: 16) {
            Image(systemName: "shippingbox")
                .font(.system(size: 48))
                .foregroundStyle(.secondary)
            Text("CLIPDeploy")
                .font(.title.bold())
            if let kind = model.refusal {
                Label("Bundle refused: \(kind.replacingOccurrences(of: "_", with: " "))",
                      systemImage: "exclamationmark.triangle.fill")
                    .font(.headline)
                    .foregroundStyle(.red)
            }
            Text(model.message)
                .multilineTextAlignment(.center)
                .foregroundStyle(.secondary)
            Button {
                model.showImporter = true
            } label: {
                Label("Open a bundle folder…", systemImage: "folder")
            }
            .buttonStyle(.borderedProminent)
            Text("A bundle is the folder `clip-export --target coreml` writes (manifest.json, coreml-*/, "
                 + "tokenizer/, probe/).")
                .font(.footnote)
                .multilineTextAlignment(.center)
                .foregroundStyle(.secondary)
        }
        .padding()
    }
}

/// A status line with a button to open another bundle (top of every tab).
struct BundleBar: View {
    @EnvironmentObject var model: AppModel
    let engine: Engine

    var body: some View {
        HStack {
            VStack(alignment: .leading) {
                Text(engine.bundle.model).font(.headline)
                Text(model.message).font(.caption).foregroundStyle(.secondary).lineLimit(1)
            }
            Spacer()
            Button {
                model.showImporter = true
            } label: {
                Image(systemName: "folder")
            }
            .accessibilityLabel("Open another bundle")
        }
    }
}
