package org.clipdeploy.core;

import java.io.File;
import java.io.IOException;
import java.util.Map;

/** Where the shared golden vectors are: {@code -Dclipdeploy.goldens=DIR}, else the repository's goldens/ found upwards. */
final class Goldens {
    private Goldens() {}

    static File dir() {
        String p = System.getProperty("clipdeploy.goldens");
        if (p == null) p = System.getenv("CLIPDEPLOY_GOLDENS");
        if (p != null) {
            File f = new File(p);
            if (!new File(f, "index.json").isFile()) throw new IllegalStateException("no goldens at " + f + " (index.json missing)");
            return f;
        }
        for (File d = new File("").getAbsoluteFile(); d != null; d = d.getParentFile()) {
            File g = new File(d, "goldens");
            if (new File(g, "index.json").isFile()) return g;
        }
        throw new IllegalStateException("goldens/ not found: run from the repository or pass -Dclipdeploy.goldens=DIR");
    }

    static File file(String rel) {
        return new File(dir(), rel);
    }

    static Map<String, Object> json(String rel) throws IOException {
        return Json.map(Json.parse(file(rel)));
    }
}
