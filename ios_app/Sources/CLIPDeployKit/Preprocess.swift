import Foundation

/// Pillow's resampling filters the model specs use (the JVM core's `Interpolation`).
public enum Interpolation: String, CaseIterable {
    case bilinear
    case bicubic

    /// The filter's support (half-width) at scale 1.
    var support: Double {
        switch self {
        case .bilinear: return 1.0
        case .bicubic: return 2.0
        }
    }

    /// Pillow's `bilinear_filter` / `bicubic_filter` (a = -0.5).
    func weight(_ t: Double) -> Double {
        let x = abs(t)
        switch self {
        case .bilinear:
            return x < 1.0 ? 1.0 - x : 0.0
        case .bicubic:
            let a = -0.5
            if x < 1.0 { return ((a + 2.0) * x - (a + 3.0)) * x * x + 1 }
            if x < 2.0 { return (((x - 5) * x + 8) * x - 4) * a }
            return 0.0
        }
    }

    public static func of(_ name: String) throws -> Interpolation {
        guard let v = Interpolation(rawValue: name.lowercased()) else {
            throw CLIPDeployError(.preprocess, "unsupported interpolation '\(name)' (bilinear or bicubic)")
        }
        return v
    }
}

/// The manifest's `preprocessing` block: resize the shorter side, center crop, [0, 1] RGB
/// (the JVM core's `PreprocessSpec`).
public struct PreprocessSpec: Equatable, CustomStringConvertible {
    public let imageSize: Int
    public let resizeShorterSideTo: Int
    public let interpolation: Interpolation

    public init(imageSize: Int, resizeShorterSideTo: Int, interpolation: Interpolation) throws {
        guard imageSize > 0, resizeShorterSideTo >= imageSize else {
            throw CLIPDeployError(.preprocess,
                                  "bad preprocessing: crop \(imageSize) from shorter side \(resizeShorterSideTo)")
        }
        self.imageSize = imageSize
        self.resizeShorterSideTo = resizeShorterSideTo
        self.interpolation = interpolation
    }

    public static func fromManifest(_ manifest: [String: Any]) throws -> PreprocessSpec {
        let p = try Json.map(manifest["preprocessing"])
        let size = try Json.int(p["image_size"])
        if !Json.isNull(p["center_crop"]) {
            let crop = try Json.int(p["center_crop"])
            if crop != size {
                throw CLIPDeployError(.preprocess, "center_crop \(crop) differs from image_size \(size)")
            }
        }
        return try PreprocessSpec(imageSize: size, resizeShorterSideTo: try Json.int(p["resize_shorter_side_to"]),
                                  interpolation: try Interpolation.of(try Json.str(p["interpolation"])))
    }

    public var description: String {
        return "resize shorter side to \(resizeShorterSideTo) (\(interpolation.rawValue)), center crop \(imageSize)"
    }
}

/// The model input from an RGB image, bit-identical to clipdeploy's Python preprocessing (torchvision's
/// resize of a PIL image = Pillow's resampler; center crop; `to_tensor`), as the JVM core's `Preprocess`:
/// 1. resize so the shorter side is S: the longer becomes floor(S * long / short); Pillow's separable
///    convolution (antialiased: the filter widens by the downscale factor), horizontal pass then vertical,
///    each rounding to 8 bits in 22-bit fixed point;
/// 2. center crop R x R at round((H - R) / 2), round((W - R) / 2) with Python's round (half to even);
/// 3. float32 CHW, value / 255.
public enum Preprocess {
    static let precisionBits = 32 - 8 - 2

    /// (width, height) after resizing the shorter side to `shorter` (torchvision's rule).
    public static func resizedSize(width w: Int, height h: Int, shorter: Int) -> (width: Int, height: Int) {
        if w <= h { return (shorter, Int(Double(shorter * h) / Double(w))) }
        return (Int(Double(shorter * w) / Double(h)), shorter)
    }

    /// (top, left) of the center crop (Python's round: half to even).
    public static func cropOffsets(width w: Int, height h: Int, size: Int) throws -> (top: Int, left: Int) {
        guard w >= size, h >= size else {
            throw CLIPDeployError(.preprocess, "cannot crop \(size) from \(w)x\(h)")
        }
        let top = (Double(h - size) / 2.0).rounded(.toNearestOrEven)
        let left = (Double(w - size) / 2.0).rounded(.toNearestOrEven)
        return (Int(top), Int(left))
    }

    /// float32 [3 * R * R] (CHW) for the model.
    public static func apply(_ image: RGBImage, spec: PreprocessSpec) throws -> [Float] {
        return toCHW(try resizeAndCrop(image, spec: spec))
    }

    /// The resized and center-cropped R x R image (what the Core ML ImageType variant takes as pixels).
    public static func resizeAndCrop(_ image: RGBImage, spec: PreprocessSpec) throws -> RGBImage {
        let size = resizedSize(width: image.width, height: image.height, shorter: spec.resizeShorterSideTo)
        let resized = try resize(image, width: size.width, height: size.height, filter: spec.interpolation)
        return try centerCrop(resized, size: spec.imageSize)
    }

    public static func centerCrop(_ im: RGBImage, size: Int) throws -> RGBImage {
        let tl = try cropOffsets(width: im.width, height: im.height, size: size)
        var out = [UInt8](repeating: 0, count: size * size * 3)
        for y in 0..<size {
            let src = ((tl.top + y) * im.width + tl.left) * 3
            out.replaceSubrange((y * size * 3)..<((y + 1) * size * 3), with: im.rgb[src..<(src + size * 3)])
        }
        return RGBImage(uncheckedWidth: size, height: size, rgb: out)
    }

    public static func toCHW(_ im: RGBImage) -> [Float] {
        let n = im.width * im.height
        var out = [Float](repeating: 0, count: 3 * n)
        im.rgb.withUnsafeBufferPointer { px in
            out.withUnsafeMutableBufferPointer { dst in
                for p in 0..<n {
                    for c in 0..<3 { dst[c * n + p] = Float(px[3 * p + c]) / 255.0 }
                }
            }
        }
        return out
    }

    /// Pillow's `Image.resize((width, height), filter)` for RGB images.
    public static func resize(_ im: RGBImage, width outW: Int, height outH: Int,
                              filter: Interpolation) throws -> RGBImage {
        guard outW > 0, outH > 0 else {
            throw CLIPDeployError(.preprocess, "bad output size \(outW)x\(outH)")
        }
        var cur = im
        if outW != im.width {
            let c = coefficients(inSize: im.width, outSize: outW, filter: filter)
            var out = [UInt8](repeating: 0, count: outW * im.height * 3)
            im.rgb.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { dst in
                    for y in 0..<im.height {
                        let row = y * im.width * 3
                        for x in 0..<outW {
                            let first = c.bounds[2 * x], len = c.bounds[2 * x + 1], k0 = x * c.ksize
                            var s0 = 1 << (precisionBits - 1), s1 = s0, s2 = s0
                            for j in 0..<len {
                                let w = c.k[k0 + j], p = row + (first + j) * 3
                                s0 += Int(src[p]) * w
                                s1 += Int(src[p + 1]) * w
                                s2 += Int(src[p + 2]) * w
                            }
                            let d = (y * outW + x) * 3
                            dst[d] = clip8(s0)
                            dst[d + 1] = clip8(s1)
                            dst[d + 2] = clip8(s2)
                        }
                    }
                }
            }
            cur = RGBImage(uncheckedWidth: outW, height: im.height, rgb: out)
        }
        if outH != cur.height {
            let c = coefficients(inSize: cur.height, outSize: outH, filter: filter)
            var out = [UInt8](repeating: 0, count: outW * outH * 3)
            cur.rgb.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { dst in
                    for y in 0..<outH {
                        let first = c.bounds[2 * y], len = c.bounds[2 * y + 1], k0 = y * c.ksize
                        for x in 0..<outW {
                            var s0 = 1 << (precisionBits - 1), s1 = s0, s2 = s0
                            for j in 0..<len {
                                let w = c.k[k0 + j], p = ((first + j) * outW + x) * 3
                                s0 += Int(src[p]) * w
                                s1 += Int(src[p + 1]) * w
                                s2 += Int(src[p + 2]) * w
                            }
                            let d = (y * outW + x) * 3
                            dst[d] = clip8(s0)
                            dst[d + 1] = clip8(s1)
                            dst[d + 2] = clip8(s2)
                        }
                    }
                }
            }
            cur = RGBImage(uncheckedWidth: outW, height: outH, rgb: out)
        }
        return cur
    }

    @inline(__always)
    private static func clip8(_ acc: Int) -> UInt8 {
        let v = acc >> precisionBits          // arithmetic shift, as C's on int
        return UInt8(v < 0 ? 0 : (v > 255 ? 255 : v))
    }

    struct Coefficients {
        let ksize: Int
        /// Per output index: first input index, count.
        let bounds: [Int]
        /// Fixed-point weights, ksize per output index.
        let k: [Int]
    }

    /// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for one axis.
    static func coefficients(inSize: Int, outSize: Int, filter: Interpolation) -> Coefficients {
        let scale = Double(inSize) / Double(outSize)
        let filterscale = max(scale, 1.0)
        let support = filter.support * filterscale
        let ksize = Int(support.rounded(.up)) * 2 + 1
        var bounds = [Int](repeating: 0, count: 2 * outSize)
        var kk = [Int](repeating: 0, count: outSize * ksize)
        var w = [Double](repeating: 0, count: ksize)
        let one = Double(1 << precisionBits)
        for xx in 0..<outSize {
            let center = (Double(xx) + 0.5) * scale
            let ss = 1.0 / filterscale
            var xmin = Int(center - support + 0.5)        // C's (int) cast: truncation toward zero
            if xmin < 0 { xmin = 0 }
            var xmax = Int(center + support + 0.5)
            if xmax > inSize { xmax = inSize }
            xmax -= xmin
            var ww = 0.0
            for x in 0..<max(xmax, 0) {
                w[x] = filter.weight((Double(x + xmin) - center + 0.5) * ss)
                ww += w[x]
            }
            for x in 0..<max(xmax, 0) {
                let v = ww != 0.0 ? w[x] / ww : w[x]
                kk[xx * ksize + x] = v < 0 ? Int(-0.5 + v * one) : Int(0.5 + v * one)
            }
            bounds[2 * xx] = xmin
            bounds[2 * xx + 1] = xmax
        }
        return Coefficients(ksize: ksize, bounds: bounds, k: kk)
    }
}
