import Foundation
#if canImport(Darwin)
import Darwin
#endif

/// The process's physical footprint (`task_info(TASK_VM_INFO).phys_footprint`, what Xcode's memory gauge
/// and the jetsam limit use), with the largest value this probe has sampled as its peak.
public final class PhysFootprintProbe: MemoryProbe {
    private var peak = 0.0
    private let lock = NSLock()

    public init() {}

    public var source: String { "task_vm_info.phys_footprint" }

    public func currentMb() -> Double {
        let mb = PhysFootprintProbe.physFootprintBytes().map { Double($0) / (1024.0 * 1024.0) } ?? 0
        lock.lock()
        peak = max(peak, mb)
        lock.unlock()
        return mb
    }

    public func peakMb() -> Double {
        _ = currentMb()
        lock.lock()
        defer { lock.unlock() }
        return peak
    }

    /// phys_footprint in bytes, or nil where the call fails.
    public static func physFootprintBytes() -> UInt64? {
        #if canImport(Darwin)
        var info = task_vm_info_data_t()
        var count = mach_msg_type_number_t(MemoryLayout<task_vm_info_data_t>.size / MemoryLayout<integer_t>.size)
        let kr = withUnsafeMutablePointer(to: &info) { ptr -> kern_return_t in
            ptr.withMemoryRebound(to: integer_t.self, capacity: Int(count)) { raw in
                task_info(mach_task_self_, task_flavor_t(TASK_VM_INFO), raw, &count)
            }
        }
        guard kr == KERN_SUCCESS else { return nil }
        return UInt64(info.phys_footprint)
        #else
        return nil
        #endif
    }
}
