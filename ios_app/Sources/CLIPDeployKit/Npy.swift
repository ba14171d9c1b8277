import Foundation

/// Reader (and a small writer) for NumPy `.npy` files, format 1.0-3.0, C order, little-endian
/// `<f4 <f8 <i4 <i8 |u1 |i1 |b1`: the bundle's probe inputs and reference embeddings, the reference
/// model's weights and the goldens' expected tensors. Mirrors the JVM core's `Npy`.
public struct Npy {
    /// The largest `.npy` header this reader parses.
    public static let maxHeader = 1 << 16
    /// At most this many dimensions.
    public static let maxDims = 32
    /// A dimension larger than this is refused (no real array has one; it keeps the arithmetic far from overflow).
    public static let maxDim = 1 << 40
    /// The most data bytes an array may hold (what `read(contentsOf:)` reads by default, and the cap of `read(_:)`).
    public static let maxDataBytes = 1 << 31
    /// An array without data (a zero dimension) may still have at most this many rows along its first axis.
    public static let maxEmptyRows = 1 << 16

    public let shape: [Int]
    public let dtype: String
    /// The raw little-endian element bytes (count * item size), starting at index 0.
    let payload: [UInt8]

    public var count: Int { shape.reduce(1, *) }

    /// The array in a file of at most `maxBytes` (checked with a stat before anything is read). Failures are
    /// one-line `.malformedArray` errors (`.unreadable` for I/O) starting with the path.
    public static func read(contentsOf url: URL, maxBytes: Int = Npy.maxDataBytes + Npy.maxHeader + 12) throws -> Npy {
        let data = try FileIO.read(url, maxBytes: maxBytes, tooLarge: .malformedArray)
        do {
            return try read(data)
        } catch let e as CLIPDeployError {
            throw CLIPDeployError(e.kind, "\(url.path): \(e.message)")
        }
    }

    /// The array in `data`: magic, version 1/2/3, a header dict of exactly `descr` (a supported dtype),
    /// `fortran_order` (False) and `shape` (a tuple of non-negative ints), and exactly count * itemsize bytes
    /// after the header (computed overflow-safe; truncated or trailing data refused) — all checked before the
    /// element bytes are copied, so a header's claim never sizes an allocation.
    public static func read(_ data: Data) throws -> Npy {
        let (dtype, shape, offset, need) = try header(data)
        let payload = [UInt8](data[(data.startIndex + offset)..<(data.startIndex + offset + need)])
        return Npy(shape: shape, dtype: dtype, payload: payload)
    }

    static func bad(_ what: String) -> CLIPDeployError {
        return CLIPDeployError(.malformedArray, what)
    }

    /// (dtype, shape, data offset, data bytes) of a whole `.npy` file in memory.
    static func header(_ data: Data) throws -> (String, [Int], Int, Int) {
        let total = data.count
        let s = data.startIndex
        func byte(_ k: Int) -> UInt8 { data[s + k] }
        let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]   // \x93NUMPY
        guard total >= 10, (0..<6).allSatisfy({ byte($0) == magic[$0] }) else {
            throw bad("not a .npy file (no \\x93NUMPY magic)")
        }
        let major = Int(byte(6)), minor = Int(byte(7))
        let headerLen: Int
        let start: Int
        switch major {
        case 1:
            headerLen = Int(byte(8)) | Int(byte(9)) << 8
            start = 10
        case 2, 3:
            guard total >= 12 else { throw bad("truncated .npy header") }
            headerLen = Int(byte(8)) | Int(byte(9)) << 8 | Int(byte(10)) << 16 | Int(byte(11)) << 24
            start = 12
        default:
            throw bad(".npy format version \(major).\(minor) is not supported (1.0, 2.0, 3.0)")
        }
        guard headerLen <= maxHeader else {
            throw bad(".npy header of \(headerLen) bytes is larger than \(maxHeader)")
        }
        guard start + headerLen <= total else { throw bad("truncated .npy header") }
        let raw = data[(s + start)..<(s + start + headerLen)]
        // latin-1 in format 1/2 (every byte is a character), UTF-8 in 3
        let text: [Unicode.Scalar]
        if major == 3 {
            guard let t = String(bytes: raw, encoding: .utf8) else { throw bad(".npy header is not UTF-8") }
            text = Array(t.unicodeScalars)
        } else {
            text = raw.map { Unicode.Scalar($0) }
        }
        var h = HeaderParser(text)
        try h.dict()
        guard let descr = h.descr, let shape = h.shape else {
            throw bad(".npy header must have 'descr', 'fortran_order' and 'shape'")
        }
        let item = try itemSize(descr)
        func shapeText() -> String { "(" + shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? ",)" : ")") }
        var count = 1
        for d in shape {
            let (c, o) = count.multipliedReportingOverflow(by: d)
            guard !o, c <= maxDataBytes else {
                throw bad(".npy shape \(shapeText()) of \(descr) is larger than the \(maxDataBytes) bytes this reader holds")
            }
            count = c
        }
        let (need, o) = count.multipliedReportingOverflow(by: item)
        guard !o, need <= maxDataBytes else {
            throw bad(".npy shape \(shapeText()) of \(descr) is larger than the \(maxDataBytes) bytes this reader holds")
        }
        if count == 0, let rows = shape.first, rows > maxEmptyRows {
            throw bad(".npy shape \(shapeText()) has no data but \(rows) rows (at most \(maxEmptyRows))")
        }
        let offset = start + headerLen
        let have = total - offset
        guard have == need else {
            let what = have < need ? "is truncated" : "has trailing bytes"
            throw bad(".npy file \(what): shape \(shapeText()) of \(descr) needs \(need) bytes of data, the file has \(have)")
        }
        return (descr, shape, offset, need)
    }

    /// The header dict literal numpy writes: `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }` and
    /// padding; exactly those three keys, each once, nothing after the dict but whitespace.
    struct HeaderParser {
        let s: [Unicode.Scalar]
        var i = 0
        var descr: String?
        var fortran: Bool?
        var shape: [Int]?

        init(_ s: [Unicode.Scalar]) { self.s = s }

        func bad(_ what: String) -> CLIPDeployError {
            return Npy.bad(".npy header is not the dict numpy writes (\(what))")
        }

        mutating func ws() {
            while i < s.count, s[i] == " " || s[i] == "\t" || s[i] == "\n" || s[i] == "\r" { i += 1 }
        }

        mutating func eat(_ c: Unicode.Scalar) -> Bool {
            ws()
            if i < s.count, s[i] == c {
                i += 1
                return true
            }
            return false
        }

        mutating func dict() throws {
            guard eat("{") else { throw bad("no '{'") }
            while true {
                if eat("}") { break }
                let key = try str()
                guard eat(":") else { throw bad("no ':' after '\(key.prefix(40))'") }
                switch key {
                case "descr":
                    guard descr == nil else { throw bad("'descr' twice") }
                    descr = try str()
                case "fortran_order":
                    guard fortran == nil else { throw bad("'fortran_order' twice") }
                    fortran = try bool()
                case "shape":
                    guard shape == nil else { throw bad("'shape' twice") }
                    shape = try tuple()
                default:
                    throw bad("unexpected key '\(key.prefix(40))'")
                }
                if eat("}") { break }
                guard eat(",") else { throw bad("no ',' between entries") }
            }
            ws()
            guard i == s.count else { throw bad("characters after the dict") }
            guard descr != nil, fortran != nil, shape != nil else {
                throw Npy.bad(".npy header must have 'descr', 'fortran_order' and 'shape'")
            }
            if fortran == true { throw Npy.bad(".npy arrays in Fortran order are not supported (write C order)") }
        }

        mutating func str() throws -> String {
            ws()
            guard i < s.count, s[i] == "'" || s[i] == "\"" else { throw bad("expected a quoted key or string") }
            let q = s[i]
            i += 1
            var out = String.UnicodeScalarView()
            while i < s.count, s[i] != q {
                if s[i] == "\\" || s[i] == "\n" { throw bad("escape or newline in a string") }
                if out.count >= 256 { throw bad("a string longer than 256 characters") }
                out.append(s[i])
                i += 1
            }
            guard i < s.count else { throw bad("unterminated string") }
            i += 1
            return String(out)
        }

        mutating func bool() throws -> Bool {
            ws()
            func word(_ w: String) -> Bool {
                let ws = Array(w.unicodeScalars)
                guard i + ws.count <= s.count, Array(s[i..<(i + ws.count)]) == ws else { return false }
                i += ws.count
                return true
            }
            if word("False") { return false }
            if word("True") { return true }
            throw bad("fortran_order is not True or False")
        }

        mutating func tuple() throws -> [Int] {
            guard eat("(") else { throw bad("shape is not a tuple") }
            var dims: [Int] = []
            var comma = true
            while true {
                if eat(")") { break }
                guard comma else { throw bad("no ',' between dimensions") }
                guard dims.count < Npy.maxDims else {
                    throw Npy.bad(".npy shape has more than \(Npy.maxDims) dimensions")
                }
                dims.append(try dim())
                comma = eat(",")
            }
            if dims.count == 1 && !comma { throw bad("a one-dimension shape needs a trailing ',': (n,)") }
            return dims
        }

        mutating func dim() throws -> Int {
            ws()
            if i < s.count, s[i] == "-" { throw Npy.bad(".npy shape has a negative dimension") }
            let start = i
            var v = 0
            while i < s.count, let d = Int(exactly: s[i].value), d >= 0x30, d <= 0x39 {
                v = v * 10 + (d - 0x30)
                if v > Npy.maxDim { throw Npy.bad(".npy shape has a dimension beyond \(Npy.maxDim)") }
                i += 1
            }
            guard i > start else { throw bad("a dimension is not a non-negative integer") }
            return v
        }
    }

    static func itemSize(_ dtype: String) throws -> Int {
        switch dtype {
        case "<f4", "<i4": return 4
        case "<f8", "<i8": return 8
        case "|u1", "|i1", "|b1": return 1
        default:
            throw CLIPDeployError(.malformedArray, ".npy dtype '\(dtype)' is not supported (<f4, <f8, <i4, <i8, |u1, |i1, |b1)")
        }
    }

    // MARK: element access

    private func u32(_ k: Int) -> UInt32 {
        let o = 4 * k
        return UInt32(payload[o]) | UInt32(payload[o + 1]) << 8 | UInt32(payload[o + 2]) << 16
            | UInt32(payload[o + 3]) << 24
    }

    private func u64(_ k: Int) -> UInt64 {
        let o = 8 * k
        var v: UInt64 = 0
        for b in 0..<8 { v |= UInt64(payload[o + b]) << (8 * UInt64(b)) }
        return v
    }

    /// Every element as Float32 (integers converted, float64 rounded).
    public func floats() -> [Float] {
        let n = count
        var out = [Float](repeating: 0, count: n)
        switch dtype {
        case "<f4": for k in 0..<n { out[k] = Float(bitPattern: u32(k)) }
        case "<f8": for k in 0..<n { out[k] = Float(Double(bitPattern: u64(k))) }
        case "<i4": for k in 0..<n { out[k] = Float(Int32(bitPattern: u32(k))) }
        case "<i8": for k in 0..<n { out[k] = Float(Int64(bitPattern: u64(k))) }
        case "|u1": for k in 0..<n { out[k] = Float(payload[k]) }
        default: for k in 0..<n { out[k] = Float(Int8(bitPattern: payload[k])) }
        }
        return out
    }

    /// Every element as Float64.
    public func doubles() -> [Double] {
        if dtype == "<f8" { return (0..<count).map { Double(bitPattern: u64($0)) } }
        return floats().map { Double($0) }
    }

    /// Every element as Int32 (integer dtypes only).
    public func ints() throws -> [Int32] {
        let n = count
        var out = [Int32](repeating: 0, count: n)
        switch dtype {
        case "<i4":
            for k in 0..<n { out[k] = Int32(bitPattern: u32(k)) }
        case "<i8":
            for k in 0..<n {
                let v = Int64(bitPattern: u64(k))
                guard let x = Int32(exactly: v) else { throw CLIPDeployError(.npy, "int64 value \(v) does not fit int32") }
                out[k] = x
            }
        case "|u1":
            for k in 0..<n { out[k] = Int32(payload[k]) }
        case "|i1", "|b1":
            for k in 0..<n { out[k] = Int32(Int8(bitPattern: payload[k])) }
        default:
            throw CLIPDeployError(.npy, "ints() of a \(dtype) array")
        }
        return out
    }

    /// The raw bytes of a `|u1` array.
    public func bytes() throws -> [UInt8] {
        guard dtype == "|u1" else { throw CLIPDeployError(.npy, "bytes() of a \(dtype) array") }
        return payload
    }

    /// The array as rows along its first axis, each flattened (e.g. [N,3,R,R] -> N rows of 3*R*R).
    public func rows() -> [[Float]] {
        return Npy.split(floats(), rows: shape.first ?? 1)
    }

    public func intRows() throws -> [[Int32]] {
        return Npy.split(try ints(), rows: shape.first ?? 1)
    }

    static func split<T>(_ all: [T], rows n: Int) -> [[T]] {
        guard n > 0 else { return [] }
        let per = all.count / n
        return (0..<n).map { r in Array(all[(r * per)..<((r + 1) * per)]) }
    }

    // MARK: writing (tests and tools)

    /// A version-1.0 `.npy` file of float32 values in C order.
    public static func encode(floats values: [Float], shape: [Int]) throws -> Data {
        guard shape.reduce(1, *) == values.count else {
            throw CLIPDeployError(.npy, "\(values.count) values do not fill shape \(shape)")
        }
        let dims = shape.map { String($0) }.joined(separator: ", ") + (shape.count == 1 ? "," : "")
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(dims)), }"
        // magic (6) + version (2) + header length (2) + header + '\n', padded to a multiple of 64
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var out: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0]
        let len = header.utf8.count
        out.append(UInt8(len & 0xff))
        out.append(UInt8(len >> 8))
        out.append(contentsOf: Array(header.utf8))
        out.reserveCapacity(out.count + 4 * values.count)
        for v in values {
            let b = v.bitPattern
            out.append(UInt8(b & 0xff))
            out.append(UInt8((b >> 8) & 0xff))
            out.append(UInt8((b >> 16) & 0xff))
            out.append(UInt8(b >> 24))
        }
        return Data(out)
    }
}
