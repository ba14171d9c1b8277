package org.clipdeploy.app

import android.graphics.Bitmap
import android.graphics.BitmapFactory
import androidx.test.ext.junit.runners.AndroidJUnit4
import androidx.test.platform.app.InstrumentationRegistry
import org.clipdeploy.android.BitmapPixels
import org.clipdeploy.core.Interpolation
import org.clipdeploy.core.Json
import org.clipdeploy.core.Npy
import org.clipdeploy.core.Preprocess
import org.clipdeploy.core.PreprocessSpec
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNotNull
import org.junit.Assert.assertTrue
import org.junit.Test
import org.junit.runner.RunWith

/**
 * On the device: PNG -> BitmapFactory -> [BitmapPixels.fromBitmap] -> core Preprocess gives exactly the
 * float32 tensors Python's preprocess gave (goldens/preprocess.json, packed as test assets).
 */
@RunWith(AndroidJUnit4::class)
class BitmapPixelsGoldenTest {
    private val assets = InstrumentationRegistry.getInstrumentation().context.assets

    @Test
    fun bitmapsPreprocessBitExactly() {
        val cases = Json.list(Json.map(assets.open("preprocess.json").use { Json.parse(it) })["cases"])
        assertTrue(cases.size >= 5)
        for (o in cases) {
            val c = Json.map(o)
            val name = c["name"] as String
            val options = BitmapFactory.Options().apply {
                inPreferredConfig = Bitmap.Config.ARGB_8888
                inScaled = false
            }
            val bitmap = assets.open(c["source"] as String).use { BitmapFactory.decodeStream(it, null, options) }
            assertNotNull(name, bitmap)
            val image = BitmapPixels.fromBitmap(bitmap!!)
            assertEquals(name, (c["width"] as Number).toInt(), image.width)
            assertEquals(name, (c["height"] as Number).toInt(), image.height)
            val spec = PreprocessSpec((c["image_size"] as Number).toInt(), (c["resize_shorter_side_to"] as Number).toInt(),
                Interpolation.of(c["interpolation"] as String))
            val got = Preprocess.apply(image, spec)
            val want = assets.open(c["expected"] as String).use { Npy.read(it) }.floats()
            assertEquals(name, want.size, got.size)
            val differing = want.indices.count { java.lang.Float.floatToIntBits(want[it]) != java.lang.Float.floatToIntBits(got[it]) }
            assertEquals("$name: values that differ from Python's preprocess", 0, differing)
        }
    }
}
