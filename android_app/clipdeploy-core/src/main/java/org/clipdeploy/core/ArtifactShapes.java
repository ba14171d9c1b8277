package org.clipdeploy.core;

import java.util.Map;

/**
 * A manifest artifact's {@code shapes}: {@code {"batch": D}} for an image encoder, {@code {"batch": D, "length": D}}
 * for a text encoder ({@link ShapeDescriptor}). Bundles written before the key existed get the shapes every
 * artifact had then: batch fixed [1], text length fixed [77].
 */
public final class ArtifactShapes {
    public static final int DEFAULT_LENGTH = ClipTokenizer.CONTEXT_LENGTH;

    public final ShapeDescriptor batch;
    /** The text input's length; null for an image encoder. */
    public final ShapeDescriptor length;
    /** Whether the manifest had the key (false: the defaults). */
    public final boolean declared;

    public ArtifactShapes(ShapeDescriptor batch, ShapeDescriptor length, boolean declared) {
        if (batch == null) throw new IllegalArgumentException("shapes need a batch descriptor");
        this.batch = batch;
        this.length = length;
        this.declared = declared;
    }

    /** What an artifact without {@code shapes} takes: batch 1; a text encoder 77 positions. */
    public static ArtifactShapes defaults(String encoder) {
        return new ArtifactShapes(ShapeDescriptor.fixed(1), "text".equals(encoder) ? ShapeDescriptor.fixed(DEFAULT_LENGTH)
                : null, false);
    }

    /**
     * The manifest's {@code shapes} of an artifact of {@code encoder} ("image" / "text"), strictly: absent (null) is
     * {@link #defaults}; present, it must be an object with a well-formed "batch" and, for a text encoder, "length"
     * ({@link ShapeDescriptor.ShapeException} starting with {@code what + ".batch"} etc.). Other keys are ignored.
     */
    public static ArtifactShapes parse(Object shapes, String encoder, String what) {
        if (shapes == null) return defaults(encoder);
        if (!(shapes instanceof Map)) {
            throw new ShapeDescriptor.ShapeException(what + ": must be an object {\"batch\": ...}, got " + Json.kind(shapes));
        }
        Map<?, ?> m = (Map<?, ?>) shapes;
        if (!m.containsKey("batch")) throw new ShapeDescriptor.ShapeException(what + ": has no 'batch'");
        ShapeDescriptor batch = ShapeDescriptor.parse(m.get("batch"), what + ".batch");
        ShapeDescriptor length = null;
        if ("text".equals(encoder)) {
            if (!m.containsKey("length")) throw new ShapeDescriptor.ShapeException(what + ": a text encoder's shapes have no 'length'");
            length = ShapeDescriptor.parse(m.get("length"), what + ".length");
        }
        return new ArtifactShapes(batch, length, true);
    }

    /**
     * A 0-padded id row (e.g. the probe's [77]) as this text artifact takes it: unchanged when its length is accepted,
     * else cut to the shortest accepted length that holds its tokens (up to the last non-zero id), EOT kept last when
     * that cuts tokens, or 0-padded to a longer accepted length.
     */
    public int[] fitIds(int[] ids) {
        if (length == null) throw new IllegalStateException("an image artifact takes no token ids");
        if (length.accepts(ids.length)) return ids;
        int n = 1;
        for (int k = ids.length - 1; k >= 0; k--) {
            if (ids[k] != 0) {
                n = k + 1;
                break;
            }
        }
        int l = length.shortestAccepted(n);
        int[] out = java.util.Arrays.copyOf(ids, l);
        if (l < n) out[l - 1] = ClipTokenizer.EOT;
        return out;
    }

    @Override
    public String toString() {
        return "batch " + batch + (length != null ? ", length " + length : "") + (declared ? "" : " (default)");
    }
}
