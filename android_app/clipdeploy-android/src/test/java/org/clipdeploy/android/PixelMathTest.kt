package org.clipdeploy.android

import java.nio.ByteBuffer
import org.clipdeploy.core.RgbImage
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertThrows
import org.junit.Test

/** Plain JVM tests (no Android classes) of the CameraX frame path: `gradle :clipdeploy-android:testDebugUnitTest`. */
class PixelMathTest {

    /**
     * An RGBA plane as CameraX lays it out: [pad] bytes after each row, the last row's padding missing when
     * [shortLastRow]. Pixel (x, y): R = 10y + x, G = 100 + 10y + x, B = 200 + x, A = 255.
     */
    private fun plane(width: Int, height: Int, pad: Int, shortLastRow: Boolean): Pair<ByteBuffer, Int> {
        val stride = width * 4 + pad
        val size = stride * height - if (shortLastRow) pad else 0
        val bytes = ByteArray(size) { 0x7f }  // padding bytes must never be read as pixels
        for (y in 0 until height) for (x in 0 until width) {
            val o = y * stride + 4 * x
            bytes[o] = (10 * y + x).toByte()
            bytes[o + 1] = (100 + 10 * y + x).toByte()
            bytes[o + 2] = (200 + x).toByte()
            bytes[o + 3] = 0xff.toByte()
        }
        return ByteBuffer.wrap(bytes) to stride
    }

    private fun reds(img: RgbImage): IntArray = IntArray(img.width * img.height) { img.rgb[3 * it].toInt() }

    @Test
    fun rowStrideWithPaddingAndShortLastRow() {
        for (short in listOf(false, true)) {
            val (buf, stride) = plane(width = 3, height = 2, pad = 8, shortLastRow = short)
            val img = PixelMath.rgbFromRgbaPlane(buf, 3, 2, stride, 4)
            assertEquals(3, img.width)
            assertEquals(2, img.height)
            for (y in 0 until 2) for (x in 0 until 3) {
                assertEquals(10 * y + x, img.get(x, y, 0))
                assertEquals(100 + 10 * y + x, img.get(x, y, 1))
                assertEquals(200 + x, img.get(x, y, 2))
            }
            assertEquals("the caller's buffer position is left alone", 0, buf.position())
        }
    }

    @Test
    fun bufferIsReadFromItsPosition() {
        val (buf, stride) = plane(width = 2, height = 2, pad = 4, shortLastRow = true)
        val shifted = ByteBuffer.allocate(buf.capacity() + 5)
        shifted.position(5)
        shifted.put(buf.duplicate())
        shifted.position(5)
        val img = PixelMath.rgbFromRgbaPlane(shifted, 2, 2, stride, 4)
        assertArrayEquals(intArrayOf(0, 1, 10, 11), reds(img))
    }

    @Test
    fun tightlyPackedPlane() {
        val (buf, stride) = plane(width = 4, height = 3, pad = 0, shortLastRow = false)
        val img = PixelMath.rgbFromRgbaPlane(buf, 4, 3, stride, 4)
        assertEquals(4 * 3 * 3, img.rgb.size)
        assertEquals(21, img.get(1, 2, 0))
    }

    @Test
    fun framesAreTurnedUprightClockwise() {
        // 3 wide, 2 high, padded rows:  0  1  2
        //                              10 11 12
        val (buf, stride) = plane(width = 3, height = 2, pad = 8, shortLastRow = true)
        val r90 = PixelMath.rgbFromRgbaPlane(buf, 3, 2, stride, 4, rotationDegrees = 90)
        assertEquals(2, r90.width)
        assertEquals(3, r90.height)
        assertArrayEquals(intArrayOf(10, 0, 11, 1, 12, 2), reds(r90))
        assertEquals(200, r90.get(1, 0, 2))  // channels travel together: (0, 0) of the frame is now top right
        val r180 = PixelMath.rgbFromRgbaPlane(buf, 3, 2, stride, 4, rotationDegrees = 180)
        assertArrayEquals(intArrayOf(12, 11, 10, 2, 1, 0), reds(r180))
        val r270 = PixelMath.rgbFromRgbaPlane(buf, 3, 2, stride, 4, rotationDegrees = 270)
        assertArrayEquals(intArrayOf(2, 12, 1, 11, 0, 10), reds(r270))
    }

    @Test
    fun badStridesAreRefused() {
        val (buf, stride) = plane(width = 2, height = 2, pad = 0, shortLastRow = false)
        assertThrows(IllegalArgumentException::class.java) { PixelMath.rgbFromRgbaPlane(buf, 2, 2, stride, 3) }
        assertThrows(IllegalArgumentException::class.java) { PixelMath.rgbFromRgbaPlane(buf, 2, 2, 7, 4) }
        assertThrows(IllegalArgumentException::class.java) { PixelMath.rgbFromRgbaPlane(buf, 2, 2, stride, 4, 45) }
    }
}
