package org.clipdeploy.core;

import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.text.SimpleDateFormat;
import java.util.ArrayList;
import java.util.Date;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * A clip-latency report (schema_version 1, {@code latency/report.schema.json}) as the apps write it:
 * {@code clip-latency ingest} and {@code compare} read it like a host report. Written to
 * {@code <report>.tmp} and renamed when complete; a failed run leaves one line in {@code <report>.error}.
 */
public final class LatencyReport {
    public static final int SCHEMA_VERSION = 1;
    public static final String KIND = "clipdeploy-latency-report";

    private final String source, toolName, toolVersion;
    private Map<String, Object> bundle = new LinkedHashMap<>();
    private HostInfo host = HostInfo.jvm();
    private Map<String, Object> settings = new LinkedHashMap<>();
    private final List<Map<String, Object>> records = new ArrayList<>();
    private Date created = new Date();

    public LatencyReport(String source, String toolName, String toolVersion) {
        if (source == null || source.isEmpty()) throw new IllegalArgumentException("a report needs a source (android-app, ios-app, ...)");
        this.source = source;
        this.toolName = toolName;
        this.toolVersion = toolVersion;
    }

    public LatencyReport bundle(Bundle b, String devicePath) {
        Map<String, Object> m = b.manifest();
        bundle = new LinkedHashMap<>();
        bundle.put("path", devicePath != null ? devicePath : b.dir().getPath());
        bundle.put("model", b.model());
        bundle.put("manifest_created", m.get("created"));
        bundle.put("clipdeploy_version", m.get("clipdeploy_version"));
        bundle.put("checkpoint", m.get("checkpoint") instanceof Map ? m.get("checkpoint") : null);
        return this;
    }

    public LatencyReport host(HostInfo h) {
        host = h;
        return this;
    }

    public LatencyReport created(Date when) {
        created = when;
        return this;
    }

    public LatencyReport settings(BenchmarkSettings s, List<String> runtimes) {
        settings = new LinkedHashMap<>();
        settings.put("threads", s.threads > 0 ? (Object) (long) s.threads : null);
        settings.put("warmup", (long) s.warmup);
        settings.put("runs", (long) s.runs);
        settings.put("min_seconds", s.minSeconds);
        settings.put("min_blocks", (long) s.minBlocks);
        settings.put("timeout_s", null);
        settings.put("work_factor", 1L);
        settings.put("runtimes", new ArrayList<Object>(runtimes));
        settings.put("peak_gflops_per_core", null);
        return this;
    }

    public LatencyReport addRecord(Map<String, Object> record) {
        records.add(record);
        return this;
    }

    public List<Map<String, Object>> records() {
        return records;
    }

    public static String isoNow(Date d) {
        SimpleDateFormat f = new SimpleDateFormat("yyyy-MM-dd'T'HH:mm:ssXXX", Locale.ROOT);
        return f.format(d);
    }

    public Map<String, Object> toMap() {
        if (!bundle.containsKey("model")) throw new IllegalStateException("report has no bundle: call bundle(...) first");
        if (settings.isEmpty()) throw new IllegalStateException("report has no settings: call settings(...) first");
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("schema_version", (long) SCHEMA_VERSION);
        m.put("kind", KIND);
        m.put("created", isoNow(created));
        Map<String, Object> tool = new LinkedHashMap<>();
        tool.put("name", toolName);
        tool.put("version", toolVersion);
        m.put("tool", tool);
        m.put("source", source);
        m.put("bundle", bundle);
        m.put("host", host.toMap());
        m.put("settings", settings);
        m.put("calibration", null);
        m.put("records", records);
        return m;
    }

    public String toJson() {
        return Json.write(toMap(), true) + "\n";
    }

    /** Write {@code report.tmp}, then rename it to {@code report} (a reader never sees half a report). */
    public void writeAtomically(File report) throws IOException {
        writeAtomically(report, toJson());
    }

    static void writeAtomically(File report, String text) throws IOException {
        File parent = report.getAbsoluteFile().getParentFile();
        if (parent != null && !parent.isDirectory() && !parent.mkdirs()) {
            throw new IOException("cannot create " + parent + ": choose a writable report path");
        }
        File tmp = new File(report.getPath() + ".tmp");
        try (OutputStream out = new FileOutputStream(tmp)) {
            out.write(text.getBytes(StandardCharsets.UTF_8));
            out.flush();
        }
        if (report.exists() && !report.delete()) throw new IOException("cannot replace " + report);
        if (!tmp.renameTo(report)) throw new IOException("cannot rename " + tmp + " to " + report);
    }

    /** The failure contract: one line in {@code <report>.error} (what clip-latency android shows). */
    public static void writeError(File report, String message) throws IOException {
        String line = (message == null ? "unknown error" : message).replace('\n', ' ').replace('\r', ' ').trim();
        writeAtomically(new File(report.getPath() + ".error"), line + "\n");
    }

    /** Read a report and check what every consumer relies on: schema version, kind, the required keys. */
    public static Map<String, Object> read(File file) throws IOException {
        Map<String, Object> m = Json.map(Json.parse(file));
        Object v = m.get("schema_version");
        if (!(v instanceof Number) || ((Number) v).intValue() != SCHEMA_VERSION) {
            throw new IOException(file + ": schema_version " + v + " is not supported (" + SCHEMA_VERSION + ")");
        }
        if (!KIND.equals(m.get("kind"))) throw new IOException(file + ": not a clipdeploy latency report (kind " + m.get("kind") + ")");
        for (String k : new String[] {"created", "tool", "source", "bundle", "host", "settings", "records"}) {
            if (!m.containsKey(k)) throw new IOException(file + ": report has no '" + k + "'");
        }
        for (Object o : Json.list(m.get("records"))) {
            Map<String, Object> r = Json.map(o);
            for (String k : new String[] {"id", "model", "artifact", "target", "precision", "encoder", "runtime", "status"}) {
                if (!r.containsKey(k)) throw new IOException(file + ": a record has no '" + k + "'");
            }
            if ("ok".equals(r.get("status"))) {
                for (String k : new String[] {"load", "first_inference_ms", "steady", "memory", "parity"}) {
                    if (!r.containsKey(k)) throw new IOException(file + ": record " + r.get("id") + " is ok but has no '" + k + "'");
                }
            }
        }
        return m;
    }
}
