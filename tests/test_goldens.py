"""The golden vectors the apps' tests consume (goldens/), and the reports the apps' JVM core and Swift kit write.

* the checked-in goldens equal a fresh ``clip-latency goldens`` (so they cannot drift from the toolkit);
* their token ids are the Python tokenizer's, their preprocessing outputs are ``m.preprocess``'s;
* the JVM core (android_app/clipdeploy-core, plain Java) is compiled here and its benchmark runner writes
  a report with the goldens' linear reference bundle: that report validates against the clip-latency
  schema, ``clip-latency ingest`` accepts it, its statistics are the toolkit's and its parity is exact;
* the iOS kit (ios_app, Swift) is built with SwiftPM and its ``clipdeploy-report`` is held to the same;
* both ports' tokenizers equal open_clip's on 1,500 seeded random captions.
"""
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipdeploy.latency.cli import main as latency_main
from clipdeploy.latency.goldens import CAPTIONS, check, linear_embed_image, linear_embed_text
from clipdeploy.latency.report import load_report, validate_report
from clipdeploy.latency.stats import summarize

REPO = Path(__file__).resolve().parents[1]
GOLDENS = REPO / "goldens"


def _json(rel):
    return json.loads((GOLDENS / rel).read_text(encoding="utf-8"))


def test_checked_in_goldens_equal_a_fresh_generation():
    diff = check(GOLDENS)
    assert diff == [], f"goldens/ is stale, run `make goldens`: {diff}"
    idx = _json("index.json")
    assert idx["schema_version"] == 1 and "tokens.json" in idx["files"]


def test_golden_token_ids_are_the_python_tokenizers():
    from clipdeploy.models.tokenizer import tokenize
    g = _json("tokens.json")
    assert [c["name"] for c in g["cases"]] == [n for n, _ in CAPTIONS]
    ids = tokenize([c["text"] for c in g["cases"]]).numpy()
    assert ids.dtype == np.int32
    assert np.array_equal(ids, np.array([c["ids"] for c in g["cases"]], dtype=np.int32))
    by = {c["name"]: c["ids"] for c in g["cases"]}
    assert by["over_long"][76] == 49407 and all(by["over_long"])          # truncated, EOT kept last
    assert by["accents_nfd"] == by["accents_nfc"]                           # NFC applied
    assert by["special_tokens_literal"][:2] == [49406, 49406]
    assert len({tuple(v) for v in by.values()}) == len(by) - 1              # only NFC/NFD coincide


def test_golden_preprocessing_equals_model_preprocess(seeded_model):
    from clipdeploy.models.preprocess import preprocess_image
    from clipdeploy.models.registry import get_spec
    g = _json("preprocess.json")
    s0 = seeded_model("mobileclip_s0")
    kinds = set()
    for c in g["cases"]:
        img = Image.open(GOLDENS / c["source"])
        assert img.size == (c["width"], c["height"]) and img.mode == "RGB"
        px = np.load(GOLDENS / c["pixels"])                    # the decoded PNG, for ports without a decoder
        assert px.dtype == np.uint8 and list(px.shape) == c["pixels_shape"] == [c["height"], c["width"], 3]
        assert np.array_equal(px, np.asarray(img)), c["name"]
        want = np.load(GOLDENS / c["expected"])
        assert want.dtype == np.float32 and want.shape == (3, c["image_size"], c["image_size"])
        got = (s0.preprocess(img) if c["model"] == "mobileclip_s0"
               else preprocess_image(img, get_spec(c["model"]))).numpy()
        assert np.array_equal(got, want), c["name"]
        # the stated geometry is what torchvision did: crop the resized image where the golden says
        rw, rh = c["resized"]
        top, left = c["crop"]
        r = c["image_size"]
        resized = img.resize((rw, rh), getattr(Image.Resampling, c["interpolation"].upper()))
        crop = np.asarray(resized, dtype=np.float32)[top:top + r, left:left + r].transpose(2, 0, 1) / 255.0
        assert np.array_equal(crop.astype(np.float32), want), c["name"]
        kinds.add((c["interpolation"], min(c["width"], c["height"]) < c["resize_shorter_side_to"]))
    assert {("bilinear", True), ("bilinear", False), ("bicubic", False)} <= kinds


def test_golden_bundle_references_are_the_linear_model():
    b = GOLDENS / "bundle"
    m = json.loads((b / "manifest.json").read_text())
    w = np.load(b / "reference-fp32" / "image_encoder.npy")
    t = np.load(b / "reference-fp32" / "text_encoder.npy")
    images, ids = np.load(b / "probe" / "images.npy"), np.load(b / "probe" / "token_ids.npy")
    ref_i, ref_t = np.load(b / "probe" / "image_embeddings.npy"), np.load(b / "probe" / "text_embeddings.npy")
    assert np.array_equal(linear_embed_image(w, images), ref_i)
    assert np.array_equal(linear_embed_text(t, ids), ref_t)
    # input-dependent: probe images and captions give clearly different embeddings
    assert (ref_i @ ref_i.T - np.eye(len(ref_i))).max() < 0.9
    assert (ref_t @ ref_t.T - np.eye(len(ref_t))).max() < 0.9
    for key in ("vocab", "merges", "config"):
        assert (b / m["tokenizer"][key]).is_file()
    assert [a["path"] for a in m["artifacts"]] == ["reference-fp32/image_encoder.npy",
                                                    "reference-fp32/text_encoder.npy", "reference-fp32/classifier.npy"]
    # the classifier: the image encoder's W in its own file, the prompt ensemble through the linear text encoder,
    # and classifier.json's logits = logit_scale x probe image embeddings @ the class matrix
    from clipdeploy.latency.goldens import golden_class_embeddings
    c = m["classifier"]
    assert np.array_equal(np.load(b / "reference-fp32" / "classifier.npy"), w)
    classes = np.load(b / c["class_embeddings"])
    assert np.array_equal(classes, golden_class_embeddings(t, c["labels"], c["templates"]))
    assert json.loads((b / c["labels_file"]).read_text(encoding="utf-8")) == c["labels"]
    g = _json("classifier.json")
    logits = c["logit_scale"] * ref_i.astype(np.float64) @ classes.astype(np.float64).T
    assert np.allclose(g["probe_logits"], logits, atol=1e-9) and g["probe_top1"] == logits.argmax(-1).tolist()
    assert len(set(g["probe_top1"])) >= 3                   # the probe images pick different labels


def test_golden_token_lengths_are_the_python_tokenizers():
    from clipdeploy.models import shapes as sh
    from clipdeploy.models.tokenizer import token_count, tokenize
    g = _json("token_lengths.json")
    descs = {d["name"]: sh.validate(d["descriptor"]) for d in g["descriptors"]}
    kinds = {d["kind"] for d in descs.values()}
    assert kinds == {"fixed", "enumerated", "dynamic"} and any(d.get("max", 0) is None for d in descs.values())
    seen = set()
    for c in g["cases"]:
        assert c["tokens"] == token_count(c["text"])
        for name, d in descs.items():
            ids = tokenize(c["text"], length=d).numpy()[0]
            assert c["lengths"][name] == len(ids) and c["ids"][name] == ids.tolist(), (c["name"], name)
            seen.add("cut" if len(ids) < c["tokens"] else "padded" if len(ids) > c["tokens"] else "exact")
    assert seen == {"cut", "padded", "exact"}                  # every edge: truncation, min/enumerated padding
    assert max(c["tokens"] for c in g["cases"]) == 77 and min(c["tokens"] for c in g["cases"]) == 2
    for b in g["batches"]:
        texts = {c["name"]: c["text"] for c in g["cases"]}
        ids = tokenize([texts[n] for n in b["captions"]], length=descs[b["descriptor"]]).numpy()
        assert ids.shape[1] == b["length"] and ids.tolist() == b["ids"]
    for m in g["malformed"]:
        with pytest.raises(sh.ShapeError, match=re.escape(m["error"])):
            sh.validate(m["descriptor"])
    for d in g["image_batches"]["descriptors"]:
        for p in d["plans"]:
            assert sum(k for k, _ in p["batches"]) == p["images"]
            assert all(k <= n and sh.accepts(d["shape"], n) for k, n in p["batches"])


def test_golden_bundle_declares_shapes():
    from clipdeploy.models import shapes as sh
    m = json.loads((GOLDENS / "bundle" / "manifest.json").read_text())
    image, text, classifier = m["artifacts"]
    assert set(image["shapes"]) == {"batch"} and set(text["shapes"]) == {"batch", "length"}
    assert classifier["encoder"] == "classifier" and classifier["shapes"]["batch"]["kind"] == "fixed"
    for d in (image["shapes"]["batch"], text["shapes"]["batch"], text["shapes"]["length"]):
        sh.validate(d)
    # the probe's [77] rows are accepted as they are: the apps' benchmark feeds them unchanged
    assert sh.accepts(text["shapes"]["length"], 77) and sh.accepts(image["shapes"]["batch"], 1)


def test_golden_sample_report_is_valid_and_ingested(tmp_path, capsys):
    rep = validate_report(_json("report_sample.json"))
    for r in rep["records"]:
        if r["status"] == "ok":
            assert r["steady"]["stats"] == summarize(r["steady"]["samples_ms"])
    assert latency_main(["ingest", str(GOLDENS / "report_sample.json"), "--into", str(tmp_path)]) == 0
    assert "accepted" in capsys.readouterr().out


def _report_tool(classes, bundle, report, *args):
    return subprocess.run(["java", "-cp", str(classes), "org.clipdeploy.core.ReportTool", str(bundle), str(report),
                           *map(str, args)], capture_output=True, text=True, timeout=300)


def test_jvm_written_report_validates_and_is_ingested(jvm_classes, tmp_path, capsys):
    report = tmp_path / "jvm_report.json"
    r = _report_tool(jvm_classes, GOLDENS / "bundle", report, 25, 3)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "cold_load" in r.stderr and "steady 20/25" in r.stderr            # progress lines
    assert not (tmp_path / "jvm_report.json.tmp").exists()
    raw = json.loads(report.read_text())
    validate_report(raw)                                                    # the JSON Schema + consistency
    assert raw["source"] == "jvm-core" and raw["bundle"]["model"] == "golden_linear"
    assert sorted(r["encoder"] for r in raw["records"]) == ["classifier", "image", "text"]
    for rec in raw["records"]:
        assert rec["status"] == "ok" and rec["phase_reached"] == "done"
        s = rec["steady"]
        assert len(s["samples_ms"]) >= 25 and s["warmup"] == 3       # >= 25 samples and one 0.25 s block
        assert s["block_ends"][-1] == len(s["samples_ms"]) and sum(s["samples_ms"]) >= 250
        ours = summarize(s["samples_ms"])
        for k, v in ours.items():                                          # the JVM's statistics are ours
            assert s["stats"][k] == pytest.approx(v, rel=1e-12, abs=1e-12), k
        _assert_golden_parity(rec)
        assert rec["load"]["cold_s"] > 0 and rec["first_inference_ms"] > 0
    rep = load_report(report)
    assert rep["records"][0]["id"].endswith("@reference")
    into = tmp_path / "reports"
    assert latency_main(["ingest", str(report), "--into", str(into)]) == 0
    out = capsys.readouterr().out
    assert "accepted" in out and "jvm-core" in out and "3/3 records ok" in out
    assert len(list((into / "golden_linear").glob("*jvm-core*.json"))) == 1
    # and compare treats it like any report: one process is too little data for the latency gate
    # (exit 3), never a regression
    assert latency_main(["compare", str(report), str(report)]) == 3
    out = capsys.readouterr().out
    assert "insufficient data" in out and "1 process, 1 block" in out and "REGRESSION" not in out


def _assert_golden_parity(rec):
    """The golden bundle's artifacts against its probe reference: the embeddings to 1e-6; the classifier's
    logits (logit_scale 100) against 100 x the probe image embeddings @ its class matrix, every top-1 agreeing."""
    p = rec["parity"]
    if rec["encoder"] == "classifier":
        assert p["max_abs"] <= 1e-4 and p["zero_shot_agreement"] == 1.0 and p["top1_agreement"] == 1.0, p
        assert p["n"] == 6
        return
    assert p["max_abs"] <= 1e-6 and p["cosine_min"] > 0.999999 and p["zero_shot_agreement"] == 1.0
    assert p["n"] == (6 if rec["encoder"] == "image" else 8)


def _three_processes_merge(run, tmp_path, name):
    """Three processes of a port's report tool (as `clip-latency android` starts the activity three times, or
    three runs of the iOS benchmark), merged: one worker per process, each with its blocks, statistics over
    the accepted ones. Two blocks per process: a block is >= 0.25 s and the linear reference model takes
    ~20 us a call, so each block is ~10^4 samples per record (4 blocks made 17 MB reports and 3-5 minutes)."""
    from clipdeploy.latency.report import merge_process_reports
    reps = []
    for k in range(3):
        path = tmp_path / f"{name}_{k}.json"
        r = run(path)
        assert r.returncode == 0, r.stderr[-3000:]
        reps.append(load_report(path))
    for rep in reps:
        assert rep["settings"]["min_blocks"] == 2
        for rec in rep["records"]:
            assert len(rec["steady"]["block_ends"]) >= 2
    merged = merge_process_reports(reps)
    for rec in merged["records"]:
        ws = rec["steady"]["workers"]
        assert len(ws) == 3 and rec["steady"]["processes"]["processes"] == 3
        assert [len(w["samples_ms"]) for w in ws] == \
            [len(next(x for x in rep["records"] if x["id"] == rec["id"])["steady"]["samples_ms"]) for rep in reps]
        use = [w for w in ws if w["accepted"]] or ws
        assert rec["steady"]["stats"]["n"] == sum(len(w["samples_ms"]) for w in use)


def test_jvm_processes_merge_into_one_process_level_report(jvm_classes, tmp_path):
    _three_processes_merge(lambda path: _report_tool(jvm_classes, GOLDENS / "bundle", path, 10, 2, 0.0, 2),
                           tmp_path, "jvm")


def test_jvm_report_tool_bad_input(jvm_classes, tmp_path):
    r = _report_tool(jvm_classes, tmp_path / "nowhere", tmp_path / "r.json")
    assert r.returncode == 2
    assert r.stderr.strip().startswith("error: ") and "does not exist" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r.json").exists()


def _tampered_golden_copy(tmp_path):
    """A copy of the goldens' bundle with one byte of an artifact flipped (same size: only the sha256 tells)."""
    b = tmp_path / "bundle"
    shutil.copytree(GOLDENS / "bundle", b)
    f = b / "reference-fp32" / "text_encoder.npy"
    data = bytearray(f.read_bytes())
    data[-5] ^= 0x40
    f.write_bytes(bytes(data))
    return b


def _assert_refused_before_measuring(r, report):
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert "reference-fp32/text_encoder.npy does not match the manifest" in err
    assert "cold_load" not in r.stderr and not report.exists()


def test_jvm_report_tool_refuses_a_tampered_bundle(jvm_classes, tmp_path):
    """The JVM core measures nothing on a bundle whose artifact is not the one the export recorded."""
    r = _report_tool(jvm_classes, _tampered_golden_copy(tmp_path), tmp_path / "r.json")
    _assert_refused_before_measuring(r, tmp_path / "r.json")


def _swift_report(tools, bundle, report, *args):
    return subprocess.run([str(tools["clipdeploy-report"]), str(bundle), str(report), *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_swift_written_report_validates_and_is_ingested(swift_tools, tmp_path, capsys):
    report = tmp_path / "swift_report.json"
    r = _swift_report(swift_tools, GOLDENS / "bundle", report, 25, 3)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "cold_load" in r.stderr and "steady 20/25" in r.stderr            # progress lines
    assert "wrote " in r.stdout and "(3 records)" in r.stdout
    assert not (tmp_path / "swift_report.json.tmp").exists()
    raw = json.loads(report.read_text())
    validate_report(raw)                                                    # the JSON Schema + consistency
    assert raw["source"] == "swift-kit" and raw["bundle"]["model"] == "golden_linear"
    assert raw["host"]["os"] == "Linux" and raw["host"]["cpu_model"] and raw["host"]["memory_total_gb"] > 0
    assert raw["settings"]["threads"] == 1 and raw["settings"]["runs"] == 25
    assert sorted(r["encoder"] for r in raw["records"]) == ["classifier", "image", "text"]
    for rec in raw["records"]:
        assert rec["status"] == "ok" and rec["phase_reached"] == "done"
        s = rec["steady"]
        assert len(s["samples_ms"]) >= 25 and s["warmup"] == 3       # >= 25 samples and one 0.25 s block
        assert s["block_ends"][-1] == len(s["samples_ms"]) and sum(s["samples_ms"]) >= 250
        ours = summarize(s["samples_ms"])
        for k, v in ours.items():                                          # Swift's statistics are ours
            assert s["stats"][k] == pytest.approx(v, rel=1e-12, abs=1e-12), k
        _assert_golden_parity(rec)
        assert rec["load"]["cold_s"] > 0 and rec["first_inference_ms"] > 0
        # memory is the process's resident set on Linux, a real figure (not the 0 of an absent probe)
        assert rec["memory"]["source"].startswith("/proc/self/status VmRSS")
        mem = rec["memory"]
        # a Foundation process holding the golden bundle: about 22 MB here; 0 or a page count would fail
        assert 8 < mem["rss_after_load_mb"] <= mem["peak_rss_mb"] < 256, mem
    into = tmp_path / "reports"
    assert latency_main(["ingest", str(report), "--into", str(into)]) == 0
    out = capsys.readouterr().out
    assert "accepted" in out and "swift-kit" in out and "3/3 records ok" in out
    assert len(list((into / "golden_linear").glob("*swift-kit*.json"))) == 1
    assert latency_main(["compare", str(report), str(report)]) == 3
    out = capsys.readouterr().out
    assert "insufficient data" in out and "REGRESSION" not in out


def test_swift_processes_merge_into_one_process_level_report(swift_tools, tmp_path):
    _three_processes_merge(lambda path: _swift_report(swift_tools, GOLDENS / "bundle", path, 10, 2, 0.0, 2),
                           tmp_path, "swift")


def test_swift_report_tool_bad_input(swift_tools, tmp_path):
    for args, want in [((tmp_path / "nowhere", tmp_path / "r.json"), "is not a directory"),
                       ((GOLDENS / "bundle", tmp_path / "r.json", 5, 0, -1), "minSeconds must be 0 or more"),
                       ((GOLDENS / "bundle", tmp_path / "r.json", "five"), "runs must be an integer, got 'five'"),
                       ((GOLDENS / "bundle", tmp_path / "r.json", 5, 0, 0, 0), "minBlocks must be at least 1, got 0")]:
        r = subprocess.run([str(swift_tools["clipdeploy-report"]), *map(str, args)], capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 2, args
        assert r.stderr.strip().startswith("error: ") and want in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "r.json").exists()
    r = subprocess.run([str(swift_tools["clipdeploy-report"])], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.startswith("usage: clipdeploy-report BUNDLE REPORT")


def test_swift_report_tool_refuses_a_tampered_bundle(swift_tools, tmp_path):
    """The Swift kit measures nothing on a bundle whose artifact is not the one the export recorded."""
    r = _swift_report(swift_tools, _tampered_golden_copy(tmp_path), tmp_path / "r.json")
    _assert_refused_before_measuring(r, tmp_path / "r.json")


def test_goldens_cli_check_catches_drift_and_bad_input(tmp_path, capsys):
    copy = tmp_path / "goldens"
    shutil.copytree(GOLDENS, copy)
    g = json.loads((copy / "tokens.json").read_text())
    g["cases"][0]["ids"][1] += 1
    (copy / "tokens.json").write_text(json.dumps(g))
    assert latency_main(["goldens", "--check", "--out", str(copy)]) == 1
    assert "differs: tokens.json" in capsys.readouterr().out
    assert latency_main(["goldens", "--check", "--out", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.startswith("error: --out")
    (tmp_path / "file").write_text("x")
    assert latency_main(["goldens", "--out", str(tmp_path / "file")]) == 2
    assert "not a directory" in capsys.readouterr().err


def _random_captions(n, seed=0):
    """Seeded random text over the characters the tokenizer's rules care about (no '&': named HTML entities
    beyond the ports' table, and no Latin-1 mojibake, are documented differences)."""
    rng = np.random.default_rng(seed)
    pools = [
        list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"), list("0123456789"),
        list(".,;:!?'\"()[]{}-_/\\@#$%^*+=<>|~`"), ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "n't"],
        list("\u00e9\u00e8\u00fc\u00f1\u00df\u00c9\u00d6\u00e7\u00e5\u00f8"), ["e\u0301", "u\u0308", "A\u030a"],
        list("\u4e00\u5b57\u65e5\u672c\u8a9e\u3042\u30ab\ud55c\uae00"), list("\u03b1\u03a9\u03c3\u0416\u044f\u05d0\u0627\u0905"),
        ["\U0001f600", "\U0001f436", "\u2764\ufe0f", "\U0001f44d\U0001f3fd", "\U0001f468\u200d\U0001f469"],
        [" ", " ", " ", "\t", "\n", "\u00a0", "\u3000", "\u2003", "  "],
        list("\u201c\u201d\u2018\u2019\ufb01\ufb02\uff21\uff42\uff11\uff01\u00bd\u2167\u0661"),
        ["photo", "dog", "cat", "a", "the", "of", "rocket", "caf\u00e9", "\u6771\u4eac", "zebra"],
    ]
    out = []
    for _ in range(n):
        k = int(rng.integers(1, 40))
        parts = []
        for _ in range(k):
            pool = pools[int(rng.integers(0, len(pools)))]
            parts.append(pool[int(rng.integers(0, len(pool)))])
        out.append("".join(parts))
    return out


def _random_corpus():
    """The 1,500 seeded captions, with ftfy's mojibake repairs (e.g. "Å½" read back as "Ž", the ports'
    documented difference) set aside and counted."""
    import ftfy
    texts = _random_captions(1500, seed=1)
    mojibake = [t for t in texts if ftfy.fix_text(t) != ftfy.fix_text(t, fix_encoding=False)]
    return [t for t in texts if t not in mojibake], mojibake


def _tokenizer_equals_open_clip(cmd):
    from clipdeploy.models.tokenizer import tokenize
    texts, mojibake = _random_corpus()
    assert len(texts) + len(mojibake) == 1500 and 0 < len(mojibake) < 0.01 * 1500
    r = subprocess.run(cmd + [str(GOLDENS / "bundle" / "tokenizer")], input=json.dumps(texts),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    got = np.array(json.loads(r.stdout), dtype=np.int32)
    want = tokenize(texts).numpy()
    assert got.shape == want.shape == (len(texts), 77)
    bad = [(t, w[w > 0].tolist(), g[g > 0].tolist()) for t, w, g in zip(texts, want, got) if not np.array_equal(w, g)]
    assert not bad, f"{len(bad)} of {len(texts)} differ, e.g. {bad[:3]!r}"
    return len(texts), len(mojibake)


def test_jvm_tokenizer_equals_open_clip_on_a_random_corpus(jvm_classes):
    # 1,496 captions compared, 4 mojibake cases set aside (the corpus is seeded: these counts are fixed)
    assert _tokenizer_equals_open_clip(["java", "-cp", str(jvm_classes), "org.clipdeploy.core.TokenizeTool"]) == (1496, 4)


def test_swift_tokenizer_equals_open_clip_on_a_random_corpus(swift_tools):
    assert _tokenizer_equals_open_clip([str(swift_tools["clipdeploy-tokenize"])]) == (1496, 4)
