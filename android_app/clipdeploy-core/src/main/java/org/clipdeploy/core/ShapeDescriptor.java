package org.clipdeploy.core;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * One dimension descriptor of a manifest artifact's {@code shapes} ({@code clipdeploy.models.shapes}): the sizes an
 * input dimension (the batch, a text input's length) accepts.
 * <pre>
 *   {"kind": "fixed",      "values": [77], "reason": "..."}
 *   {"kind": "enumerated", "values": [8, 16, 32, 77]}        Core ML EnumeratedShapes
 *   {"kind": "dynamic",    "min": 1, "max": 77}               ONNX / ExecuTorch dynamic dim
 *   {"kind": "dynamic",    "min": 1, "max": null}             unbounded (ONNX batch)
 * </pre>
 * {@link #parse} is as strict as Python's {@code validate} and its messages name the same problem with the same
 * phrase ({@code goldens/token_lengths.json} "malformed").
 */
public final class ShapeDescriptor {
    public static final String FIXED = "fixed", ENUMERATED = "enumerated", DYNAMIC = "dynamic";
    /** {@link #max} of a dynamic dimension without an upper bound. */
    public static final int UNBOUNDED = -1;

    /** A descriptor is malformed, or a size does not fit it. */
    public static final class ShapeException extends IllegalArgumentException {
        private static final long serialVersionUID = 1L;

        public ShapeException(String message) {
            super(message);
        }
    }

    public final String kind;
    /** fixed / enumerated: the accepted sizes, increasing; dynamic: empty. */
    private final int[] values;
    /** dynamic: the bounds ({@link #UNBOUNDED} max: none); fixed / enumerated: the first and last value. */
    public final int min, max;
    /** The manifest's "reason" (why a dimension is fixed), or null. */
    public final String reason;

    private ShapeDescriptor(String kind, int[] values, int min, int max, String reason) {
        this.kind = kind;
        this.values = values;
        this.min = min;
        this.max = max;
        this.reason = reason;
    }

    public static ShapeDescriptor fixed(int value) {
        return fixed(value, null);
    }

    public static ShapeDescriptor fixed(int value, String reason) {
        if (value < 1) throw new ShapeException("fixed needs a positive size, got " + value);
        return new ShapeDescriptor(FIXED, new int[] {value}, value, value, reason);
    }

    public static ShapeDescriptor enumerated(int... values) {
        int[] v = values.clone();
        Arrays.sort(v);
        for (int k = 0; k < v.length; k++) {
            if (v[k] < 1 || (k > 0 && v[k] == v[k - 1])) {
                throw new ShapeException("enumerated needs distinct positive sizes, got " + Arrays.toString(values));
            }
        }
        if (v.length == 0) throw new ShapeException("enumerated needs at least one size");
        return new ShapeDescriptor(ENUMERATED, v, v[0], v[v.length - 1], null);
    }

    /** {@code max} {@link #UNBOUNDED}: no upper bound. */
    public static ShapeDescriptor dynamic(int min, int max) {
        if (min < 1 || (max != UNBOUNDED && max < min)) {
            throw new ShapeException("dynamic needs 1 <= min <= max, got min " + min + " max " + max);
        }
        return new ShapeDescriptor(DYNAMIC, new int[0], min, max, null);
    }

    /** A descriptor of the manifest, or {@link ShapeException} whose message starts with {@code what}. */
    public static ShapeDescriptor parse(Object o, String what) {
        Object kind = o instanceof Map ? ((Map<?, ?>) o).get("kind") : null;
        if (!(FIXED.equals(kind) || ENUMERATED.equals(kind) || DYNAMIC.equals(kind))) {
            throw new ShapeException(what + ": a shape descriptor needs kind one of fixed, enumerated, dynamic, got "
                    + repr(o));
        }
        Map<?, ?> m = (Map<?, ?>) o;
        Object r = m.get("reason");
        String reason = r instanceof String ? (String) r : null;
        if (DYNAMIC.equals(kind)) {
            Object lo = m.get("min"), hi = m.get("max");
            if (!isPositiveInt(lo)) throw new ShapeException(what + ": dynamic needs an integer 'min' >= 1, got " + repr(lo));
            int min = (int) ((Number) lo).longValue();
            if (hi != null && (!isPositiveInt(hi) || ((Number) hi).longValue() < min)) {
                throw new ShapeException(what + ": dynamic 'max' must be null or an integer >= min (" + min + "), got "
                        + repr(hi));
            }
            return new ShapeDescriptor(DYNAMIC, new int[0], min, hi == null ? UNBOUNDED : (int) ((Number) hi).longValue(),
                    reason);
        }
        Object vals = m.get("values");
        boolean ok = vals instanceof List && !((List<?>) vals).isEmpty();
        if (ok) for (Object v : (List<?>) vals) ok &= isPositiveInt(v);
        if (!ok) {
            throw new ShapeException(what + ": " + kind + " needs 'values', a non-empty list of positive integers, got "
                    + repr(vals));
        }
        List<?> list = (List<?>) vals;
        if (FIXED.equals(kind) && list.size() != 1) {
            throw new ShapeException(what + ": fixed takes exactly one value, got " + repr(vals));
        }
        int[] v = new int[list.size()];
        for (int k = 0; k < v.length; k++) {
            v[k] = (int) ((Number) list.get(k)).longValue();
            if (k > 0 && v[k] <= v[k - 1]) {
                throw new ShapeException(what + ": enumerated values must be increasing and distinct, got " + repr(vals));
            }
        }
        return new ShapeDescriptor((String) kind, v, v[0], v[v.length - 1], reason);
    }

    /** A JSON integer (not a boolean, not a number written with a fraction or exponent) in 1 .. 2^31 - 1. */
    private static boolean isPositiveInt(Object v) {
        if (!(v instanceof Long || v instanceof Integer)) return false;
        long x = ((Number) v).longValue();
        return x >= 1 && x <= Integer.MAX_VALUE;
    }

    private static String repr(Object o) {
        if (o == null) return "null";
        if (o instanceof String) return "'" + o + "'";
        try {
            return Json.write(o, false);
        } catch (RuntimeException e) {
            return String.valueOf(o);
        }
    }

    public boolean isDynamic() {
        return DYNAMIC.equals(kind);
    }

    /** fixed / enumerated: the accepted sizes, increasing (a copy); dynamic: empty. */
    public int[] values() {
        return values.clone();
    }

    public boolean accepts(int n) {
        if (isDynamic()) return n >= min && (max == UNBOUNDED || n <= max);
        return Arrays.binarySearch(values, n) >= 0;
    }

    /** The largest accepted size, or {@link #UNBOUNDED}. */
    public int largest() {
        return max;
    }

    /**
     * The shortest accepted size that holds {@code n} ({@code shapes.shortest_accepted}): dynamic
     * {@code max(n, min)} capped at max; fixed / enumerated the smallest value >= n, else the largest.
     */
    public int shortestAccepted(int n) {
        if (n < 1) throw new ShapeException("a caption has at least one token (SOT), got " + n);
        if (isDynamic()) {
            int s = Math.max(n, min);
            return max == UNBOUNDED ? s : Math.min(s, max);
        }
        for (int v : values) if (v >= n) return v;
        return values[values.length - 1];
    }

    /** The manifest form. */
    public Map<String, Object> toJson() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("kind", kind);
        if (isDynamic()) {
            m.put("min", (long) min);
            m.put("max", max == UNBOUNDED ? null : (Object) (long) max);
        } else {
            List<Object> v = new ArrayList<>();
            for (int x : values) v.add((long) x);
            m.put("values", v);
        }
        if (reason != null) m.put("reason", reason);
        return m;
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof ShapeDescriptor)) return false;
        ShapeDescriptor d = (ShapeDescriptor) o;
        return kind.equals(d.kind) && Arrays.equals(values, d.values) && min == d.min && max == d.max;
    }

    @Override
    public int hashCode() {
        return kind.hashCode() * 31 + Arrays.hashCode(values) * 7 + min * 3 + max;
    }

    /** "fixed [77]", "enumerated [8, 16, 32, 77]", "dynamic 1..77", "dynamic 1..". */
    @Override
    public String toString() {
        if (isDynamic()) return "dynamic " + min + ".." + (max == UNBOUNDED ? "" : Integer.toString(max));
        return kind + " " + Arrays.toString(values);
    }
}
