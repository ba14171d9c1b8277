package org.clipdeploy.core;

/** Pillow's resampling filters the model specs use: support and weight function. */
public enum Interpolation {
    BILINEAR(1.0) {
        @Override
        double weight(double x) {
            x = Math.abs(x);
            return x < 1.0 ? 1.0 - x : 0.0;
        }
    },
    BICUBIC(2.0) {
        @Override
        double weight(double x) {
            final double a = -0.5;
            x = Math.abs(x);
            if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
            if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
            return 0.0;
        }
    };

    final double support;

    Interpolation(double support) {
        this.support = support;
    }

    abstract double weight(double x);

    public static Interpolation of(String name) {
        if (name == null) throw new IllegalArgumentException("no interpolation given");
        switch (name.toLowerCase(java.util.Locale.ROOT)) {
            case "bilinear": return BILINEAR;
            case "bicubic": return BICUBIC;
            default: throw new IllegalArgumentException("unsupported interpolation '" + name + "' (bilinear or bicubic)");
        }
    }
}
