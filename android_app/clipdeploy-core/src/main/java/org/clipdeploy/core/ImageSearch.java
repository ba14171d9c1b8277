package org.clipdeploy.core;

import java.util.ArrayList;
import java.util.List;

/** Text -> image search over image embeddings: cosine (dot of L2-normalized embeddings), best first. */
public final class ImageSearch {
    public static final class Hit {
        public final String id;
        public final int index;
        public final double score;

        Hit(String id, int index, double score) {
            this.id = id;
            this.index = index;
            this.score = score;
        }

        @Override
        public String toString() {
            return id + " (" + String.format(java.util.Locale.ROOT, "%.4f", score) + ")";
        }
    }

    private final List<String> ids = new ArrayList<>();
    private final List<float[]> embeddings = new ArrayList<>();

    public synchronized void add(String id, float[] embedding) {
        if (!embeddings.isEmpty() && embeddings.get(0).length != embedding.length) {
            throw new IllegalArgumentException("embedding dimension " + embedding.length + " != " + embeddings.get(0).length);
        }
        ids.add(id);
        embeddings.add(embedding.clone());
    }

    public synchronized int size() {
        return ids.size();
    }

    public synchronized void clear() {
        ids.clear();
        embeddings.clear();
    }

    /** The k best images for a text embedding; equal scores keep insertion order. */
    public synchronized List<Hit> query(float[] textEmbedding, int k) {
        List<Hit> hits = new ArrayList<>(ids.size());
        for (int i = 0; i < ids.size(); i++) hits.add(new Hit(ids.get(i), i, Vectors.dot(embeddings.get(i), textEmbedding)));
        hits.sort((a, b) -> a.score != b.score ? Double.compare(b.score, a.score) : Integer.compare(a.index, b.index));
        return new ArrayList<>(hits.subList(0, Math.min(k, hits.size())));
    }
}
