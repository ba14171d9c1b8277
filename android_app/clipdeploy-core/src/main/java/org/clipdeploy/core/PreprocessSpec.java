package org.clipdeploy.core;

import java.util.Map;

/** The manifest's {@code preprocessing} block: resize the shorter side, center crop, [0, 1] RGB. */
public final class PreprocessSpec {
    public final int imageSize;
    public final int resizeShorterSideTo;
    public final Interpolation interpolation;

    public PreprocessSpec(int imageSize, int resizeShorterSideTo, Interpolation interpolation) {
        if (imageSize <= 0 || resizeShorterSideTo < imageSize) {
            throw new IllegalArgumentException("bad preprocessing: crop " + imageSize + " from shorter side " + resizeShorterSideTo);
        }
        this.imageSize = imageSize;
        this.resizeShorterSideTo = resizeShorterSideTo;
        this.interpolation = interpolation;
    }

    public static PreprocessSpec fromManifest(Map<String, Object> manifest) {
        Map<String, Object> p = Json.map(manifest.get("preprocessing"));
        int size = (int) Json.num(p.get("image_size"));
        Object crop = p.get("center_crop");
        if (crop != null && (int) Json.num(crop) != size) {
            throw new IllegalArgumentException("center_crop " + crop + " differs from image_size " + size);
        }
        return new PreprocessSpec(size, (int) Json.num(p.get("resize_shorter_side_to")),
                Interpolation.of(Json.str(p.get("interpolation"))));
    }

    @Override
    public String toString() {
        return "resize shorter side to " + resizeShorterSideTo + " (" + interpolation.name().toLowerCase(java.util.Locale.ROOT)
                + "), center crop " + imageSize;
    }
}
