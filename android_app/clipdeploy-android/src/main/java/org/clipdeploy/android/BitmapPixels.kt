package org.clipdeploy.android

import android.graphics.Bitmap
import android.graphics.PixelFormat
import androidx.camera.core.ImageProxy
import org.clipdeploy.core.RgbImage

/** Android pixels -> the core's [RgbImage] (8-bit RGB, what [org.clipdeploy.core.Preprocess] takes). */
object BitmapPixels {

    /**
     * A Bitmap's pixels as sRGB 8-bit RGB (alpha dropped). Bitmaps that are not ARGB_8888 (RGB_565,
     * HARDWARE from ImageDecoder, F16 ...) are copied to ARGB_8888 first; `getPixels` returns
     * unpremultiplied sRGB colours whatever the bitmap's colour space.
     */
    @JvmStatic
    fun fromBitmap(bitmap: Bitmap): RgbImage {
        val src = if (bitmap.config == Bitmap.Config.ARGB_8888) bitmap
        else bitmap.copy(Bitmap.Config.ARGB_8888, false)
            ?: throw IllegalArgumentException("cannot convert a ${bitmap.config} bitmap to ARGB_8888")
        val w = src.width
        val h = src.height
        val argb = IntArray(w * h)
        src.getPixels(argb, 0, w, 0, 0, w, h)
        if (src !== bitmap) src.recycle()
        return RgbImage.fromArgb(argb, w, h)
    }

    /**
     * A CameraX analysis frame produced with `OUTPUT_IMAGE_FORMAT_RGBA_8888`, honouring the plane's row
     * stride, turned upright by `imageInfo.rotationDegrees` when [upright] is true. The caller still owns
     * (and must close) the ImageProxy. The crop rect is ignored: ImageAnalysis frames are uncropped
     * unless a ViewPort is set.
     */
    @JvmStatic
    @JvmOverloads
    fun fromImageProxy(image: ImageProxy, upright: Boolean = true): RgbImage {
        require(image.format == PixelFormat.RGBA_8888) {
            "expected an RGBA_8888 frame (ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888), got format ${image.format}"
        }
        val plane = image.planes[0]
        val rotation = if (upright) image.imageInfo.rotationDegrees else 0
        return PixelMath.rgbFromRgbaPlane(plane.buffer, image.width, image.height, plane.rowStride, plane.pixelStride, rotation)
    }
}
