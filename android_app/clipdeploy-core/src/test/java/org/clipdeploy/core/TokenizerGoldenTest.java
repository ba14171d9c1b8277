package org.clipdeploy.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.io.File;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.BeforeClass;
import org.junit.Test;

public class TokenizerGoldenTest {
    static ClipTokenizer tok;

    @BeforeClass
    public static void load() throws Exception {
        File t = Goldens.file("bundle/tokenizer");
        tok = ClipTokenizer.fromFiles(new File(t, "vocab.json"), new File(t, "merges.txt"));
    }

    @Test
    public void everyGoldenCaptionTokenizesToThePythonIds() throws Exception {
        Map<String, Object> g = Goldens.json("tokens.json");
        assertEquals(77, (int) Json.num(g.get("context_length")));
        List<Object> cases = Json.list(g.get("cases"));
        assertTrue("expected at least 20 golden captions", cases.size() >= 20);
        StringBuilder failures = new StringBuilder();
        for (Object o : cases) {
            Map<String, Object> c = Json.map(o);
            int[] want = Json.ints(c.get("ids"));
            int[] got = tok.tokenize(Json.str(c.get("text")));
            if (!Arrays.equals(want, got)) {
                failures.append("\n").append(c.get("name")).append(": want ").append(Arrays.toString(want))
                        .append("\n   got ").append(Arrays.toString(got));
            }
        }
        assertEquals("captions that differ from open_clip:" + failures, "", failures.toString());
    }

    @Test
    public void specialIdsPaddingAndTruncation() {
        int[] ids = tok.tokenize("a photo of a dog");
        assertEquals(77, ids.length);
        assertEquals(ClipTokenizer.SOT, ids[0]);
        assertEquals(ClipTokenizer.EOT, ids[6]);
        assertEquals(0, ids[7]);
        assertEquals(0, ids[76]);
        StringBuilder longText = new StringBuilder();
        for (int k = 0; k < 200; k++) longText.append("dog ");
        int[] t = tok.tokenize(longText.toString());
        assertEquals(ClipTokenizer.SOT, t[0]);
        assertEquals(ClipTokenizer.EOT, t[76]);
        assertEquals(tok.encode("dog")[0], t[75]);
        assertArrayEquals(new int[] {ClipTokenizer.SOT, ClipTokenizer.EOT}, Arrays.copyOf(tok.tokenize(""), 2));
    }

    @Test
    public void cleaningRules() {
        assertEquals("fish & chips", TextCleaner.clean("  FISH &amp;amp; Chips "));
        assertEquals("\"hi\" it's", TextCleaner.clean("\u201cHi\u201d it\u2019s"));
        assertEquals("the fish", TextCleaner.clean("the \ufb01sh"));
        assertEquals("abc !", TextCleaner.clean("\uff41\uff42\uff43\u3000\uff01"));
        assertEquals("caf\u00e9", TextCleaner.clean("cafe\u0301"));
        assertEquals("a b", TextCleaner.clean("a\u0007\t\n\u00a0 b"));
        assertEquals("a", TextCleaner.htmlUnescape("&#00000000097;"));          // leading zeros, as Python's int()
        assertEquals("\ufffd", TextCleaner.htmlUnescape("&#x110000;"));
        assertEquals("&#x\u0661;", TextCleaner.htmlUnescape("&#x\u0661;"));   // non-ASCII digits are not hex
        assertEquals("&x; <", TextCleaner.htmlUnescape("&ampx; &lt"));
    }

    @Test
    public void rejectsAVocabularyThatIsNotClips() throws Exception {
        java.io.ByteArrayInputStream v = new java.io.ByteArrayInputStream("{\"a\": 0}".getBytes("UTF-8"));
        java.io.ByteArrayInputStream m = new java.io.ByteArrayInputStream("#version: 0.2\n".getBytes("UTF-8"));
        try {
            ClipTokenizer.fromStreams(v, m);
            throw new AssertionError("a non-CLIP vocabulary was accepted");
        } catch (java.io.IOException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("not the OpenAI CLIP vocabulary"));
        }
    }
}
