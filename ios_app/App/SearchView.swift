import CLIPDeployKit
import ImageIO
import PhotosUI
import SwiftUI
import UIKit

/// Text -> photo search: pick photos (PhotosPicker); they are embedded by the image encoder into an ImageSearch
/// index in batches the image artifact accepts (the kit's `ImageIndexBuilder` via `Engine.indexBuilder`: Core ML
/// enumerated batches, e.g. 8 at a time with the last batch padded); a typed query is embedded by the text encoder
/// (tokenized to the shortest length it accepts) and the photos are ranked by cosine.
struct SearchView: View {
    let engine: Engine
    @StateObject private var search = SearchModel()
    @State private var picked: [PhotosPickerItem] = []
    @State private var query = ""

    private let columns = [GridItem(.adaptive(minimum: 100), spacing: 8)]

    var body: some View {
        NavigationStack {
            ScrollView {
                VStack(alignment: .leading, spacing: 12) {
                    BundleBar(engine: engine)
                    HStack {
                        TextField("a dog on a beach", text: $query)
                            .textFieldStyle(.roundedBorder)
                            .textInputAutocapitalization(.never)
                            .onSubmit { search.search(query, engine: engine) }
                        Button("Search") { search.search(query, engine: engine) }
                            .disabled(query.trimmingCharacters(in: .whitespaces).isEmpty || search.photos.isEmpty)
                    }
                    PhotosPicker(selection: $picked, maxSelectionCount: 50, matching: .images) {
                        Label("Add photos", systemImage: "photo.on.rectangle.angled")
                    }
                    Text(search.status).font(.caption).foregroundStyle(.secondary)
                    if !search.matches.isEmpty {
                        Text("Results").font(.headline)
                        LazyVGrid(columns: columns, spacing: 8) {
                            ForEach(search.matches) { m in
                                VStack {
                                    thumbnail(m.photo.thumbnail)
                                    Text(String(format: "%.3f", m.score)).font(.caption).monospacedDigit()
                                }
                            }
                        }
                    }
                    if !search.photos.isEmpty {
                        Text("Indexed photos (\(search.photos.count))").font(.headline)
                        LazyVGrid(columns: columns, spacing: 8) {
                            ForEach(search.photos) { p in thumbnail(p.thumbnail) }
                        }
                    }
                }
                .padding()
            }
            .navigationTitle("Search")
        }
        .onChange(of: picked) { items in
            search.add(items, engine: engine)
            picked = []
        }
    }

    private func thumbnail(_ image: UIImage) -> some View {
        Image(uiImage: image)
            .resizable()
            .scaledToFill()
            .frame(width: 100, height: 100)
            .clipped()
            .clipShape(RoundedRectangle(cornerRadius: 8))
    }
}

/// The photos, their index and the last query's ranking. Published properties change on the main queue.
final class SearchModel: ObservableObject {
    struct Photo: Identifiable {
        let id: Int
        let thumbnail: UIImage
    }

    struct Match: Identifiable {
        let id: Int
        let photo: Photo
        let score: Double
    }

    @Published var photos: [Photo] = []
    @Published var matches: [Match] = []
    @Published var status = "Add photos, then type what to look for."
    private let index = ImageSearch()
    private var nextId = 0

    /// What one indexing job did (on the inference queue).
    struct Indexed {
        let added: [String]
        let failed: Int
        let batches: Int
    }

    /// Loads the picked photos (orientation applied, longer side at most 768 px), then embeds them in batches the
    /// image artifact accepts; a photo joins `photos` once its batch is in the index.
    func add(_ items: [PhotosPickerItem], engine: Engine) {
        guard !items.isEmpty else { return }
        status = "Loading \(items.count) photos…"
        Task { @MainActor in
            var loaded: [(id: Int, image: CGImage)] = []
            var thumbs: [Int: UIImage] = [:]
            var unreadable = 0
            for item in items {
                guard let data = try? await item.loadTransferable(type: Data.self),
                      let image = SearchModel.downsampled(data, maxPixelSize: 768) else {
                    unreadable += 1
                    continue
                }
                let id = self.nextId
                self.nextId += 1
                loaded.append((id: id, image: image))
                thumbs[id] = UIImage(cgImage: image)
            }
            guard !loaded.isEmpty else {
                self.status = "The photos could not be read"
                return
            }
            self.status = "Embedding \(loaded.count) photos…"
            let index = self.index
            let photos = loaded
            let thumbnails = thumbs
            let unreadableCount = unreadable
            engine.run({ () throws -> Indexed in
                let builder = try engine.indexBuilder(index)
                var added: [String] = []
                var failed = 0
                for p in photos {
                    let chw: [Float]
                    do {
                        chw = try engine.preprocess(RGBImage(cgImage: p.image))
                    } catch {
                        failed += 1
                        continue
                    }
                    let queued = builder.pending + 1
                    do {
                        added += try builder.add(id: String(p.id), chw: chw)
                    } catch {
                        failed += queued            // the batch this photo completed was dropped
                    }
                }
                let queued = builder.pending
                do {
                    added += try builder.flush()
                } catch {
                    failed += queued
                }
                return Indexed(added: added, failed: failed, batches: builder.calls.count)
            }, then: { result in
                switch result {
                case .success(let r):
                    for s in r.added {
                        if let id = Int(s), let t = thumbnails[id] { self.photos.append(Photo(id: id, thumbnail: t)) }
                    }
                    let bad = r.failed + unreadableCount
                    self.status = "\(self.photos.count) photos indexed (\(r.batches) batches of up to "
                        + "\(engine.imageBatch))" + (bad > 0 ? ", \(bad) could not be embedded" : "")
                case .failure(let error):
                    self.status = oneLineWithKind(error)
                }
            })
        }
    }

    func search(_ text: String, engine: Engine) {
        let q = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !q.isEmpty else { return }
        status = "Searching…"
        engine.run({ try engine.embed(text: q) }, then: { result in
            switch result {
            case .success(let e):
                let hits = self.index.query(e, k: 24)
                self.matches = hits.compactMap { h in
                    self.photos.first { String($0.id) == h.id }.map { Match(id: $0.id, photo: $0, score: h.score) }
                }
                self.status = "\"\(q)\": best \(self.matches.first.map { String(format: "%.3f", $0.score) } ?? "-")"
            case .failure(let error):
                self.status = oneLineWithKind(error)
            }
        })
    }

    /// The photo decoded at most `maxPixelSize` on its longer side, with its EXIF orientation applied.
    static func downsampled(_ data: Data, maxPixelSize: Int) -> CGImage? {
        guard let src = CGImageSourceCreateWithData(data as CFData, nil) else { return nil }
        let options: [CFString: Any] = [
            kCGImageSourceCreateThumbnailFromImageAlways: true,
            kCGImageSourceCreateThumbnailWithTransform: true,
            kCGImageSourceThumbnailMaxPixelSize: maxPixelSize,
        ]
        return CGImageSourceCreateThumbnailAtIndex(src, 0, options as CFDictionary)
    }
}
