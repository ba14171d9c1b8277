import Foundation

/// Reader (and a small writer) for NumPy `.npy` files, format 1.0-3.0, C order, little-endian
/// `<f4 <f8 <i4 <i8 |u1 |i1 |b1`: the bundle's probe inputs and reference embeddings, the reference
/// model's weights and the goldens' expected tensors. Mirrors the JVM core's `Npy`.
public struct Npy {
    public let shape: [Int]
    public let dtype: String
    /// The raw little-endian element bytes (count * item size), starting at index 0.
    let payload: [UInt8]

    public var count: Int { shape.reduce(1, *) }

    public static func read(contentsOf url: URL) throws -> Npy {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw CLIPDeployError(.npy, "\(url.path): cannot read (\((error as NSError).localizedDescription))")
        }
        do {
            return try read(data)
        } catch let e as CLIPDeployError {
            throw CLIPDeployError(.npy, "\(url.path): \(e.message)")
        }
    }

    public static func read(_ data: Data) throws -> Npy {
        let all = [UInt8](data)
        let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]   // \x93NUMPY
        guard all.count >= 10, Array(all[0..<6]) == magic else {
            throw CLIPDeployError(.npy, "not a .npy file (bad magic)")
        }
        let major = Int(all[6])
        let headerLen: Int
        let offset: Int
        switch major {
        case 1:
            headerLen = Int(all[8]) | Int(all[9]) << 8
            offset = 10
        case 2, 3:
            guard all.count >= 12 else { throw CLIPDeployError(.npy, "truncated .npy header") }
            headerLen = Int(all[8]) | Int(all[9]) << 8 | Int(all[10]) << 16 | Int(all[11]) << 24
            offset = 12
        default:
            throw CLIPDeployError(.npy, "unsupported .npy version \(major)")
        }
        guard all.count >= offset + headerLen else { throw CLIPDeployError(.npy, "truncated .npy header") }
        // The header is an ASCII Python dict literal (latin-1 in format 1/2, UTF-8 in 3).
        let header = String(decoding: all[offset..<(offset + headerLen)], as: UTF8.self)
        guard let descr = quotedValue(of: "descr", in: header),
              let order = bareValue(of: "fortran_order", in: header),
              let shapeText = tupleValue(of: "shape", in: header) else {
            throw CLIPDeployError(.npy, "bad .npy header: \(header.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        if order == "True" { throw CLIPDeployError(.npy, ".npy in Fortran order is not supported") }
        var shape: [Int] = []
        for part in shapeText.split(separator: ",") {
            let t = part.trimmingCharacters(in: .whitespaces)
            if t.isEmpty { continue }
            guard let d = Int(t), d >= 0 else { throw CLIPDeployError(.npy, "bad .npy shape (\(shapeText))") }
            shape.append(d)
        }
        let size = try itemSize(descr)
        let count = shape.reduce(1, *)
        let start = offset + headerLen
        guard all.count - start >= count * size else {
            throw CLIPDeployError(.npy, "truncated .npy: \(all.count - start) data bytes, expected \(count * size)")
        }
        return Npy(shape: shape, dtype: descr, payload: Array(all[start..<(start + count * size)]))
    }

    static func itemSize(_ dtype: String) throws -> Int {
        switch dtype {
        case "<f4", "<i4": return 4
        case "<f8", "<i8": return 8
        case "|u1", "|i1", "|b1": return 1
        default:
            throw CLIPDeployError(.npy, "unsupported .npy dtype \(dtype) (little-endian f4/f8/i4/i8/u1 only)")
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

    // MARK: header parsing

    private static func valueStart(of key: String, in header: String) -> String.Index? {
        guard let r = header.range(of: "'\(key)'") else { return nil }
        var i = r.upperBound
        while i < header.endIndex, header[i] == " " { i = header.index(after: i) }
        guard i < header.endIndex, header[i] == ":" else { return nil }
        i = header.index(after: i)
        while i < header.endIndex, header[i] == " " { i = header.index(after: i) }
        return i
    }

    static func quotedValue(of key: String, in header: String) -> String? {
        guard let s = valueStart(of: key, in: header), s < header.endIndex, header[s] == "'" else { return nil }
        let from = header.index(after: s)
        guard let end = header[from...].firstIndex(of: "'") else { return nil }
        return String(header[from..<end])
    }

    static func bareValue(of key: String, in header: String) -> String? {
        guard let s = valueStart(of: key, in: header) else { return nil }
        let end = header[s...].firstIndex(where: { $0 == "," || $0 == "}" || $0 == " " }) ?? header.endIndex
        let v = String(header[s..<end])
        return v.isEmpty ? nil : v
    }

    static func tupleValue(of key: String, in header: String) -> String? {
        guard let s = valueStart(of: key, in: header), s < header.endIndex, header[s] == "(" else { return nil }
        let from = header.index(after: s)
        guard let end = header[from...].firstIndex(of: ")") else { return nil }
        return String(header[from..<end])
    }
}
