package org.clipdeploy.app

import android.content.Context
import java.io.File

/**
 * Where the app looks for bundles (directories with a manifest.json written by clip-export):
 *  1. /data/local/tmp/clipdeploy/<model>: where `clip-latency android` and `adb push` put them (the default);
 *  2. the app's external files dir, bundles/<model> (/sdcard/Android/data/org.clipdeploy.app/files/bundles);
 *  3. the app's internal files dir, bundles/<model> (filled with `adb shell run-as org.clipdeploy.app ...`).
 */
object BundleLocator {
    const val DEVICE_ROOT = "/data/local/tmp/clipdeploy"

    fun roots(context: Context): List<File> = listOfNotNull(
        File(DEVICE_ROOT),
        context.getExternalFilesDir(null)?.let { File(it, "bundles") },
        File(context.filesDir, "bundles"),
    )

    /** Every bundle under the roots, in root order then by name (unreadable roots are skipped). */
    fun find(context: Context): List<File> = roots(context).flatMap { root ->
        if (File(root, "manifest.json").isFile) {
            listOf(root)
        } else {
            root.listFiles()?.filter { File(it, "manifest.json").isFile }?.sortedBy { it.name } ?: emptyList()
        }
    }
}
