import Foundation
#if canImport(Darwin)
import Darwin
#endif

/// The memory probe of the platform the kit runs on: `PhysFootprintProbe` on Apple systems (what Xcode's
/// memory gauge and the jetsam limit use), `ResidentMemoryProbe` on Linux (the kit's tests, `clipdeploy-report`).
public enum MemoryProbes {
    public static func platform() -> MemoryProbe {
        #if canImport(Darwin)
        return PhysFootprintProbe()
        #else
        return ResidentMemoryProbe()
        #endif
    }
}

/// A probe that keeps the largest value it has sampled as its peak.
public class SamplingMemoryProbe: MemoryProbe {
    private var peak = 0.0
    private let lock = NSLock()

    fileprivate init() {}

    public var source: String { fatalError("subclass") }

    /// The current value in bytes, or nil where the platform call fails.
    func currentBytes() -> UInt64? { fatalError("subclass") }

    /// The platform's own peak in bytes, when it keeps one.
    func platformPeakBytes() -> UInt64? { nil }

    public func currentMb() -> Double {
        let mb = currentBytes().map { Double($0) / (1024.0 * 1024.0) } ?? 0
        lock.lock()
        peak = max(peak, mb)
        lock.unlock()
        return mb
    }

    public func peakMb() -> Double {
        _ = currentMb()
        let own = platformPeakBytes().map { Double($0) / (1024.0 * 1024.0) } ?? 0
        lock.lock()
        defer { lock.unlock() }
        peak = max(peak, own)
        return peak
    }
}

#if canImport(Darwin)
/// The process's physical footprint (`task_info(TASK_VM_INFO).phys_footprint`), with the largest value this
/// probe has sampled as its peak.
public final class PhysFootprintProbe: SamplingMemoryProbe {
    public override init() { super.init() }

    public override var source: String { "task_vm_info.phys_footprint" }

    override func currentBytes() -> UInt64? { PhysFootprintProbe.physFootprintBytes() }

    /// phys_footprint in bytes, or nil where the call fails.
    public static func physFootprintBytes() -> UInt64? {
        var info = task_vm_info_data_t()
        var count = mach_msg_type_number_t(MemoryLayout<task_vm_info_data_t>.size / MemoryLayout<integer_t>.size)
        let kr = withUnsafeMutablePointer(to: &info) { ptr -> kern_return_t in
            ptr.withMemoryRebound(to: integer_t.self, capacity: Int(count)) { raw in
                task_info(mach_task_self_, task_flavor_t(TASK_VM_INFO), raw, &count)
            }
        }
        guard kr == KERN_SUCCESS else { return nil }
        return UInt64(info.phys_footprint)
    }
}
#endif

/// The process's resident set from `/proc/self/status` (`VmRSS`), its peak the kernel's `VmHWM` (the
/// high-water mark since the process started) or the largest value sampled, whichever is larger. Linux only;
/// elsewhere the file does not exist and the probe reads 0.
public final class ResidentMemoryProbe: SamplingMemoryProbe {
    public override init() { super.init() }

    public override var source: String { "/proc/self/status VmRSS (peak VmHWM)" }

    override func currentBytes() -> UInt64? { ResidentMemoryProbe.statusBytes("VmRSS") }

    override func platformPeakBytes() -> UInt64? { ResidentMemoryProbe.statusBytes("VmHWM") }

    /// A `kB` field of `/proc/self/status` in bytes, or nil when it is missing.
    static func statusBytes(_ field: String, status: String? = nil) -> UInt64? {
        // read to EOF: procfs files report a size of 0, so a read sized by stat(2) gets nothing
        guard let text = status ?? FileHandle(forReadingAtPath: "/proc/self/status")
                .map({ String(decoding: $0.readDataToEndOfFile(), as: UTF8.self) }) else {
            return nil
        }
        for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
            let parts = line.dropFirst(field.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard parts.count == 2, parts[1] == "kB", let kb = UInt64(parts[0]) else { return nil }
            return kb * 1024
        }
        return nil
    }
}
