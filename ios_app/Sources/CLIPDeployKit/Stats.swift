import Foundation

/// Latency statistics with clip-latency's definitions (`clipdeploy.latency.stats`, the JVM core's `Stats`):
/// numpy's linear percentiles, sample standard deviation (n - 1), 10-90 % trimmed mean. Reports keep the
/// raw samples; `clip-latency ingest` recomputes these figures from them.
public enum Stats {
    public struct Summary: Equatable {
        public let n: Int
        public let median, p90, p95, p99, min, max, mean, std, trimmedMean: Double

        public func toDictionary() -> [String: Any] {
            return ["n": n, "median": median, "p90": p90, "p95": p95, "p99": p99, "min": min, "max": max,
                    "mean": mean, "std": std, "trimmed_mean": trimmedMean]
        }

        /// The statistics' keys in the report (`steady.stats`).
        public static let keys = ["n", "median", "p90", "p95", "p99", "min", "max", "mean", "std", "trimmed_mean"]
    }

    /// The q-th percentile of sorted samples, linear interpolation at (n - 1) q / 100.
    public static func percentile(_ sorted: [Double], _ q: Double) -> Double {
        precondition(!sorted.isEmpty, "no samples")
        let pos = Double(sorted.count - 1) * q / 100.0
        let lo = Int(pos.rounded(.down))
        let hi = Swift.min(lo + 1, sorted.count - 1)
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - Double(lo))
    }

    public static func summarize(_ samples: [Double]) throws -> Summary {
        guard !samples.isEmpty else { throw CLIPDeployError(.benchmark, "no samples to summarize") }
        guard samples.allSatisfy({ $0.isFinite }) else {
            throw CLIPDeployError(.benchmark, "non-finite latency sample")
        }
        let x = samples.sorted()
        let n = x.count
        let mean = samples.reduce(0, +) / Double(n)
        var ss = 0.0
        for v in samples { ss += (v - mean) * (v - mean) }
        let std = n > 1 ? (ss / Double(n - 1)).squareRoot() : 0.0
        let k = Int((0.1 * Double(n)).rounded(.down))
        let trimmed = x[k..<(n - k)].reduce(0, +) / Double(n - 2 * k)
        return Summary(n: n, median: percentile(x, 50), p90: percentile(x, 90), p95: percentile(x, 95),
                       p99: percentile(x, 99), min: x[0], max: x[n - 1], mean: mean, std: std,
                       trimmedMean: trimmed)
    }
}
