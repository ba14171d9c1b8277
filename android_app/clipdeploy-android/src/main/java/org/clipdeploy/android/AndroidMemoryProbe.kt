package org.clipdeploy.android

import android.os.Debug
import org.clipdeploy.core.Benchmark
import org.clipdeploy.core.MemoryProbe

/**
 * The process's proportional set size from `Debug.getMemoryInfo` (`totalPss`, kB -> MB).
 *
 * Android keeps no peak PSS, so [peakMb] is the largest value this probe has read. The core benchmark reads
 * it after each load and at the end of each record; wrap the run's progress listener in [sampling] to add
 * a reading at every phase change too (between phases only: never inside the timed steady state).
 */
class AndroidMemoryProbe : MemoryProbe {
    private var peak = 0.0

    @Synchronized
    override fun currentMb(): Double {
        val info = Debug.MemoryInfo()
        Debug.getMemoryInfo(info)
        val mb = info.totalPss / 1024.0
        if (mb > peak) peak = mb
        return mb
    }

    @Synchronized
    override fun peakMb(): Double {
        currentMb()
        return peak
    }

    override fun source(): String = SOURCE

    /** A progress listener that reads the memory whenever the phase changes, then calls [next]. */
    fun sampling(next: Benchmark.Progress): Benchmark.Progress {
        var last: String? = null
        return Benchmark.Progress { artifact, phase, done, total ->
            val key = "$artifact/$phase"
            if (key != last) {
                last = key
                currentMb()
            }
            next.onPhase(artifact, phase, done, total)
        }
    }

    companion object {
        const val SOURCE = "Debug.getMemoryInfo totalPss"
    }
}
