package org.clipdeploy.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.Test;

public class ZeroShotGoldenTest {
    @Test
    public void ensembleProbabilitiesAndSearchEqualPythons() throws Exception {
        Map<String, Object> g = Goldens.json("zeroshot.json");
        List<Object> labels = Json.list(g.get("labels"));
        List<String> templates = new ArrayList<>();
        for (Object t : Json.list(g.get("templates"))) templates.add(Json.str(t));
        List<Object> prompts = Json.list(g.get("prompts"));
        List<Object> promptEmb = Json.list(g.get("prompt_embeddings"));
        float[][] wantClasses = Json.floatRows(g.get("class_embeddings"));
        List<float[]> classes = new ArrayList<>();
        for (int c = 0; c < labels.size(); c++) {
            List<Object> want = Json.list(prompts.get(c));
            List<String> got = ZeroShot.prompts(Json.str(labels.get(c)), templates);
            for (int k = 0; k < want.size(); k++) assertEquals(Json.str(want.get(k)), got.get(k));
            float[] e = ZeroShot.ensemble(Arrays.asList(Json.floatRows(promptEmb.get(c))));
            assertArrayEquals("class " + c, wantClasses[c], e, 1e-6f);
            classes.add(e);
        }
        float[] p = ZeroShot.probabilities(Json.floats(g.get("image_embedding")), classes, Json.num(g.get("logit_scale")));
        assertArrayEquals(Json.floats(g.get("probabilities")), p, 1e-5f);
        assertEquals((int) Json.num(g.get("top1")), ZeroShot.topK(p, 1)[0]);

        Map<String, Object> s = Json.map(g.get("search"));
        ImageSearch index = new ImageSearch();
        float[][] imgs = Json.floatRows(s.get("image_embeddings"));
        for (int k = 0; k < imgs.length; k++) index.add("img" + k, imgs[k]);
        List<ImageSearch.Hit> hits = index.query(Json.floats(s.get("query")), imgs.length);
        int[] ranking = Json.ints(s.get("ranking"));
        double[] scores = Json.doubles(s.get("scores"));
        for (int k = 0; k < ranking.length; k++) {
            assertEquals("rank " + k, ranking[k], hits.get(k).index);
            assertEquals(scores[ranking[k]], hits.get(k).score, 1e-6);
        }
        assertEquals(3, index.query(Json.floats(s.get("query")), 3).size());
    }

    @Test
    public void topKOrdersAndBreaksTiesByIndex() {
        assertArrayEquals(new int[] {1, 3, 0}, ZeroShot.topK(new float[] {0.1f, 0.5f, 0.1f, 0.5f}, 3));
        assertEquals(2, ZeroShot.topK(new float[] {0.1f, 0.5f}, 5).length);
    }
}
