import Foundation

/// A strict RFC 8259 JSON reader (the JVM core's `Json.parse`), the same on every platform.
///
/// Foundation's `JSONSerialization` is not: swift-corelibs-foundation accepts `[1,]` and `{"a":1,}`, which
/// Darwin's rejects, and neither says where a document went wrong. Bundles and device reports are untrusted
/// input, so what they may contain is decided here: UTF-8 only, no trailing commas, no leading zeros, no
/// comments, no NaN/Infinity, no trailing garbage, nesting at most `maxDepth` (200) deep (so a hostile
/// `[[[[...` is an error, never a stack overflow), at most `maxBytes` of input, and an error that names the line
/// and column. Every failure is a one-line `CLIPDeployError` of kind `.json`.
///
/// Values are what the rest of the kit reads: `[String: Any]`, `[Any]`, `String`, `NSNumber` (integers that fit
/// in Int64 as integers, other numbers as doubles, booleans as boolean NSNumbers) and `NSNull`. A repeated key
/// keeps its last value, as Python's `json` does.
struct JsonParser {
    static let maxDepth = 200
    /// The default input limit (32 MiB: manifests, reports; the tokenizer's vocab.json is read with 64 MiB).
    static let maxBytes = 32 << 20

    private let b: [UInt8]
    private var i = 0
    private var depth = 0

    private init(_ bytes: [UInt8]) { b = bytes }

    static func parse(_ data: Data, maxBytes: Int = JsonParser.maxBytes) throws -> Any {
        guard data.count <= maxBytes else {
            throw CLIPDeployError(.json, "not JSON this reader accepts: \(data.count) bytes is more than the \(maxBytes) "
                                  + "it reads")
        }
        var p = JsonParser([UInt8](data))
        if p.b.starts(with: [0xEF, 0xBB, 0xBF]) { p.i = 3 }       // a UTF-8 byte order mark, as Python allows
        p.ws()
        let v = try p.value()
        p.ws()
        if p.i != p.b.count { throw p.error("trailing characters") }
        return v
    }

    private func error(_ what: String) -> CLIPDeployError {
        var line = 1, col = 1
        for k in 0..<min(i, b.count) {
            if b[k] == 0x0A { line += 1; col = 1 } else if b[k] & 0xC0 != 0x80 { col += 1 }
        }
        return CLIPDeployError(.json, "not JSON: \(what) at line \(line) column \(col)")
    }

    private mutating func ws() {
        while i < b.count, b[i] == 0x20 || b[i] == 0x09 || b[i] == 0x0A || b[i] == 0x0D { i += 1 }
    }

    private func describe(_ c: UInt8) -> String {
        return c >= 0x21 && c < 0x7F ? "'\(Character(Unicode.Scalar(c)))'" : String(format: "byte 0x%02x", c)
    }

    private mutating func value() throws -> Any {
        guard i < b.count else { throw error("unexpected end") }
        switch b[i] {
        case UInt8(ascii: "{"): return try object()
        case UInt8(ascii: "["): return try array()
        case UInt8(ascii: "\""): return try string()
        case UInt8(ascii: "t"): return try literal("true", NSNumber(value: true))
        case UInt8(ascii: "f"): return try literal("false", NSNumber(value: false))
        case UInt8(ascii: "n"): return try literal("null", NSNull())
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: throw error("unexpected character \(describe(b[i]))")
        }
    }

    private mutating func literal(_ word: String, _ v: Any) throws -> Any {
        let w = Array(word.utf8)
        guard i + w.count <= b.count, Array(b[i..<(i + w.count)]) == w else { throw error("unexpected token") }
        i += w.count
        return v
    }

    private mutating func enter() throws {
        depth += 1
        if depth > JsonParser.maxDepth { throw error("nested deeper than \(JsonParser.maxDepth) levels") }
    }

    private mutating func object() throws -> [String: Any] {
        try enter()
        defer { depth -= 1 }
        i += 1
        var out = [String: Any]()
        ws()
        if i < b.count, b[i] == UInt8(ascii: "}") { i += 1; return out }
        while true {
            ws()
            guard i < b.count, b[i] == UInt8(ascii: "\"") else {
                throw error(i < b.count ? "expected a string key" : "unexpected end in object")
            }
            let key = try string()
            ws()
            guard i < b.count, b[i] == UInt8(ascii: ":") else { throw error("expected ':'") }
            i += 1
            ws()
            out[key] = try value()
            ws()
            guard i < b.count else { throw error("unexpected end in object") }
            let c = b[i]
            i += 1
            if c == UInt8(ascii: "}") { return out }
            if c != UInt8(ascii: ",") { i -= 1; throw error("expected ',' or '}'") }
        }
    }

    private mutating func array() throws -> [Any] {
        try enter()
        defer { depth -= 1 }
        i += 1
        var out = [Any]()
        ws()
        if i < b.count, b[i] == UInt8(ascii: "]") { i += 1; return out }
        while true {
            ws()
            out.append(try value())
            ws()
            guard i < b.count else { throw error("unexpected end in array") }
            let c = b[i]
            i += 1
            if c == UInt8(ascii: "]") { return out }
            if c != UInt8(ascii: ",") { i -= 1; throw error("expected ',' or ']'") }
        }
    }

    private mutating func hex4() throws -> UInt32 {
        guard i + 4 <= b.count else { throw error("bad \\u escape") }
        var v: UInt32 = 0
        for k in 0..<4 {
            let c = b[i + k]
            let d: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = c - UInt8(ascii: "A") + 10
            default: throw error("bad \\u escape")
            }
            v = v << 4 | UInt32(d)
        }
        i += 4
        return v
    }

    private mutating func string() throws -> String {
        let start = i
        i += 1
        var out = [UInt8]()
        var plain = i
        while true {
            guard i < b.count else { i = start; throw error("unterminated string") }
            let c = b[i]
            if c == UInt8(ascii: "\"") { break }
            if c < 0x20 { throw error("control character in string") }
            if c != UInt8(ascii: "\\") { i += 1; continue }
            out.append(contentsOf: b[plain..<i])
            i += 1
            guard i < b.count else { throw error("unterminated escape") }
            let e = b[i]
            i += 1
            switch e {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var cp = try hex4()
                if cp >= 0xD800 && cp < 0xDC00 {
                    guard i + 2 <= b.count, b[i] == UInt8(ascii: "\\"), b[i + 1] == UInt8(ascii: "u") else {
                        throw error("lone surrogate in \\u escape")
                    }
                    i += 2
                    let lo = try hex4()
                    guard lo >= 0xDC00 && lo < 0xE000 else { throw error("lone surrogate in \\u escape") }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
                } else if cp >= 0xDC00 && cp < 0xE000 {
                    throw error("lone surrogate in \\u escape")
                }
                out.append(contentsOf: Array(String(Character(Unicode.Scalar(cp)!)).utf8))
            default:
                i -= 1
                throw error("bad escape '\\\(Character(Unicode.Scalar(e)))'")
            }
            plain = i
        }
        out.append(contentsOf: b[plain..<i])
        i += 1
        guard let s = String(bytes: out, encoding: .utf8) else { i = start; throw error("invalid UTF-8 in string") }
        return s
    }

    private mutating func digits() -> Int {
        let s = i
        while i < b.count, b[i] >= UInt8(ascii: "0"), b[i] <= UInt8(ascii: "9") { i += 1 }
        return i - s
    }

    private mutating func number() throws -> NSNumber {
        let start = i
        func bad() -> CLIPDeployError {
            var end = i
            while end < b.count, b[end] > 0x20, b[end] != UInt8(ascii: ","), b[end] != UInt8(ascii: "]"),
                  b[end] != UInt8(ascii: "}") { end += 1 }
            let t = String(decoding: b[start..<end], as: UTF8.self)
            i = start
            return error("bad number '\(t)'")
        }
        if b[i] == UInt8(ascii: "-") { i += 1 }
        guard i < b.count else { throw bad() }
        if b[i] == UInt8(ascii: "0") {
            i += 1
            if i < b.count, b[i] >= UInt8(ascii: "0"), b[i] <= UInt8(ascii: "9") { throw bad() }   // leading zero
        } else if digits() == 0 {
            throw bad()
        }
        var integral = true
        if i < b.count, b[i] == UInt8(ascii: ".") {
            integral = false
            i += 1
            if digits() == 0 { throw bad() }
        }
        if i < b.count, b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E") {
            integral = false
            i += 1
            if i < b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") { i += 1 }
            if digits() == 0 { throw bad() }
        }
        let t = String(decoding: b[start..<i], as: UTF8.self)
        if integral, let n = Int64(t) { return NSNumber(value: n) }
        guard let d = Double(t), d.isFinite else { throw bad() }
        return NSNumber(value: d)
    }
}
