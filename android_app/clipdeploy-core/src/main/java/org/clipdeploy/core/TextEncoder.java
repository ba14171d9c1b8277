package org.clipdeploy.core;

import java.util.ArrayList;
import java.util.List;

/**
 * A text artifact's session with the tokenizer in front: captions, zero-shot prompts and search queries are tokenized
 * to the shortest length the artifact accepts ({@code shapes.length}, {@link ClipTokenizer#tokenizeShortest}) and
 * passed as [1, L]; an artifact without shapes (or a non-causal tower, fixed [77]) gets 77 as before. Embeddings are
 * L2-normalized. What {@code ClipPipeline} (Android) uses for every text input.
 */
public final class TextEncoder {
    private final EncoderSession session;
    private final ClipTokenizer tokenizer;
    public final ShapeDescriptor length;

    public TextEncoder(EncoderSession session, ClipTokenizer tokenizer, ShapeDescriptor length) {
        if (length == null) throw new IllegalArgumentException("a text encoder needs its length descriptor");
        this.session = session;
        this.tokenizer = tokenizer;
        this.length = length;
    }

    public TextEncoder(EncoderSession session, ClipTokenizer tokenizer, Bundle.Artifact textArtifact) {
        this(session, tokenizer, textArtifact.shapes.length);
    }

    /** The ids the artifact gets for {@code text}: int32 [L]. */
    public int[] ids(String text) {
        return tokenizer.tokenizeShortest(text, length);
    }

    public float[] embed(String text) throws Exception {
        return Vectors.l2normalize(session.encodeText(ids(text)));
    }

    /** One prompt-ensembled embedding per label ({@link ZeroShot#ensemble} over {@code templates}). */
    public List<float[]> classEmbeddings(List<String> labels, List<String> templates) throws Exception {
        List<float[]> out = new ArrayList<>(labels.size());
        for (String label : labels) {
            List<float[]> prompts = new ArrayList<>(templates.size());
            for (String p : ZeroShot.prompts(label, templates)) prompts.add(embed(p));
            out.add(ZeroShot.ensemble(prompts));
        }
        return out;
    }
}
