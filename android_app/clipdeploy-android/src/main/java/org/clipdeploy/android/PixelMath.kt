package org.clipdeploy.android

import java.nio.ByteBuffer
import org.clipdeploy.core.RgbImage

/**
 * The pixel arithmetic behind [BitmapPixels.fromImageProxy], kept free of Android classes so that it runs in
 * a plain JVM unit test (src/test): an RGBA plane with a row stride, turned upright.
 */
object PixelMath {

    /**
     * One RGBA_8888 plane (CameraX `ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888`: a single plane, 4 bytes
     * per pixel, rows `rowStride` bytes apart, the last row possibly without its padding) to RGB, turned
     * clockwise by [rotationDegrees] (CameraX's `ImageInfo.rotationDegrees`: the turn that makes the frame
     * upright). Reads from the buffer's position to its limit without moving the caller's position.
     */
    @JvmStatic
    @JvmOverloads
    fun rgbFromRgbaPlane(
        plane: ByteBuffer,
        width: Int,
        height: Int,
        rowStride: Int,
        pixelStride: Int,
        rotationDegrees: Int = 0,
    ): RgbImage {
        require(pixelStride == 4) { "an RGBA_8888 plane has 4 bytes per pixel, this one has $pixelStride" }
        require(rowStride >= width * 4) { "row stride $rowStride is less than width * 4 = ${width * 4}" }
        val view = plane.duplicate()
        val bytes = ByteArray(view.remaining())
        view.get(bytes)
        return RgbImage.fromRgba(bytes, width, height, rowStride).rotated(rotationDegrees)
    }
}
