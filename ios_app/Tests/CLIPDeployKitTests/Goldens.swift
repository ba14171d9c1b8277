import Foundation
import XCTest
@testable import CLIPDeployKit

/// Where the shared golden vectors are: `CLIPDEPLOY_GOLDENS=DIR`, else the repository's goldens/ found by
/// walking up from this file (the JVM tests' `Goldens`).
enum Goldens {
    static func dir() throws -> URL {
        let fm = FileManager.default
        if let p = ProcessInfo.processInfo.environment["CLIPDEPLOY_GOLDENS"], !p.isEmpty {
            let u = URL(fileURLWithPath: p)
            guard fm.fileExists(atPath: u.appendingPathComponent("index.json").path) else {
                throw CLIPDeployError(.bundle, "no goldens at \(u.path) (index.json missing)")
            }
            return u
        }
        var d = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while d.pathComponents.count > 1 {
            let g = d.appendingPathComponent("goldens")
            if fm.fileExists(atPath: g.appendingPathComponent("index.json").path) { return g }
            d = d.deletingLastPathComponent()
        }
        throw CLIPDeployError(.bundle, "goldens/ not found: run from the repository or set CLIPDEPLOY_GOLDENS=DIR")
    }

    static func file(_ rel: String) throws -> URL {
        return try dir().appendingPathComponent(rel)
    }

    static func json(_ rel: String) throws -> [String: Any] {
        return try Json.map(Json.parse(contentsOf: file(rel)))
    }

    static func bundle() throws -> ModelBundle {
        return try ModelBundle.open(file("bundle"))
    }

    /// A fresh temporary directory, removed when the test ends.
    static func temporaryDirectory(_ test: XCTestCase) throws -> URL {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("clipdeploy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        test.addTeardownBlock { _ = try? FileManager.default.removeItem(at: d) }
        return d
    }
}

/// |want - got| <= tol * max(1, |want|) (the JVM tests' `close`).
func assertClose(_ want: Double, _ got: Double, _ what: String, relative tol: Double = 1e-12,
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertLessThanOrEqual(abs(want - got), tol * max(1.0, abs(want)), "\(what): want \(want), got \(got)",
                             file: file, line: line)
}

func assertFloatsClose(_ want: [Float], _ got: [Float], _ tol: Float, _ what: String,
                       file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(want.count, got.count, "\(what): length", file: file, line: line)
    for k in 0..<min(want.count, got.count) where abs(want[k] - got[k]) > tol {
        XCTFail("\(what)[\(k)]: want \(want[k]), got \(got[k])", file: file, line: line)
        return
    }
}
