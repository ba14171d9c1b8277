import Foundation

/// JSON read by the kit's strict `JsonParser` (the same on every platform, errors with line and column) and
/// written through Foundation's `JSONSerialization`, with the typed accessors the JVM core's `Json` has.
///
/// Parsed values are `[String: Any]`, `[Any]`, `String`, `NSNumber` (numbers and booleans) and `NSNull`.
/// Writing turns non-finite numbers and `nil` into `null` (the report schema's convention) and never hands
/// `JSONSerialization` an invalid object (which would raise an Objective-C exception).
public enum Json {
    // MARK: read

    /// The input limit of `parse` (32 MiB), checked before anything is parsed.
    public static let maxBytes = JsonParser.maxBytes
    /// Nesting deeper than this is an error (not a stack overflow).
    public static let maxDepth = JsonParser.maxDepth

    /// Strict JSON of at most `maxBytes`; every failure is a one-line `.json` error.
    public static func parse(_ data: Data, maxBytes: Int = Json.maxBytes) throws -> Any {
        return try JsonParser.parse(data, maxBytes: maxBytes)
    }

    public static func parse(string: String) throws -> Any {
        return try parse(Data(string.utf8))
    }

    /// A file of at most `maxBytes` (its size checked before it is read).
    public static func parse(contentsOf url: URL, maxBytes: Int = Json.maxBytes) throws -> Any {
        let data: Data
        do {
            data = try FileIO.read(url, maxBytes: maxBytes)
        } catch let e as CLIPDeployError {
            throw CLIPDeployError(.json, e.message)
        } catch {
            throw CLIPDeployError(.json, "\(url.path): cannot read (\((error as NSError).localizedDescription))")
        }
        do {
            return try parse(data, maxBytes: maxBytes)
        } catch let e as CLIPDeployError {
            throw CLIPDeployError(.json, "\(url.path): \(e.message)")
        }
    }

    // MARK: typed access (throwing, with the kind of value found)

    public static func map(_ value: Any?) throws -> [String: Any] {
        guard let m = value as? [String: Any] else {
            throw CLIPDeployError(.json, "expected a JSON object, got \(kind(value))")
        }
        return m
    }

    public static func list(_ value: Any?) throws -> [Any] {
        guard let l = value as? [Any] else {
            throw CLIPDeployError(.json, "expected a JSON array, got \(kind(value))")
        }
        return l
    }

    public static func num(_ value: Any?) throws -> Double {
        guard let n = number(of: value) else {
            throw CLIPDeployError(.json, "expected a number, got \(kind(value))")
        }
        return n.doubleValue
    }

    /// A number, or NaN for JSON null (non-finite values are written as null).
    public static func numOrNaN(_ value: Any?) throws -> Double {
        return isNull(value) ? Double.nan : try num(value)
    }

    /// A JSON integer (written without a fraction or exponent; not a boolean) as Int64, else nil.
    public static func integer(of value: Any?) -> Int64? {
        guard let n = number(of: value) else { return nil }
        let t = String(cString: n.objCType)
        guard t != "d", t != "f" else { return nil }
        return n.int64Value
    }

    public static func int(_ value: Any?) throws -> Int {
        let d = try num(value)
        guard d.isFinite, d == d.rounded(.towardZero), abs(d) < 9.0e15 else {
            throw CLIPDeployError(.json, "expected an integer, got \(d)")
        }
        return Int(d)
    }

    public static func str(_ value: Any?) throws -> String {
        guard let s = value as? String else {
            throw CLIPDeployError(.json, "expected a string, got \(kind(value))")
        }
        return s
    }

    public static func floats(_ value: Any?) throws -> [Float] {
        return try list(value).map { try Float(numOrNaN($0)) }
    }

    public static func doubles(_ value: Any?) throws -> [Double] {
        return try list(value).map { try numOrNaN($0) }
    }

    public static func ints(_ value: Any?) throws -> [Int] {
        return try list(value).map { try int($0) }
    }

    public static func floatRows(_ value: Any?) throws -> [[Float]] {
        return try list(value).map { try floats($0) }
    }

    public static func strings(_ value: Any?) throws -> [String] {
        return try list(value).map { try str($0) }
    }

    // MARK: lenient access

    /// `nil` or `NSNull`.
    public static func isNull(_ value: Any?) -> Bool {
        guard let v = value else { return true }
        return v is NSNull
    }

    public static func optionalString(_ value: Any?) -> String? {
        return value as? String
    }

    public static func optionalNumber(_ value: Any?) -> Double? {
        return number(of: value)?.doubleValue
    }

    public static func bool(_ value: Any?) -> Bool? {
        guard let n = value as? NSNumber, isBoolean(n) else { return nil }
        return n.boolValue
    }

    /// A JSON number value: `NSNull` for `nil` and non-finite doubles.
    public static func number(_ value: Double?) -> Any {
        guard let v = value, v.isFinite else { return NSNull() }
        return v
    }

    /// `NSNull` for `nil`.
    public static func orNull(_ value: Any?) -> Any {
        return value ?? NSNull()
    }

    // MARK: write

    /// UTF-8 JSON of `value` (sorted keys; `pretty`: indented). Non-finite numbers become null.
    public static func data(_ value: Any, pretty: Bool) throws -> Data {
        let clean = sanitized(value)
        guard JSONSerialization.isValidJSONObject(clean) else {
            throw CLIPDeployError(.json, "cannot write \(type(of: value)) as a JSON document")
        }
        var options: JSONSerialization.WritingOptions = [.sortedKeys, .withoutEscapingSlashes]
        if pretty { options.insert(.prettyPrinted) }
        do {
            return try JSONSerialization.data(withJSONObject: clean, options: options)
        } catch {
            throw CLIPDeployError(.json, "cannot write JSON: \((error as NSError).localizedDescription)")
        }
    }

    public static func write(_ value: Any, pretty: Bool) throws -> String {
        return String(decoding: try data(value, pretty: pretty), as: UTF8.self)
    }

    /// A copy of `value` that `JSONSerialization` accepts: optionals unwrapped (`nil` -> null), non-finite
    /// numbers -> null, numeric arrays of any Swift element type -> arrays of numbers.
    public static func sanitized(_ value: Any?) -> Any {
        guard let v = unwrap(value) else { return NSNull() }
        if v is NSNull { return v }
        if let s = v as? String { return s }
        if let n = v as? NSNumber {
            if isBoolean(n) { return n }
            return n.doubleValue.isFinite ? n : NSNull()
        }
        if let d = v as? [String: Any] {
            var out = [String: Any](minimumCapacity: d.count)
            for (k, x) in d { out[k] = sanitized(x) }
            return out
        }
        if let a = v as? [Any] {
            return a.map { sanitized($0) }
        }
        return String(describing: v)
    }

    // MARK: helpers

    static func isBoolean(_ n: NSNumber) -> Bool {
        #if canImport(Darwin)
        return CFGetTypeID(n) == CFBooleanGetTypeID()
        #else
        // swift-corelibs-foundation has no CFBoolean bridge: a JSON true/false is an NSNumber of Bool
        return String(cString: n.objCType) == "c"
        #endif
    }

    /// The value as a number; booleans are not numbers.
    static func number(of value: Any?) -> NSNumber? {
        guard let v = unwrap(value), let n = v as? NSNumber, !isBoolean(n) else { return nil }
        return n
    }

    private static func unwrap(_ value: Any?) -> Any? {
        guard let v = value else { return nil }
        let mirror = Mirror(reflecting: v)
        if mirror.displayStyle == .optional {
            guard let child = mirror.children.first else { return nil }
            return unwrap(child.value)
        }
        return v
    }

    static func kind(_ value: Any?) -> String {
        guard let v = unwrap(value), !(v is NSNull) else { return "null" }
        if v is [String: Any] { return "an object" }
        if v is [Any] { return "an array" }
        if v is String { return "a string" }
        if let n = v as? NSNumber { return isBoolean(n) ? "a boolean" : "a number" }
        return String(describing: type(of: v))
    }
}
