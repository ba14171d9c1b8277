#if canImport(CoreGraphics) && canImport(CoreVideo)
import CoreGraphics
import CoreVideo
import Foundation

extension RGBImage {
    /// The pixels of a `CGImage` as 8-bit RGB.
    ///
    /// Exact path (no color management, no resampling): 8-bit RGB or gray images, with or without alpha,
    /// in any byte order, are read straight from the decoded bitmap (`dataProvider`). This is what Pillow's
    /// `Image.open(...).convert("RGB")` sees for a PNG or JPEG: the stored values, untouched.
    ///
    /// Alpha: dropped, not composited (Pillow's RGBA -> RGB conversion keeps the stored color). Where the
    /// bitmap is *premultiplied* the color is divided back by alpha (rounded): exact for opaque pixels,
    /// within one step for translucent ones, undefined (black) where alpha is 0.
    ///
    /// Anything else (16-bit or float components, CMYK, indexed, ...) is drawn into an 8-bit RGBA bitmap
    /// context (premultipliedLast) in the image's own color space when that is RGB, else sRGB, and then
    /// un-premultiplied as above; that path converts colors and is not bit-exact with Python.
    public init(cgImage image: CGImage) throws {
        if let exact = try RGBImage.readDirect(image) {
            self = exact
            return
        }
        self = try RGBImage.readByDrawing(image)
    }

    private static func readDirect(_ image: CGImage) throws -> RGBImage? {
        let w = image.width, h = image.height
        guard w > 0, h > 0, image.bitsPerComponent == 8,
              !image.bitmapInfo.contains(.floatComponents),
              let space = image.colorSpace,
              let data = image.dataProvider?.data else { return nil }
        let alpha = image.alphaInfo
        let order = image.byteOrderInfo
        let bpp = image.bitsPerPixel / 8
        let alphaFirst = alpha == .first || alpha == .premultipliedFirst || alpha == .noneSkipFirst
        let alphaLast = alpha == .last || alpha == .premultipliedLast || alpha == .noneSkipLast
        let premultiplied = alpha == .premultipliedFirst || alpha == .premultipliedLast
        // logical (big-endian) component offsets, then the byte order's reversal
        var r = 0, g = 1, b = 2, a = -1
        switch (space.model, bpp) {
        case (.rgb, 3) where alpha == CGImageAlphaInfo.none:
            break
        case (.rgb, 4) where alphaFirst:
            (a, r, g, b) = (0, 1, 2, 3)
        case (.rgb, 4) where alphaLast:
            (r, g, b, a) = (0, 1, 2, 3)
        case (.monochrome, 1) where alpha == CGImageAlphaInfo.none:
            (r, g, b) = (0, 0, 0)
        case (.monochrome, 2) where alphaFirst:
            (a, r, g, b) = (0, 1, 1, 1)
        case (.monochrome, 2) where alphaLast:
            (r, g, b, a) = (0, 0, 0, 1)
        default:
            return nil
        }
        switch order {
        case .orderDefault, .order32Big, .order16Big:
            break
        case .order32Little where bpp == 4, .order16Little where bpp == 2:
            (r, g, b) = (bpp - 1 - r, bpp - 1 - g, bpp - 1 - b)
            if a >= 0 { a = bpp - 1 - a }
        default:
            return nil
        }
        let bytes = data as Data
        guard bytes.count >= image.bytesPerRow * (h - 1) + w * bpp else { return nil }
        var img = try bytes.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> RGBImage in
            try fromInterleaved(raw, width: w, height: h, stride: image.bytesPerRow, bytesPerPixel: bpp,
                                r: r, g: g, b: b)
        }
        if premultiplied && a >= 0 {
            let alphas: [UInt8] = bytes.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> [UInt8] in
                var out = [UInt8](repeating: 255, count: w * h)
                for y in 0..<h {
                    for x in 0..<w { out[y * w + x] = raw[y * image.bytesPerRow + x * bpp + a] }
                }
                return out
            }
            img = unpremultiplied(img, alphas: alphas)
        }
        return img
    }

    private static func readByDrawing(_ image: CGImage) throws -> RGBImage {
        let w = image.width, h = image.height
        guard w > 0, h > 0 else { throw CLIPDeployError(.preprocess, "empty image") }
        let info = CGImageAlphaInfo.premultipliedLast.rawValue | CGBitmapInfo.byteOrder32Big.rawValue
        var spaces: [CGColorSpace] = []
        if let own = image.colorSpace, own.model == .rgb { spaces.append(own) }
        if let srgb = CGColorSpace(name: CGColorSpace.sRGB) { spaces.append(srgb) }
        for space in spaces {
            guard let ctx = CGContext(data: nil, width: w, height: h, bitsPerComponent: 8, bytesPerRow: w * 4,
                                      space: space, bitmapInfo: info) else { continue }
            ctx.interpolationQuality = .none
            ctx.draw(image, in: CGRect(x: 0, y: 0, width: w, height: h))
            guard let base = ctx.data else { continue }
            let raw = UnsafeRawBufferPointer(start: base, count: ctx.bytesPerRow * h)
            let img = try fromInterleaved(raw, width: w, height: h, stride: ctx.bytesPerRow, bytesPerPixel: 4,
                                          r: 0, g: 1, b: 2)
            var alphas = [UInt8](repeating: 255, count: w * h)
            for y in 0..<h {
                for x in 0..<w { alphas[y * w + x] = raw[y * ctx.bytesPerRow + x * 4 + 3] }
            }
            return unpremultiplied(img, alphas: alphas)
        }
        throw CLIPDeployError(.preprocess, "cannot draw a \(w)x\(h) image into an RGB bitmap")
    }

    /// color * 255 / alpha, rounded, for every pixel whose alpha is below 255.
    private static func unpremultiplied(_ img: RGBImage, alphas: [UInt8]) -> RGBImage {
        guard alphas.contains(where: { $0 < 255 }) else { return img }
        var px = img.rgb
        for p in 0..<alphas.count where alphas[p] < 255 {
            let a = Int(alphas[p])
            for c in 0..<3 {
                px[3 * p + c] = a == 0 ? 0 : UInt8(min(255, (Int(px[3 * p + c]) * 255 + a / 2) / a))
            }
        }
        return RGBImage(uncheckedWidth: img.width, height: img.height, rgb: px)
    }

    /// The pixels of a `CVPixelBuffer` in `kCVPixelFormatType_32BGRA` (camera frames), `32ARGB` or
    /// `32RGBA`; the base address is locked read-only and rows are read with the buffer's bytesPerRow.
    public init(pixelBuffer: CVPixelBuffer) throws {
        let format = CVPixelBufferGetPixelFormatType(pixelBuffer)
        guard !CVPixelBufferIsPlanar(pixelBuffer) else {
            throw CLIPDeployError(.preprocess, "planar pixel buffers (YUV) are not supported: ask the camera for "
                                  + "kCVPixelFormatType_32BGRA")
        }
        CVPixelBufferLockBaseAddress(pixelBuffer, .readOnly)
        defer { CVPixelBufferUnlockBaseAddress(pixelBuffer, .readOnly) }
        guard let base = CVPixelBufferGetBaseAddress(pixelBuffer) else {
            throw CLIPDeployError(.preprocess, "pixel buffer has no base address")
        }
        let w = CVPixelBufferGetWidth(pixelBuffer)
        let h = CVPixelBufferGetHeight(pixelBuffer)
        let stride = CVPixelBufferGetBytesPerRow(pixelBuffer)
        let raw = UnsafeRawBufferPointer(start: base, count: stride * h)
        switch format {
        case kCVPixelFormatType_32BGRA:
            self = try RGBImage.fromBGRA(raw, width: w, height: h, rowStrideBytes: stride)
        case kCVPixelFormatType_32ARGB:
            self = try RGBImage.fromARGBBytes(raw, width: w, height: h, rowStrideBytes: stride)
        case kCVPixelFormatType_32RGBA:
            self = try RGBImage.fromRGBA(raw, width: w, height: h, rowStrideBytes: stride)
        default:
            throw CLIPDeployError(.preprocess, "unsupported pixel format \(fourCC(format)): use 32BGRA, 32ARGB or 32RGBA")
        }
    }

    /// A new `kCVPixelFormatType_32BGRA` buffer of this image (alpha 255): the input of the Core ML
    /// ImageType variant (`image_encoder_imagetype.mlpackage`), after `Preprocess.resizeAndCrop`.
    public func pixelBuffer() throws -> CVPixelBuffer {
        var created: CVPixelBuffer?
        let attrs: [String: Any] = [
            kCVPixelBufferCGImageCompatibilityKey as String: true,
            kCVPixelBufferCGBitmapContextCompatibilityKey as String: true,
            kCVPixelBufferIOSurfacePropertiesKey as String: [String: Any](),
        ]
        let status = CVPixelBufferCreate(kCFAllocatorDefault, width, height, kCVPixelFormatType_32BGRA,
                                         attrs as CFDictionary, &created)
        guard status == kCVReturnSuccess, let buffer = created else {
            throw CLIPDeployError(.preprocess, "CVPixelBufferCreate failed (\(status))")
        }
        CVPixelBufferLockBaseAddress(buffer, [])
        defer { CVPixelBufferUnlockBaseAddress(buffer, []) }
        guard let base = CVPixelBufferGetBaseAddress(buffer) else {
            throw CLIPDeployError(.preprocess, "pixel buffer has no base address")
        }
        let stride = CVPixelBufferGetBytesPerRow(buffer)
        let dst = base.assumingMemoryBound(to: UInt8.self)
        for y in 0..<height {
            for x in 0..<width {
                let s = 3 * (y * width + x), d = y * stride + 4 * x
                dst[d] = rgb[s + 2]
                dst[d + 1] = rgb[s + 1]
                dst[d + 2] = rgb[s]
                dst[d + 3] = 255
            }
        }
        return buffer
    }
}

/// "BGRA" for 'BGRA' (a pixel format's four-character code).
func fourCC(_ code: OSType) -> String {
    let chars = [24, 16, 8, 0].map { Character(UnicodeScalar(UInt8((code >> UInt32($0)) & 0xff))) }
    return String(chars)
}
#endif
