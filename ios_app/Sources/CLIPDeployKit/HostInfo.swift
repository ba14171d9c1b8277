import Foundation
#if canImport(Darwin)
import Darwin
#endif

/// The report's `host` block (the JVM core's `HostInfo`). `current()` fills it on iOS/macOS from sysctl
/// (`hw.machine`, `hw.model`, `hw.physicalcpu`, `machdep.cpu.brand_string`) and `ProcessInfo`; on Linux (the
/// kit's tests and `clipdeploy-report`) from `ProcessInfo`, uname(2) and `/proc/cpuinfo`.
public final class HostInfo {
    public var name: String?
    public var device: String?
    public var os: String?
    public var osRelease: String?
    public var platform: String?
    public var machine: String?
    public var cpuModel: String?
    public var cpuCountLogical: Int?
    public var cpuCountPhysical: Int?
    public var cpuAvailable: Int?
    public var memoryTotalGb: Double?
    public var libraries: [String: String] = [:]

    public init() {}

    /// This device: e.g. device "iPhone15,2", os "iOS", os_release "17.2.1", machine "arm64".
    public static func current() -> HostInfo {
        let h = HostInfo()
        let info = ProcessInfo.processInfo
        let v = info.operatingSystemVersion
        h.name = hostName()
        #if os(iOS)
        h.os = "iOS"
        // hw.machine is the model identifier on a device; the simulator reports the Mac's CPU instead
        h.device = info.environment["SIMULATOR_MODEL_IDENTIFIER"] ?? sysctlString("hw.machine")
        #elseif os(macOS)
        h.os = "macOS"
        h.device = sysctlString("hw.model")
        #elseif os(Linux)
        h.os = "Linux"
        h.device = nil
        #else
        h.os = "unknown"
        h.device = nil
        #endif
        h.osRelease = unameRelease() ?? "\(v.majorVersion).\(v.minorVersion).\(v.patchVersion)"
        h.platform = "\(h.os ?? "unknown") \(h.osRelease ?? "") (\(info.operatingSystemVersionString))"
        #if arch(arm64)
        h.machine = "arm64"
        #elseif arch(x86_64)
        h.machine = "x86_64"
        #else
        h.machine = nil
        #endif
        h.cpuModel = sysctlString("machdep.cpu.brand_string") ?? cpuinfoModel() ?? h.device.map { "Apple SoC (\($0))" }
        h.cpuCountLogical = info.processorCount
        h.cpuAvailable = info.activeProcessorCount
        h.cpuCountPhysical = sysctlInt("hw.physicalcpu")
        h.memoryTotalGb = (Double(info.physicalMemory) / Double(1 << 30) * 100).rounded() / 100
        #if canImport(CoreML)
        h.libraries = ["coreml": "\(h.os ?? "") \(h.osRelease ?? "")", "clipdeploykit": KitInfo.version]
        #else
        h.libraries = ["clipdeploykit": KitInfo.version]
        #endif
        return h
    }

    public func toDictionary() -> [String: Any] {
        return [
            "name": Json.orNull(name), "device": Json.orNull(device), "os": os ?? "unknown",
            "os_release": Json.orNull(osRelease), "platform": Json.orNull(platform),
            "machine": Json.orNull(machine), "cpu_model": Json.orNull(cpuModel),
            "cpu_count_logical": Json.orNull(cpuCountLogical), "cpu_count_physical": Json.orNull(cpuCountPhysical),
            "cpu_available": Json.orNull(cpuAvailable), "memory_total_gb": Json.number(memoryTotalGb),
            "loadavg_start": NSNull(), "loadavg_end": NSNull(), "python": NSNull(), "libraries": libraries,
        ]
    }

    /// gethostname(2) (ProcessInfo.hostName can block on name resolution).
    static func hostName() -> String? {
        var buf = [CChar](repeating: 0, count: 256)
        guard gethostname(&buf, buf.count) == 0 else { return nil }
        let s = String(decoding: buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return s.isEmpty ? nil : s
    }

    /// The kernel release from uname(2) ("6.1.0-18-amd64"); nil on Apple platforms, where the OS version is
    /// what the report wants.
    static func unameRelease() -> String? {
        #if os(Linux)
        var u = utsname()
        guard uname(&u) == 0 else { return nil }
        let s = withUnsafeBytes(of: &u.release) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        return s.isEmpty ? nil : s
        #else
        return nil
        #endif
    }

    /// The first `model name` of `/proc/cpuinfo` (Linux; nil elsewhere), as the JVM core's `cpuModelFromProc`.
    static func cpuinfoModel(_ text: String? = nil) -> String? {
        guard let t = text ?? FileHandle(forReadingAtPath: "/proc/cpuinfo")
                .map({ String(decoding: $0.readDataToEndOfFile(), as: UTF8.self) }) else { return nil }
        for line in t.split(separator: "\n") where line.hasPrefix("model name") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let v = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            if !v.isEmpty { return v }
        }
        return nil
    }

    static func sysctlString(_ key: String) -> String? {
        #if canImport(Darwin)
        var size = 0
        guard sysctlbyname(key, nil, &size, nil, 0) == 0, size > 0 else { return nil }
        var buf = [UInt8](repeating: 0, count: size)
        guard sysctlbyname(key, &buf, &size, nil, 0) == 0 else { return nil }
        let s = String(decoding: buf.prefix(while: { $0 != 0 }), as: UTF8.self)
        return s.isEmpty ? nil : s
        #else
        return nil
        #endif
    }

    static func sysctlInt(_ key: String) -> Int? {
        #if canImport(Darwin)
        var value: Int32 = 0
        var size = MemoryLayout<Int32>.size
        guard sysctlbyname(key, &value, &size, nil, 0) == 0 else { return nil }
        return Int(value)
        #else
        return nil
        #endif
    }
}
