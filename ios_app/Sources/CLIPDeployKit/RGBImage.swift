import Foundation

/// An 8-bit RGB image, interleaved, row-major (the JVM core's `RgbImage`): what every platform's pixels
/// are turned into before preprocessing. Platform constructors (CGImage, CVPixelBuffer) live in
/// RGBImage+CoreGraphics.swift.
public struct RGBImage: Equatable {
    public let width: Int
    public let height: Int
    /// width * height * 3 bytes, R G B per pixel.
    public let rgb: [UInt8]

    public init(width: Int, height: Int, rgb: [UInt8]) throws {
        guard width > 0, height > 0 else {
            throw CLIPDeployError(.preprocess, "image size must be positive, got \(width)x\(height)")
        }
        guard rgb.count == width * height * 3 else {
            throw CLIPDeployError(.preprocess,
                                  "expected \(width * height * 3) RGB bytes for \(width)x\(height), got \(rgb.count)")
        }
        self.width = width
        self.height = height
        self.rgb = rgb
    }

    /// For arrays whose size is already known to be right (internal producers).
    init(uncheckedWidth width: Int, height: Int, rgb: [UInt8]) {
        self.width = width
        self.height = height
        self.rgb = rgb
    }

    public func get(x: Int, y: Int, channel: Int) -> Int {
        return Int(rgb[(y * width + x) * 3 + channel])
    }

    /// Packed ARGB integers (alpha dropped), as `RgbImage.fromArgb` in the JVM core.
    public static func fromARGB(_ argb: [UInt32], width: Int, height: Int) throws -> RGBImage {
        guard argb.count >= width * height else {
            throw CLIPDeployError(.preprocess, "too few pixels for \(width)x\(height)")
        }
        var out = [UInt8](repeating: 0, count: width * height * 3)
        for p in 0..<(width * height) {
            let v = argb[p]
            out[3 * p] = UInt8((v >> 16) & 0xff)
            out[3 * p + 1] = UInt8((v >> 8) & 0xff)
            out[3 * p + 2] = UInt8(v & 0xff)
        }
        return try RGBImage(width: width, height: height, rgb: out)
    }

    /// RGBA bytes with a row stride; alpha dropped (not composited, as Pillow's RGBA -> RGB conversion).
    public static func fromRGBA(_ bytes: UnsafeRawBufferPointer, width: Int, height: Int,
                                rowStrideBytes: Int) throws -> RGBImage {
        return try fromFourChannel(bytes, width: width, height: height, stride: rowStrideBytes, r: 0, g: 1, b: 2)
    }

    /// BGRA bytes with a row stride (`kCVPixelFormatType_32BGRA`); alpha dropped.
    public static func fromBGRA(_ bytes: UnsafeRawBufferPointer, width: Int, height: Int,
                                rowStrideBytes: Int) throws -> RGBImage {
        return try fromFourChannel(bytes, width: width, height: height, stride: rowStrideBytes, r: 2, g: 1, b: 0)
    }

    /// ARGB bytes with a row stride (`kCVPixelFormatType_32ARGB`); alpha dropped.
    public static func fromARGBBytes(_ bytes: UnsafeRawBufferPointer, width: Int, height: Int,
                                     rowStrideBytes: Int) throws -> RGBImage {
        return try fromFourChannel(bytes, width: width, height: height, stride: rowStrideBytes, r: 1, g: 2, b: 3)
    }

    /// Convenience overloads on byte arrays (tests, the JVM core's signatures).
    public static func fromRGBA(_ bytes: [UInt8], width: Int, height: Int, rowStrideBytes: Int) throws -> RGBImage {
        return try bytes.withUnsafeBytes {
            try fromRGBA($0, width: width, height: height, rowStrideBytes: rowStrideBytes)
        }
    }

    public static func fromBGRA(_ bytes: [UInt8], width: Int, height: Int, rowStrideBytes: Int) throws -> RGBImage {
        return try bytes.withUnsafeBytes {
            try fromBGRA($0, width: width, height: height, rowStrideBytes: rowStrideBytes)
        }
    }

    /// Any layout of `bytesPerPixel` bytes per pixel with R, G, B at the given byte offsets.
    static func fromInterleaved(_ src: UnsafeRawBufferPointer, width: Int, height: Int, stride: Int,
                                bytesPerPixel: Int, r: Int, g: Int, b: Int) throws -> RGBImage {
        guard width > 0, height > 0 else {
            throw CLIPDeployError(.preprocess, "image size must be positive, got \(width)x\(height)")
        }
        guard stride >= width * bytesPerPixel else {
            throw CLIPDeployError(.preprocess,
                                  "row stride \(stride) < width * \(bytesPerPixel) = \(width * bytesPerPixel)")
        }
        guard src.count >= stride * (height - 1) + width * bytesPerPixel else {
            throw CLIPDeployError(.preprocess, "buffer too small for \(width)x\(height)")
        }
        var out = [UInt8](repeating: 0, count: width * height * 3)
        out.withUnsafeMutableBufferPointer { dst in
            for y in 0..<height {
                let row = y * stride
                for x in 0..<width {
                    let s = row + bytesPerPixel * x, d = 3 * (y * width + x)
                    dst[d] = src[s + r]
                    dst[d + 1] = src[s + g]
                    dst[d + 2] = src[s + b]
                }
            }
        }
        return RGBImage(uncheckedWidth: width, height: height, rgb: out)
    }

    private static func fromFourChannel(_ src: UnsafeRawBufferPointer, width: Int, height: Int, stride: Int,
                                        r: Int, g: Int, b: Int) throws -> RGBImage {
        return try fromInterleaved(src, width: width, height: height, stride: stride, bytesPerPixel: 4,
                                   r: r, g: g, b: b)
    }

    /// The image turned clockwise by `degrees` (0, 90, 180, 270; negative values turn counter-clockwise):
    /// e.g. 90 makes a back-camera frame (sensor landscape) upright in portrait. 0 returns this image.
    public func rotated(_ degrees: Int) throws -> RGBImage {
        let d = ((degrees % 360) + 360) % 360
        if d == 0 { return self }
        guard d == 90 || d == 180 || d == 270 else {
            throw CLIPDeployError(.preprocess, "rotation must be a multiple of 90 degrees, got \(degrees)")
        }
        let outW = d == 180 ? width : height, outH = d == 180 ? height : width
        var out = [UInt8](repeating: 0, count: rgb.count)
        for y in 0..<height {
            for x in 0..<width {
                let dx = d == 90 ? height - 1 - y : (d == 180 ? width - 1 - x : y)
                let dy = d == 90 ? x : (d == 180 ? height - 1 - y : width - 1 - x)
                let s = (y * width + x) * 3, t = (dy * outW + dx) * 3
                out[t] = rgb[s]
                out[t + 1] = rgb[s + 1]
                out[t + 2] = rgb[s + 2]
            }
        }
        return RGBImage(uncheckedWidth: outW, height: outH, rgb: out)
    }

    /// 32-bit BGRA bytes (alpha 255), `width * 4` per row: the layout of a `kCVPixelFormatType_32BGRA` buffer.
    public func bgraBytes() -> [UInt8] {
        var out = [UInt8](repeating: 255, count: width * height * 4)
        for p in 0..<(width * height) {
            out[4 * p] = rgb[3 * p + 2]
            out[4 * p + 1] = rgb[3 * p + 1]
            out[4 * p + 2] = rgb[3 * p]
        }
        return out
    }

    /// The image of a float32 CHW tensor in [0, 1] (the probe images): round(x * 255), clamped.
    public static func fromCHW(_ chw: [Float], size: Int) throws -> RGBImage {
        let n = size * size
        guard chw.count == 3 * n else {
            throw CLIPDeployError(.preprocess, "\(chw.count) values are not a [3, \(size), \(size)] image")
        }
        var out = [UInt8](repeating: 0, count: 3 * n)
        for p in 0..<n {
            for c in 0..<3 {
                // float32 arithmetic, as clip-latency's Core ML runtime: np.round(x * 255.0), clipped
                let v = (chw[c * n + p] * Float(255)).rounded(.toNearestOrEven)
                out[3 * p + c] = UInt8(max(Float(0), min(Float(255), v.isFinite ? v : 0)))
            }
        }
        return RGBImage(uncheckedWidth: size, height: size, rgb: out)
    }
}
