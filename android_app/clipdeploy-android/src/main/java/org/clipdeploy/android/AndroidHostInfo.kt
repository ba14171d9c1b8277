package org.clipdeploy.android

import android.app.ActivityManager
import android.content.Context
import android.os.Build
import java.io.File
import java.util.Locale
import org.clipdeploy.core.HostInfo

/** The report's `host` block for this phone: Build.*, /proc/cpuinfo, /sys CPU topology, ActivityManager. */
object AndroidHostInfo {

    /**
     * [libraries] go to `host.libraries` (runtime versions, the app's version ...).
     */
    @JvmStatic
    @JvmOverloads
    fun collect(context: Context, libraries: Map<String, String?> = emptyMap()): HostInfo {
        val h = HostInfo()
        h.name = Build.DEVICE
        h.device = deviceName()
        h.os = "Android"
        h.osRelease = Build.VERSION.RELEASE
        h.platform = "Android ${Build.VERSION.RELEASE} (API ${Build.VERSION.SDK_INT})"
        h.machine = Build.SUPPORTED_ABIS.firstOrNull() ?: System.getProperty("os.arch")
        h.cpuModel = cpuModel()
        val available = Runtime.getRuntime().availableProcessors()
        val possible = possibleCpus()
        h.cpuCountLogical = possible ?: available
        // Android SoCs have no SMT: one hardware thread per core.
        h.cpuCountPhysical = possible ?: available
        h.cpuAvailable = available
        h.memoryTotalGb = totalMemoryGb(context)
        for ((k, v) in libraries) h.libraries[k] = v
        return h
    }

    /** "Google Pixel 8" from MANUFACTURER + MODEL, without repeating the maker when the model already names it. */
    @JvmStatic
    fun deviceName(): String {
        val maker = Build.MANUFACTURER.orEmpty().trim()
        val model = Build.MODEL.orEmpty().trim()
        val name = if (maker.isEmpty() || model.lowercase(Locale.ROOT).startsWith(maker.lowercase(Locale.ROOT))) model
        else "$maker $model"
        return name.replaceFirstChar { if (it.isLowerCase()) it.titlecase(Locale.ROOT) else it.toString() }
    }

    /** The `Hardware` line of /proc/cpuinfo (older kernels), else the SoC (API 31+), else Build.HARDWARE. */
    @JvmStatic
    fun cpuModel(): String? {
        val fromProc = try {
            File("/proc/cpuinfo").readLines().firstNotNullOfOrNull { line ->
                val colon = line.indexOf(':')
                if (colon > 0 && line.substring(0, colon).trim().equals("Hardware", ignoreCase = true)) {
                    line.substring(colon + 1).trim().ifEmpty { null }
                } else {
                    null
                }
            }
        } catch (e: Exception) {
            null
        }
        if (fromProc != null) return fromProc
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.S) {
            val soc = listOf(Build.SOC_MANUFACTURER, Build.SOC_MODEL)
                .filter { it.isNotBlank() && it != Build.UNKNOWN }
                .joinToString(" ")
            if (soc.isNotEmpty()) return soc
        }
        return Build.HARDWARE
    }

    /** CPUs in /sys/devices/system/cpu/possible ("0-7" -> 8), or null when unreadable. */
    @JvmStatic
    fun possibleCpus(): Int? = try {
        File("/sys/devices/system/cpu/possible").readText().trim().split(',').sumOf { part ->
            val ends = part.trim().split('-').map { it.trim().toInt() }
            if (ends.size == 2) ends[1] - ends[0] + 1 else 1
        }.takeIf { it > 0 }
    } catch (e: Exception) {
        null
    }

    private fun totalMemoryGb(context: Context): Double? {
        val am = context.getSystemService(Context.ACTIVITY_SERVICE) as? ActivityManager ?: return null
        val info = ActivityManager.MemoryInfo()
        am.getMemoryInfo(info)
        if (info.totalMem <= 0) return null
        return Math.round(info.totalMem / (1024.0 * 1024.0 * 1024.0) * 10.0) / 10.0
    }
}
