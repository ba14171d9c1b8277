import Foundation
import XCTest
@testable import CLIPDeployKit
#if canImport(ImageIO) && canImport(CoreGraphics) && canImport(CoreVideo)
import CoreGraphics
import CoreVideo
import ImageIO
#endif

/// The JVM core's PreprocessGoldenTest, case for case. The source images come from the goldens' decoded pixels
/// (`preprocess/<name>.rgb.npy`, uint8 [H, W, 3]) on every platform; where ImageIO exists the PNGs are also
/// decoded with it and must equal those pixels. Plus the CGImage and CVPixelBuffer paths on Apple platforms.
final class PreprocessGoldenTests: XCTestCase {
    /// A golden case's source image from its `.rgb.npy` (no decoder involved).
    static func readPixels(_ url: URL) throws -> RGBImage {
        let npy = try Npy.read(contentsOf: url)
        guard npy.dtype == "|u1", npy.shape.count == 3, npy.shape[2] == 3 else {
            throw CLIPDeployError(.preprocess, "\(url.path): expected uint8 [H, W, 3], got \(npy.dtype) \(npy.shape)")
        }
        return try RGBImage(width: npy.shape[1], height: npy.shape[0], rgb: try npy.bytes())
    }

    func testEveryGoldenImagePreprocessesBitExactly() throws {
        let cases = try Json.list(Goldens.json("preprocess.json")["cases"])
        XCTAssertGreaterThanOrEqual(cases.count, 5)
        var bicubic = false, upscale = false
        for o in cases {
            let c = try Json.map(o)
            let name = try Json.str(c["name"])
            let src = try PreprocessGoldenTests.readPixels(Goldens.file(try Json.str(c["pixels"])))
            XCTAssertEqual(src.width, try Json.int(c["width"]), name)
            XCTAssertEqual(src.height, try Json.int(c["height"]), name)
            let spec = try PreprocessSpec(imageSize: try Json.int(c["image_size"]),
                                          resizeShorterSideTo: try Json.int(c["resize_shorter_side_to"]),
                                          interpolation: try Interpolation.of(try Json.str(c["interpolation"])))
            let resized = Preprocess.resizedSize(width: src.width, height: src.height, shorter: spec.resizeShorterSideTo)
            XCTAssertEqual([resized.width, resized.height], try Json.ints(c["resized"]), name)
            let crop = try Preprocess.cropOffsets(width: resized.width, height: resized.height, size: spec.imageSize)
            XCTAssertEqual([crop.top, crop.left], try Json.ints(c["crop"]), name)
            let want = try Npy.read(contentsOf: Goldens.file(try Json.str(c["expected"])))
            XCTAssertEqual(want.shape, [3, spec.imageSize, spec.imageSize], name)
            let got = try Preprocess.apply(src, spec: spec)
            let exp = want.floats()
            XCTAssertEqual(exp.count, got.count, name)
            var diff = 0
            for k in 0..<min(exp.count, got.count) where exp[k].bitPattern != got[k].bitPattern { diff += 1 }
            XCTAssertEqual(diff, 0, "\(name): values that differ from Python's preprocess")
            bicubic = bicubic || spec.interpolation == .bicubic
            upscale = upscale || min(src.width, src.height) < spec.resizeShorterSideTo
        }
        XCTAssertTrue(bicubic, "goldens cover bicubic")
        XCTAssertTrue(upscale, "goldens cover upscaling")
    }

    /// Swift only: the pixel reader rejects what is not an 8-bit RGB image, in one line.
    func testPixelsThatAreNotRGBBytesAreRejected() throws {
        let dir = try Goldens.temporaryDirectory(self)
        let f = dir.appendingPathComponent("x.npy")
        try Npy.encode(floats: [Float](repeating: 0, count: 12), shape: [2, 2, 3]).write(to: f)
        XCTAssertThrowsError(try PreprocessGoldenTests.readPixels(f)) { error in
            XCTAssertTrue(oneLine(error).contains("expected uint8 [H, W, 3]"), oneLine(error))
        }
        XCTAssertThrowsError(try RGBImage(width: 3, height: 2, rgb: [UInt8](repeating: 0, count: 17))) { error in
            XCTAssertFalse(oneLine(error).isEmpty)
        }
    }

    #if canImport(ImageIO) && canImport(CoreGraphics) && canImport(CoreVideo)
    /// Decode a PNG with ImageIO and read its raw pixels (no color conversion).
    static func readPNG(_ url: URL) throws -> RGBImage {
        guard let src = CGImageSourceCreateWithURL(url as CFURL, nil),
              let image = CGImageSourceCreateImageAtIndex(src, 0, nil) else {
            throw CLIPDeployError(.preprocess, "cannot decode \(url.path)")
        }
        return try RGBImage(cgImage: image)
    }

    /// Apple only: ImageIO's decoding of each golden PNG is the goldens' pixels (what the app's photos go through).
    func testImageIODecodesTheGoldenPNGsToTheirPixels() throws {
        for o in try Json.list(Goldens.json("preprocess.json")["cases"]) {
            let c = try Json.map(o)
            XCTAssertEqual(try PreprocessGoldenTests.readPNG(Goldens.file(try Json.str(c["source"]))),
                           try PreprocessGoldenTests.readPixels(Goldens.file(try Json.str(c["pixels"]))),
                           try Json.str(c["name"]))
        }
    }

    /// Swift only: a CGImage made from known bytes (RGBA, premultiplied, opaque) reads back exactly, and a
    /// CVPixelBuffer made from an image reads back exactly.
    func testCGImageAndPixelBufferRoundTrip() throws {
        let w = 5, h = 3
        var rgba = [UInt8](repeating: 255, count: w * h * 4)
        var rgb = [UInt8](repeating: 0, count: w * h * 3)
        for p in 0..<(w * h) {
            for c in 0..<3 {
                let v = UInt8((p * 37 + c * 91) % 256)
                rgba[4 * p + c] = v
                rgb[3 * p + c] = v
            }
        }
        let space = try XCTUnwrap(CGColorSpace(name: CGColorSpace.sRGB))
        let provider = try XCTUnwrap(CGDataProvider(data: Data(rgba) as CFData))
        let info = CGBitmapInfo(rawValue: CGImageAlphaInfo.premultipliedLast.rawValue)
        let image = try XCTUnwrap(CGImage(width: w, height: h, bitsPerComponent: 8, bitsPerPixel: 32,
                                          bytesPerRow: w * 4, space: space, bitmapInfo: info, provider: provider,
                                          decode: nil, shouldInterpolate: false, intent: .defaultIntent))
        let expected = try RGBImage(width: w, height: h, rgb: rgb)
        XCTAssertEqual(try RGBImage(cgImage: image), expected)

        let buffer = try expected.pixelBuffer()
        XCTAssertEqual(CVPixelBufferGetPixelFormatType(buffer), kCVPixelFormatType_32BGRA)
        XCTAssertEqual(try RGBImage(pixelBuffer: buffer), expected)
    }
    #endif

    func testCropUsesPythonRoundHalfToEven() throws {
        let a = try Preprocess.cropOffsets(width: 341, height: 256, size: 256)      // 42.5 -> 42
        XCTAssertEqual([a.top, a.left], [0, 42])
        let b = try Preprocess.cropOffsets(width: 256, height: 259, size: 256)      // 1.5 -> 2
        XCTAssertEqual([b.top, b.left], [2, 0])
        let r1 = Preprocess.resizedSize(width: 640, height: 480, shorter: 256)
        XCTAssertEqual([r1.width, r1.height], [341, 256])
        let r2 = Preprocess.resizedSize(width: 300, height: 451, shorter: 256)
        XCTAssertEqual([r2.width, r2.height], [256, 384])
    }

    func testPixelLayoutsAgree() throws {
        let w = 3, h = 2, stride = 16
        var argb = [UInt32](repeating: 0, count: w * h)
        var rgba = [UInt8](repeating: 0, count: stride * h)
        var bgra = [UInt8](repeating: 0, count: stride * h)
        for y in 0..<h {
            for x in 0..<w {
                let r = 10 * x + y, g = 100 + x, b = 200 + y
                argb[y * w + x] = 0xff00_0000 | UInt32(r) << 16 | UInt32(g) << 8 | UInt32(b)
                let s = y * stride + 4 * x
                rgba[s] = UInt8(r); rgba[s + 1] = UInt8(g); rgba[s + 2] = UInt8(b); rgba[s + 3] = 255
                bgra[s] = UInt8(b); bgra[s + 1] = UInt8(g); bgra[s + 2] = UInt8(r); bgra[s + 3] = 255
            }
        }
        let a = try RGBImage.fromARGB(argb, width: w, height: h)
        XCTAssertEqual(a.rgb, try RGBImage.fromRGBA(rgba, width: w, height: h, rowStrideBytes: stride).rgb)
        XCTAssertEqual(a.rgb, try RGBImage.fromBGRA(bgra, width: w, height: h, rowStrideBytes: stride).rgb)
        XCTAssertEqual(a.get(x: 2, y: 1, channel: 0), 21)
    }

    func testIdentityResizeAndChwLayout() throws {
        let px = (0..<12).map { UInt8(($0 * 20) % 256) }
        let im = try RGBImage(width: 2, height: 2, rgb: px)
        XCTAssertEqual(try Preprocess.resize(im, width: 2, height: 2, filter: .bilinear).rgb, px)
        let chw = Preprocess.toCHW(im)
        XCTAssertEqual(chw[0], 0)                       // R of pixel 0
        XCTAssertEqual(chw[1], Float(60) / 255)         // R of pixel 1
        XCTAssertEqual(chw[4], Float(20) / 255)         // G of pixel 0
    }

    func testRotationIsClockwise() throws {
        // 2x1 image: red, green  ->  90 cw: a 1x2 column red over green
        let im = try RGBImage(width: 2, height: 1, rgb: [255, 0, 0, 0, 255, 0])
        let r90 = try im.rotated(90)
        XCTAssertEqual(r90.width, 1)
        XCTAssertEqual(r90.height, 2)
        XCTAssertEqual(r90.get(x: 0, y: 0, channel: 0), 255)
        XCTAssertEqual(r90.get(x: 0, y: 1, channel: 1), 255)
        let r270 = try im.rotated(-90)
        XCTAssertEqual(r270.get(x: 0, y: 0, channel: 1), 255)
        XCTAssertEqual(try im.rotated(180).rgb, [0, 255, 0, 255, 0, 0])
        XCTAssertEqual(try im.rotated(90).rotated(270).rgb, im.rgb)
        XCTAssertEqual(try im.rotated(360), im)
        XCTAssertThrowsError(try im.rotated(45)) { error in
            XCTAssertTrue(oneLine(error).contains("multiple of 90"))
        }
    }

    /// Swift only: the probe images, quantized to 8 bits, are what the ImageType variant is fed
    /// (clip-latency's Core ML runtime: np.round(x * 255) in float32, clipped to 0..255).
    func testFromCHWRoundsLikeClipLatency() throws {
        // channel-major [3, 2, 2]: R = (0, 0.5, 1, 0.2), G = (0.25, 0.998, 0.001, 1.2), B = (-0.1, 0.4, 0.6, 0.7)
        let chw: [Float] = [0, 0.5, 1, 0.2, 0.25, 0.998, 0.001, 1.2, -0.1, 0.4, 0.6, 0.7]
        let im = try RGBImage.fromCHW(chw, size: 2)
        XCTAssertEqual([im.get(x: 0, y: 0, channel: 0), im.get(x: 0, y: 0, channel: 1), im.get(x: 0, y: 0, channel: 2)],
                       [0, 64, 0])                               // 63.75 -> 64; -0.1 clipped
        XCTAssertEqual(im.get(x: 1, y: 0, channel: 0), 128)      // 127.5: half to even
        XCTAssertEqual(im.get(x: 1, y: 0, channel: 1), 254)      // 254.49
        XCTAssertEqual(im.get(x: 0, y: 1, channel: 1), 0)        // 0.255
        XCTAssertEqual(im.get(x: 1, y: 1, channel: 1), 255)      // 1.2 clipped
    }
}
