package org.clipdeploy.core;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Parity of embeddings against reference embeddings, with clip-latency's definitions and bars
 * (clipdeploy.latency.parity): max abs error, cosine (min, mean), zero-shot top-1 agreement against the
 * other tower's reference (a top-1 within {@link #ZERO_SHOT_TIE} of the reference's own top-1 similarity
 * is a tie, not a disagreement). Never cosine alone.
 */
public final class Parity {
    private Parity() {}

    public static final double FP32_MAX_ABS = 1e-5;
    public static final double FP16_MAX_ABS = 1.5e-3;
    public static final double FP16_MIN_COSINE = 0.99995;
    public static final double MIN_ZERO_SHOT_AGREEMENT = 1.0;
    /** Reference similarities this close to the top-1 are a tie, not a zero-shot disagreement. */
    public static final double ZERO_SHOT_TIE = 1e-4;
    /** int8 (quantized) bars: no max-abs bar. */
    public static final double INT8_MIN_COSINE = 0.999;
    public static final double INT8_MIN_ZERO_SHOT_AGREEMENT = 0.99;

    public static final class Figures {
        public final double maxAbs, cosineMin, cosineMean, zeroShotAgreement;
        public final int n;
        public final boolean finite;

        Figures(double maxAbs, double cosineMin, double cosineMean, double zeroShotAgreement, int n, boolean finite) {
            this.maxAbs = maxAbs;
            this.cosineMin = cosineMin;
            this.cosineMean = cosineMean;
            this.zeroShotAgreement = zeroShotAgreement;
            this.n = n;
            this.finite = finite;
        }

        /** JSON form; non-finite numbers become null (the report schema's convention). */
        public Map<String, Object> toMap() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("max_abs", maxAbs);
            m.put("cosine_min", cosineMin);
            m.put("cosine_mean", cosineMean);
            m.put("zero_shot_agreement", zeroShotAgreement);
            m.put("n", (long) n);
            m.put("finite", finite);
            return m;
        }

        @Override
        public String toString() {
            return String.format(Locale.ROOT, "max abs %.2e, min cos %.6f, zero-shot %.0f%%", maxAbs, cosineMin,
                    zeroShotAgreement * 100);
        }
    }

    public static Figures measure(float[][] reference, float[][] got, float[][] otherTower) {
        if (reference.length != got.length) {
            throw new IllegalArgumentException(got.length + " outputs for " + reference.length + " reference rows");
        }
        int n = got.length;
        for (int r = 0; r < n; r++) {
            if (reference[r].length != got[r].length) {
                throw new IllegalArgumentException("output dimension " + got[r].length + " != reference " + reference[r].length);
            }
        }
        for (float[] row : got) {
            if (!Vectors.allFinite(row)) return new Figures(Double.POSITIVE_INFINITY, Double.NaN, Double.NaN, 0.0, n, false);
        }
        double maxAbs = 0, cosMin = Double.POSITIVE_INFINITY, cosSum = 0;
        int agree = 0;
        double[][] other = new double[otherTower.length][];
        for (int m = 0; m < other.length; m++) other[m] = Vectors.unit(otherTower[m]);
        for (int r = 0; r < n; r++) {
            double[] a = Vectors.unit(reference[r]), b = Vectors.unit(got[r]);
            double cos = 0;
            for (int k = 0; k < a.length; k++) {
                maxAbs = Math.max(maxAbs, Math.abs((double) reference[r][k] - got[r][k]));
                cos += a[k] * b[k];
            }
            cosMin = Math.min(cosMin, cos);
            cosSum += cos;
            double[] sr = new double[other.length], sg = new double[other.length];
            for (int m = 0; m < other.length; m++) {
                for (int k = 0; k < a.length; k++) {
                    sr[m] += reference[r][k] * other[m][k];
                    sg[m] += got[r][k] * other[m][k];
                }
            }
            int topRef = Vectors.argmax(sr), topGot = Vectors.argmax(sg);
            if (topRef == topGot || sr[topRef] - sr[topGot] <= ZERO_SHOT_TIE) agree++;
        }
        return new Figures(maxAbs, cosMin, cosSum / n, n == 0 ? 0 : (double) agree / n, n, true);
    }

    /** The bars of {@code precision} ("fp32", "fp16" or "int8") that the figures miss; empty when they pass. */
    public static List<String> failures(Figures f, String precision) {
        Double maxAbs, minCos;
        double agreement = MIN_ZERO_SHOT_AGREEMENT;
        if ("fp32".equals(precision)) {
            maxAbs = FP32_MAX_ABS;
            minCos = null;
        } else if ("fp16".equals(precision)) {
            maxAbs = FP16_MAX_ABS;
            minCos = FP16_MIN_COSINE;
        } else if ("int8".equals(precision)) {
            maxAbs = null;
            minCos = INT8_MIN_COSINE;
            agreement = INT8_MIN_ZERO_SHOT_AGREEMENT;
        } else {
            throw new IllegalArgumentException("no parity bars for precision '" + precision + "' (fp32, fp16 or int8)");
        }
        List<String> out = new ArrayList<>();
        if (!f.finite) out.add("non-finite outputs");
        if (maxAbs != null && !(f.maxAbs <= maxAbs)) {
            out.add("max abs error " + pyG(f.maxAbs, 3) + " > " + pyG(maxAbs, 6));
        }
        if (minCos != null && !(f.cosineMin >= minCos)) {
            out.add("min cosine " + (Double.isNaN(f.cosineMin) ? "nan" : String.format(Locale.ROOT, "%.6f", f.cosineMin))
                    + " < " + minCos);
        }
        if (f.zeroShotAgreement < agreement) {
            out.add("zero-shot top-1 agreement " + (long) Math.rint(f.zeroShotAgreement * 100) + "% < "
                    + (long) Math.rint(agreement * 100) + "%");
        }
        return out;
    }

    // ------------------------------------------------------------------------------------------ classifier logits

    /**
     * The logits bars (clipdeploy.export.classifier's CLASSIFIER_THRESHOLDS): logits are {@code logit_scale x cosine},
     * so the max-abs bar is in cosine units (max abs / logit_scale): fp32 2e-5, fp16 1e-2, int8 none; top-1 agreement
     * 100 % (fp32, fp16), 99 % (int8).
     */
    public static final double FP32_MAX_ABS_COSINE_UNITS = 2e-5;
    public static final double FP16_MAX_ABS_COSINE_UNITS = 1e-2;
    public static final double MIN_TOP1_AGREEMENT = 1.0;
    public static final double INT8_MIN_TOP1_AGREEMENT = 0.99;

    /**
     * Parity of a classifier's logits [M, N] as clip-latency's worker measures it: the reference is the probe's
     * reference image embeddings times the class matrix times logit_scale (double, then float32), "the other tower"
     * the identity, so {@link #measure}'s figures are the logits' max abs, the cosine of each logit row with the
     * reference's and, as zero_shot_agreement, their top-1 agreement (ties within {@link #ZERO_SHOT_TIE} of the
     * normalized reference row are no disagreement). The report adds {@code top1_agreement} (the same number),
     * {@code max_abs_cosine_units} (max abs / logit_scale) and {@code tie}.
     */
    public static final class LogitFigures {
        public final Figures figures;
        public final double logitScale;

        LogitFigures(Figures figures, double logitScale) {
            this.figures = figures;
            this.logitScale = logitScale;
        }

        public double top1Agreement() {
            return figures.zeroShotAgreement;
        }

        /** The logits' max abs in cosine units (logits are logit_scale x cosine). */
        public double maxAbsCosineUnits() {
            return logitScale > 0 ? figures.maxAbs / logitScale : figures.maxAbs;
        }

        /** JSON form: the report schema's parity keys, then top1_agreement, max_abs_cosine_units and tie. */
        public Map<String, Object> toMap() {
            Map<String, Object> m = figures.toMap();
            m.put("top1_agreement", top1Agreement());
            m.put("max_abs_cosine_units", maxAbsCosineUnits());
            m.put("tie", ZERO_SHOT_TIE);
            return m;
        }

        @Override
        public String toString() {
            return String.format(Locale.ROOT, "logits max abs %.2e (%.2e x logit_scale), min cos %.6f, top-1 %.0f%%",
                    figures.maxAbs, maxAbsCosineUnits(), figures.cosineMin, top1Agreement() * 100);
        }
    }

    /** Reference logits of image embeddings: {@code logitScale * embedding . class} per class (double, then float32). */
    public static float[][] referenceLogits(float[][] imageEmbeddings, List<float[]> classes, double logitScale) {
        float[][] out = new float[imageEmbeddings.length][];
        for (int r = 0; r < out.length; r++) out[r] = ZeroShot.logits(imageEmbeddings[r], classes, logitScale);
        return out;
    }

    /** {@link LogitFigures} of {@code got} [M, N] against the reference logits of {@code refImage} [M, D]. */
    public static LogitFigures measureLogits(float[][] refImage, List<float[]> classes, double logitScale, float[][] got) {
        float[][] identity = new float[classes.size()][classes.size()];
        for (int k = 0; k < identity.length; k++) identity[k][k] = 1f;
        return new LogitFigures(measure(referenceLogits(refImage, classes, logitScale), got, identity), logitScale);
    }

    /** The logits bars of {@code precision} that the figures miss (clipdeploy.export.classifier's logit_failures). */
    public static List<String> failures(LogitFigures f, String precision) {
        Double bar;
        double agreement = MIN_TOP1_AGREEMENT;
        if ("fp32".equals(precision)) {
            bar = FP32_MAX_ABS_COSINE_UNITS;
        } else if ("fp16".equals(precision)) {
            bar = FP16_MAX_ABS_COSINE_UNITS;
        } else if ("int8".equals(precision)) {
            bar = null;
            agreement = INT8_MIN_TOP1_AGREEMENT;
        } else {
            throw new IllegalArgumentException("no parity bars for precision '" + precision + "' (fp32, fp16 or int8)");
        }
        List<String> out = new ArrayList<>();
        if (!f.figures.finite) out.add("non-finite logits");
        if (bar != null && !(f.maxAbsCosineUnits() <= bar)) {
            out.add("logits max abs " + pyG(f.figures.maxAbs, 3) + " (" + pyG(f.maxAbsCosineUnits(), 3) + " x logit_scale) > "
                    + pyG(bar, 6) + " x logit_scale");
        }
        if (f.top1Agreement() < agreement) {
            out.add(String.format(Locale.ROOT, "top-1 agreement %.1f%% < %d%% (%d of %d images)", f.top1Agreement() * 100,
                    Math.round(agreement * 100), Math.round((1 - f.top1Agreement()) * f.figures.n), f.figures.n));
        }
        return out;
    }

    /** Python's {@code format(v, '.Ng')} ({@code 'g'} is N = 6): N significant digits, trailing zeros dropped,
     * inf/nan spelled lowercase. */
    static String pyG(double v, int digits) {
        if (Double.isNaN(v)) return "nan";
        if (Double.isInfinite(v)) return v > 0 ? "inf" : "-inf";
        String t = String.format(Locale.ROOT, "%." + digits + "g", v);
        int e = t.indexOf('e');
        String mant = e < 0 ? t : t.substring(0, e), exp = e < 0 ? "" : t.substring(e);
        if (mant.indexOf('.') >= 0) {
            mant = mant.replaceAll("0+$", "");
            if (mant.endsWith(".")) mant = mant.substring(0, mant.length() - 1);
        }
        return mant + exp;
    }

}
