package org.clipdeploy.core;

import java.text.Normalizer;
import java.util.HashMap;
import java.util.Locale;
import java.util.Map;

/**
 * The text cleaning open_clip's tokenizer applies before BPE ({@code clean='lower'}):
 * {@code whitespace_clean(basic_clean(text)).lower()}, where {@code basic_clean} is
 * {@code ftfy.fix_text} followed by {@code html.unescape} twice and a strip.
 *
 * <p>ftfy is reproduced for every fix that applies to text typed or pasted on a phone: C1 controls read
 * as Windows-1252, Latin ligatures, full-/half-width forms, curly quotes, line breaks, lone surrogates,
 * terminal escapes, control characters, NFC, HTML entities (repeated until stable, only when the text has
 * no '&lt;'). Not reproduced: ftfy's mojibake repair (re-decoding text that was decoded with the wrong
 * codec) and HTML entities outside the table below; both leave such text as it is. The golden captions
 * (goldens/tokens.json) cover every rule that is implemented.
 */
public final class TextCleaner {
    private TextCleaner() {}

    public static String clean(String raw) {
        String t = fixText(raw);
        t = htmlUnescape(htmlUnescape(t));
        t = collapseWhitespace(t);
        return t.toLowerCase(Locale.ROOT);
    }

    /** Python's {@code str.isspace()} for one code point. */
    public static boolean isPySpace(int c) {
        return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680
                || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f
                || c == 0x3000;
    }

    /** {@code " ".join(text.split())}: runs of Python whitespace become one space, ends stripped. */
    public static String collapseWhitespace(String t) {
        StringBuilder b = new StringBuilder(t.length());
        boolean pending = false;
        for (int k = 0; k < t.length(); ) {
            int c = t.codePointAt(k);
            k += Character.charCount(c);
            if (isPySpace(c)) {
                pending = b.length() > 0;
            } else {
                if (pending) b.append(' ');
                pending = false;
                b.appendCodePoint(c);
            }
        }
        return b.toString();
    }

    // ------------------------------------------------------------------------------------ ftfy subset

    static String fixText(String text) {
        boolean unescape = text.indexOf('<') < 0;      // ftfy's unescape_html="auto"
        String t = text;
        for (int guard = 0; guard < 100; guard++) {
            String orig = t;
            if (unescape) t = unescapeEntities(t, true);
            t = fixC1Controls(t);
            t = fixLigatures(t);
            t = fixCharacterWidth(t);
            t = uncurlQuotes(t);
            t = fixLineBreaks(t);
            t = fixSurrogates(t);
            t = removeTerminalEscapes(t);
            t = removeControlChars(t);
            t = Normalizer.normalize(t, Normalizer.Form.NFC);
            if (t.equals(orig)) return t;
        }
        return t;
    }

    /** Windows-1252 characters for bytes 0x80-0x9F (undefined ones keep their code point, as ftfy's sloppy codec). */
    private static final char[] CP1252 = {
        '\u20ac', '\u0081', '\u201a', '\u0192', '\u201e', '\u2026', '\u2020', '\u2021',
        '\u02c6', '\u2030', '\u0160', '\u2039', '\u0152', '\u008d', '\u017d', '\u008f',
        '\u0090', '\u2018', '\u2019', '\u201c', '\u201d', '\u2022', '\u2013', '\u2014',
        '\u02dc', '\u2122', '\u0161', '\u203a', '\u0153', '\u009d', '\u017e', '\u0178'};

    static String fixC1Controls(String t) {
        StringBuilder b = null;
        for (int k = 0; k < t.length(); k++) {
            char c = t.charAt(k);
            if (c >= 0x80 && c <= 0x9f) {
                if (b == null) b = new StringBuilder(t.substring(0, k));
                b.append(CP1252[c - 0x80]);
            } else if (b != null) {
                b.append(c);
            }
        }
        return b == null ? t : b.toString();
    }

    private static final Map<Character, String> LIGATURES = new HashMap<>();

    static {
        String[][] l = {{"\u0132", "IJ"}, {"\u0133", "ij"}, {"\u0149", "\u02bcn"}, {"\u01f1", "DZ"}, {"\u01f2", "Dz"},
            {"\u01f3", "dz"}, {"\u01c4", "D\u017d"}, {"\u01c5", "D\u017e"}, {"\u01c6", "d\u017e"}, {"\u01c7", "LJ"},
            {"\u01c8", "Lj"}, {"\u01c9", "lj"}, {"\u01ca", "NJ"}, {"\u01cb", "Nj"}, {"\u01cc", "nj"},
            {"\ufb00", "ff"}, {"\ufb01", "fi"}, {"\ufb02", "fl"}, {"\ufb03", "ffi"}, {"\ufb04", "ffl"},
            {"\ufb05", "\u017ft"}, {"\ufb06", "st"}};
        for (String[] p : l) LIGATURES.put(p[0].charAt(0), p[1]);
    }

    static String fixLigatures(String t) {
        StringBuilder b = new StringBuilder(t.length());
        for (int k = 0; k < t.length(); k++) {
            char c = t.charAt(k);
            String r = LIGATURES.get(c);
            if (r != null) b.append(r);
            else b.append(c);
        }
        return b.toString();
    }

    /** U+3000 -> space; U+FF01..U+FFEF -> their NFKC form where that differs (ftfy's width map). */
    static String fixCharacterWidth(String t) {
        StringBuilder b = new StringBuilder(t.length());
        for (int k = 0; k < t.length(); k++) {
            char c = t.charAt(k);
            if (c == '\u3000') {
                b.append(' ');
            } else if (c >= '\uff01' && c < '\ufff0') {
                b.append(Normalizer.normalize(String.valueOf(c), Normalizer.Form.NFKC));
            } else {
                b.append(c);
            }
        }
        return b.toString();
    }

    static String uncurlQuotes(String t) {
        StringBuilder b = new StringBuilder(t.length());
        for (int k = 0; k < t.length(); k++) {
            char c = t.charAt(k);
            if (c == '\u02bc' || (c >= '\u2018' && c <= '\u201b')) b.append('\'');
            else if (c >= '\u201c' && c <= '\u201f') b.append('"');
            else b.append(c);
        }
        return b.toString();
    }

    static String fixLineBreaks(String t) {
        return t.replace("\r\n", "\n").replace('\r', '\n').replace('\u2028', '\n').replace('\u2029', '\n')
                .replace('\u0085', '\n');
    }

    static String fixSurrogates(String t) {
        StringBuilder b = new StringBuilder(t.length());
        for (int k = 0; k < t.length(); k++) {
            char c = t.charAt(k);
            if (Character.isHighSurrogate(c) && k + 1 < t.length() && Character.isLowSurrogate(t.charAt(k + 1))) {
                b.append(c).append(t.charAt(++k));
            } else if (Character.isSurrogate(c)) {
                b.append('\ufffd');
            } else {
                b.append(c);
            }
        }
        return b.toString();
    }

    /** ANSI escapes {@code ESC [ (digits|;)* letter}. */
    static String removeTerminalEscapes(String t) {
        return t.replaceAll("\u001b\\[[0-9;]*[a-zA-Z]", "");
    }

    static String removeControlChars(String t) {
        StringBuilder b = new StringBuilder(t.length());
        for (int k = 0; k < t.length(); k++) {
            char c = t.charAt(k);
            boolean drop = c <= 0x08 || c == 0x0b || (c >= 0x0e && c <= 0x1f) || c == 0x7f
                    || (c >= 0x206a && c <= 0x206f) || c == 0xfeff || (c >= 0xfff9 && c <= 0xfffc);
            if (!drop) b.append(c);
        }
        return b.toString();
    }

    // ---------------------------------------------------------------------------------- HTML entities

    private static final Map<String, String> ENTITIES = new HashMap<>();
    /** Names Python's html.unescape also accepts without the semicolon (a subset of HTML5's legacy names). */
    private static final String[] LEGACY = {"amp", "lt", "gt", "quot", "nbsp", "copy", "reg", "AMP", "LT", "GT", "QUOT"};

    static {
        String[][] e = {{"amp", "&"}, {"lt", "<"}, {"gt", ">"}, {"quot", "\""}, {"apos", "'"}, {"AMP", "&"},
            {"LT", "<"}, {"GT", ">"}, {"QUOT", "\""}, {"nbsp", "\u00a0"}, {"copy", "\u00a9"}, {"reg", "\u00ae"},
            {"trade", "\u2122"}, {"hellip", "\u2026"}, {"mdash", "\u2014"}, {"ndash", "\u2013"},
            {"lsquo", "\u2018"}, {"rsquo", "\u2019"}, {"ldquo", "\u201c"}, {"rdquo", "\u201d"},
            {"laquo", "\u00ab"}, {"raquo", "\u00bb"}, {"bull", "\u2022"}, {"middot", "\u00b7"}, {"deg", "\u00b0"},
            {"euro", "\u20ac"}, {"pound", "\u00a3"}, {"yen", "\u00a5"}, {"cent", "\u00a2"}, {"sect", "\u00a7"},
            {"para", "\u00b6"}, {"times", "\u00d7"}, {"divide", "\u00f7"}, {"plusmn", "\u00b1"},
            {"frac12", "\u00bd"}, {"frac14", "\u00bc"}, {"frac34", "\u00be"}, {"iexcl", "\u00a1"},
            {"iquest", "\u00bf"}, {"szlig", "\u00df"}, {"ntilde", "\u00f1"}, {"Ntilde", "\u00d1"},
            {"ccedil", "\u00e7"}, {"Ccedil", "\u00c7"}, {"aring", "\u00e5"}, {"Aring", "\u00c5"},
            {"oslash", "\u00f8"}, {"Oslash", "\u00d8"}, {"aelig", "\u00e6"}, {"AElig", "\u00c6"}};
        for (String[] p : e) ENTITIES.put(p[0], p[1]);
        String[][] marks = {{"acute", "\u0301"}, {"grave", "\u0300"}, {"circ", "\u0302"}, {"uml", "\u0308"}};
        for (String v : new String[] {"a", "e", "i", "o", "u", "A", "E", "I", "O", "U"}) {
            for (String[] m : marks) {
                ENTITIES.put(v + m[0], Normalizer.normalize(v + m[1], Normalizer.Form.NFC));
            }
        }
    }

    /** Python's {@code html.unescape} (named entities limited to the table above). */
    public static String htmlUnescape(String t) {
        return unescapeEntities(t, false);
    }

    /**
     * One pass over the entity references of {@code t}. {@code ftfy}: only {@code &name;} and {@code &#..;}
     * with the semicolon (ftfy's rule); otherwise Python's html.unescape rules (numeric semicolon optional,
     * legacy names without it).
     */
    static String unescapeEntities(String t, boolean ftfy) {
        if (t.indexOf('&') < 0) return t;
        StringBuilder b = new StringBuilder(t.length());
        int k = 0;
        while (k < t.length()) {
            char c = t.charAt(k);
            if (c != '&') {
                b.append(c);
                k++;
                continue;
            }
            int[] consumed = new int[1];
            String rep = ftfy ? ftfyEntity(t, k, consumed) : pyEntity(t, k, consumed);
            if (rep == null) {
                b.append('&');
                k++;
            } else {
                b.append(rep);
                k += consumed[0];
            }
        }
        return b.toString();
    }

    private static String ftfyEntity(String t, int at, int[] consumed) {
        // &#?[0-9A-Za-z]{1,24};
        int k = at + 1;
        boolean hash = k < t.length() && t.charAt(k) == '#';
        if (hash) k++;
        int start = k;
        while (k < t.length() && k - start < 25 && isAsciiAlnum(t.charAt(k))) k++;
        if (k == start || k - start > 24 || k >= t.length() || t.charAt(k) != ';') return null;
        String name = t.substring(start, k);
        consumed[0] = k + 1 - at;
        if (!hash) return ENTITIES.get(name);
        int[] c2 = new int[1];
        String r = pyEntity(t.substring(at, k + 1), 0, c2);
        return r != null && c2[0] == k + 1 - at ? r : null;
    }

    private static boolean isAsciiHex(char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    }

    private static boolean isAsciiAlnum(char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    }

    private static String pyEntity(String t, int at, int[] consumed) {
        int k = at + 1;
        if (k < t.length() && t.charAt(k) == '#') {
            k++;
            boolean hex = k < t.length() && (t.charAt(k) == 'x' || t.charAt(k) == 'X');
            if (hex) k++;
            int start = k;
            while (k < t.length() && (hex ? isAsciiHex(t.charAt(k)) : (t.charAt(k) >= '0' && t.charAt(k) <= '9'))) k++;
            if (k == start) return null;
            String digits = t.substring(start, k);
            if (k < t.length() && t.charAt(k) == ';') k++;
            consumed[0] = k - at;
            return charRef(digits, hex ? 16 : 10);
        }
        // named: [^\t\n\f <&#;]{1,32};?
        int start = k;
        while (k < t.length() && k - start < 32 && "\t\n\f <&#;".indexOf(t.charAt(k)) < 0) k++;
        if (k == start) return null;
        String name = t.substring(start, k);
        if (k < t.length() && t.charAt(k) == ';' && ENTITIES.containsKey(name)) {
            consumed[0] = k + 1 - at;
            return ENTITIES.get(name);
        }
        // longest legacy name that prefixes it (Python: the rest of the match is kept as text)
        String best = null;
        for (String l : LEGACY) {
            if (name.startsWith(l) && (best == null || l.length() > best.length())) best = l;
        }
        if (best == null) return null;
        consumed[0] = 1 + best.length();
        return ENTITIES.get(best);
    }

    private static String charRef(String digits, int radix) {
        String d = digits.replaceFirst("^0+(?=.)", "");             // Python's int() ignores leading zeros
        long num = d.length() > 8 ? Long.MAX_VALUE : Long.parseLong(d, radix);
        if (num == 0x00) return "\ufffd";
        if (num == 0x0d) return "\r";
        if (num >= 0x80 && num <= 0x9f) return String.valueOf(CP1252[(int) num - 0x80]);
        if ((num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff) return "\ufffd";
        int n = (int) num;
        boolean invalid = (n >= 0x1 && n <= 0x8) || (n >= 0xe && n <= 0x1f) || (n >= 0x7f && n <= 0x9f)
                || (n >= 0xfdd0 && n <= 0xfdef) || n == 0xb || (n & 0xfffe) == 0xfffe;
        if (invalid) return "";
        return new String(Character.toChars(n));
    }
}
