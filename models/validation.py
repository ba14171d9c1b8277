"""Deterministic calibration and validation inputs for quantized (and fp16) artifacts.

The probe set (:mod:`clipdeploy.models.probe`: 6 images, 8 captions) ships in every bundle and is what the
apps and ``clip-latency`` compare against; it is too small to say anything about inputs a quantized artifact
was never tuned on. So export uses two more sets, generated here from a seed, never shipped:

* **calibration** (:func:`calibration_set`, seed 1): what quantization calibrates and tunes on (activation
  ranges, which layers stay float);
* **validation** (:func:`validation_set`, seed 0, disjoint from calibration): what the export gate holds
  every artifact to (fp32, fp16 and int8, each at its bars), at least 64 captions and 32 images.

Captions are of realistic shape: OpenAI's 80 ImageNet prompt templates (``open_clip.zero_shot_metadata``)
filled with ImageNet class names, plus short ones (a bare label, an adjective and a label) and long ones
(several clauses, some past the 77-token context, so truncation is exercised). Images span low to high spatial
frequency: sinusoidal gratings (1 to 64 cycles across the image, any orientation), 1/f^a noise (a from 0.5 to
2.5), hard-edged shapes, smooth gradients, checkerboards of several scales, and blends of two of these.
"""
from __future__ import annotations

import math

import numpy as np

VALIDATION_SEED = 0
CALIBRATION_SEED = 1
VALIDATION_IMAGES = 32
VALIDATION_CAPTIONS = 64
CALIBRATION_IMAGES = 16
CALIBRATION_CAPTIONS = 32

_ADJECTIVES = ["red", "small", "old", "wet", "striped", "blurry", "bright", "wooden", "broken", "tiny",
               "green", "shiny", "dark", "fluffy", "empty", "crowded"]
_PLACES = ["on a beach", "in a kitchen", "next to a river", "in the snow", "on a city street at night",
           "in a forest", "on a wooden table", "in front of a red brick wall", "under a bridge",
           "in a field of tall grass", "at a train station", "on a rainy morning"]
_CLAUSES = ["while a man in a blue jacket walks past", "with mountains in the background",
            "and two children are looking at it", "photographed from above with a wide angle lens",
            "next to a bicycle leaning against a fence", "as the sun sets behind the clouds",
            "surrounded by people holding umbrellas", "with a small dog sleeping nearby",
            "in a style reminiscent of an old oil painting", "and the reflection shows in a puddle"]


def _labels():
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
    return list(IMAGENET_CLASSNAMES)


def _templates():
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
    return list(OPENAI_IMAGENET_TEMPLATES)


def captions(n: int, seed: int, exclude=()) -> list:
    """``n`` deterministic captions: 5/8 prompt templates with a label, 3/16 short, 3/16 long (some over the
    77-token context). Captions in ``exclude`` are never returned."""
    rng = np.random.default_rng(seed)
    labels, templates = _labels(), _templates()
    n_short = n_long = max(1, (3 * n) // 16)
    n_template = n - n_short - n_long
    out, seen = [], set(exclude)

    def add(text):
        if text not in seen:
            seen.add(text)
            out.append(text)
            return True
        return False

    k = int(rng.integers(0, len(templates)))
    while len(out) < n_template:                 # every template in turn, from a random start
        add(templates[k % len(templates)](labels[int(rng.integers(0, len(labels)))]))
        k += 1
    while len(out) < n_template + n_short:
        label = labels[int(rng.integers(0, len(labels)))]
        add(label if rng.random() < 0.5 else f"{_ADJECTIVES[int(rng.integers(0, len(_ADJECTIVES)))]} {label}")
    while len(out) < n:
        parts = [f"a photo of a {_ADJECTIVES[int(rng.integers(0, len(_ADJECTIVES)))]} "
                 f"{labels[int(rng.integers(0, len(labels)))]} {_PLACES[int(rng.integers(0, len(_PLACES)))]}"]
        for c in rng.choice(len(_CLAUSES), int(rng.integers(1, 11)), replace=False):
            parts.append(_CLAUSES[int(c)])         # 1 to 10 clauses: from ~20 tokens to past 77
        add(", ".join(parts))
    return out


def images(size: int, n: int, seed: int) -> np.ndarray:
    """float32 [n, 3, size, size] in [0, 1], deterministic, cycling through the frequency families."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, size, dtype=np.float64), np.linspace(0, 1, size, dtype=np.float64),
                         indexing="ij")
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.fftfreq(size)[None, :]
    radius = np.sqrt(fx ** 2 + fy ** 2)
    radius[0, 0] = 1.0

    def grating():
        out = []
        for _ in range(3):
            cycles = float(np.exp(rng.uniform(0, math.log(64))))
            theta, phase = rng.uniform(0, math.pi), rng.uniform(0, 2 * math.pi)
            u = xx * math.cos(theta) + yy * math.sin(theta)
            out.append(0.5 + 0.5 * rng.uniform(0.3, 1) * np.sin(2 * math.pi * cycles * u + phase))
        return np.stack(out)

    def pink_noise():
        a = rng.uniform(0.5, 2.5)
        spec = (rng.standard_normal((3, size, size)) + 1j * rng.standard_normal((3, size, size))) / radius ** a
        x = np.fft.ifft2(spec).real
        x = (x - x.mean(axis=(1, 2), keepdims=True)) / (x.std(axis=(1, 2), keepdims=True) + 1e-12)
        return 0.5 + 0.18 * x

    def shapes():
        img = np.ones((3, size, size)) * rng.uniform(0, 1, (3, 1, 1))
        for _ in range(int(rng.integers(2, 8))):
            color = rng.uniform(0, 1, (3, 1, 1))
            cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.4)
            if rng.random() < 0.5:
                mask = (xx - cx) ** 2 + (yy - cy) ** 2 < r ** 2
            else:
                mask = (np.abs(xx - cx) < r) & (np.abs(yy - cy) < rng.uniform(0.05, 0.4))
            img = np.where(mask[None], color, img)
        return img

    def gradient():
        c0, c1 = rng.uniform(0, 1, (3, 1, 1)), rng.uniform(0, 1, (3, 1, 1))
        theta = rng.uniform(0, 2 * math.pi)
        t = (xx - 0.5) * math.cos(theta) + (yy - 0.5) * math.sin(theta)
        t = (t - t.min()) / (t.max() - t.min() + 1e-12)
        return c0 + (c1 - c0) * t[None]

    def checker():
        k = int(rng.choice([2, 4, 8, 16, 32]))
        c0, c1 = rng.uniform(0, 1, (3, 1, 1)), rng.uniform(0, 1, (3, 1, 1))
        m = ((np.floor(xx * k) + np.floor(yy * k)) % 2)[None]
        return c0 * (1 - m) + c1 * m

    families = [grating, pink_noise, shapes, gradient, checker]
    out = []
    for i in range(n):
        if i % 6 == 5:                               # every sixth: a blend of two families
            a, b = rng.choice(len(families), 2, replace=False)
            w = rng.uniform(0.3, 0.7)
            x = w * families[a]() + (1 - w) * families[b]()
        else:
            x = families[i % 6 % len(families)]()
        out.append(np.clip(x, 0, 1))
    return np.stack(out).astype(np.float32)


def validation_set(size: int, n_images: int = VALIDATION_IMAGES, n_captions: int = VALIDATION_CAPTIONS,
                   seed: int = VALIDATION_SEED) -> tuple:
    """``(images [n, 3, size, size] float32, captions)``: what the export gate holds every artifact
    to; disjoint from :func:`calibration_set` (captions never repeat one of its captions, images use
    another seed)."""
    cal_caps = captions(CALIBRATION_CAPTIONS, CALIBRATION_SEED)
    return images(size, n_images, seed + 1000), captions(n_captions, seed, exclude=cal_caps)


def calibration_set(size: int, n_images: int = CALIBRATION_IMAGES, n_captions: int = CALIBRATION_CAPTIONS,
                    seed: int = CALIBRATION_SEED) -> tuple:
    """``(images, captions)`` quantization calibrates and tunes on (with the probe set in front of them)."""
    return images(size, n_images, seed + 1000), captions(n_captions, seed)


def describe(n_images: int, n_captions: int, seed: int, role: str) -> dict:
    """The manifest's record of a generated set."""
    return {"role": role, "images": int(n_images), "captions": int(n_captions), "seed": int(seed),
            "generator": "clipdeploy.models.validation", "shipped": False}
