import Foundation
import XCTest
@testable import CLIPDeployKit

/// Bundles for the tests, written in a temporary directory: a copy of the goldens' miniature bundle (never the
/// goldens themselves, which tests must not modify), files added or changed, and the manifest's integrity record
/// computed here (sha256 + size of every file but manifest.json, keys sorted), as
/// `clipdeploy.latency.integrity.record` writes it (the JVM tests' `TestBundles`).
enum TestBundles {
    static let onnx = "onnx-fp32/image_encoder.onnx"
    static let pte = "executorch-fp32/image_encoder.pte"
    static let mlpackage = "coreml-fp16/image_encoder.mlpackage"
    static let mlmodel = mlpackage + "/Data/com.apple.CoreML/model.mlmodel"
    static let weights = mlpackage + "/Data/com.apple.CoreML/weights/weight.bin"
    static let packageManifest = mlpackage + "/Manifest.json"

    /// The goldens' manifest, parsed (a fresh, mutable copy).
    static func goldenManifest() throws -> [String: Any] {
        return try Json.map(Json.parse(contentsOf: Goldens.file("bundle/manifest.json")))
    }

    /// Copies every file of goldens/bundle (manifest.json included) into a fresh temporary directory.
    static func copyGolden(_ test: XCTestCase, name: String = "bundle") throws -> URL {
        let dst = try Goldens.temporaryDirectory(test).appendingPathComponent(name)
        try FileManager.default.copyItem(at: try Goldens.file("bundle"), to: dst)
        return dst
    }

    /// {"size", "sha256"} of a file (read through a symlink).
    static func entry(_ url: URL) throws -> [String: Any] {
        let h = try SHA256.hash(contentsOf: url)
        return ["size": Int(h.bytes), "sha256": h.hex]
    }

    /// The integrity record of `dir`: every regular file (symlinks followed) but manifest.json, keys sorted.
    static func record(_ dir: URL) throws -> [String: Any] {
        var files: [String: Any] = [:]
        func walk(_ d: URL, _ rel: String) throws {
            for name in try FileManager.default.contentsOfDirectory(atPath: d.path).sorted() {
                let u = d.appendingPathComponent(name)
                let r = rel.isEmpty ? name : rel + "/" + name
                var isDir: ObjCBool = false
                guard FileManager.default.fileExists(atPath: u.path, isDirectory: &isDir) else { continue }
                if isDir.boolValue {
                    try walk(u, r)
                } else if r != "manifest.json" {
                    files[r] = try entry(u)
                }
            }
        }
        try walk(dir, "")
        return ["algorithm": "sha256", "files": files]
    }

    static func writeManifest(_ dir: URL, _ manifest: [String: Any]) throws {
        try Data(try Json.write(manifest, pretty: true).utf8).write(to: dir.appendingPathComponent("manifest.json"))
    }

    /// `manifest` with its integrity record recomputed from `dir`, written as dir/manifest.json.
    static func seal(_ dir: URL, _ manifest: [String: Any]) throws {
        var m = manifest
        m["integrity"] = try record(dir)
        try writeManifest(dir, m)
    }

    /// A manifest artifact entry (`files` defaults to the path itself).
    static func artifact(_ target: String, _ precision: String, _ encoder: String, _ path: String,
                         files: [String]? = nil) -> [String: Any] {
        return ["target": target, "precision": precision, "encoder": encoder, "path": path, "files": files ?? [path]]
    }

    /// A bundle: the goldens' files, a placeholder file (seeded bytes) for every artifact path or file `manifest`
    /// names that does not exist yet (a name ending in .mlpackage becomes a directory with a model inside), and the
    /// integrity record of it all.
    @discardableResult
    static func bundle(_ dir: URL, _ manifest: [String: Any]) throws -> URL {
        var rng = SplitMix64(seed: UInt64(truncatingIfNeeded: dir.lastPathComponent.utf8.reduce(7) { $0 &* 31 &+ Int($1) }))
        for o in try Json.list(manifest["artifacts"]) {
            let a = try Json.map(o)
            var names: [String] = []
            if let p = a["path"] as? String { names.append(p) }
            names += (a["files"] as? [String]) ?? []
            for n in names where BundleIntegrity.unsafeReason(n) == nil {
                let f = dir.appendingPathComponent(n)
                if FileManager.default.fileExists(atPath: f.path) { continue }
                if n.hasSuffix(".mlpackage") {
                    try placeholder(f.appendingPathComponent("Manifest.json"), &rng, 64)
                    try placeholder(f.appendingPathComponent("Data/com.apple.CoreML/model.mlmodel"), &rng, 512)
                    try placeholder(f.appendingPathComponent("Data/com.apple.CoreML/weights/weight.bin"), &rng, 4096)
                } else {
                    try placeholder(f, &rng, 1024 + Int(rng.next() % 1024))
                }
            }
        }
        try seal(dir, manifest)
        return dir
    }

    static func placeholder(_ f: URL, _ rng: inout SplitMix64, _ n: Int) throws {
        try FileManager.default.createDirectory(at: f.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data((0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }).write(to: f)
    }

    /// The goldens' reference bundle plus an ONNX, a .pte and an .mlpackage artifact, sealed.
    static func fullBundle(_ test: XCTestCase, name: String = "full") throws -> URL {
        let dir = try copyGolden(test, name: name)
        var m = try goldenManifest()
        var arts = try Json.list(m["artifacts"])
        arts.append(artifact("onnx", "fp32", "image", onnx))
        arts.append(artifact("executorch", "fp32", "image", pte))
        arts.append(artifact("coreml", "fp16", "image", mlpackage, files: [mlpackage]))
        m["artifacts"] = arts
        return try bundle(dir, m)
    }

    /// A copy of the goldens' bundle whose manifest is `edit`ed and re-sealed (the files are the goldens').
    static func editedGolden(_ test: XCTestCase, name: String, _ edit: (inout [String: Any]) throws -> Void) throws -> URL {
        let dir = try copyGolden(test, name: name)
        var m = try goldenManifest()
        try edit(&m)
        try seal(dir, m)
        return dir
    }

    /// Flips one byte of `f` in place (same size), then moves its mtime on so no digest cache can hide it.
    static func flipByte(_ f: URL, at: Int) throws {
        var b = [UInt8](try Data(contentsOf: f))
        let k = ((at % b.count) + b.count) % b.count
        b[k] ^= 0x5a
        let attrs = try FileManager.default.attributesOfItem(atPath: f.path)
        let mtime = (attrs[.modificationDate] as? Date) ?? Date()
        try Data(b).write(to: f)
        try FileManager.default.setAttributes([.modificationDate: mtime.addingTimeInterval(2)], ofItemAtPath: f.path)
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): the seeded generator of the randomized tests.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    /// Uniform in 0 ..< n (n > 0).
    mutating func below(_ n: Int) -> Int {
        return Int(next() % UInt64(n))
    }

    mutating func bool() -> Bool {
        return next() & 1 == 1
    }
}

extension XCTestCase {
    /// The error `body` throws: a bundle refusal (CLIPDeployError) of `kind`, one line, saying `contains`
    /// (shared by the integrity and classifier tests).
    @discardableResult
    func expect(_ kind: CLIPDeployError.Kind, _ contains: String, file: StaticString = #filePath, line: UInt = #line,
                _ body: () throws -> Void) -> CLIPDeployError? {
        do {
            try body()
            XCTFail("expected a \(kind) error saying '\(contains)', nothing was thrown", file: file, line: line)
        } catch let e as CLIPDeployError {
            XCTAssertEqual(e.kind, kind, e.message, file: file, line: line)
            XCTAssertTrue(e.isBundleRefusal, e.message, file: file, line: line)
            XCTAssertFalse(e.message.contains("\n") || e.message.contains("\r"), "not one line: \(e.message)",
                           file: file, line: line)
            XCTAssertTrue(e.message.contains(contains), "\(e.message) does not say '\(contains)'", file: file, line: line)
            XCTAssertTrue(oneLineWithKind(e).hasPrefix("bundle refused (\(kind.rawValue)): "), file: file, line: line)
            return e
        } catch {
            XCTFail("expected a CLIPDeployError (\(kind)), got \(error)", file: file, line: line)
        }
        return nil
    }
}
