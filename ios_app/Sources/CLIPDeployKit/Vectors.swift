import Foundation

/// Small vector helpers on embeddings (the JVM core's `Vectors`).
public enum Vectors {
    /// Dot product accumulated in double.
    public static func dot(_ a: [Float], _ b: [Float]) -> Double {
        precondition(a.count == b.count, "dimension \(a.count) != \(b.count)")
        var s = 0.0
        for k in 0..<a.count { s += Double(a[k]) * Double(b[k]) }
        return s
    }

    public static func norm(_ a: [Float]) -> Double {
        return dot(a, a).squareRoot()
    }

    /// `a / max(|a|, 1e-12)` (norm in double, each element rounded to float).
    public static func l2normalize(_ a: [Float]) -> [Float] {
        let n = max(norm(a), 1e-12)
        return a.map { Float(Double($0) / n) }
    }

    /// The unit vector in double (`a / max(|a|, 1e-12)`).
    static func unit(_ a: [Float]) -> [Double] {
        var n = 0.0
        for v in a { n += Double(v) * Double(v) }
        n = max(n.squareRoot(), 1e-12)
        return a.map { Double($0) / n }
    }

    /// Index of the largest value, the first one on ties (numpy's argmax).
    public static func argmax(_ v: [Double]) -> Int {
        var best = 0
        for k in 1..<max(v.count, 1) where v[k] > v[best] { best = k }
        return best
    }

    public static func argmax(_ v: [Float]) -> Int {
        var best = 0
        for k in 1..<max(v.count, 1) where v[k] > v[best] { best = k }
        return best
    }

    public static func allFinite(_ v: [Float]) -> Bool {
        return v.allSatisfy { $0.isFinite }
    }
}
