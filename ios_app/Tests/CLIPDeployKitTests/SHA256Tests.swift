import Foundation
import XCTest
@testable import CLIPDeployKit

/// The kit's own SHA-256 against the NIST FIPS 180-4 examples and the golden bundle's recorded digests.
final class SHA256Tests: XCTestCase {
    func testNISTVectors() {
        XCTAssertEqual(SHA256.hash([UInt8]()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256.hash(Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(SHA256.hash(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(SHA256.hash(Array(("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
                                          + "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu").utf8)),
                       "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1")
        // one million 'a', fed in uneven pieces (the streaming path: partial blocks, whole blocks, remainders)
        let million = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
        XCTAssertEqual(SHA256.hash(million), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        var s = SHA256()
        var at = 0
        var step = 1
        while at < million.count {
            let n = min(step, million.count - at)
            million[at..<(at + n)].withUnsafeBytes { s.update($0) }
            at += n
            step = (step * 7 + 3) % 1000 + 1
        }
        XCTAssertEqual(s.finalizeHex(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// Every length around the padding boundaries (55, 56, 63, 64 bytes ...) hashed whole and byte by byte agree.
    func testPaddingBoundariesAndStreamingAgree() {
        let bytes = (0..<200).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
        for n in [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 200] {
            let whole = SHA256.hash(Array(bytes.prefix(n)))
            var s = SHA256()
            for b in bytes.prefix(n) { s.update([b]) }
            XCTAssertEqual(s.finalizeHex(), whole, "length \(n)")
        }
        XCTAssertEqual(SHA256.hash(Array("The quick brown fox jumps over the lazy dog".utf8)),
                       "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592")
    }

    func testGoldenBundleDigestsAreTheRecordedOnes() throws {
        let m = try Goldens.json("bundle/manifest.json")
        let files = try Json.map(try Json.map(m["integrity"])["files"])
        XCTAssertGreaterThanOrEqual(files.count, 10)
        for (rel, e) in files {
            let ent = try Json.map(e)
            let got = try SHA256.hash(contentsOf: try Goldens.file("bundle/" + rel))
            XCTAssertEqual(got.hex, try Json.str(ent["sha256"]), rel)
            XCTAssertEqual(Int(got.bytes), try Json.int(ent["size"]), rel)
        }
    }

    /// A file larger than one read chunk (1 MiB) hashes as its bytes do.
    func testAFileOfSeveralChunks() throws {
        let dir = try Goldens.temporaryDirectory(self)
        let f = dir.appendingPathComponent("big.bin")
        let bytes = (0..<(SHA256.chunkSize * 2 + 12345)).map { UInt8(truncatingIfNeeded: $0 ^ ($0 >> 9)) }
        try Data(bytes).write(to: f)
        let t0 = Date()
        let got = try SHA256.hash(contentsOf: f)
        let secs = Date().timeIntervalSince(t0)
        XCTAssertEqual(got.hex, SHA256.hash(bytes))
        XCTAssertEqual(Int(got.bytes), bytes.count)
        print("SHA256: \(bytes.count) bytes from a file in \(String(format: "%.3f", secs)) s")
    }
}
