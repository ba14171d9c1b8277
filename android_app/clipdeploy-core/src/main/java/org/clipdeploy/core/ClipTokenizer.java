package org.clipdeploy.core;

import java.io.BufferedReader;
import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * OpenAI CLIP byte-level BPE, as open_clip's {@code SimpleTokenizer}, reading a bundle's
 * {@code tokenizer/vocab.json} and {@code tokenizer/merges.txt} (Hugging Face CLIP format).
 * {@link #tokenize} returns what the exported text encoders take: int32 [77], SOT, BPE ids, EOT, zeros.
 */
public final class ClipTokenizer {
    public static final int SOT = 49406;
    public static final int EOT = 49407;
    public static final int PAD = 0;
    public static final int CONTEXT_LENGTH = 77;
    static final String SOT_LITERAL = "<start_of_text>";
    static final String EOT_LITERAL = "<end_of_text>";

    private final Map<String, Integer> encoder;
    private final Map<String, Integer> ranks;
    private final String[] byteEncoder = new String[256];
    private final Map<String, int[]> cache = new HashMap<>();
    private final int contextLength;

    private ClipTokenizer(Map<String, Integer> encoder, Map<String, Integer> ranks, int contextLength) {
        this.encoder = encoder;
        this.ranks = ranks;
        this.contextLength = contextLength;
        int[] cs = bytesToUnicode();
        for (int b = 0; b < 256; b++) byteEncoder[b] = new String(Character.toChars(cs[b]));
    }

    public static ClipTokenizer fromFiles(File vocabJson, File mergesTxt) throws IOException {
        try (InputStream v = new FileInputStream(vocabJson); InputStream m = new FileInputStream(mergesTxt)) {
            return fromStreams(v, m);
        }
    }

    /**
     * The bundle's tokenizer: {@code vocab.json} and {@code merges.txt} checked against the manifest's sha256 first
     * ({@link Bundle#verifyFile}), then read (each at most {@link Bundle#MAX_TOKENIZER_BYTES}). Failures are one-line
     * {@link Bundle.BundleException}s.
     */
    public static ClipTokenizer fromBundle(Bundle bundle) throws IOException {
        String vocabRel = bundle.tokenizerPath("vocab"), mergesRel = bundle.tokenizerPath("merges");
        File vocab = bundle.verifyFile(vocabRel), merges = bundle.verifyFile(mergesRel);
        for (File f : new File[] {vocab, merges}) {
            if (f.length() > Bundle.MAX_TOKENIZER_BYTES) {
                throw new Bundle.BundleException(Bundle.BundleException.Kind.SCHEMA, "bundle " + bundle.dir() + ": " + f.getName()
                        + " is larger than " + Bundle.MAX_TOKENIZER_BYTES + " bytes; re-export the bundle with clip-export");
            }
        }
        try {
            return fromFiles(vocab, merges);
        } catch (Json.JsonException e) {
            throw new Bundle.BundleException(Bundle.BundleException.Kind.NOT_JSON, "bundle " + bundle.dir() + ": " + vocabRel
                    + " is not JSON (" + e.getMessage() + "); re-export the bundle with clip-export");
        } catch (Bundle.BundleException e) {
            throw e;
        } catch (IOException | RuntimeException e) {
            throw new Bundle.BundleException(Bundle.BundleException.Kind.SCHEMA, "bundle " + bundle.dir() + ": tokenizer files "
                    + vocabRel + " / " + mergesRel + ": " + e.getMessage() + "; re-export the bundle with clip-export");
        }
    }

    public static ClipTokenizer fromStreams(InputStream vocabJson, InputStream mergesTxt) throws IOException {
        Map<String, Object> raw = Json.map(Json.parse(vocabJson, Bundle.MAX_TOKENIZER_BYTES));
        Map<String, Integer> enc = new HashMap<>(raw.size() * 2);
        for (Map.Entry<String, Object> e : raw.entrySet()) enc.put(e.getKey(), (int) Json.num(e.getValue()));
        if (!Integer.valueOf(SOT).equals(enc.get("<|startoftext|>")) || !Integer.valueOf(EOT).equals(enc.get("<|endoftext|>"))) {
            throw new IOException("vocab.json is not the OpenAI CLIP vocabulary (<|startoftext|> must be " + SOT
                    + " and <|endoftext|> " + EOT + ")");
        }
        Map<String, Integer> ranks = new HashMap<>(100000);
        BufferedReader r = new BufferedReader(new InputStreamReader(mergesTxt, StandardCharsets.UTF_8));
        String line;
        int rank = 0;
        boolean first = true;
        while ((line = r.readLine()) != null) {
            if (first && line.startsWith("#version")) {
                first = false;
                continue;
            }
            first = false;
            if (line.isEmpty()) continue;
            String[] p = line.split(" ");
            if (p.length != 2) throw new IOException("merges.txt line " + (rank + 2) + " is not a pair: " + line);
            ranks.put(p[0] + " " + p[1], rank++);
        }
        return new ClipTokenizer(enc, ranks, CONTEXT_LENGTH);
    }

    public int contextLength() {
        return contextLength;
    }

    public int vocabSize() {
        return encoder.size();
    }

    /** SOT, the BPE ids, EOT, padded with 0. Over-long text keeps the first contextLength - 2 ids, so EOT stays
     * last (open_clip: tokens[:context_length] with the last replaced by EOT). */
    public int[] tokenize(String text) {
        return ids(encode(text), contextLength);
    }

    public int[][] tokenize(List<String> texts) {
        int[][] out = new int[texts.size()][];
        for (int k = 0; k < out.length; k++) out[k] = tokenize(texts.get(k));
        return out;
    }

    /** {@link #tokenize} at {@code length} positions: SOT, the BPE ids, EOT, 0-padded; longer text is cut to
     * {@code length} with EOT last (open_clip's tokenizer called with {@code context_length=length}). */
    public int[] tokenize(String text, int length) {
        if (length < 1) throw new IllegalArgumentException("length must be at least 1, got " + length);
        return ids(encode(text), length);
    }

    /** Tokens of {@code text} as the encoder sees them at {@link #contextLength}: SOT, the BPE ids, EOT, at most
     * contextLength (Python's {@code tokenizer.token_count}). */
    public int tokenCount(String text) {
        return Math.min(encode(text).length + 2, contextLength);
    }

    /**
     * The shortest length a text artifact whose {@code shapes.length} is {@code length} accepts for {@code text}:
     * {@link ShapeDescriptor#shortestAccepted} of its {@link #tokenCount} (Python's {@code tokenizer.shortest_length}).
     */
    public int shortestLength(String text, ShapeDescriptor length) {
        return length.shortestAccepted(tokenCount(text));
    }

    /**
     * The ids at the shortest accepted length ({@link #shortestLength}); for a causal text tower the same embedding
     * as 77 positions. Text with more tokens than the largest accepted length is cut to it, EOT last
     * (Python's {@code tokenize(text, length=descriptor)}).
     */
    public int[] tokenizeShortest(String text, ShapeDescriptor length) {
        int[] bpe = encode(text);
        return ids(bpe, length.shortestAccepted(Math.min(bpe.length + 2, contextLength)));
    }

    /** Several texts at one length: the shortest accepted length that holds the longest (a batch). */
    public int[][] tokenizeShortest(List<String> texts, ShapeDescriptor length) {
        int[][] bpe = new int[texts.size()][];
        int need = 2;
        for (int k = 0; k < bpe.length; k++) {
            bpe[k] = encode(texts.get(k));
            need = Math.max(need, Math.min(bpe[k].length + 2, contextLength));
        }
        int l = length.shortestAccepted(need);
        int[][] out = new int[bpe.length][];
        for (int k = 0; k < out.length; k++) out[k] = ids(bpe[k], l);
        return out;
    }

    /** SOT + bpe + EOT in {@code length} positions: cut to length with the last set to EOT, or 0-padded. */
    static int[] ids(int[] bpe, int length) {
        int[] out = new int[length];
        int n = Math.min(bpe.length + 2, length);       // tokens kept
        out[0] = SOT;
        System.arraycopy(bpe, 0, out, 1, Math.max(0, Math.min(bpe.length, n - 1)));
        out[n - 1] = EOT;
        return out;
    }

    /** The BPE ids of the cleaned text, without SOT/EOT. */
    public int[] encode(String text) {
        String t = TextCleaner.clean(text);
        List<Integer> ids = new ArrayList<>();
        for (String piece : pretokenize(t)) {
            if (piece.equals(SOT_LITERAL)) {
                ids.add(SOT);
                continue;
            }
            if (piece.equals(EOT_LITERAL)) {
                ids.add(EOT);
                continue;
            }
            for (int id : bpe(piece)) ids.add(id);
        }
        int[] out = new int[ids.size()];
        for (int k = 0; k < out.length; k++) out[k] = ids.get(k);
        return out;
    }

    // ------------------------------------------------------------------------------ pre-tokenization

    static boolean isLetter(int c) {
        return Character.isLetter(c);
    }

    static boolean isNumber(int c) {
        int t = Character.getType(c);
        return t == Character.DECIMAL_DIGIT_NUMBER || t == Character.LETTER_NUMBER || t == Character.OTHER_NUMBER;
    }

    private static final String[] CONTRACTIONS = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};

    /**
     * open_clip's pattern {@code <start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+},
     * matched left to right (findall: unmatched characters, i.e. whitespace, are skipped).
     */
    static List<String> pretokenize(String t) {
        List<String> out = new ArrayList<>();
        int k = 0;
        outer:
        while (k < t.length()) {
            int c = t.codePointAt(k);
            if (TextCleaner.isPySpace(c)) {
                k += Character.charCount(c);
                continue;
            }
            for (String lit : new String[] {SOT_LITERAL, EOT_LITERAL}) {
                if (t.startsWith(lit, k)) {
                    out.add(lit);
                    k += lit.length();
                    continue outer;
                }
            }
            if (c == '\'') {
                for (String ct : CONTRACTIONS) {
                    if (t.startsWith(ct, k)) {
                        out.add(ct);
                        k += ct.length();
                        continue outer;
                    }
                }
            }
            int start = k;
            if (isLetter(c)) {
                while (k < t.length() && isLetter(t.codePointAt(k))) k += Character.charCount(t.codePointAt(k));
            } else if (isNumber(c)) {
                k += Character.charCount(c);
            } else {
                while (k < t.length()) {
                    int d = t.codePointAt(k);
                    if (TextCleaner.isPySpace(d) || isLetter(d) || isNumber(d)) break;
                    k += Character.charCount(d);
                }
            }
            out.add(t.substring(start, k));
        }
        return out;
    }

    // ------------------------------------------------------------------------------------------ BPE

    /** GPT-2's reversible byte -> printable code point table. */
    static int[] bytesToUnicode() {
        int[] cs = new int[256];
        boolean[] direct = new boolean[256];
        for (int b = '!'; b <= '~'; b++) direct[b] = true;
        for (int b = 0xa1; b <= 0xac; b++) direct[b] = true;
        for (int b = 0xae; b <= 0xff; b++) direct[b] = true;
        int n = 0;
        for (int b = 0; b < 256; b++) cs[b] = direct[b] ? b : 256 + n++;
        return cs;
    }

    private int[] bpe(String piece) {
        int[] hit = cache.get(piece);
        if (hit != null) return hit;
        byte[] bytes = piece.getBytes(StandardCharsets.UTF_8);
        List<String> word = new ArrayList<>(bytes.length);
        for (byte b : bytes) word.add(byteEncoder[b & 0xff]);
        word.set(word.size() - 1, word.get(word.size() - 1) + "</w>");
        while (word.size() > 1) {
            int bestRank = Integer.MAX_VALUE;
            String bestA = null, bestB = null;
            for (int k = 0; k + 1 < word.size(); k++) {
                Integer r = ranks.get(word.get(k) + " " + word.get(k + 1));
                if (r != null && r < bestRank) {
                    bestRank = r;
                    bestA = word.get(k);
                    bestB = word.get(k + 1);
                }
            }
            if (bestA == null) break;
            List<String> merged = new ArrayList<>(word.size());
            for (int k = 0; k < word.size(); ) {
                if (k + 1 < word.size() && word.get(k).equals(bestA) && word.get(k + 1).equals(bestB)) {
                    merged.add(bestA + bestB);
                    k += 2;
                } else {
                    merged.add(word.get(k));
                    k++;
                }
            }
            word = merged;
        }
        int[] ids = new int[word.size()];
        for (int k = 0; k < ids.length; k++) {
            Integer id = encoder.get(word.get(k));
            if (id == null) throw new IllegalStateException("BPE symbol not in vocab.json: " + word.get(k));
            ids[k] = id;
        }
        if (cache.size() < 100000) cache.put(piece, ids);
        return ids;
    }

    @Override
    public String toString() {
        return "ClipTokenizer(vocab " + encoder.size() + ", merges " + ranks.size() + ", context " + contextLength + ")";
    }

}
