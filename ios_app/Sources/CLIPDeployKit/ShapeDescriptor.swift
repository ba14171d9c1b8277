import Foundation

/// One dimension descriptor of a manifest artifact's `shapes` (`clipdeploy.models.shapes`; the JVM core's
/// `ShapeDescriptor`): the sizes an input dimension (the batch, a text input's length) accepts.
///
///     {"kind": "fixed",      "values": [77], "reason": "..."}
///     {"kind": "enumerated", "values": [8, 16, 32, 77]}        Core ML EnumeratedShapes
///     {"kind": "dynamic",    "min": 1, "max": 77}               ONNX / ExecuTorch dynamic dim
///     {"kind": "dynamic",    "min": 1, "max": null}             unbounded (ONNX batch)
///
/// `parse` is as strict as Python's `validate`, and its messages name the problem with the same phrase
/// (`goldens/token_lengths.json` "malformed").
public struct ShapeDescriptor: Equatable, CustomStringConvertible {
    public enum Kind: String {
        case fixed, enumerated, dynamic
    }

    public let kind: Kind
    /// fixed / enumerated: the accepted sizes, increasing; dynamic: empty.
    public let values: [Int]
    /// dynamic: the lower bound; fixed / enumerated: the first value.
    public let min: Int
    /// dynamic: the upper bound, nil = unbounded; fixed / enumerated: the last value.
    public let max: Int?
    /// The manifest's "reason" (why a dimension is fixed), or nil. Not part of equality.
    public let reason: String?

    private init(kind: Kind, values: [Int], min: Int, max: Int?, reason: String?) {
        self.kind = kind
        self.values = values
        self.min = min
        self.max = max
        self.reason = reason
    }

    public static func fixed(_ value: Int, reason: String? = nil) -> ShapeDescriptor {
        precondition(value >= 1, "fixed needs a positive size, got \(value)")
        return ShapeDescriptor(kind: .fixed, values: [value], min: value, max: value, reason: reason)
    }

    public static func enumerated(_ values: [Int]) -> ShapeDescriptor {
        let v = Array(Set(values)).sorted()
        precondition(!v.isEmpty && v[0] >= 1, "enumerated needs positive sizes, got \(values)")
        return ShapeDescriptor(kind: .enumerated, values: v, min: v[0], max: v[v.count - 1], reason: nil)
    }

    /// `max` nil: no upper bound.
    public static func dynamic(min: Int, max: Int?) -> ShapeDescriptor {
        precondition(min >= 1 && (max.map { $0 >= min } ?? true), "dynamic needs 1 <= min <= max")
        return ShapeDescriptor(kind: .dynamic, values: [], min: min, max: max, reason: nil)
    }

    public static func == (a: ShapeDescriptor, b: ShapeDescriptor) -> Bool {
        return a.kind == b.kind && a.values == b.values && a.min == b.min && a.max == b.max
    }

    /// A descriptor of the manifest, or a `.bundle` error whose message starts with `what`.
    public static func parse(_ o: Any?, what: String) throws -> ShapeDescriptor {
        let m = o as? [String: Any]
        guard let m = m, let k = m["kind"] as? String, let kind = Kind(rawValue: k) else {
            throw CLIPDeployError(.bundle, "\(what): a shape descriptor needs kind one of fixed, enumerated, dynamic, "
                                  + "got \(repr(o))")
        }
        let reason = m["reason"] as? String
        if kind == .dynamic {
            guard let lo = positiveInt(m["min"]) else {
                throw CLIPDeployError(.bundle, "\(what): dynamic needs an integer 'min' >= 1, got \(repr(m["min"]))")
            }
            var hi: Int? = nil
            if !Json.isNull(m["max"]) {
                guard let h = positiveInt(m["max"]), h >= lo else {
                    throw CLIPDeployError(.bundle, "\(what): dynamic 'max' must be null or an integer >= min (\(lo)), "
                                          + "got \(repr(m["max"]))")
                }
                hi = h
            }
            return ShapeDescriptor(kind: .dynamic, values: [], min: lo, max: hi, reason: reason)
        }
        let list = m["values"] as? [Any]
        let ints = (list ?? []).compactMap { positiveInt($0) }
        guard let l = list, !l.isEmpty, ints.count == l.count else {
            throw CLIPDeployError(.bundle, "\(what): \(kind.rawValue) needs 'values', a non-empty list of positive "
                                  + "integers, got \(repr(m["values"]))")
        }
        if kind == .fixed && ints.count != 1 {
            throw CLIPDeployError(.bundle, "\(what): fixed takes exactly one value, got \(repr(m["values"]))")
        }
        for k in 1..<Swift.max(1, ints.count) where ints[k] <= ints[k - 1] {
            throw CLIPDeployError(.bundle, "\(what): enumerated values must be increasing and distinct, got "
                                  + "\(repr(m["values"]))")
        }
        return ShapeDescriptor(kind: kind, values: ints, min: ints[0], max: ints[ints.count - 1], reason: reason)
    }

    /// A JSON integer (not a boolean, not a number written with a fraction or exponent) in 1 ... 2^31 - 1.
    static func positiveInt(_ v: Any?) -> Int? {
        guard let n = Json.number(of: v) else { return nil }
        let t = String(cString: n.objCType)
        guard t != "d", t != "f" else { return nil }
        let x = n.int64Value
        guard x >= 1, x <= Int64(Int32.max) else { return nil }
        return Int(x)
    }

    private static func repr(_ o: Any?) -> String {
        if Json.isNull(o) { return "null" }
        if let s = o as? String { return "'\(s)'" }
        if let n = Json.number(of: o) { return n.stringValue }
        if let b = Json.bool(o) { return b ? "true" : "false" }
        guard let v = o else { return "null" }
        if let text = try? Json.write(v, pretty: false) { return text }
        return String(describing: v)
    }

    public var isDynamic: Bool { kind == .dynamic }

    public func accepts(_ n: Int) -> Bool {
        if kind == .dynamic { return n >= min && (max.map { n <= $0 } ?? true) }
        return values.contains(n)
    }

    /// The largest accepted size, nil when unbounded.
    public var largest: Int? { max }

    /// The shortest accepted size that holds `n` (`shapes.shortest_accepted`): dynamic `max(n, min)` capped at
    /// max; fixed / enumerated the smallest value >= n, else the largest.
    public func shortestAccepted(_ n: Int) throws -> Int {
        guard n >= 1 else {
            throw CLIPDeployError(.tokenizer, "a caption has at least one token (SOT), got \(n)")
        }
        if kind == .dynamic {
            let s = Swift.max(n, min)
            return max.map { Swift.min(s, $0) } ?? s
        }
        return values.first { $0 >= n } ?? values[values.count - 1]
    }

    /// The manifest form.
    public func toJson() -> [String: Any] {
        var m: [String: Any] = ["kind": kind.rawValue]
        if kind == .dynamic {
            m["min"] = min
            m["max"] = max.map { $0 as Any } ?? NSNull()
        } else {
            m["values"] = values
        }
        if let r = reason { m["reason"] = r }
        return m
    }

    /// "fixed [77]", "enumerated [8, 16, 32, 77]", "dynamic 1..77", "dynamic 1..".
    public var description: String {
        if kind == .dynamic { return "dynamic \(min)..\(max.map(String.init) ?? "")" }
        return "\(kind.rawValue) \(values)"
    }
}

/// A manifest artifact's `shapes` (the JVM core's `ArtifactShapes`): `{"batch": D}` for an image encoder,
/// `{"batch": D, "length": D}` for a text encoder. Bundles written before the key existed get the shapes every
/// artifact had then: batch fixed [1], text length fixed [77].
public struct ArtifactShapes: Equatable, CustomStringConvertible {
    public static let defaultLength = CLIPTokenizer.defaultContextLength

    public let batch: ShapeDescriptor
    /// The text input's length; nil for an image encoder.
    public let length: ShapeDescriptor?
    /// Whether the manifest had the key (false: the defaults).
    public let declared: Bool

    public init(batch: ShapeDescriptor, length: ShapeDescriptor?, declared: Bool = true) {
        self.batch = batch
        self.length = length
        self.declared = declared
    }

    /// What an artifact without `shapes` takes: batch 1; a text encoder 77 positions.
    public static func defaults(encoder: String) -> ArtifactShapes {
        return ArtifactShapes(batch: .fixed(1), length: encoder == "text" ? .fixed(defaultLength) : nil,
                              declared: false)
    }

    /// The manifest's `shapes` of an artifact of `encoder`, strictly: absent (nil / null) is `defaults`; present,
    /// an object with a well-formed "batch" and, for a text encoder, "length" (errors start with `what.batch`
    /// etc.). Other keys are ignored.
    public static func parse(_ shapes: Any?, encoder: String, what: String) throws -> ArtifactShapes {
        if Json.isNull(shapes) { return defaults(encoder: encoder) }
        guard let m = shapes as? [String: Any] else {
            throw CLIPDeployError(.bundle, "\(what): must be an object {\"batch\": ...}, got \(Json.kind(shapes))")
        }
        guard m["batch"] != nil else { throw CLIPDeployError(.bundle, "\(what): has no 'batch'") }
        let batch = try ShapeDescriptor.parse(m["batch"], what: "\(what).batch")
        var length: ShapeDescriptor? = nil
        if encoder == "text" {
            guard m["length"] != nil else {
                throw CLIPDeployError(.bundle, "\(what): a text encoder's shapes have no 'length'")
            }
            length = try ShapeDescriptor.parse(m["length"], what: "\(what).length")
        }
        return ArtifactShapes(batch: batch, length: length, declared: true)
    }

    /// A 0-padded id row (e.g. the probe's [77]) as this text artifact takes it: unchanged when its length is
    /// accepted, else cut to the shortest accepted length that holds its tokens (up to the last non-zero id), EOT
    /// kept last when that cuts tokens, or 0-padded to a longer accepted length.
    public func fitIds(_ ids: [Int32]) throws -> [Int32] {
        guard let length = length else { throw CLIPDeployError(.encoder, "an image artifact takes no token ids") }
        if length.accepts(ids.count) { return ids }
        let n = (ids.lastIndex { $0 != 0 } ?? 0) + 1
        let l = try length.shortestAccepted(n)
        var out = Array(ids.prefix(l))
        if out.count < l { out += [Int32](repeating: 0, count: l - out.count) }
        if l < n { out[l - 1] = CLIPTokenizer.eot }
        return out
    }

    public var description: String {
        return "batch \(batch)" + (length.map { ", length \($0)" } ?? "") + (declared ? "" : " (default)")
    }
}
