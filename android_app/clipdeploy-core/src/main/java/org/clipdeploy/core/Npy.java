package org.clipdeploy.core;

import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * Reader for NumPy {@code .npy} files (format 1.0-3.0), C order, little-endian {@code <f4 <f8 <i4 <i8 |u1 |i1 |b1}:
 * the bundle's probe inputs and reference embeddings, and the goldens' expected tensors.
 *
 * <p>A bundle is untrusted input: the header must be a dict literal with exactly {@code descr}, {@code fortran_order}
 * ({@code False}) and {@code shape} (a tuple of at most {@value #MAX_DIMS} non-negative ints), and the data after it
 * must be exactly {@code prod(shape) * itemsize} bytes (computed overflow-safe, at most {@link #MAX_DATA_BYTES}) —
 * checked before the data is allocated, so a header's claim never sizes an allocation. Every failure is a one-line
 * {@link NpyException}.
 */
public final class Npy {
    /** A {@code .npy} that is malformed, truncated, has trailing data or an unsupported layout (one line). */
    public static final class NpyException extends IOException {
        private static final long serialVersionUID = 1L;

        public NpyException(String message) {
            super(message);
        }
    }

    public static final int MAX_HEADER = 1 << 16;
    public static final int MAX_DIMS = 32;
    /** The data a Java array holds (and so what {@link #floats} etc. can return): the cap of every reader here. */
    public static final long MAX_DATA_BYTES = Integer.MAX_VALUE - 16L;
    /** {@link #rows} of an array without data (a zero dimension after the first) returns at most this many rows. */
    static final int MAX_EMPTY_ROWS = 1 << 16;

    public final int[] shape;
    public final String dtype;
    private final ByteBuffer data;

    private Npy(int[] shape, String dtype, ByteBuffer data) {
        this.shape = shape;
        this.dtype = dtype;
        this.data = data;
    }

    public static Npy read(File file) throws IOException {
        return read(file, MAX_DATA_BYTES);
    }

    /** The array in {@code file}, refused when the file is larger than {@code maxBytes}. */
    public static Npy read(File file, long maxBytes) throws IOException {
        long size = file.length();
        try (InputStream in = new FileInputStream(file)) {
            if (size > maxBytes) throw new NpyException("the file is " + size + " bytes, more than the " + maxBytes + " this reader accepts");
            return read(in, size, Math.min(maxBytes, MAX_DATA_BYTES));
        } catch (IOException e) {
            NpyException n = new NpyException(file + ": " + e.getMessage());
            n.initCause(e);
            throw n;
        }
    }

    /** The array in {@code in} (read to its end; its data must be exactly what the header describes). */
    public static Npy read(InputStream in) throws IOException {
        return read(in, -1, MAX_DATA_BYTES);
    }

    /** {@code size}: the stream's length when known (a file), else -1. */
    private static Npy read(InputStream in, long size, long maxBytes) throws IOException {
        byte[] pre = new byte[12];
        int got = readUpTo(in, pre, 0, 10);
        if (got < 10 || (pre[0] & 0xff) != 0x93 || pre[1] != 'N' || pre[2] != 'U' || pre[3] != 'M' || pre[4] != 'P'
                || pre[5] != 'Y') {
            throw new NpyException("not a .npy file (no \\x93NUMPY magic)");
        }
        int major = pre[6] & 0xff, minor = pre[7] & 0xff;
        long headerLen;
        int offset;
        if (major == 1) {
            headerLen = (pre[8] & 0xff) | (pre[9] & 0xff) << 8;
            offset = 10;
        } else if (major == 2 || major == 3) {
            if (readUpTo(in, pre, 10, 2) < 2) throw new NpyException("truncated .npy header");
            headerLen = ByteBuffer.wrap(pre, 8, 4).order(ByteOrder.LITTLE_ENDIAN).getInt() & 0xffffffffL;
            offset = 12;
        } else {
            throw new NpyException(".npy format version " + major + "." + minor + " is not supported (1.0, 2.0, 3.0)");
        }
        if (headerLen > MAX_HEADER) throw new NpyException(".npy header of " + headerLen + " bytes is larger than " + MAX_HEADER);
        if (size >= 0 && offset + headerLen > size) throw new NpyException("truncated .npy header");
        byte[] hb = new byte[(int) headerLen];
        if (readUpTo(in, hb, 0, hb.length) < hb.length) throw new NpyException("truncated .npy header");
        String header = major == 3 ? new String(hb, StandardCharsets.UTF_8) : new String(hb, StandardCharsets.ISO_8859_1);
        Header h = Header.parse(header);
        int item = itemSize(h.descr);
        long count = 1;
        for (long d : h.shape) {
            if (d != 0 && count > MAX_DATA_BYTES / d) throw shapeTooLarge(h);
            count *= d;
        }
        if (count > MAX_DATA_BYTES / item) throw shapeTooLarge(h);
        long need = count * item;
        int[] shape = new int[h.shape.length];
        for (int k = 0; k < shape.length; k++) {
            if (h.shape[k] > Integer.MAX_VALUE) throw shapeTooLarge(h);
            shape[k] = (int) h.shape[k];
        }
        if (need > maxBytes) throw shapeTooLarge(h);
        byte[] data;
        if (size >= 0) {
            long have = size - offset - headerLen;
            if (have != need) throw sizeMismatch(h, need, have);
            data = new byte[(int) need];                     // == the file's own size, checked above
            if (readUpTo(in, data, 0, data.length) < data.length) throw new NpyException(".npy file changed while it was read");
            if (in.read() >= 0) throw new NpyException(".npy file changed while it was read");
        } else {
            // a stream of unknown length: the buffer grows with what arrives, up to need + 1 bytes
            ByteArrayOutputStream out = new ByteArrayOutputStream((int) Math.min(need + 1, 1 << 16));
            byte[] buf = new byte[1 << 16];
            long total = 0;
            int n;
            while ((n = in.read(buf, 0, (int) Math.min(buf.length, need + 1 - total))) > 0) {
                out.write(buf, 0, n);
                total += n;
                if (total > need) break;
            }
            if (total != need) throw sizeMismatch(h, need, total > need ? -1 : total);
            data = out.toByteArray();
        }
        return new Npy(shape, h.descr, ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN));
    }

    private static int readUpTo(InputStream in, byte[] b, int off, int len) throws IOException {
        int done = 0;
        while (done < len) {
            int n = in.read(b, off + done, len - done);
            if (n < 0) break;
            done += n;
        }
        return done;
    }

    private static NpyException shapeTooLarge(Header h) {
        return new NpyException(".npy shape " + h.shapeString() + " of " + h.descr + " is larger than the "
                + MAX_DATA_BYTES + " bytes a reader here holds");
    }

    private static NpyException sizeMismatch(Header h, long need, long have) {
        String what = have >= 0 && have < need ? "truncated" : "has trailing bytes";
        return new NpyException(".npy file is " + what + ": shape " + h.shapeString() + " of " + h.descr + " needs "
                + need + " bytes of data, the file has " + (have >= 0 ? Long.toString(have) : "more"));
    }

    private static int itemSize(String dtype) throws NpyException {
        switch (dtype) {
            case "<f4": case "<i4": return 4;
            case "<f8": case "<i8": return 8;
            case "|u1": case "|i1": case "|b1": return 1;
            default: throw new NpyException(".npy dtype '" + dtype + "' is not supported (<f4, <f8, <i4, <i8, |u1, |i1, |b1)");
        }
    }

    /** The header dict literal: {@code {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }} and padding. */
    private static final class Header {
        String descr;
        Boolean fortran;
        long[] shape;
        private final String s;
        private int i;

        private Header(String s) {
            this.s = s;
        }

        String shapeString() {
            StringBuilder b = new StringBuilder("(");
            for (int k = 0; k < shape.length; k++) b.append(k > 0 ? ", " : "").append(shape[k]);
            return b.append(shape.length == 1 ? ",)" : ")").toString();
        }

        static Header parse(String text) throws NpyException {
            Header h = new Header(text);
            h.dict();
            return h;
        }

        private NpyException bad(String what) {
            return new NpyException(".npy header is not the dict numpy writes (" + what + ")");
        }

        private void ws() {
            while (i < s.length() && (s.charAt(i) == ' ' || s.charAt(i) == '\t' || s.charAt(i) == '\n' || s.charAt(i) == '\r')) i++;
        }

        private boolean eat(char c) {
            ws();
            if (i < s.length() && s.charAt(i) == c) {
                i++;
                return true;
            }
            return false;
        }

        private void dict() throws NpyException {
            if (!eat('{')) throw bad("no '{'");
            while (true) {
                if (eat('}')) break;
                String key = str();
                if (!eat(':')) throw bad("no ':' after '" + key + "'");
                switch (key) {
                    case "descr":
                        if (descr != null) throw bad("'descr' twice");
                        descr = str();
                        break;
                    case "fortran_order":
                        if (fortran != null) throw bad("'fortran_order' twice");
                        fortran = bool();
                        break;
                    case "shape":
                        if (shape != null) throw bad("'shape' twice");
                        shape = tuple();
                        break;
                    default:
                        throw bad("unexpected key '" + (key.length() > 40 ? key.substring(0, 40) + "..." : key) + "'");
                }
                if (eat('}')) break;
                if (!eat(',')) throw bad("no ',' between entries");
            }
            ws();
            if (i != s.length()) throw bad("characters after the dict");
            if (descr == null || fortran == null || shape == null) {
                throw new NpyException(".npy header must have 'descr', 'fortran_order' and 'shape'");
            }
            if (fortran) throw new NpyException(".npy arrays in Fortran order are not supported (write C order)");
        }

        private String str() throws NpyException {
            ws();
            if (i >= s.length() || (s.charAt(i) != '\'' && s.charAt(i) != '"')) throw bad("expected a quoted key or string");
            char q = s.charAt(i++);
            int start = i;
            while (i < s.length() && s.charAt(i) != q) {
                if (s.charAt(i) == '\\' || s.charAt(i) == '\n') throw bad("escape or newline in a string");
                i++;
            }
            if (i >= s.length()) throw bad("unterminated string");
            return s.substring(start, i++);
        }

        private Boolean bool() throws NpyException {
            ws();
            if (s.startsWith("False", i)) {
                i += 5;
                return Boolean.FALSE;
            }
            if (s.startsWith("True", i)) {
                i += 4;
                return Boolean.TRUE;
            }
            throw bad("fortran_order is not True or False");
        }

        private long[] tuple() throws NpyException {
            if (!eat('(')) throw bad("shape is not a tuple");
            List<Long> dims = new ArrayList<>();
            boolean comma = true;
            while (true) {
                if (eat(')')) break;
                if (!comma) throw bad("no ',' between dimensions");
                if (dims.size() >= MAX_DIMS) throw new NpyException(".npy shape has more than " + MAX_DIMS + " dimensions");
                dims.add(dim());
                comma = eat(',');
            }
            if (dims.size() == 1 && !comma) throw bad("a one-dimension shape needs a trailing ',': (n,)");
            long[] out = new long[dims.size()];
            for (int k = 0; k < out.length; k++) out[k] = dims.get(k);
            return out;
        }

        private long dim() throws NpyException {
            ws();
            if (i < s.length() && s.charAt(i) == '-') throw new NpyException(".npy shape has a negative dimension");
            int start = i;
            long v = 0;
            while (i < s.length() && s.charAt(i) >= '0' && s.charAt(i) <= '9') {
                v = v * 10 + (s.charAt(i) - '0');
                if (v > (1L << 40)) throw new NpyException(".npy shape has a dimension beyond " + (1L << 40));
                i++;
            }
            if (i == start) throw bad("a dimension is not a non-negative integer");
            return v;
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

    /** The values as ints: an integer dtype only, each value within int range (else a {@link NpyException}). */
    public int[] ints() throws NpyException {
        int n = (int) count();
        int[] out = new int[n];
        for (int k = 0; k < n; k++) {
            switch (dtype) {
                case "<i4": out[k] = data.getInt(4 * k); break;
                case "<i8": {
                    long v = data.getLong(8 * k);
                    if (v < Integer.MIN_VALUE || v > Integer.MAX_VALUE) {
                        throw new NpyException(".npy value " + v + " at index " + k + " does not fit an int32");
                    }
                    out[k] = (int) v;
                    break;
                }
                case "|u1": out[k] = data.get(k) & 0xff; break;
                case "|i1": case "|b1": out[k] = data.get(k); break;
                default: throw new NpyException(".npy array of " + dtype + " read as integers (an integer dtype expected)");
            }
        }
        return out;
    }

    private int rowCount() throws NpyException {
        int n = shape.length == 0 ? 1 : shape[0];
        if (count() == 0 && n > MAX_EMPTY_ROWS) {
            throw new NpyException(".npy array of shape " + java.util.Arrays.toString(shape) + " has no data for its " + n + " rows");
        }
        return n;
    }

    /** The array as rows along its first axis, each flattened (e.g. [N,3,R,R] -> N rows of 3*R*R). */
    public float[][] rows() throws NpyException {
        int n = rowCount();
        float[] all = floats();
        int per = n == 0 ? 0 : all.length / n;
        float[][] out = new float[n][];
        for (int r = 0; r < n; r++) out[r] = java.util.Arrays.copyOfRange(all, r * per, (r + 1) * per);
        return out;
    }

    public int[][] intRows() throws NpyException {
        int n = rowCount();
        int[] all = ints();
        int per = n == 0 ? 0 : all.length / n;
        int[][] out = new int[n][];
        for (int r = 0; r < n; r++) out[r] = java.util.Arrays.copyOfRange(all, r * per, (r + 1) * per);
        return out;
    }
}
