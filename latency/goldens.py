"""Golden vectors shared by the apps' ports (``android_app/clipdeploy-core`` in Java, ``ios_app`` in Swift).

``clip-latency goldens --out goldens`` writes them; ``--check`` regenerates them in a temporary folder and
compares with the checked-in copy (the test suite does that), so the goldens can only drift from the
Python toolkit by failing a test. Everything in them comes from the toolkit's own code paths:

* ``tokens.json`` — :func:`clipdeploy.models.tokenizer.tokenize` (open_clip's ``SimpleTokenizer``) on
  captions that exercise each cleaning and pre-tokenization rule (ASCII, punctuation, contractions, digits,
  NFC/NFD accents, CJK, emoji, curly quotes, ligatures, full-width forms, HTML entities, control and
  terminal-escape characters, whitespace runs, the literal special tokens, empty and over-long text);
* ``preprocess.json`` + ``preprocess/`` — source PNGs of several sizes (the probe images rendered larger,
  cropped to other aspect ratios, one upscaled) and :func:`clipdeploy.models.preprocess.preprocess_image`
  of each for the spec of a model per resize geometry/interpolation (S0 256 px, B 224 px, MobileCLIP2-L-14
  224 px bicubic), float32 ``[3, R, R]``;
* ``stats.json`` — :func:`clipdeploy.latency.stats.summarize` of sample sets and
  :func:`clipdeploy.latency.parity.measure` / ``failures`` (fp32, fp16, int8 bars) on embedding sets (passing, fp16-only,
  disagreeing, non-finite);
* ``token_lengths.json`` — :func:`clipdeploy.models.tokenizer.tokenize` with ``length=<descriptor>``: captions
  × text-length descriptors (:mod:`clipdeploy.models.shapes`) → the shortest accepted length and its ids,
  a few batches (one length for all), malformed descriptors with the phrase their error names, and image
  batch plans (how the apps' index builder groups N images for a batch descriptor);
* ``zeroshot.json`` — prompt ensembling, probabilities and text→image search ranking on fixed vectors;
* ``report_sample.json`` — a device report in the ``clip-latency`` schema (validated here);
* ``bundle/`` — a miniature bundle in the real layout (manifest with ``shapes``, tokenizer files, probe set)
  whose two artifacts are a *linear reference model* a few lines of Java or Swift can run, so the apps' benchmark
  runner, parity and report writer are tested end to end without a phone.
"""
from __future__ import annotations

import filecmp
import hashlib
import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np

GOLDENS_SCHEMA_VERSION = 1
GENERATOR = "clip-latency goldens --out goldens"

# Captions: (name, text). Every rule of the tokenizer's cleaning / pre-tokenization is hit at least once.
CAPTIONS = [
    ("ascii", "a photo of a dog"),
    ("empty", ""),
    ("case_punctuation", "A Photo Of A DOG!!! (really?) -- yes..."),
    ("contractions", "don't stop, it's the dog's ball; we'll see, they'd say I'm sure you're right, we've won"),
    ("digits", "pi is 3.14159, 1,000,000 people in 2024"),
    ("unicode_digits", "\u0661\u0662\u0663 arabic-indic digits and \u00bd fractions \u2167"),
    ("accents_nfc", "ein Foto von einer Katze, caf\u00e9 cr\u00e8me"),
    ("accents_nfd", "ein Foto von einer Katze, cafe\u0301 cre\u0300me"),
    ("german_sharp_s", "Stra\u00dfe, \u00dcbergr\u00f6\u00dfe und \u00c4pfel"),
    ("cjk", "\u6771\u4eac\u306e\u591c\u666f\u306e\u5199\u771f"),
    ("hangul", "\ud55c\uad6d\uc5b4 \uc0ac\uc9c4"),
    ("emoji", "a photo of a \U0001f436 and a \U0001f431 \U0001f468\u200d\U0001f469\u200d\U0001f467"),
    ("curly_quotes", "\u201csmart quotes\u201d and \u2018single\u2019 ones, it\u2019s"),
    ("ligatures", "the \ufb01sh \ufb02oats o\ufb00 the \ufb03ce"),
    ("full_width", "\uff26\uff35\uff2c\uff2c\u3000\uff37\uff29\uff24\uff34\uff28\u3000\uff54\uff45\uff58\uff54\uff01"),
    ("html_entities", "fish &amp; chips &#39;quoted&#39; &quot;x&quot; &#x263A; caf&eacute; &nbsp;"),
    ("html_double_escaped", "double escaped &amp;amp; here &amp;lt;3"),
    ("html_with_tag", "<b>bold</b> &amp; plain"),
    ("whitespace", "  lots   of\twhitespace\n\nand\u00a0nbsp\u3000ideographic\u2003em   end  "),
    ("control_chars", "bell\u0007here zero\u200bwidth\ufeffbom del\u007f"),
    ("terminal_escape", "\u001b[31mred text\u001b[0m normal"),
    ("special_tokens_literal", "<start_of_text> literal special tokens <end_of_text>"),
    ("email_url", "e-mail: test@example.com, see https://x.org/a?b=c#d"),
    ("mixed_scripts", "\u041f\u0440\u0438\u0432\u0435\u0442 \u03ba\u03cc\u03c3\u03bc\u03b5 \u05e9\u05dc\u05d5\u05dd "
                      "\u0645\u0631\u062d\u0628\u0627 \u0928\u092e\u0938\u094d\u0924\u0947"),
    ("over_long", "a photo of " * 30 + "the end"),
    ("over_long_exact_76", " ".join(["dog"] * 75 + ["cat"])),
]

# Preprocessing cases: (name, probe image index, render size, crop box (w, h), model whose spec is used).
PREPROCESS = [
    ("gradient_640x480_s0", 0, 640, (640, 480), "mobileclip_s0"),
    ("stripes_300x451_s0", 1, 451, (300, 451), "mobileclip_s0"),
    ("noise_199x150_upscale_s0", 4, 199, (199, 150), "mobileclip_s0"),
    ("wave_500x375_b", 5, 500, (500, 375), "mobileclip_b"),
    ("disc_333x250_bicubic_l14", 3, 333, (333, 250), "mobileclip2_l14"),
    ("checker_96x130_bicubic_l14", 2, 130, (96, 130), "mobileclip2_l14"),
]

# The miniature bundle's linear reference model.
LINEAR_IMAGE_SIZE = 32
LINEAR_DIM = 16
LINEAR_VOCAB = 97


def _json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")


def _f(x) -> float:
    """A JSON-safe float: inf/nan -> None (as the report schema does)."""
    x = float(x)
    return x if math.isfinite(x) else None


# ---------------------------------------------------------------------------------------------------

def tokens_golden() -> dict:
    from clipdeploy.models.tokenizer import EOT_ID, PAD_ID, SOT_ID, tokenize
    ids = tokenize([t for _, t in CAPTIONS]).numpy()
    return {"context_length": int(ids.shape[1]), "sot": SOT_ID, "eot": EOT_ID, "pad": PAD_ID,
            "tokenizer": "open_clip SimpleTokenizer (OpenAI CLIP BPE), clean='lower'",
            "cases": [{"name": n, "text": t, "ids": [int(v) for v in row]}
                      for (n, t), row in zip(CAPTIONS, ids)]}


# Text-length descriptors the ports' tokenizers are checked on: (name, descriptor).
def _length_descriptors():
    from clipdeploy.models import shapes as sh
    return [
        ("fixed_77_non_causal", sh.fixed(77, "non-causal text tower: the padding after EOT changes the embedding")),
        ("enumerated_coreml", sh.enumerated([8, 16, 32, 77])),
        ("dynamic_1_77", sh.dynamic(1, 77)),
        ("dynamic_min_12", sh.dynamic(12, 77)),
        ("dynamic_4_32", sh.dynamic(4, 32)),
        ("dynamic_unbounded", sh.dynamic(1, None)),
        ("enumerated_8_16", sh.enumerated([8, 16])),
        ("fixed_16", sh.fixed(16)),
    ]


# Captions for the length goldens: names of CAPTIONS plus boundary cases (token counts 8 and 9).
LENGTH_CAPTIONS = ["ascii", "empty", "case_punctuation", "contractions", "cjk", "emoji", "special_tokens_literal",
                   "over_long", "over_long_exact_76"]
LENGTH_EXTRA = [("eight_tokens", "a photo of a big dog"), ("nine_tokens", "a photo of a big red dog"),
                ("sixteen_tokens", "a photo of a big red dog on a sunny beach near the sea"),
                ("seventeen_tokens", "a photo of a big red dog on a sunny beach near the blue sea")]

# Malformed descriptors: (descriptor, a phrase the error names; the same in Python, Java and Swift).
MALFORMED_DESCRIPTORS = [
    ({"kind": "ragged", "values": [1]}, "kind one of"),
    ("77", "kind one of"),
    ({"values": [77]}, "kind one of"),
    ({"kind": "enumerated", "values": []}, "'values'"),
    ({"kind": "enumerated", "values": [8, 0]}, "'values'"),
    ({"kind": "enumerated", "values": [8, 8.5]}, "'values'"),
    ({"kind": "enumerated", "values": [8, 16.0]}, "'values'"),
    ({"kind": "fixed", "values": [True]}, "'values'"),
    ({"kind": "fixed", "values": 77}, "'values'"),
    ({"kind": "fixed", "values": [1, 2]}, "exactly one value"),
    ({"kind": "enumerated", "values": [16, 8]}, "increasing and distinct"),
    ({"kind": "enumerated", "values": [8, 8]}, "increasing and distinct"),
    ({"kind": "dynamic", "min": 0, "max": 77}, "'min' >= 1"),
    ({"kind": "dynamic", "max": 77}, "'min' >= 1"),
    ({"kind": "dynamic", "min": 8, "max": 4}, "'max' must be"),
    ({"kind": "dynamic", "min": 1, "max": "77"}, "'max' must be"),
]

# Image batch descriptors and index sizes for the batch plans.
IMAGE_BATCH_SIZES = [1, 3, 5, 8, 11, 17]
DEFAULT_MAX_BATCH = 8          # the apps' cap when a dynamic batch has no max


def _batch_descriptors():
    from clipdeploy.models import shapes as sh
    return [
        ("fixed_1", sh.fixed(1, "LiteRT: static shapes")),
        ("enumerated_coreml", sh.enumerated([1, 4, 8])),
        ("enumerated_4_8", sh.enumerated([4, 8])),
        ("dynamic_executorch", sh.dynamic(1, 8)),
        ("dynamic_onnx", sh.dynamic(1, None)),
        ("dynamic_3_5", sh.dynamic(3, 5)),
        ("dynamic_min_12", sh.dynamic(12, None)),
        ("fixed_4", sh.fixed(4)),
    ]


def image_batch_plan(desc: dict, n: int, max_batch: int = DEFAULT_MAX_BATCH) -> list:
    """How the apps' index builder encodes ``n`` images for an image artifact's batch descriptor: chunks of
    the largest accepted batch (a dynamic batch without max: ``max(max_batch, min)``), the last partial chunk
    padded up to the shortest accepted batch that holds it (copies of its last image, outputs dropped).
    [[images, batch fed], ...]."""
    from clipdeploy.models.shapes import largest, shortest_accepted, validate
    validate(desc)
    cap = largest(desc)
    if cap is None:
        cap = max(max_batch, desc["min"])
    out, left = [], n
    while left > 0:
        k = min(left, cap)
        out.append([k, shortest_accepted(desc, k)])
        left -= k
    return out


def token_lengths_golden() -> dict:
    from clipdeploy.models.shapes import ShapeError, accepts, validate
    from clipdeploy.models.tokenizer import token_count, tokenize
    descs = _length_descriptors()
    by_name = dict(CAPTIONS)
    captions = [(n, by_name[n]) for n in LENGTH_CAPTIONS] + LENGTH_EXTRA
    cases = []
    for name, text in captions:
        n = token_count(text)
        lengths, ids = {}, {}
        for dname, d in descs:
            row = tokenize(text, length=d).numpy()[0]
            assert accepts(d, len(row)) and row[min(n, len(row)) - 1] == 49407, (name, dname)
            lengths[dname] = int(len(row))
            ids[dname] = [int(v) for v in row]
        cases.append({"name": name, "text": text, "tokens": n, "lengths": lengths, "ids": ids})
    counts = {c["name"]: c["tokens"] for c in cases}
    assert counts["eight_tokens"] == 8 and counts["nine_tokens"] == 9 and counts["sixteen_tokens"] == 16
    assert counts["seventeen_tokens"] == 17 and counts["over_long"] == 77 and counts["over_long_exact_76"] == 77
    batches = []
    for dname, texts in [("enumerated_coreml", ["ascii", "contractions", "eight_tokens"]),
                         ("dynamic_min_12", ["ascii", "empty"]), ("enumerated_8_16", ["ascii", "over_long"]),
                         ("dynamic_1_77", ["nine_tokens", "seventeen_tokens", "ascii"])]:
        all_text = dict(captions)
        t = [all_text[k] for k in texts]
        ids = tokenize(t, length=dict(descs)[dname]).numpy()
        batches.append({"descriptor": dname, "captions": texts, "length": int(ids.shape[1]),
                        "ids": ids.tolist()})
    malformed = []
    for d, phrase in MALFORMED_DESCRIPTORS:
        try:
            validate(d, "length")
        except ShapeError as e:
            assert phrase in str(e), (d, str(e))
        else:
            raise AssertionError(f"{d!r} validated")
        malformed.append({"descriptor": d, "error": phrase})
    plans = [{"descriptor": dname, "shape": d,
              "plans": [{"images": n, "batches": image_batch_plan(d, n)} for n in IMAGE_BATCH_SIZES]}
             for dname, d in _batch_descriptors()]
    return {"what": "clipdeploy.models.tokenizer.tokenize(text, length=descriptor): the shortest accepted length "
                    "L >= the caption's tokens (SOT..EOT, counted at 77) -- dynamic: max(tokens, min) capped at max; "
                    "fixed/enumerated: the smallest value >= tokens, else the largest, the caption truncated to it "
                    "with EOT last -- and ids [L] (0-padded)",
            "context_length": 77, "sot": 49406, "eot": 49407, "pad": 0,
            "descriptors": [{"name": n, "descriptor": d} for n, d in descs],
            "cases": cases, "batches": batches, "malformed": malformed,
            "image_batches": {"default_max_batch": DEFAULT_MAX_BATCH,
                              "rule": "chunks of the largest accepted batch (dynamic without max: "
                                      "max(default_max_batch, min)); the last partial chunk is padded to the "
                                      "shortest accepted batch that holds it with copies of its last image, "
                                      "whose outputs are dropped",
                              "descriptors": plans}}


def _source_image(index: int, render: int, box):
    from PIL import Image

    from clipdeploy.models.probe import probe_images
    x = probe_images(render, max(index + 1, 6))[index].numpy()
    arr = (np.clip(x.transpose(1, 2, 0), 0, 1) * 255).round().astype(np.uint8)
    w, h = box
    top, left = (render - h) // 2, (render - w) // 2
    return Image.fromarray(np.ascontiguousarray(arr[top:top + h, left:left + w]), "RGB")


def preprocess_golden(dest: Path) -> dict:
    from PIL import Image

    from clipdeploy.models.preprocess import preprocess_image
    from clipdeploy.models.registry import get_spec
    (dest / "preprocess").mkdir(parents=True, exist_ok=True)
    cases = []
    for name, index, render, box, model in PREPROCESS:
        spec = get_spec(model)
        img = _source_image(index, render, box)
        src = dest / "preprocess" / f"{name}.png"
        img.save(src)
        img = Image.open(src)                      # what a consumer decodes, not the in-memory copy
        x = preprocess_image(img, spec).numpy().astype(np.float32)
        w, h = img.size
        s = spec.resize_size
        rw, rh = (s, int(s * h / w)) if w <= h else (int(s * w / h), s)
        r = spec.image_size
        np.save(dest / "preprocess" / f"{name}.npy", x)
        # the decoded pixels too: a consumer without a PNG decoder (the Swift kit on Linux) starts from these
        np.save(dest / "preprocess" / f"{name}.rgb.npy", np.ascontiguousarray(np.asarray(img, dtype=np.uint8)))
        cases.append({"name": name, "model": model, "source": f"preprocess/{name}.png",
                      "pixels": f"preprocess/{name}.rgb.npy", "pixels_dtype": "uint8", "pixels_shape": [h, w, 3],
                      "width": w, "height": h,
                      "image_size": r, "resize_shorter_side_to": s, "interpolation": spec.interpolation,
                      "resized": [rw, rh], "crop": [int(round((rh - r) / 2.0)), int(round((rw - r) / 2.0))],
                      "expected": f"preprocess/{name}.npy", "expected_dtype": "float32",
                      "expected_shape": list(x.shape)})
    return {"what": "clipdeploy.models.preprocess.preprocess_image (= CLIPModel.preprocess): resize the "
                    "shorter side (Pillow resample, antialiased), center crop (Python round), RGB / 255",
            "cases": cases}


def stats_golden() -> dict:
    from .parity import failures, measure
    from .stats import summarize
    rng = np.random.default_rng(7)
    sample_sets = [
        [12.5],
        [10.0, 11.0],
        [9.8, 9.6, 10.1, 9.7, 12.0],
        [5.0, 5.0, 5.0, 7.0, 5.0, 5.0, 9.0, 5.0, 5.0, 5.0, 6.0],
        [round(float(v), 6) for v in rng.lognormal(mean=3.0, sigma=0.2, size=50)],
        [round(float(v), 6) for v in rng.gamma(2.0, 4.0, size=101) + 1.0],
    ]
    summaries = [{"samples_ms": s, "stats": summarize(s)} for s in sample_sets]

    def unit(a):
        return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)

    ref = unit(rng.standard_normal((6, 8)))
    other = unit(rng.standard_normal((5, 8)))
    cases = {
        "fp32_pass": unit(ref + 1e-7 * rng.standard_normal(ref.shape)),
        "fp16_pass_fp32_fail": unit(ref + 3e-4 * rng.standard_normal(ref.shape)),
        "cosine_fail": unit(ref + 0.05 * rng.standard_normal(ref.shape)),
        "zero_shot_disagree": ref[[1, 0, 2, 3, 4, 5]],
        "non_finite": np.where(np.arange(48).reshape(6, 8) == 17, np.nan, ref).astype(np.float32),
        "int8_pass_fp16_fail": unit(ref + 0.01 * rng.standard_normal(ref.shape)),
    }
    # a near-tie: row 0's two best matches 5e-5 apart in the reference (the runner-up moved towards the
    # best by bisection); "got" picks the runner-up (a tie: agrees), row 1 a clearly worse one (disagrees)
    tie_other = other.copy()
    first = int(np.argmax(ref[0] @ other.T))
    second = [int(i) for i in np.argsort(-(ref[0] @ other.T)) if i != first][0]
    lo, hi = 0.0, 1.0
    for _ in range(60):
        t = (lo + hi) / 2
        tie_other[second] = unit((1 - t) * other[first] + t * other[second])
        gap = float(ref[0] @ tie_other[first] - ref[0] @ tie_other[second])
        lo, hi = (t, hi) if gap < 5e-5 else (lo, t)
    tie_got = ref.copy()
    step = unit(tie_other[second] - tie_other[first])
    tie_got[0] = unit(ref[0] + 1e-3 * step)
    tie_got[1] = unit(ref[1] + 2.0 * tie_other[int(np.argmin(ref[1] @ tie_other.T))])
    tie_cases = {"zero_shot_near_tie": (tie_got, tie_other)}
    parity = []
    for name, (got, oth) in [*((k, (v, other)) for k, v in cases.items()), *tie_cases.items()]:
        fig = measure(ref, got, oth)
        parity.append({"name": name, "reference": ref.tolist(), "got": [[_f(v) for v in row] for row in got],
                       "other": oth.tolist(),
                       "figures": {k: (_f(v) if isinstance(v, float) else v) for k, v in fig.items()},
                       "failures": {p: failures(fig, p) for p in ("fp32", "fp16", "int8")}})
    return {"summaries": summaries, "parity": parity,
            "note": "got rows written as null are NaN; figures written as null are inf (max_abs) or NaN"}


def zeroshot_golden() -> dict:
    rng = np.random.default_rng(11)
    d = 8
    labels = ["dog", "cat", "car"]
    templates = ["a photo of a {}.", "a blurry photo of a {}.", "a drawing of a {}."]

    def unit(a):
        a = np.asarray(a, np.float64)
        return a / np.linalg.norm(a, axis=-1, keepdims=True)

    prompts = rng.standard_normal((len(labels), len(templates), d)).astype(np.float32)
    classes = unit(unit(prompts.astype(np.float64)).mean(1)).astype(np.float32)
    image = unit(rng.standard_normal(d)).astype(np.float32)
    logit_scale = 100.0
    logits = logit_scale * (classes.astype(np.float64) @ image.astype(np.float64))
    p = np.exp(logits - logits.max())
    p /= p.sum()
    imgs = unit(rng.standard_normal((7, d))).astype(np.float32)
    imgs[5] = imgs[2]                                  # a tie: ranked by index
    query = unit(rng.standard_normal(d)).astype(np.float32)
    scores = (imgs.astype(np.float64) * query.astype(np.float64)).sum(-1)   # row by row: equal rows tie exactly
    ranking = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return {"logit_scale": logit_scale, "labels": labels, "templates": templates,
            "prompts": [[t.replace("{}", lab) for t in templates] for lab in labels],
            "prompt_embeddings": prompts.tolist(), "class_embeddings": classes.tolist(),
            "image_embedding": image.tolist(), "probabilities": p.tolist(), "top1": int(np.argmax(p)),
            "search": {"image_embeddings": imgs.tolist(), "query": query.tolist(), "ranking": ranking,
                       "scores": scores.tolist()}}


def report_golden() -> dict:
    """A device report as the apps write it (validated against the schema here)."""
    from .report import validate_report
    from .stats import summarize
    text = [9.8, 9.6, 10.1, 9.7, 12.0, 9.9, 10.0, 9.5]
    image = [14.1, 13.9, 14.4, 14.0, 15.2, 14.2, 13.8, 14.6]

    def rec(enc, samples, cold, warm, first, par):
        art = f"executorch-fp32/{enc}_encoder.pte"
        return {"id": f"{art}@executorch", "model": "mobileclip_s0", "artifact": art, "target": "executorch",
                "precision": "fp32", "encoder": enc, "runtime": "executorch", "status": "ok", "reason": None,
                "phase_reached": "done", "runtime_versions": {"executorch": "1.5.1"},
                "runtime_options": {"threads": 4, "delegate": "XNNPACK"},
                "load": {"import_s": None, "cold_s": cold, "warm_s": warm}, "first_inference_ms": first,
                "steady": {"warmup": 3, "work_factor": 1, "samples_ms": samples, "stats": summarize(samples),
                           "seconds": round(sum(samples) / 1e3, 6), "cpu_s": None},
                "memory": {"peak_rss_mb": 236.0, "rss_after_load_mb": 201.0,
                           "source": "Debug.getMemoryInfo totalPss"},
                "parity": par, "export_parity": None, "flops": None}

    rep = {"schema_version": 1, "kind": "clipdeploy-latency-report", "created": "2026-11-30T12:00:00+00:00",
           "tool": {"name": "clipdeploy-android BenchmarkActivity", "version": "0.1.0"}, "source": "android-app",
           "bundle": {"path": "/data/local/tmp/clipdeploy/mobileclip_s0", "model": "mobileclip_s0",
                      "manifest_created": "2026-11-29T08:00:00+00:00", "clipdeploy_version": "0.1.0",
                      "checkpoint": {"source": "random_weights=0", "sha256": None, "layout": "random",
                                     "random_weights": 0}},
           "host": {"name": "golden-device", "device": "Golden Phone 1", "os": "Android", "os_release": "14",
                    "platform": "Android 14 (API 34)", "machine": "arm64-v8a", "cpu_model": "golden octa-core",
                    "cpu_count_logical": 8, "cpu_count_physical": 8, "cpu_available": 8, "memory_total_gb": 7.6,
                    "loadavg_start": None, "loadavg_end": None, "python": None,
                    "libraries": {"executorch": "1.5.1", "app": "0.1.0"}},
           "settings": {"threads": 4, "warmup": 3, "runs": 8, "min_seconds": 0.0, "timeout_s": None,
                        "work_factor": 1, "runtimes": ["executorch"], "peak_gflops_per_core": None},
           "calibration": None,
           "records": [
               rec("text", text, 0.052, 0.031, 21.4,
                   {"max_abs": 1.2e-06, "cosine_min": 0.99999999, "cosine_mean": 0.999999995,
                    "zero_shot_agreement": 1.0, "n": 8, "finite": True}),
               rec("image", image, 0.071, 0.040, 48.2,
                   {"max_abs": 2.1e-07, "cosine_min": 0.9999999999, "cosine_mean": 0.99999999995,
                    "zero_shot_agreement": 1.0, "n": 6, "finite": True}),
               {"id": "onnx-fp32/image_encoder.onnx@onnxruntime", "model": "mobileclip_s0",
                "artifact": "onnx-fp32/image_encoder.onnx", "target": "onnx", "precision": "fp32",
                "encoder": "image", "runtime": "onnxruntime", "status": "skipped",
                "reason": "runtime not requested (runtime executorch)"},
           ]}
    validate_report(rep)
    return rep


# ---------------------------------------------------------------------------------------------------
# the miniature bundle

#: the golden bundle's classifier: labels (one with a space, one non-ASCII; four different top-1s over the six
#: probe images, the closest two logits 1.6 apart) and two templates
GOLDEN_CLASSIFIER_LABELS = ("cat", "tree", "frog", "red apple", "crème brûlée")
GOLDEN_CLASSIFIER_TEMPLATES = ("a photo of a {}.", "a blurry photo of the {}.")


def golden_class_embeddings(table: np.ndarray, labels: list, templates: list) -> np.ndarray:
    """The prompt ensemble through the linear text encoder: per label, normalize(mean(prompt embeddings))."""
    from clipdeploy.models.tokenizer import tokenize
    out = []
    for lab in labels:
        e = linear_embed_text(table, tokenize([t.replace("{}", lab) for t in templates]).numpy()).astype(np.float64)
        m = e.mean(0)
        out.append(m / np.linalg.norm(m))
    return np.asarray(out, np.float32)


def classifier_manifest(labels: list, templates: list, source: str, logit_scale: float, dim: int) -> dict:
    """The manifest's ``classifier`` block, as the export writes it."""
    from .bundle import classifier_block
    return classifier_block(labels, templates, source, logit_scale, dim)


def classifier_golden(dest: Path) -> dict:
    """What an app computes from the golden bundle's classifier: logits / probabilities / top-1 of each probe
    image embedding, and of the reference classifier artifact run on the probe images."""
    man = json.loads((dest / "manifest.json").read_text())
    c = np.load(dest / "classifier" / "class_embeddings.npy").astype(np.float64)
    emb = np.load(dest / "probe" / "image_embeddings.npy").astype(np.float64)
    s = man["classifier"]["logit_scale"]
    logits = s * emb @ c.T
    z = np.exp(logits - logits.max(-1, keepdims=True))
    probs = z / z.sum(-1, keepdims=True)
    prompts = [[t.replace("{}", lab) for t in man["classifier"]["templates"]] for lab in man["classifier"]["labels"]]
    return {"labels": man["classifier"]["labels"], "templates": man["classifier"]["templates"], "prompts": prompts,
            "logit_scale": s, "class_embeddings": c.astype(np.float32).tolist(),
            "probe_logits": logits.tolist(), "probe_probabilities": probs.tolist(),
            "probe_top1": [int(i) for i in logits.argmax(-1)],
            "tolerance": {"logits": 1e-4, "probabilities": 1e-5, "class_embeddings": 1e-6}}

def linear_embed_image(w: np.ndarray, images: np.ndarray) -> np.ndarray:
    """The reference linear image encoder: normalize(W @ flatten(x)), float64 accumulation -> float32."""
    y = images.reshape(len(images), -1).astype(np.float64) @ w.astype(np.float64).T
    return (y / np.linalg.norm(y, axis=-1, keepdims=True)).astype(np.float32)


def linear_embed_text(table: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """The reference linear text encoder: normalize(sum over non-pad positions of T[id % V])."""
    t = table.astype(np.float64)
    y = np.stack([t[row[row != 0] % len(t)].sum(0) for row in np.asarray(ids, np.int64)])
    return (y / np.linalg.norm(y, axis=-1, keepdims=True)).astype(np.float32)


def bundle_golden(dest: Path) -> None:
    from clipdeploy.models.probe import PROBE_CAPTIONS, probe_images, write_probe_files
    from clipdeploy.models.tokenizer import tokenize, write_tokenizer_files
    r, d, v = LINEAR_IMAGE_SIZE, LINEAR_DIM, LINEAR_VOCAB
    dest.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1234)
    w = (rng.standard_normal((d, 3 * r * r)) / math.sqrt(3 * r * r)).astype(np.float32)
    table = rng.standard_normal((v, d)).astype(np.float32)
    images = probe_images(r, 6).numpy().astype(np.float32)
    ids = tokenize(PROBE_CAPTIONS).numpy()
    ref_i, ref_t = linear_embed_image(w, images), linear_embed_text(table, ids)
    # the apps read vocab.json + merges.txt (no gzip BPE file) and the .npy probe arrays (no PNG copies)
    tok = write_tokenizer_files(dest / "tokenizer", 77, bpe_file=False)
    probe = write_probe_files(dest / "probe", images, list(PROBE_CAPTIONS), ids, ref_i, ref_t, pngs=False)
    (dest / "reference-fp32").mkdir(exist_ok=True)
    np.save(dest / "reference-fp32" / "image_encoder.npy", w)
    np.save(dest / "reference-fp32" / "text_encoder.npy", table)

    # the zero-shot classifier (clipdeploy.export.classifier): labels x templates through the reference
    # text encoder, ensembled; the classifier artifact is the linear image encoder followed by that matrix
    labels, templates = list(GOLDEN_CLASSIFIER_LABELS), list(GOLDEN_CLASSIFIER_TEMPLATES)
    classes = golden_class_embeddings(table, labels, templates)
    (dest / "classifier").mkdir(exist_ok=True)
    np.save(dest / "classifier" / "class_embeddings.npy", classes)
    _json(dest / "classifier" / "labels.json", labels)

    from clipdeploy.models import shapes as sh
    art_shapes = {"image": {"batch": sh.enumerated([1, 4, 8])},
                  "text": {"batch": sh.fixed(1), "length": sh.dynamic(1, 77)},
                  "classifier": {"batch": sh.fixed(1)}}

    def art(enc, shape_in, dtype):
        return {"target": "reference", "precision": "fp32", "encoder": enc,
                "path": f"reference-fp32/{enc}_encoder.npy", "files": [f"reference-fp32/{enc}_encoder.npy"],
                "inputs": [{"name": enc if enc == "image" else "text", "shape": shape_in, "dtype": dtype}],
                "outputs": [{"name": "embedding", "shape": [1, d], "dtype": "float32"}],
                "shapes": art_shapes[enc],
                "parity": {"checked": "numeric", "max_abs": 0.0, "cosine_min": 1.0, "cosine_mean": 1.0,
                           "zero_shot_agreement": 1.0, "n": 6 if enc == "image" else 8, "finite": True,
                           "passed": True},
                "size_bytes": int((dest / f"reference-fp32/{enc}_encoder.npy").stat().st_size)}

    # its own file, as an exported classifier has: the image encoder's W (the class matrix is the bundle's)
    np.save(dest / "reference-fp32" / "classifier.npy", w)
    files = ["reference-fp32/classifier.npy", "classifier/class_embeddings.npy"]
    classifier_art = {
        "target": "reference", "precision": "fp32", "encoder": "classifier",
        "path": "reference-fp32/classifier.npy", "files": files,
        "inputs": [{"name": "image", "shape": [1, 3, r, r], "dtype": "float32"}],
        "outputs": [{"name": "logits", "shape": [1, len(labels)], "dtype": "float32"}],
        "shapes": art_shapes["classifier"],
        "parity": {"checked": "numeric", "max_abs": 0.0, "max_abs_cosine_units": 0.0, "max_abs_probs": 0.0,
                   "top1_agreement": 1.0, "top1_exact": 1.0, "n": 6, "classes": len(labels), "finite": True,
                   "passed": True},
        "size_bytes": int(sum((dest / f).stat().st_size for f in files))}

    manifest = {
        "schema_version": 2, "model": "golden_linear", "clipdeploy_version": "goldens",
        "created": "2026-11-30T00:00:00+00:00", "checkpoint_sha256": None,
        "checkpoint": {"source": "goldens linear reference model (seed 1234)", "sha256": None,
                       "layout": "reference", "random_weights": 1234},
        "spec": {"name": "golden_linear", "family": "reference", "image_size": r, "resize_size": r,
                 "interpolation": "bilinear", "mean": None, "std": None, "embed_dim": d, "context_length": 77,
                 "tokenizer": "openai-clip-bpe",
                 "image_tower": f"linear {3 * r * r} -> {d}, L2-normalized",
                 "text_tower": f"sum of table rows [id % {v}] over non-pad tokens, L2-normalized",
                 "license": "test data"},
        "preprocessing": {"image_size": r, "resize_shorter_side_to": r, "interpolation": "bilinear",
                          "center_crop": r, "input_range": [0.0, 1.0], "channel_order": "RGB", "layout": "NCHW",
                          "mean": None, "std": None, "mean_std_inside_model": False},
        "logit_scale": 100.0, "embedding_dim": d,
        "reference_model": {
            "image": "embedding = normalize(W @ flatten(image)); W = reference-fp32/image_encoder.npy "
                     f"float32 [{d}, {3 * r * r}]; accumulate in float64",
            "text": "embedding = normalize(sum over positions p with ids[p] != 0 of T[ids[p] % V]); "
                    f"T = reference-fp32/text_encoder.npy float32 [{v}, {d}]; accumulate in float64",
            "classifier": "logits = logit_scale * C @ normalize(W @ flatten(image)); W = reference-fp32/classifier.npy "
                          "(the image encoder's matrix), "
                          f"C = classifier/class_embeddings.npy float32 [{len(labels)}, {d}]; accumulate in float64"},
        "tokenizer": tok, "probe": probe,
        "classifier": classifier_manifest(labels, templates, "file", 100.0, d),
        "artifacts": [art("image", [1, 3, r, r], "float32"), art("text", [1, 77], "int32"), classifier_art],
    }
    from .integrity import record
    manifest["integrity"] = record(dest)
    _json(dest / "manifest.json", manifest)


# ---------------------------------------------------------------------------------------------------

def generate(out) -> Path:
    """Write every golden file under ``out`` (replaced as a whole, atomically)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _json(tmp / "tokens.json", tokens_golden())
        _json(tmp / "preprocess.json", preprocess_golden(tmp))
        _json(tmp / "stats.json", stats_golden())
        _json(tmp / "token_lengths.json", token_lengths_golden())
        _json(tmp / "zeroshot.json", zeroshot_golden())
        _json(tmp / "report_sample.json", report_golden())
        bundle_golden(tmp / "bundle")
        _json(tmp / "classifier.json", classifier_golden(tmp / "bundle"))
        files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
        _json(tmp / "index.json", {
            "schema_version": GOLDENS_SCHEMA_VERSION, "generator": GENERATOR,
            "consumers": ["android_app/clipdeploy-core (JUnit, make jvm-test)",
                          "ios_app (XCTest, swift test)", "tests/test_goldens.py"],
            "files": {f: hashlib.sha256((tmp / f).read_bytes()).hexdigest() for f in files}})
        (tmp / "README.md").write_text(README)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def check(goldens) -> list:
    """Regenerate in a temporary folder and list the files that differ from ``goldens`` (empty: equal)."""
    goldens = Path(goldens)
    with tempfile.TemporaryDirectory() as d:
        fresh = generate(Path(d) / "goldens")
        a = {str(p.relative_to(fresh)) for p in fresh.rglob("*") if p.is_file()}
        b = {str(p.relative_to(goldens)) for p in goldens.rglob("*") if p.is_file()} if goldens.exists() else set()
        diff = sorted(a ^ b)
        diff += sorted(f for f in a & b if not filecmp.cmp(fresh / f, goldens / f, shallow=False))
        return diff


README = """# Golden vectors shared by the apps

Generated by `clip-latency goldens --out goldens` (clipdeploy.latency.goldens); `tests/test_goldens.py`
regenerates them and fails if a checked-in file differs, so they always equal what the Python toolkit computes.
Consumed by the JVM core of the Android app (`make jvm-test`) and the iOS kit's XCTest suite (`swift test`).

| file | what |
|---|---|
| `tokens.json` | captions and their int32 ids [77] from open_clip's SimpleTokenizer |
| `preprocess.json`, `preprocess/` | source PNGs, their decoded pixels (`.rgb.npy`, uint8 [H,W,3]) and the float32 [3,R,R] model input `preprocess_image` makes of each |
| `stats.json` | latency statistics of sample sets; parity figures and failed bars of embedding sets |
| `token_lengths.json` | captions x text-length descriptors -> shortest accepted length and ids; batches; malformed descriptors; image batch plans |
| `zeroshot.json` | prompt-ensemble class embeddings, probabilities, text->image search ranking |
| `classifier.json` | the miniature bundle's zero-shot classifier: prompts, class matrix, probe logits / probabilities / top-1 |
| `report_sample.json` | a device latency report in the clip-latency schema |
| `bundle/` | a miniature bundle (manifest with `shapes`, tokenizer, probe set) with a linear reference model as its artifacts |
| `index.json` | sha256 of every file |
"""
