"""The artifact bundle: a directory written in a temporary place and renamed into ``out`` at the end.

    out/<model>/
      manifest.json                 the contract the latency harness and the apps read
                                    (tokenizer/ and probe/ are written by clipdeploy.models.tokenizer / .probe)
      README.md                     model card: usage from Python, Swift, Kotlin
      tokenizer/                    vocab.json, merges.txt, bpe_simple_vocab_16e6.txt.gz, tokenizer.json
      probe/                        images (PNG + images.npy), captions.json, token_ids.npy (int32),
                                    image_embeddings.npy / text_embeddings.npy (PyTorch reference)
      <target>-<precision>/         image_encoder.<ext>, text_encoder.<ext>
"""
from __future__ import annotations

import os
import platform
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

from .targets import ExportInputError

MANIFEST_SCHEMA_VERSION = 2     # 2: the integrity record (sha256 + size of every file)


def versions() -> dict:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("clipdeploy", "torch", "torchvision", "timm", "open_clip_torch", "coremltools",
                 "executorch", "onnx", "onnxruntime", "onnxscript", "litert-torch", "ai-edge-litert",
                 "ai-edge-quantizer", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def prepare_output(out: Path, force: bool) -> Path:
    """Check ``out`` can be written; returns a fresh temporary directory beside it."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExportInputError(f"--out {out} exists and is not a directory; choose another path")
    if out.exists() and any(out.iterdir()) and not force:
        raise ExportInputError(f"--out {out} exists and is not empty; pass --force to replace it, or "
                               f"choose another --out")
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=parent))
    except OSError as e:
        raise ExportInputError(f"cannot write to --out {out}: {e.strerror}; choose a writable "
                               f"directory") from None
    return tmp


def commit(tmp: Path, out: Path) -> None:
    """Move the finished bundle into place (replacing an old one only now)."""
    out = Path(out)
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def model_card(manifest: dict) -> str:
    spec = manifest["spec"]
    r, name = spec["image_size"], manifest["model"]
    arts = "\n".join(f"| {a['target']} | {a['precision']} | {a['encoder']} | `{a['path']}` | "
                     f"{_parity_cell(a['parity'])} |{' yes |' if a.get('default', True) else ' |'}"
                     for a in manifest["artifacts"])
    return f"""# {name} — clipdeploy bundle

{spec['image_tower']} image encoder and {spec['text_tower']} text encoder, exported separately.
Checkpoint sha256 `{manifest['checkpoint_sha256']}` ({manifest['checkpoint']['source']}).
License: {spec['license']}.

Inputs: `image` float32 [1, 3, {r}, {r}] RGB in [0, 1] (resize the shorter side to {spec['resize_size']}
with {spec['interpolation']} interpolation, center-crop {r}; {'mean/std is applied inside the model' if spec['mean'] else 'no mean/std'});
`text` int32 [1, {spec['context_length']}] CLIP BPE ids (SOT 49406 … EOT 49407, padded with 0; files in `tokenizer/`).
Output: `embedding` float32 [1, {spec['embed_dim']}], L2-normalized. Similarity logits: `{manifest['logit_scale']:.4f} * image · text`.

| target | precision | encoder | file | parity vs PyTorch | default |
|---|---|---|---|---|---|
{arts}
{_tradeoff_table(manifest)}{_interpreter_note(manifest)}
## Python (ONNX Runtime)
```python
import numpy as np, onnxruntime as ort
img = ort.InferenceSession("onnx-fp32/image_encoder.onnx").run(None, {{"image": image}})[0]
txt = ort.InferenceSession("onnx-fp32/text_encoder.onnx").run(None, {{"text": ids.astype(np.int32)}})[0]
probs = np.exp({manifest['logit_scale']:.4f} * img @ txt.T); probs /= probs.sum(-1, keepdims=True)
```

## Swift (Core ML)
```swift
let image = try MLModel(contentsOf: compiledURL(of: "coreml-fp16/image_encoder.mlpackage"))
let out = try image.prediction(from: MLDictionaryFeatureProvider(dictionary: ["image": pixels]))
let embedding = out.featureValue(for: "embedding")!.multiArrayValue!
// image_encoder_imagetype.mlpackage takes a CVPixelBuffer ({r}x{r}, RGB) directly.
```

## Kotlin (ExecuTorch, Android)
```kotlin
val module = Module.load(context.filesDir.resolve("executorch-fp32/image_encoder.pte").path)
val out = module.forward(EValue.from(Tensor.fromBlob(pixels, longArrayOf(1, 3, {r}, {r}))))[0].toTensor()
val embedding = out.dataAsFloatArray
```

{_litert_snippet(manifest)}{_classifier_section(manifest)}Probe inputs and reference embeddings are in `probe/` (`*.npy`), so any runtime can check its parity.
"""


def _classifier_section(manifest: dict) -> str:
    c = manifest.get("classifier")
    if not c:
        return ""
    labels = c["labels"]
    shown = ", ".join(labels[:12]) + (f", … ({len(labels)} in all)" if len(labels) > 12 else "")
    rows = []
    for r in c.get("comparison", []):
        mb = (lambda b: f"{b / 2 ** 20:.2f}" if b is not None else "n/a")
        ms = (lambda v: f"{v:.1f}" if v is not None else "n/a (cannot run here)")
        rows.append(f"| {r['target']} | {r['precision']} | `{r['classifier']}` | {mb(r['classifier_bytes'])} | "
                    f"{mb(r.get('image_encoder_plus_matrix_bytes'))} | {ms(r.get('classifier_median_ms'))} | "
                    f"{ms(r.get('image_encoder_plus_matrix_median_ms'))} | "
                    + (f"{r['top1_agreement']:.1%} of {r['images']}" if r.get("top1_agreement") is not None
                       else "n/a") + " |")
    table = ("\n| target | precision | classifier | MB | image encoder + class matrix MB | ms | image encoder "
             "+ matrix ms | top-1 agreement |\n|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
             if rows else "")
    return f"""## Zero-shot classifier

{len(labels)} labels ({shown}) x {len(c['templates'])} prompt templates ({c.get('template_source', 'file')}),
ensembled through the PyTorch text tower (`{c['class_embeddings']}`, float32 [{len(labels)}, {c.get('embedding_dim')}],
rows in the order of `{c.get('labels_file', 'classifier/labels.json')}`). Each `classifier` artifact maps `image` to `logits`
float32 [1, {len(labels)}] = {c['logit_scale']:.4f} x cosine(image, class); softmax gives the probabilities. An app
that only classifies needs no text encoder; an app that keeps the image encoder can load the class matrix instead.
Latency: this export host, batch 1, one process, the two timed alternately (see `benchmarks/classifier_cost.py`
for idle, process-per-figure measurements). Agreement: top-1 of the classifier artifact against the image
encoder's embedding times the class matrix, on the gate's images.
{table}
"""


def _litert_snippet(manifest: dict) -> str:
    arts = [a for a in manifest["artifacts"] if a["target"] == "litert"]
    if not arts:
        return ""
    image = next((a for a in arts if a["encoder"] == "image" and a.get("default", True)), arts[0])
    text = next((a for a in arts if a["encoder"] == "text" and a.get("default", True)), arts[-1])
    return f"""## Kotlin (LiteRT, Android)
```kotlin
// com.google.ai.edge.litert:litert:2.3.0; the CPU accelerator is XNNPACK, and its thread count is set on
// the delegate itself (Interpreter.Options.setNumThreads does not reach LiteRT's default XNNPACK delegate)
val options = CompiledModel.Options(Accelerator.CPU).apply {{ cpuOptions = CompiledModel.CpuOptions(numThreads = 2) }}
val image = CompiledModel.create(context.filesDir.resolve("{image['path']}").path, options)
val input = image.createInputBuffer("image", "serving_default")       // float32 [1, 3, R, R]
val output = image.createOutputBuffer("embedding", "serving_default")
input.writeFloat(pixels)
image.run(mapOf("image" to input), mapOf("embedding" to output), "serving_default")
val embedding = output.readFloat()
// text: "{text['path']}", input "text" int32 [1, 77] (input.writeInt(ids)), same output
```

"""


def _tradeoff_table(manifest: dict) -> str:
    rows = manifest.get("precision_tradeoffs") or []
    if not rows:
        return ""
    v = manifest.get("validation") or {}
    lines = ["", "Quantized variants next to their float artifact (latency: this export host, batch 1; parity: "
             + (f"the validation set, {v['images']} images and {v['captions']} captions the calibration never saw"
                if v else "the probe set") + "):", "",
             "| target | encoder | precision | size MB | median ms | speed-up | rows | min cos | mean cos "
             "| below bar | zero-shot | retrieval | default |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cos = r.get("cosine_min")
        lines.append(f"| {r['target']} | {r['encoder']} | {r['precision']} | {r['size_bytes'] / 2 ** 20:.1f} | "
                     + (f"{r['median_ms']:.1f} | x{r['speedup']:.2f}" if r["median_ms"] else "n/a | n/a")
                     + f" | {r.get('figures_from', 'probe')} {r.get('rows') or ''}"
                     + (f" | {cos:.5f} | {r['cosine_mean']:.5f} | " if cos is not None and r.get("cosine_mean")
                        is not None else (f" | {cos:.5f} | n/a | " if cos is not None else " | n/a | n/a | "))
                     + (f"{r['rows_below_cosine']}" if r.get("rows_below_cosine") is not None else "n/a")
                     + (f" | {r['zero_shot_agreement']:.1%}" if r.get("zero_shot_agreement") is not None else " | n/a")
                     + (f" | {r['retrieval_agreement']:.1%} | " if r.get("retrieval_agreement") is not None
                        else " | n/a | ")
                     + ("yes" if r.get("default") else r.get("default_decision", "")) + " |")
    return "\n".join(lines) + "\n"


def _interpreter_note(manifest: dict) -> str:
    if not any(a["parity"].get("checked") == "reference-interpreter" for a in manifest["artifacts"]):
        return ""
    return ("\nCore ML figures marked *reference interpreter* were measured off macOS by clipdeploy's Core ML "
            "reference interpreter: it checks the ML Program the converter wrote (fp16 emulated), not "
            "Apple's kernels. Run `clip-latency run` on a Mac for Core ML `predict`.\n")


def _parity_cell(p: dict) -> str:
    if p.get("checked") == "structural":
        return "structural only on this host"
    via = " (Core ML reference interpreter)" if p.get("checked") == "reference-interpreter" else ""
    missed = f" — MISSED {'; '.join(p['failures'])} (--accept-degraded)" if p.get("accepted_degraded") else ""
    if "top1_agreement" in p:                        # a classifier: its logits
        v = p.get("validation") or {}
        val = f"; validation {v['n']} images: top-1 {v['top1_agreement']:.1%}" if v else ""
        return (f"probe logits: max abs {p['max_abs']:.1e} ({p['max_abs_cosine_units']:.1e} x logit_scale), "
                f"top-1 {p['top1_agreement']:.0%}{val}{via}{missed}")
    v = p.get("validation") or {}
    val = (f"; validation {v['n']} rows: min cos {v['cosine_min']:.6f}, "
           + (f"{v['rows_below_cosine']} below the bar, " if "rows_below_cosine" in v else f"max abs {v['max_abs']:.1e}, ")
           + f"agreement {v['zero_shot_agreement']:.1%} / {v['retrieval_agreement']:.1%}") if "cosine_min" in v else ""
    return (f"probe: max abs {p['max_abs']:.1e}, min cos {p['cosine_min']:.6f}, zero-shot "
            f"{p['zero_shot_agreement']:.0%}{val}{via}{missed}")
