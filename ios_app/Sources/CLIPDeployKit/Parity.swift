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

    // MARK: classifier logits

    /// The logits bars (clipdeploy.export.classifier's CLASSIFIER_THRESHOLDS; the JVM core's): logits are
    /// `logit_scale x cosine`, so the max-abs bar is in cosine units (max abs / logit_scale): fp32 2e-5, fp16 1e-2,
    /// int8 none; top-1 agreement 100 % (fp32, fp16), 99 % (int8).
    public static let fp32MaxAbsCosineUnits = 2e-5
    public static let fp16MaxAbsCosineUnits = 1e-2
    public static let minTop1Agreement = 1.0
    public static let int8MinTop1Agreement = 0.99

    /// Parity of a classifier's logits [M, N] as clip-latency's worker measures it (the JVM core's `LogitFigures`):
    /// the reference is the probe's reference image embeddings times the class matrix times logit_scale (double,
    /// then float32), "the other tower" the identity, so `measure`'s figures are the logits' max abs, the cosine of
    /// each logit row with the reference's and, as zero_shot_agreement, their top-1 agreement. The report adds
    /// `top1_agreement` (the same number), `max_abs_cosine_units` (max abs / logit_scale) and `tie`.
    public struct LogitFigures: Equatable {
        public let figures: Figures
        public let logitScale: Double

        public var top1Agreement: Double { figures.zeroShotAgreement }

        /// The logits' max abs in cosine units (logits are logit_scale x cosine).
        public var maxAbsCosineUnits: Double { logitScale > 0 ? figures.maxAbs / logitScale : figures.maxAbs }

        /// JSON form: the report schema's parity keys, then top1_agreement, max_abs_cosine_units and tie.
        public func toDictionary() -> [String: Any] {
            var d = figures.toDictionary()
            d["top1_agreement"] = top1Agreement
            d["max_abs_cosine_units"] = Json.number(maxAbsCosineUnits)
            d["tie"] = Parity.zeroShotTie
            return d
        }
    }

    /// Reference logits of image embeddings: `logitScale * embedding . class` per class (double, then float32).
    public static func referenceLogits(_ imageEmbeddings: [[Float]], classes: [[Float]], logitScale: Double) throws -> [[Float]] {
        let d = classes.first?.count ?? 0
        return try imageEmbeddings.map { e in
            guard e.count == d else {
                throw CLIPDeployError(.parity, "reference embedding dimension \(e.count) != the class matrix's \(d)")
            }
            return ZeroShot.logits(image: e, classEmbeddings: classes, logitScale: logitScale)
        }
    }

    /// `LogitFigures` of `got` [M, N] against the reference logits of `refImage` [M, D].
    public static func measureLogits(refImage: [[Float]], classes: [[Float]], logitScale: Double,
                                     got: [[Float]]) throws -> LogitFigures {
        let n = classes.count
        let identity = (0..<n).map { k in (0..<n).map { $0 == k ? Float(1) : Float(0) } }
        let reference = try referenceLogits(refImage, classes: classes, logitScale: logitScale)
        return LogitFigures(figures: try measure(reference: reference, got: got, otherTower: identity),
                            logitScale: logitScale)
    }

    /// The logits bars of `precision` the figures miss (clipdeploy.export.classifier's `logit_failures`).
    public static func failures(_ f: LogitFigures, precision: String) throws -> [String] {
        let bar: Double?
        var agreement = minTop1Agreement
        switch precision {
        case "fp32": bar = fp32MaxAbsCosineUnits
        case "fp16": bar = fp16MaxAbsCosineUnits
        case "int8":
            bar = nil
            agreement = int8MinTop1Agreement
        default:
            throw CLIPDeployError(.parity, "no parity bars for precision '\(precision)' (fp32, fp16 or int8)")
        }
        var out: [String] = []
        if !f.figures.finite { out.append("non-finite logits") }
        if let bar = bar, !(f.maxAbsCosineUnits <= bar) {
            out.append("logits max abs " + formatG(f.figures.maxAbs, 3) + " (" + formatG(f.maxAbsCosineUnits, 3)
                       + " x logit_scale) > " + formatG(bar, nil) + " x logit_scale")
        }
        if f.top1Agreement < agreement {
            let missed = Int(((1 - f.top1Agreement) * Double(f.figures.n)).rounded())
            out.append("top-1 agreement " + formatFixed(f.top1Agreement * 100, 1) + "% < "
                       + formatFixed(agreement * 100, 0) + "% (\(missed) of \(f.figures.n) images)")
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
