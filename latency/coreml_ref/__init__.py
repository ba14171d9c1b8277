"""A strict reference interpreter for saved Core ML ML Programs (``.mlpackage``) that runs on Linux.

Core ML can only ``predict`` on macOS. This package evaluates the *saved* package instead: the MIL
program protobuf (``MLModel(path, skip_model_load=True).get_spec().mlProgram``) and the MILBlob v2
weight file ``Data/com.apple.CoreML/weights/weight.bin`` (read with
:func:`clipdeploy.latency.milblob.read_weight_blob`). Ops run as NumPy / torch-CPU
kernels. It is a *reference*: it tells you what the program computes, not how fast or how exactly a
device computes it.

    from clipdeploy.latency.coreml_ref import load_program, verify_mlpackage
    prog = load_program("out/mobileclip_s0/coreml-fp16/image_encoder.mlpackage")
    out = prog.run({"image": images[:1]})            # {"embedding": float32 [1, 512]}
    prog.diagnostics                                 # op count/types, first non-finite op, overflow warnings

Reading: ``Manifest.json`` -> root model file -> ``Model_pb2`` (:func:`read_spec`; the same protobuf
``MLModel(path, skip_model_load=True).get_spec()`` returns, without that call's rewrite of the
manifest), function ``main`` (or the description's default function), the block specialization of its
opset (CoreML5..9 = iOS15..19; ops and parameters are checked against the opset). Programs are cached
with their weights unpacked and their op list precompiled (:func:`load_program`).

Strictness. Anything the interpreter cannot evaluate faithfully is an error naming the op (its output
name and type), never a silent skip: an unknown op type, an unknown or missing parameter, a parameter
value it does not know (pad_type, gelu mode, cast dtype, ...), a non-constant value where it needs a
constant, float inputs whose dtype differs from the op's declared float output (outside ``cast``), an
output whose dtype kind or shape disagrees with the type the program declares, an out-of-range gather
index. Errors derive from :class:`CoreMLRefError` and carry ``op_name`` / ``op_type``.

Precision. Every op's output is rounded to the dtype the program declares for it. Float16 ops are
emulated: their inputs (already float16) are widened to float32, the kernel computes in float32, and
the result is rounded to float16 (values beyond 65504 become inf, as on a device). This is the
*optimistic* model of an fp16 device (fp32 accumulation inside every op).
``pessimistic=True`` additionally rounds inside float16 ops, modelling fp16 accumulators:

* ``conv`` / ``linear`` / ``matmul`` / ``scaled_dot_product_attention`` products: the reduction
  dimension is cut into chunks of :data:`FP16_ACC_CHUNK` (32) input channels (conv: 32 input channels x
  the kernel window); each chunk's partial sum is computed in fp32 and rounded to fp16, partials are
  accumulated in fp16 (rounded after every add), then the bias is added and rounded;
* ``layer_norm`` / ``batch_norm``: mean, centred values, variance, rsqrt, the normalized values and the
  gamma product are each rounded to fp16 before the next step;
* ``softmax`` (also inside SDPA): max-subtracted logits, exp, and the row sum are rounded to fp16;
* ``reduce_sum`` / ``reduce_mean`` / ``reduce_l2_norm`` (etc.): the squares and the sum are rounded to
  fp16 (so a sum of squares beyond 65504 overflows to inf, as it can on a device);
* ``gelu``: the inner terms (x/sqrt2 and erf; or x^3, the tanh argument and tanh; or 1.702x and the
  sigmoid) are rounded to fp16.
Float32 programs are unaffected by ``pessimistic``.

Diagnostics (``Program.diagnostics``, refreshed by each run): op count and op-type histogram, opset and
precision, the first op producing a non-finite value -- its origin: inf from all-finite inputs, or NaN
from NaN-free inputs, so a constant -inf attention mask flowing through an ``add`` is not reported --
and for float32 programs a warning list of ops whose (finite) activations exceed 10 % of the fp16
maximum (|x| > 6550.4): an fp16 export of that program may overflow there.

Localizing a wrong result: :func:`verify_mlpackage` names the first op whose output departs, given a
``baseline`` package (e.g. the unmodified export; :func:`diff_programs` compares two programs op by
op and lists differing constants) or reference ``activations`` by var name (:func:`torch_activations`
of the converted ``torch.export`` program: coremltools names MIL vars after the graph's nodes).

ImageType inputs (the ``*_imagetype.mlpackage`` variant): coremltools bakes the scale/bias into the
program as ops (``mul`` by 1/255 of a float32 ``[1, C, H, W]`` function input) and the model
description says ``imageType``; Core ML turns the pixel buffer into that 0..255 float tensor. So the
interpreter accepts a uint8 ``HxWx3`` RGB array (or a PIL image, or a float ``[1, 3, H, W]`` /
``[3, H, W]`` array of 0..255 values, RGB order), converts it to the float 0..255 planar tensor (BGR
models get their channels reversed; GRAYSCALE takes ``HxW`` / ``HxWx1``) and runs the program, which
applies the scale itself.

The Core ML model inside a Core ML-delegated ExecuTorch ``.pte`` is extracted into ``.mlpackage``
directories by :func:`clipdeploy.latency.pte_coreml.extract_coreml_from_pte`.

Modules (split by concern, as coremltools splits its MIL ops): :mod:`.types` (dtype tables,
:class:`VarType`, errors, the parsed op), :mod:`.opdef` (op definitions and the compile-time view of
an op), :mod:`.ops_elementwise`, :mod:`.ops_tensor` (shape / data movement / gather), :mod:`.ops_nn`
(linear, conv, pooling, normalization, attention), :mod:`.ops_reduce`, :mod:`.ops_constexpr` (weight
decompression), :mod:`.registry` (every op type and its parameters per opset), :mod:`.inputs`
(feeding inputs, ImageType, batches), :mod:`.program` (:class:`Program`, loading, cache,
:func:`run_rows`, :func:`evaluate`), :mod:`.diagnostics` (:func:`verify_mlpackage`,
:func:`diff_programs`, :func:`torch_activations`).
"""
from __future__ import annotations

from . import diagnostics, registry
from .diagnostics import diff_programs, localize, torch_activations, verify_mlpackage
from .inputs import InputInfo
from .program import REFERENCE_RUNTIME, Program, clear_cache, evaluate, load_program, read_spec, run_rows
from .registry import SUPPORTED_OPS
from .types import (FP16_ACC_CHUNK, FP16_MAX, OVERFLOW_WARN, CoreMLRefError, ProgramError, UnsupportedOpError,
                    VarType, VerificationError)

__all__ = ["load_program", "read_spec", "Program", "run_rows", "evaluate", "REFERENCE_RUNTIME", "verify_mlpackage",
           "diff_programs", "localize", "torch_activations", "clear_cache", "CoreMLRefError", "UnsupportedOpError",
           "ProgramError", "VerificationError", "SUPPORTED_OPS", "FP16_MAX", "OVERFLOW_WARN", "FP16_ACC_CHUNK",
           "VarType", "InputInfo"]
