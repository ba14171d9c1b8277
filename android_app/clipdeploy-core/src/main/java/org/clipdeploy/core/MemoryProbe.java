package org.clipdeploy.core;

/** The process's memory as the platform reports it (Android: PSS; iOS: phys_footprint; JVM: heap). */
public interface MemoryProbe {
    /** Current memory in MB. */
    double currentMb();

    /** Peak memory in MB since the process started, or the largest value this probe has seen. */
    double peakMb();

    /** What is measured, for the report ("Debug.getMemoryInfo totalPss", ...). */
    String source();

    /** The JVM heap in use (Runtime.totalMemory - freeMemory), with the peak of what it saw. */
    final class JvmHeap implements MemoryProbe {
        private double peak;

        @Override
        public synchronized double currentMb() {
            Runtime r = Runtime.getRuntime();
            double mb = (r.totalMemory() - r.freeMemory()) / (1024.0 * 1024.0);
            peak = Math.max(peak, mb);
            return mb;
        }

        @Override
        public synchronized double peakMb() {
            currentMb();
            return peak;
        }

        @Override
        public String source() {
            return "JVM heap in use (Runtime.totalMemory - freeMemory)";
        }
    }
}
