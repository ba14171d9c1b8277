package org.clipdeploy.core;

import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A small, strict JSON reader and writer (RFC 8259), so the core has no dependency: Android ships
 * org.json, a plain JVM does not. Objects become {@link LinkedHashMap} (key order kept), arrays
 * {@link ArrayList}, numbers {@link Long} when integral and written without fraction/exponent, else
 * {@link Double}. Non-finite doubles are written as {@code null} (the report schema's convention).
 */
public final class Json {
    private final String s;
    private int i;

    private Json(String s) {
        this.s = s;
    }

    public static final class JsonException extends RuntimeException {
        private static final long serialVersionUID = 1L;

        public JsonException(String message) {
            super(message);
        }
    }

    // ------------------------------------------------------------------------------------------ read

    /** Nesting depth (arrays and objects) beyond which input is refused: a typed error, not a stack overflow. */
    public static final int MAX_DEPTH = 200;
    /** Input size limit of {@link #parse(File)} / {@link #parse(InputStream)} (manifests and reports). */
    public static final long MAX_BYTES = 32L << 20;

    private int depth;

    /**
     * Strict RFC 8259: one value, no trailing characters, no comments, no NaN/Infinity (nor a number literal
     * too large for a double), at most {@link #MAX_DEPTH} levels of nesting, at most {@link #MAX_BYTES}
     * characters. Every failure is a one-line {@link JsonException}.
     */
    public static Object parse(String text) {
        return parseText(text, MAX_BYTES);
    }

    public static Object parse(InputStream in) throws IOException {
        return parse(in, MAX_BYTES);
    }

    /** {@link #parse(String)} of UTF-8 input of at most {@code maxBytes} bytes (more, or malformed UTF-8: a
     * {@link JsonException}); only the bytes actually read are held, whatever the input claims. */
    public static Object parse(InputStream in, long maxBytes) throws IOException {
        return parseText(utf8(readAll(in, maxBytes)), maxBytes);
    }

    private static Object parseText(String text, long maxChars) {
        if (text.length() > maxChars) throw new JsonException("not JSON: more than " + maxChars + " characters");
        Json p = new Json(text);
        p.ws();
        Object v = p.value();
        p.ws();
        if (p.i != p.s.length()) throw p.error("trailing characters");
        return v;
    }

    public static Object parse(File file) throws IOException {
        return parse(file, MAX_BYTES);
    }

    /** {@link #parse(InputStream, long)} of a file; errors are prefixed with the file. */
    public static Object parse(File file, long maxBytes) throws IOException {
        long size = file.length();
        if (size > maxBytes) {
            throw new JsonException(file + ": not JSON: the file is " + size + " bytes, more than the " + maxBytes
                    + " this reader accepts");
        }
        try (InputStream in = new FileInputStream(file)) {
            return parse(in, maxBytes);
        } catch (JsonException e) {
            throw new JsonException(file + ": " + e.getMessage());
        }
    }

    /** UTF-8 strictly (malformed input is an error, not U+FFFD). */
    static String utf8(byte[] b) {
        try {
            return StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(b)).toString();
        } catch (CharacterCodingException e) {
            throw new JsonException("not JSON: the input is not UTF-8");
        }
    }

    /** Everything {@code in} holds, refused (a {@link JsonException}) beyond {@code maxBytes}: the buffer grows
     * with what is read, never to a size announced in advance. */
    static byte[] readAll(InputStream in, long maxBytes) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        byte[] buf = new byte[1 << 16];
        long total = 0;
        int n;
        while ((n = in.read(buf)) >= 0) {
            total += n;
            if (total > maxBytes) throw new JsonException("not JSON: the input is more than " + maxBytes + " bytes");
            out.write(buf, 0, n);
        }
        return out.toByteArray();
    }

    @SuppressWarnings("unchecked")
    public static Map<String, Object> map(Object o) {
        if (!(o instanceof Map)) throw new JsonException("expected a JSON object, got " + kind(o));
        return (Map<String, Object>) o;
    }

    @SuppressWarnings("unchecked")
    public static List<Object> list(Object o) {
        if (!(o instanceof List)) throw new JsonException("expected a JSON array, got " + kind(o));
        return (List<Object>) o;
    }

    public static double num(Object o) {
        if (!(o instanceof Number)) throw new JsonException("expected a number, got " + kind(o));
        return ((Number) o).doubleValue();
    }

    /** A number, or NaN for JSON null (non-finite values are written as null). */
    public static double numOrNaN(Object o) {
        return o == null ? Double.NaN : num(o);
    }

    public static String str(Object o) {
        if (!(o instanceof String)) throw new JsonException("expected a string, got " + kind(o));
        return (String) o;
    }

    public static float[] floats(Object o) {
        List<Object> l = list(o);
        float[] out = new float[l.size()];
        for (int k = 0; k < out.length; k++) out[k] = (float) numOrNaN(l.get(k));
        return out;
    }

    public static double[] doubles(Object o) {
        List<Object> l = list(o);
        double[] out = new double[l.size()];
        for (int k = 0; k < out.length; k++) out[k] = numOrNaN(l.get(k));
        return out;
    }

    public static int[] ints(Object o) {
        List<Object> l = list(o);
        int[] out = new int[l.size()];
        for (int k = 0; k < out.length; k++) out[k] = (int) num(l.get(k));
        return out;
    }

    public static float[][] floatRows(Object o) {
        List<Object> l = list(o);
        float[][] out = new float[l.size()][];
        for (int k = 0; k < out.length; k++) out[k] = floats(l.get(k));
        return out;
    }

    static String kind(Object o) {
        if (o == null) return "null";
        if (o instanceof Map) return "an object";
        if (o instanceof List) return "an array";
        if (o instanceof String) return "a string";
        if (o instanceof Number) return "a number";
        if (o instanceof Boolean) return "a boolean";
        return o.getClass().getSimpleName();
    }

    private JsonException error(String what) {
        int line = 1, col = 1;
        for (int k = 0; k < Math.min(i, s.length()); k++) {
            if (s.charAt(k) == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        return new JsonException("not JSON: " + what + " at line " + line + " column " + col);
    }

    private void ws() {
        while (i < s.length()) {
            char c = s.charAt(i);
            if (c == ' ' || c == '\t' || c == '\n' || c == '\r') i++;
            else break;
        }
    }

    private Object value() {
        if (i >= s.length()) throw error("unexpected end");
        char c = s.charAt(i);
        switch (c) {
            case '{': case '[':
                if (++depth > MAX_DEPTH) throw error("nesting deeper than " + MAX_DEPTH + " levels");
                Object nested = c == '{' ? object() : array();
                depth--;
                return nested;
            case '"': return string();
            case 't': return literal("true", Boolean.TRUE);
            case 'f': return literal("false", Boolean.FALSE);
            case 'n': return literal("null", null);
            default:
                if (c == '-' || (c >= '0' && c <= '9')) return number();
                throw error("unexpected character '" + c + "'");
        }
    }

    private Object literal(String word, Object v) {
        if (!s.startsWith(word, i)) throw error("unexpected token");
        i += word.length();
        return v;
    }

    private Map<String, Object> object() {
        Map<String, Object> m = new LinkedHashMap<>();
        i++;
        ws();
        if (i < s.length() && s.charAt(i) == '}') {
            i++;
            return m;
        }
        while (true) {
            ws();
            if (i >= s.length() || s.charAt(i) != '"') throw error("expected a string key");
            String k = string();
            ws();
            if (i >= s.length() || s.charAt(i) != ':') throw error("expected ':'");
            i++;
            ws();
            m.put(k, value());
            ws();
            if (i >= s.length()) throw error("unexpected end in object");
            char c = s.charAt(i++);
            if (c == '}') return m;
            if (c != ',') throw error("expected ',' or '}'");
        }
    }

    private List<Object> array() {
        List<Object> l = new ArrayList<>();
        i++;
        ws();
        if (i < s.length() && s.charAt(i) == ']') {
            i++;
            return l;
        }
        while (true) {
            ws();
            l.add(value());
            ws();
            if (i >= s.length()) throw error("unexpected end in array");
            char c = s.charAt(i++);
            if (c == ']') return l;
            if (c != ',') throw error("expected ',' or ']'");
        }
    }

    private String string() {
        StringBuilder b = new StringBuilder();
        i++;
        while (true) {
            if (i >= s.length()) throw error("unterminated string");
            char c = s.charAt(i++);
            if (c == '"') return b.toString();
            if (c < 0x20) throw error("control character in string");
            if (c != '\\') {
                b.append(c);
                continue;
            }
            if (i >= s.length()) throw error("unterminated escape");
            char e = s.charAt(i++);
            switch (e) {
                case '"': b.append('"'); break;
                case '\\': b.append('\\'); break;
                case '/': b.append('/'); break;
                case 'b': b.append('\b'); break;
                case 'f': b.append('\f'); break;
                case 'n': b.append('\n'); break;
                case 'r': b.append('\r'); break;
                case 't': b.append('\t'); break;
                case 'u':
                    if (i + 4 > s.length()) throw error("bad \\u escape");
                    int u = 0;
                    for (int k = 0; k < 4; k++) {
                        int h = Character.digit(s.charAt(i + k), 16);
                        if (h < 0 || s.charAt(i + k) > 'f') throw error("bad \\u escape");
                        u = u * 16 + h;
                    }
                    b.append((char) u);
                    i += 4;
                    break;
                default: throw error("bad escape '\\" + e + "'");
            }
        }
    }

    /** {@code -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?}; a Long when integral and in range, else a finite Double. */
    private Number number() {
        int start = i;
        if (s.charAt(i) == '-') i++;
        if (i >= s.length() || !digit(s.charAt(i))) throw error("bad number");
        if (s.charAt(i) == '0') {
            i++;
        } else {
            while (i < s.length() && digit(s.charAt(i))) i++;
        }
        boolean integral = true;
        if (i < s.length() && s.charAt(i) == '.') {
            integral = false;
            i++;
            if (i >= s.length() || !digit(s.charAt(i))) throw error("bad number (no digit after '.')");
            while (i < s.length() && digit(s.charAt(i))) i++;
        }
        if (i < s.length() && (s.charAt(i) == 'e' || s.charAt(i) == 'E')) {
            integral = false;
            i++;
            if (i < s.length() && (s.charAt(i) == '+' || s.charAt(i) == '-')) i++;
            if (i >= s.length() || !digit(s.charAt(i))) throw error("bad number (no digit in the exponent)");
            while (i < s.length() && digit(s.charAt(i))) i++;
        }
        String t = s.substring(start, i);
        if (integral && i - start <= 19) {
            try {
                return Long.parseLong(t);
            } catch (NumberFormatException big) {
                // beyond a long: a double below
            }
        }
        double d;
        try {
            d = Double.parseDouble(t);
        } catch (NumberFormatException ex) {
            i = start;
            throw error("bad number");
        }
        if (Double.isInfinite(d)) {
            i = start;
            throw error("number out of range");
        }
        return d;
    }

    private static boolean digit(char c) {
        return c >= '0' && c <= '9';
    }

    // ----------------------------------------------------------------------------------------- write

    public static String write(Object value, boolean pretty) {
        StringBuilder b = new StringBuilder();
        write(b, value, pretty ? 0 : -1);
        return b.toString();
    }

    private static void indent(StringBuilder b, int level) {
        b.append('\n');
        for (int k = 0; k < level; k++) b.append(' ');
    }

    private static boolean scalarList(List<?> l) {
        for (Object o : l) if (o instanceof Map || o instanceof List) return false;
        return true;
    }

    private static void write(StringBuilder b, Object v, int level) {
        if (v == null) {
            b.append("null");
        } else if (v instanceof String) {
            quote(b, (String) v);
        } else if (v instanceof Boolean) {
            b.append(v.toString());
        } else if (v instanceof Double || v instanceof Float) {
            double d = ((Number) v).doubleValue();
            if (Double.isNaN(d) || Double.isInfinite(d)) b.append("null");
            else b.append(Double.toString(d));   // shortest round-trip decimal; JSON accepts 1.0E-5
        } else if (v instanceof Number) {
            b.append(((Number) v).longValue());
        } else if (v instanceof Map) {
            Map<?, ?> m = (Map<?, ?>) v;
            b.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> e : m.entrySet()) {
                if (!first) b.append(',');
                first = false;
                if (level >= 0) indent(b, level + 1);
                quote(b, String.valueOf(e.getKey()));
                b.append(level >= 0 ? ": " : ":");
                write(b, e.getValue(), level >= 0 ? level + 1 : -1);
            }
            if (level >= 0 && !m.isEmpty()) indent(b, level);
            b.append('}');
        } else if (v instanceof List || v instanceof Object[]) {
            List<?> l = v instanceof List ? (List<?>) v : java.util.Arrays.asList((Object[]) v);
            boolean flat = level < 0 || scalarList(l);
            b.append('[');
            for (int k = 0; k < l.size(); k++) {
                if (k > 0) b.append(flat && level >= 0 ? ", " : ",");
                if (!flat) indent(b, level + 1);
                write(b, l.get(k), level >= 0 ? level + 1 : -1);
            }
            if (!flat && !l.isEmpty()) indent(b, level);
            b.append(']');
        } else if (v instanceof double[]) {
            List<Object> l = new ArrayList<>();
            for (double d : (double[]) v) l.add(d);
            write(b, l, level);
        } else if (v instanceof float[]) {
            List<Object> l = new ArrayList<>();
            for (float f : (float[]) v) l.add((double) f);
            write(b, l, level);
        } else if (v instanceof int[]) {
            List<Object> l = new ArrayList<>();
            for (int x : (int[]) v) l.add((long) x);
            write(b, l, level);
        } else {
            throw new JsonException("cannot write " + v.getClass().getName() + " as JSON");
        }
    }

    private static void quote(StringBuilder b, String s) {
        b.append('"');
        for (int k = 0; k < s.length(); k++) {
            char c = s.charAt(k);
            switch (c) {
                case '"': b.append("\\\""); break;
                case '\\': b.append("\\\\"); break;
                case '\n': b.append("\\n"); break;
                case '\r': b.append("\\r"); break;
                case '\t': b.append("\\t"); break;
                case '\b': b.append("\\b"); break;
                case '\f': b.append("\\f"); break;
                default:
                    if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
                    else b.append(c);
            }
        }
        b.append('"');
    }
}
