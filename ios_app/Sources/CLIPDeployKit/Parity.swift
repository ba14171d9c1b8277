import Foundation

/// Parity of embeddings against reference embeddings, with clip-latency's definitions and bars
/// (`clipdeploy.latency.parity`, the JVM core's `Parity`): max abs error, cosine (min, mean), zero-shot
/// top-1 agreement against the other tower's reference (a top-1 within `zeroShotTie` of the reference's own
/// top-1 similarity is a tie, not a disagreement). Never cosine alone.
public enum Parity {
    public static let fp32MaxAbs = 1e-5
    public static let fp16MaxAbs = 1.5e-3
    public static let fp16MinCosine = 0.99995
    public static let minZeroShotAgreement = 1.0
    /// Reference similarities this close to the top-1 are a tie, not a zero-shot disagreement.
    public static let zeroShotTie = 1e-4
    public static let int8MinCosine = 0.999
    public static let int8MinZeroShotAgreement = 0.99

    /// The bars of one precision.
    public struct Thresholds: Equatable {
        public let maxAbs: Double?          // nil: no max-abs bar (int8)
        public let minCosine: Double?
        public let zeroShotAgreement: Double

        public static let fp32 = Thresholds(maxAbs: Parity.fp32MaxAbs, minCosine: nil,
                                            zeroShotAgreement: Parity.minZeroShotAgreement)
        public static let fp16 = Thresholds(maxAbs: Parity.fp16MaxAbs, minCosine: Parity.fp16MinCosine,
                                            zeroShotAgreement: Parity.minZeroShotAgreement)
        public static let int8 = Thresholds(maxAbs: nil, minCosine: Parity.int8MinCosine,
                                            zeroShotAgreement: Parity.int8MinZeroShotAgreement)

        public static func of(_ precision: String) throws -> Thresholds {
            switch precision {
            case "fp32": return .fp32
            case "fp16": return .fp16
            case "int8": return .int8
            default:
                throw CLIPDeployError(.parity, "no parity bars for precision '\(precision)' (fp32, fp16 or int8)")
            }
        }
    }

    public struct Figures: Equatable {
        public let maxAbs: Double
        public let cosineMin: Double
        public let cosineMean: Double
        public let zeroShotAgreement: Double
        public let n: Int
        public let finite: Bool

        public init(maxAbs: Double, cosineMin: Double, cosineMean: Double, zeroShotAgreement: Double, n: Int,
                    finite: Bool) {
            self.maxAbs = maxAbs
            self.cosineMin = cosineMin
            self.cosineMean = cosineMean
            self.zeroShotAgreement = zeroShotAgreement
            self.n = n
            self.finite = finite
        }

        /// JSON form; non-finite numbers become null (the report schema's convention).
        public func toDictionary() -> [String: Any] {
            return ["max_abs": Json.number(maxAbs), "cosine_min": Json.number(cosineMin),
                    "cosine_mean": Json.number(cosineMean), "zero_shot_agreement": zeroShotAgreement,
                    "n": n, "finite": finite]
        }

        public var summary: String {
            return String(format: "max abs %.2e, min cos %.6f, zero-shot %.0f%%", maxAbs, cosineMin,
                          zeroShotAgreement * 100)
        }
    }

    public static func measure(reference: [[Float]], got: [[Float]], otherTower: [[Float]]) throws -> Figures {
        guard reference.count == got.count else {
            throw CLIPDeployError(.parity, "\(got.count) outputs for \(reference.count) reference rows")
        }
        let n = got.count
        for r in 0..<n where reference[r].count != got[r].count {
            throw CLIPDeployError(.parity,
                                  "output dimension \(got[r].count) != reference \(reference[r].count)")
        }
        for row in got where !Vectors.allFinite(row) {
            return Figures(maxAbs: .infinity, cosineMin: .nan, cosineMean: .nan, zeroShotAgreement: 0, n: n,
                           finite: false)
        }
        var maxAbs = 0.0
        var cosMin = Double.infinity
        var cosSum = 0.0
        var agree = 0
        let other = otherTower.map { Vectors.unit($0) }
        for r in 0..<n {
            let ref = reference[r], out = got[r]
            let a = Vectors.unit(ref), b = Vectors.unit(out)
            var cos = 0.0
            for k in 0..<a.count {
                maxAbs = max(maxAbs, abs(Double(ref[k]) - Double(out[k])))
                cos += a[k] * b[k]
            }
            cosMin = min(cosMin, cos)
            cosSum += cos
            var sr = [Double](repeating: 0, count: other.count)
            var sg = [Double](repeating: 0, count: other.count)
            for m in 0..<other.count {
                let o = other[m]
                precondition(o.count == ref.count, "other tower dimension \(o.count) != \(ref.count)")
                for k in 0..<o.count {
                    sr[m] += Double(ref[k]) * o[k]
                    sg[m] += Double(out[k]) * o[k]
                }
            }
            let topRef = Vectors.argmax(sr), topGot = Vectors.argmax(sg)
            if topRef == topGot || sr[topRef] - sr[topGot] <= Parity.zeroShotTie { agree += 1 }
        }
        return Figures(maxAbs: maxAbs, cosineMin: cosMin, cosineMean: n == 0 ? .nan : cosSum / Double(n),
                       zeroShotAgreement: n == 0 ? 0 : Double(agree) / Double(n), n: n, finite: true)
    }

    /// The bars of `precision` ("fp32", "fp16" or "int8") that the figures miss; empty when they pass. The strings
    /// are clip-latency's (`failures()` in latency/parity.py), formatted with C's printf like Python's.
    public static func failures(_ f: Figures, precision: String) throws -> [String] {
        let t = try Thresholds.of(precision)
        var out: [String] = []
        if !f.finite { out.append("non-finite outputs") }
        if let maxAbs = t.maxAbs, !(f.maxAbs <= maxAbs) {
            out.append("max abs error " + formatG(f.maxAbs, 3) + " > " + formatG(maxAbs, nil))
        }
        if let minCos = t.minCosine, !(f.cosineMin >= minCos) {
            out.append("min cosine " + formatFixed(f.cosineMin, 6) + " < " + "\(minCos)")
        }
        if f.zeroShotAgreement < t.zeroShotAgreement {
            out.append("zero-shot top-1 agreement " + formatFixed(f.zeroShotAgreement * 100, 0) + "% < "
                       + formatFixed(t.zeroShotAgreement * 100, 0) + "%")
        }
        return out
    }

    /// Python's `format(x, '.Ng')` (`'g'` when `digits` is nil): C's %g, which also strips trailing zeros.
    static func formatG(_ x: Double, _ digits: Int?) -> String {
        if x.isNaN { return "nan" }
        if x.isInfinite { return x < 0 ? "-inf" : "inf" }
        if let d = digits { return String(format: "%.\(d)g", x) }
        return String(format: "%g", x)
    }

    static func formatFixed(_ x: Double, _ digits: Int) -> String {
        if x.isNaN { return "nan" }
        if x.isInfinite { return x < 0 ? "-inf" : "inf" }
        return String(format: "%.\(digits)f", x)
    }
}
