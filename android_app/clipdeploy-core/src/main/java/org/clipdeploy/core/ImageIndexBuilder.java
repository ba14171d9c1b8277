package org.clipdeploy.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * Builds an {@link ImageSearch} index in batches the image artifact accepts ({@code shapes.batch}), through
 * {@link EncoderSession#encodeImages}:
 * <ul>
 *   <li>images are gathered into chunks of the largest accepted batch: a dynamic batch's max, or
 *       {@code max(maxBatch, min)} ({@link #DEFAULT_MAX_BATCH} 8) when it has none; fixed [1]: one at a time;</li>
 *   <li>the last, partial chunk is <b>padded</b> up to the shortest accepted batch that holds it (enumerated [1, 4, 8]:
 *       3 images -> a batch of 4; dynamic with min 3: 1 image -> 3) with copies of its last image, and the padded
 *       rows' outputs are dropped. Padding, not splitting into smaller accepted sizes: one call instead of several.</li>
 * </ul>
 * The index equals the one built one image at a time (same ids, order and embeddings, L2-normalized as
 * {@code ClipPipeline.encodeImage}). {@link #plan} gives the batches for N images ({@code goldens/token_lengths.json}
 * "image_batches", the Python rule in {@code clipdeploy.latency.goldens.image_batch_plan}).
 * Not thread-safe: one builder per indexing job.
 */
public final class ImageIndexBuilder {
    public static final int DEFAULT_MAX_BATCH = 8;

    /** One call: {@code images} real rows fed as a batch of {@code size} (size - images padded rows). */
    public static final class Batch {
        public final int start, images, size;

        public Batch(int start, int images, int size) {
            this.start = start;
            this.images = images;
            this.size = size;
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof Batch && ((Batch) o).start == start && ((Batch) o).images == images && ((Batch) o).size == size;
        }

        @Override
        public int hashCode() {
            return start * 961 + images * 31 + size;
        }

        @Override
        public String toString() {
            return "[" + images + " -> " + size + " @" + start + "]";
        }
    }

    private final EncoderSession session;
    private final ShapeDescriptor batch;
    private final int size, chunk;
    private final ImageSearch index;
    private final List<String> pendingIds = new ArrayList<>();
    private final List<float[]> pending = new ArrayList<>();
    private final List<Batch> calls = new ArrayList<>();
    private int added;

    /** Into {@code index}, with {@code session} of an image artifact whose {@code shapes.batch} is {@code batch}. */
    public ImageIndexBuilder(EncoderSession session, ShapeDescriptor batch, int size, ImageSearch index) {
        this(session, batch, size, index, DEFAULT_MAX_BATCH);
    }

    /** {@code maxBatch}: the chunk when the batch has no upper bound (memory: maxBatch * 3 * size^2 floats). */
    public ImageIndexBuilder(EncoderSession session, ShapeDescriptor batch, int size, ImageSearch index, int maxBatch) {
        if (maxBatch < 1) throw new IllegalArgumentException("maxBatch must be at least 1, got " + maxBatch);
        this.session = session;
        this.batch = batch;
        this.size = size;
        this.index = index;
        this.chunk = chunk(batch, maxBatch);
    }

    public ImageIndexBuilder(EncoderSession session, Bundle.Artifact imageArtifact, int size, ImageSearch index) {
        this(session, imageArtifact.shapes.batch, size, index);
    }

    static int chunk(ShapeDescriptor batch, int maxBatch) {
        return batch.largest() == ShapeDescriptor.UNBOUNDED ? Math.max(maxBatch, batch.min) : batch.largest();
    }

    /** The calls that encode {@code n} images. */
    public static List<Batch> plan(ShapeDescriptor batch, int n) {
        return plan(batch, n, DEFAULT_MAX_BATCH);
    }

    public static List<Batch> plan(ShapeDescriptor batch, int n, int maxBatch) {
        int c = chunk(batch, maxBatch);
        List<Batch> out = new ArrayList<>();
        for (int start = 0; start < n; ) {
            int k = Math.min(n - start, c);
            out.add(new Batch(start, k, batch.shortestAccepted(k)));
            start += k;
        }
        return out;
    }

    /**
     * Queues one preprocessed image ({@code chw} float32 [3, size, size]); a full chunk is encoded and added to the
     * index. Returns the ids added by this call, in order (empty while the chunk fills). When the encoder fails, the
     * chunk's images are dropped (none is added) and the exception is thrown: {@link #pending()} was their count.
     */
    public List<String> add(String id, float[] chw) throws Exception {
        if (chw.length != 3 * size * size) {
            throw new IllegalArgumentException(id + ": expected 3*" + size + "*" + size + " floats, got " + chw.length);
        }
        pendingIds.add(id);
        pending.add(chw);
        return pending.size() >= chunk ? encodePending() : Collections.<String>emptyList();
    }

    /** Encodes what is queued (the last, partial chunk, padded); the ids added. */
    public List<String> flush() throws Exception {
        return pending.isEmpty() ? Collections.<String>emptyList() : encodePending();
    }

    /** Images queued and not yet encoded. */
    public int pending() {
        return pending.size();
    }

    /** Images added to the index so far. */
    public int added() {
        return added;
    }

    /** The calls made so far. */
    public List<Batch> calls() {
        return Collections.unmodifiableList(calls);
    }

    private List<String> encodePending() throws Exception {
        int k = pending.size();
        int n = batch.shortestAccepted(k);
        float[][] rows = new float[n][];
        for (int r = 0; r < n; r++) rows[r] = pending.get(Math.min(r, k - 1));     // padded with the last image
        List<String> ids = new ArrayList<>(pendingIds);
        pending.clear();
        pendingIds.clear();
        float[][] y = session.encodeImages(rows, size);
        if (y == null || y.length != n) {
            throw new IllegalStateException("the encoder returned " + (y == null ? "nothing" : y.length + " embeddings")
                    + " for a batch of " + n);
        }
        calls.add(new Batch(added, k, n));
        for (int r = 0; r < k; r++) index.add(ids.get(r), Vectors.l2normalize(y[r]));
        added += k;
        return ids;
    }

    /** Every image in batches, into {@code index}: {@link #add} each, then {@link #flush}. */
    public static void addAll(ImageSearch index, EncoderSession session, ShapeDescriptor batch, int size, List<String> ids,
                              List<float[]> chws) throws Exception {
        if (ids.size() != chws.size()) throw new IllegalArgumentException(ids.size() + " ids but " + chws.size() + " images");
        ImageIndexBuilder b = new ImageIndexBuilder(session, batch, size, index);
        for (int k = 0; k < ids.size(); k++) b.add(ids.get(k), chws.get(k));
        b.flush();
    }
}
