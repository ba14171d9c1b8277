package org.clipdeploy.core;

import java.io.File;
import java.util.ArrayList;
import java.util.List;

/**
 * {@code java -cp ... org.clipdeploy.core.TokenizeTool TOKENIZER_DIR < texts.json > ids.json}: the core's
 * tokenizer on a JSON list of strings (stdin), printing a JSON list of id lists (77 each). The Python suite
 * feeds it a seeded random corpus and compares with open_clip's tokenizer, beyond the golden captions.
 */
public final class TokenizeTool {
    private TokenizeTool() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: TokenizeTool TOKENIZER_DIR < texts.json");
            System.exit(2);
        }
        File dir = new File(args[0]);
        ClipTokenizer tok = ClipTokenizer.fromFiles(new File(dir, "vocab.json"), new File(dir, "merges.txt"));
        List<Object> out = new ArrayList<>();
        for (Object o : Json.list(Json.parse(System.in))) out.add(tok.tokenize(Json.str(o)));
        System.out.write(Json.write(out, false).getBytes(java.nio.charset.StandardCharsets.UTF_8));
        System.out.flush();
    }
}
