import Foundation

/// SHA-256 (FIPS 180-4) in pure Swift, streaming: `update` any number of times, then `finalize`. The kit's
/// own, because the bundle's integrity record is checked on every platform the kit runs on and CryptoKit is
/// Apple-only. Whole 64-byte blocks are compressed straight from the caller's buffer (no copy, no per-byte
/// allocation); the 64-entry message schedule is allocated once per hasher.
public struct SHA256 {
    /// The digest size in bytes.
    public static let digestSize = 32
    /// What `hash(contentsOf:)` reads per call.
    public static let chunkSize = 1 << 20

    private static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    private var h: (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32) =
        (0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19)
    /// The pending partial block (fewer than 64 bytes).
    private var buffer = [UInt8](repeating: 0, count: 64)
    private var buffered = 0
    private var w = [UInt32](repeating: 0, count: 64)
    /// Message length so far in bytes.
    private var length: UInt64 = 0
    private var finalized = false

    public init() {}

    public mutating func update(_ data: Data) {
        data.withUnsafeBytes { update($0) }
    }

    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    public mutating func update(_ string: String) {
        update(Array(string.utf8))
    }

    public mutating func update(_ raw: UnsafeRawBufferPointer) {
        precondition(!finalized, "SHA256.update after finalize")
        guard var p = raw.baseAddress, raw.count > 0 else { return }
        var n = raw.count
        length &+= UInt64(n)
        if buffered > 0 {
            let take = min(64 - buffered, n)
            buffer.withUnsafeMutableBytes { b in
                (b.baseAddress! + buffered).copyMemory(from: p, byteCount: take)
            }
            buffered += take
            p += take
            n -= take
            if buffered < 64 { return }
            buffer.withUnsafeBytes { b in compress(b.baseAddress!, blocks: 1) }
            buffered = 0
        }
        let blocks = n / 64
        if blocks > 0 {
            compress(p, blocks: blocks)
            p += blocks * 64
            n -= blocks * 64
        }
        if n > 0 {
            buffer.withUnsafeMutableBytes { b in b.baseAddress!.copyMemory(from: p, byteCount: n) }
            buffered = n
        }
    }

    /// The digest (32 bytes). The hasher cannot be updated afterwards.
    public mutating func finalize() -> [UInt8] {
        precondition(!finalized, "SHA256.finalize twice")
        let bits = length &* 8
        var pad = [UInt8](repeating: 0, count: (buffered < 56 ? 56 : 120) - buffered + 8)
        pad[0] = 0x80
        for k in 0..<8 { pad[pad.count - 1 - k] = UInt8(truncatingIfNeeded: bits >> (8 * UInt64(k))) }
        let saved = length
        update(pad)
        length = saved
        precondition(buffered == 0)
        finalized = true
        var out = [UInt8](repeating: 0, count: 32)
        let words = [h.0, h.1, h.2, h.3, h.4, h.5, h.6, h.7]
        for (i, v) in words.enumerated() {
            out[4 * i] = UInt8(truncatingIfNeeded: v >> 24)
            out[4 * i + 1] = UInt8(truncatingIfNeeded: v >> 16)
            out[4 * i + 2] = UInt8(truncatingIfNeeded: v >> 8)
            out[4 * i + 3] = UInt8(truncatingIfNeeded: v)
        }
        return out
    }

    /// The digest as 64 lowercase hex digits.
    public mutating func finalizeHex() -> String {
        return SHA256.hex(finalize())
    }

    public static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8](repeating: 0, count: 2 * bytes.count)
        for (i, b) in bytes.enumerated() {
            out[2 * i] = digits[Int(b >> 4)]
            out[2 * i + 1] = digits[Int(b & 0x0f)]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The hex digest of `data`.
    public static func hash(_ data: Data) -> String {
        var s = SHA256()
        s.update(data)
        return s.finalizeHex()
    }

    public static func hash(_ bytes: [UInt8]) -> String {
        var s = SHA256()
        s.update(bytes)
        return s.finalizeHex()
    }

    /// The hex digest of a file, read in `chunkSize` chunks through a `FileHandle` (never the whole file at once).
    public static func hash(contentsOf url: URL) throws -> (hex: String, bytes: UInt64) {
        let handle = try FileHandle(forReadingFrom: url)
        defer { try? handle.close() }
        var s = SHA256()
        var total: UInt64 = 0
        while true {
            guard let chunk = try handle.read(upToCount: chunkSize), !chunk.isEmpty else { break }
            s.update(chunk)
            total += UInt64(chunk.count)
        }
        return (s.finalizeHex(), total)
    }

    /// Compresses `blocks` 64-byte blocks starting at `p` into the state. Rotations are written out (not
    /// calls) and the schedule is reached through raw pointers, so even an unoptimized build hashes at a
    /// usable rate.
    private mutating func compress(_ p: UnsafeRawPointer, blocks: Int) {
        var (h0, h1, h2, h3, h4, h5, h6, h7) = h
        SHA256.k.withUnsafeBufferPointer { kbuf in
            w.withUnsafeMutableBufferPointer { wbuf in
                let kp = kbuf.baseAddress!
                let wp = wbuf.baseAddress!
                let bytes = p.assumingMemoryBound(to: UInt8.self)
                for block in 0..<blocks {
                    let base = bytes + block * 64
                    for t in 0..<16 {
                        let q = base + 4 * t
                        wp[t] = UInt32(q[0]) << 24 | UInt32(q[1]) << 16 | UInt32(q[2]) << 8 | UInt32(q[3])
                    }
                    for t in 16..<64 {
                        let x = wp[t - 15], y = wp[t - 2]
                        let s0 = (x >> 7 | x << 25) ^ (x >> 18 | x << 14) ^ (x >> 3)
                        let s1 = (y >> 17 | y << 15) ^ (y >> 19 | y << 13) ^ (y >> 10)
                        wp[t] = wp[t - 16] &+ s0 &+ wp[t - 7] &+ s1
                    }
                    var a = h0, b = h1, c = h2, d = h3, e = h4, f = h5, g = h6, hh = h7
                    for t in 0..<64 {
                        let s1 = (e >> 6 | e << 26) ^ (e >> 11 | e << 21) ^ (e >> 25 | e << 7)
                        let ch = (e & f) ^ (~e & g)
                        let t1 = hh &+ s1 &+ ch &+ kp[t] &+ wp[t]
                        let s0 = (a >> 2 | a << 30) ^ (a >> 13 | a << 19) ^ (a >> 22 | a << 10)
                        let maj = (a & b) ^ (a & c) ^ (b & c)
                        hh = g
                        g = f
                        f = e
                        e = d &+ t1
                        d = c
                        c = b
                        b = a
                        a = t1 &+ s0 &+ maj
                    }
                    h0 = h0 &+ a
                    h1 = h1 &+ b
                    h2 = h2 &+ c
                    h3 = h3 &+ d
                    h4 = h4 &+ e
                    h5 = h5 &+ f
                    h6 = h6 &+ g
                    h7 = h7 &+ hh
                }
            }
        }
        h = (h0, h1, h2, h3, h4, h5, h6, h7)
    }
}
