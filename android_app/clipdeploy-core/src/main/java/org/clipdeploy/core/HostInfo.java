package org.clipdeploy.core;

import java.util.LinkedHashMap;
import java.util.Map;

/** The report's {@code host} block. The platforms fill it (Android: Build.*; iOS: utsname); {@link #jvm()} on a plain JVM. */
public final class HostInfo {
    public String name;
    public String device;
    public String os;
    public String osRelease;
    public String platform;
    public String machine;
    public String cpuModel;
    public Integer cpuCountLogical;
    public Integer cpuCountPhysical;
    public Integer cpuAvailable;
    public Double memoryTotalGb;
    public final Map<String, Object> libraries = new LinkedHashMap<>();

    /** This JVM's host, from system properties. */
    public static HostInfo jvm() {
        HostInfo h = new HostInfo();
        String host = null;
        try {
            host = java.net.InetAddress.getLocalHost().getHostName();
        } catch (Exception ignored) {
            // no name resolution: leave it null
        }
        h.name = host;
        h.device = null;
        h.os = System.getProperty("os.name", "unknown");
        h.osRelease = System.getProperty("os.version");
        h.platform = h.os + " " + h.osRelease + " (" + System.getProperty("java.vm.name", "JVM") + " "
                + System.getProperty("java.version", "") + ")";
        h.machine = System.getProperty("os.arch");
        h.cpuModel = cpuModelFromProc();
        int n = Runtime.getRuntime().availableProcessors();
        h.cpuCountLogical = n;
        h.cpuAvailable = n;
        h.cpuCountPhysical = null;
        h.memoryTotalGb = null;
        h.libraries.put("java", System.getProperty("java.version"));
        return h;
    }

    static String cpuModelFromProc() {
        java.io.File f = new java.io.File("/proc/cpuinfo");
        if (!f.isFile()) return null;
        try (java.io.BufferedReader r = new java.io.BufferedReader(new java.io.FileReader(f))) {
            String line;
            while ((line = r.readLine()) != null) {
                int c = line.indexOf(':');
                if (c < 0) continue;
                String key = line.substring(0, c).trim();
                if (key.equals("model name") || key.equals("Hardware") || key.equals("Processor")) {
                    return line.substring(c + 1).trim();
                }
            }
        } catch (java.io.IOException ignored) {
            // unreadable: unknown
        }
        return null;
    }

    public Map<String, Object> toMap() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("name", name);
        m.put("device", device);
        m.put("os", os == null ? "unknown" : os);
        m.put("os_release", osRelease);
        m.put("platform", platform);
        m.put("machine", machine);
        m.put("cpu_model", cpuModel);
        m.put("cpu_count_logical", cpuCountLogical == null ? null : (long) (int) cpuCountLogical);
        m.put("cpu_count_physical", cpuCountPhysical == null ? null : (long) (int) cpuCountPhysical);
        m.put("cpu_available", cpuAvailable == null ? null : (long) (int) cpuAvailable);
        m.put("memory_total_gb", memoryTotalGb);
        m.put("loadavg_start", null);
        m.put("loadavg_end", null);
        m.put("python", null);
        m.put("libraries", libraries);
        return m;
    }
}
