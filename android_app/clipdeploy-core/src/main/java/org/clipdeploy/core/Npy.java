package org.clipdeploy.core;

import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Reader for NumPy {@code .npy} files (format 1.0-3.0), C order, little-endian {@code <f4 <f8 <i4 <i8 |u1 |i1}:
 * the bundle's probe inputs and reference embeddings, and the goldens' expected tensors.
 */
public final class Npy {
    public final int[] shape;
    public final String dtype;
    private final ByteBuffer data;

    private Npy(int[] shape, String dtype, ByteBuffer data) {
        this.shape = shape;
        this.dtype = dtype;
        this.data = data;
    }

    public static Npy read(File file) throws IOException {
        try (InputStream in = new FileInputStream(file)) {
            return read(in);
        } catch (IOException e) {
            throw new IOException(file + ": " + e.getMessage(), e);
        }
    }

    private static final Pattern DESCR = Pattern.compile("'descr':\\s*'([^']+)'");
    private static final Pattern ORDER = Pattern.compile("'fortran_order':\\s*(True|False)");
    private static final Pattern SHAPE = Pattern.compile("'shape':\\s*\\(([^)]*)\\)");

    public static Npy read(InputStream in) throws IOException {
        byte[] all = Json.readAll(in);
        if (all.length < 10 || (all[0] & 0xff) != 0x93 || all[1] != 'N' || all[2] != 'U' || all[3] != 'M'
                || all[4] != 'P' || all[5] != 'Y') {
            throw new IOException("not a .npy file (bad magic)");
        }
        int major = all[6];
        ByteBuffer bb = ByteBuffer.wrap(all).order(ByteOrder.LITTLE_ENDIAN);
        int headerLen, offset;
        if (major == 1) {
            headerLen = bb.getShort(8) & 0xffff;
            offset = 10;
        } else if (major == 2 || major == 3) {
            headerLen = bb.getInt(8);
            offset = 12;
        } else {
            throw new IOException("unsupported .npy version " + major);
        }
        String header = new String(all, offset, headerLen, StandardCharsets.ISO_8859_1);
        Matcher d = DESCR.matcher(header), o = ORDER.matcher(header), s = SHAPE.matcher(header);
        if (!d.find() || !o.find() || !s.find()) throw new IOException("bad .npy header: " + header.trim());
        if (o.group(1).equals("True")) throw new IOException(".npy in Fortran order is not supported");
        String dtype = d.group(1);
        String[] dims = s.group(1).split(",");
        int n = 0;
        int[] tmp = new int[dims.length];
        for (String dim : dims) {
            if (!dim.trim().isEmpty()) tmp[n++] = Integer.parseInt(dim.trim());
        }
        int[] shape = java.util.Arrays.copyOf(tmp, n);
        long count = 1;
        for (int x : shape) count *= x;
        int size = itemSize(dtype);
        int start = offset + headerLen;
        if (all.length - start < count * size) {
            throw new IOException("truncated .npy: " + (all.length - start) + " data bytes, expected " + count * size);
        }
        ByteBuffer data = ByteBuffer.wrap(all, start, (int) (count * size)).slice().order(ByteOrder.LITTLE_ENDIAN);
        return new Npy(shape, dtype, data);
    }

    private static int itemSize(String dtype) throws IOException {
        switch (dtype) {
            case "<f4": case "<i4": return 4;
            case "<f8": case "<i8": return 8;
            case "|u1": case "|i1": case "|b1": return 1;
            default: throw new IOException("unsupported .npy dtype " + dtype + " (little-endian f4/f8/i4/i8/u1 only)");
        }
    }

    public long count() {
        long c = 1;
        for (int x : shape) c *= x;
        return c;
    }

    public float[] floats() {
        int n = (int) count();
        float[] out = new float[n];
        for (int k = 0; k < n; k++) {
            switch (dtype) {
                case "<f4": out[k] = data.getFloat(4 * k); break;
                case "<f8": out[k] = (float) data.getDouble(8 * k); break;
                case "<i4": out[k] = data.getInt(4 * k); break;
                case "<i8": out[k] = data.getLong(8 * k); break;
                case "|u1": out[k] = data.get(k) & 0xff; break;
                default: out[k] = data.get(k); break;
            }
        }
        return out;
    }

    public int[] ints() {
        int n = (int) count();
        int[] out = new int[n];
        for (int k = 0; k < n; k++) {
            switch (dtype) {
                case "<i4": out[k] = data.getInt(4 * k); break;
                case "<i8": out[k] = Math.toIntExact(data.getLong(8 * k)); break;
                case "|u1": out[k] = data.get(k) & 0xff; break;
                case "|i1": case "|b1": out[k] = data.get(k); break;
                default: throw new IllegalStateException("ints() of a " + dtype + " array");
            }
        }
        return out;
    }

    /** The array as rows along its first axis, each flattened (e.g. [N,3,R,R] -> N rows of 3*R*R). */
    public float[][] rows() {
        float[] all = floats();
        int n = shape.length == 0 ? 1 : shape[0];
        int per = n == 0 ? 0 : all.length / n;
        float[][] out = new float[n][];
        for (int r = 0; r < n; r++) out[r] = java.util.Arrays.copyOfRange(all, r * per, (r + 1) * per);
        return out;
    }

    public int[][] intRows() {
        int[] all = ints();
        int n = shape.length == 0 ? 1 : shape[0];
        int per = n == 0 ? 0 : all.length / n;
        int[][] out = new int[n][];
        for (int r = 0; r < n; r++) out[r] = java.util.Arrays.copyOfRange(all, r * per, (r + 1) * per);
        return out;
    }
}
