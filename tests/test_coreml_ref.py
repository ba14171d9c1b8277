"""The Core ML reference interpreter (clipdeploy.latency.coreml_ref) on real coremltools conversions.

No mocks: tiny torch modules and MIL-builder programs are converted with coremltools, saved as
.mlpackage, reloaded through the interpreter and compared with PyTorch and with coremltools' own
value inference; MobileCLIP-S0 is exported with the repo's Core ML / ExecuTorch backends. S1/S2/B
whole encoders live in test_coreml_ref_encoders.py.
"""
import math
import os
import shutil
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import coremltools as ct  # a pinned dependency: a broken install fails here, never skips
from coremltools.converters.mil import Builder as mb  # noqa: E402
from coremltools.converters.mil.mil import types  # noqa: E402

from clipdeploy.latency import pte_coreml  # noqa: E402
from clipdeploy.export.backends.coreml_backend import WEIGHTS_REL, CoreMLBackend  # noqa: E402
from clipdeploy.export.parity import THRESHOLDS  # noqa: E402
from clipdeploy.export.wrappers import encoder as make_encoder, example_input  # noqa: E402
from clipdeploy.latency import coreml_ref as cr  # noqa: E402

TIMINGS = {}


pytestmark = pytest.mark.usefixtures("interpreter_one_thread")


# ---------------------------------------------------------------------------------------- helpers

def _convert_torch(module, args, path, names, ios=17, precision="fp32"):
    """torch.export -> run_decompositions({}) -> coremltools ML Program saved at ``path``."""
    module = module.eval()
    with torch.no_grad():
        ep = torch.export.export(module, tuple(args)).run_decompositions({})
    inputs = [ct.TensorType(name=n, shape=tuple(a.shape),
                            dtype=np.int32 if not a.is_floating_point() else np.float32)
              for n, a in zip(names, args)]
    m = ct.convert(ep, convert_to="mlprogram", minimum_deployment_target=getattr(ct.target, f"iOS{ios}"),
                   compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32,
                   inputs=inputs)
    m.save(str(path))
    return Path(path)


def _run_vs_torch(module, args, names, tmp_path, ios=17, precision="fp32", tag="m"):
    path = _convert_torch(module, args, tmp_path / f"{tag}_ios{ios}_{precision}.mlpackage", names, ios, precision)
    prog = cr.load_program(path)
    got = prog.run({n: a.numpy() for n, a in zip(names, args)})
    with torch.no_grad():
        ref = module.reference(*args) if hasattr(module, "reference") else module(*args)
    refs = ref if isinstance(ref, (tuple, list)) else (ref,)
    assert len(got) == len(refs)
    return prog, [(np.asarray(g, np.float64), r.numpy().astype(np.float64)) for g, r in zip(got.values(), refs)]


def _max_abs(pairs):
    return max(float(np.abs(g - r).max()) for g, r in pairs)


def _mil_program(build, shape, ios=17, precision="fp32", dtype=types.fp32, x_np=None):
    """A one-input MIL program ``build(x)``; returns (program, value_inference result of build on a
    constant copy of ``x_np``)."""
    captured = {}

    @mb.program(input_specs=[mb.TensorSpec(shape=shape, dtype=dtype)],
                opset_version=getattr(ct.target, f"iOS{ios}"))
    def prog(x):
        if x_np is not None:
            captured["ref"] = build(mb.const(val=x_np)).val
        return build(x)
    return prog, captured.get("ref")


def _save_mil(prog, path, ios=17, precision="fp32"):
    m = ct.convert(prog, convert_to="mlprogram", minimum_deployment_target=getattr(ct.target, f"iOS{ios}"),
                   compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32)
    m.save(str(path))
    return Path(path)


def _spec_ops(spec):
    fn = spec.mlProgram.functions["main"]
    return fn.block_specializations[fn.opset].operations


def _find_op(spec, output_name):
    for op in _spec_ops(spec):
        if op.outputs and op.outputs[0].name == output_name:
            return op
    raise KeyError(output_name)


def _const_string(spec, name):
    return _find_op(spec, name).attributes["val"].immediateValue.tensor.strings.values[0]


def _mutate(src, dst, edit_spec=None, edit_weights=None):
    """Copy a package; rewrite its protobuf with ``edit_spec(spec)`` and/or its weight file with
    ``edit_weights(bytearray)``. An unedited weight file is symlinked (cheap)."""
    src, dst = Path(src), Path(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("weight.bin"))
    wsrc, wdst = src / WEIGHTS_REL, dst / WEIGHTS_REL
    if edit_weights is None:
        os.symlink(wsrc, wdst)
    else:
        data = bytearray(wsrc.read_bytes())
        edit_weights(data)
        wdst.write_bytes(bytes(data))
    if edit_spec is not None:
        spec = cr.read_spec(src)
        edit_spec(spec)
        (dst / "Data" / "com.apple.CoreML" / "model.mlmodel").write_bytes(spec.SerializeToString())
    return dst


# ---------------------------------------------------------------------------------------- op level

class ConvZoo(nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.grouped = nn.Conv2d(8, 12, 3, padding=1, groups=4)
        self.dilated = nn.Conv2d(12, 6, 3, padding=2, dilation=2, bias=False)
        self.strided = nn.Conv2d(6, 6, (3, 5), stride=2, padding=(1, 2))
        self.depthwise = nn.Conv2d(6, 6, (1, 7), padding=(0, 3), groups=6)
        self.conv1d = nn.Conv1d(6, 4, 3, padding=1)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.3

    def forward(self, x):
        y = self.grouped(x)
        y = self.dilated(y)
        y = self.strided(F.pad(y, (2, 0, 1, 0)))          # asymmetric zero pad
        y = self.depthwise(y)
        return self.conv1d(y.flatten(2)[..., :40])


class BNPool(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(5)
        g = torch.Generator().manual_seed(1)
        self.bn.running_mean = torch.randn(5, generator=g)
        self.bn.running_var = torch.rand(5, generator=g) + 0.5
        self.bn.weight.data = torch.randn(5, generator=g)
        self.bn.bias.data = torch.randn(5, generator=g)

    def forward(self, x):
        y = self.bn(x)
        a = F.avg_pool2d(y, 3, 2, 1)                                  # counts the padding
        b = F.avg_pool2d(y, 3, 2, 1, count_include_pad=False)
        c = F.max_pool2d(y, 3, 2, 1)
        d = F.max_pool2d(y, 2, 2, ceil_mode=True)
        e = F.avg_pool2d(y, (2, 3), (2, 1))
        return a, b, c, d, e


class GatherZoo(nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(2)
        self.emb = nn.Embedding(50, 8)
        self.emb.weight.data = torch.randn(50, 8, generator=g)

    def forward(self, ids):
        x = self.emb(ids)                                                  # gather
        eot = x[torch.arange(x.shape[0]), ids.argmax(dim=-1)]             # gather_nd + argmax
        sel = x.index_select(1, torch.tensor([3, 0, 5]))                  # gather along axis 1
        return eot, sel, torch.gather(x, 1, ids.long()[..., None].expand(-1, -1, 8) % 7)


class NormZoo(nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.ln = nn.LayerNorm(16)
        self.ln.weight.data = torch.randn(16, generator=g)
        self.ln.bias.data = torch.randn(16, generator=g)
        self.lin = nn.Linear(16, 24)
        self.lin.weight.data = torch.randn(24, 16, generator=g) * 0.3

    def forward(self, x, y):
        h = self.ln(x)
        s = torch.softmax(h @ h.transpose(-1, -2) * 0.25, dim=-1)        # matmul + softmax
        m = torch.matmul(s, y)                                            # batched matmul
        return self.lin(h), s, m, torch.softmax(x, dim=1), F.layer_norm(x, (7, 16), eps=1e-3)


class GeluZoo(nn.Module):
    """Under torch.export coremltools emits exact GELU even for approximate='tanh' (so both outputs
    are exact GELU in the program); the tanh mode is tested on a MIL-built program below."""
    def forward(self, x):
        return F.gelu(x), F.gelu(x, approximate="tanh")

    @staticmethod
    def reference(x):
        return F.gelu(x), F.gelu(x)


class TensorZoo(nn.Module):
    def forward(self, x, y):
        a, b = torch.split(x, [2, 4], dim=1)
        c = torch.cat([b, a * 2.0], dim=1)
        s = torch.stack([x, y], dim=2)
        t = x.repeat(1, 1, 2)
        sl = x[:, 1:6:2, ::3]
        e = x.unsqueeze(1).squeeze(1)
        w = torch.where(x > y, x, y - 1.0)
        r = x.reshape(2, -1, 4).permute(2, 0, 1)
        el = (torch.relu(x) + torch.sigmoid(y) - torch.tanh(x) * torch.exp(-y.abs())
              + torch.sqrt(x.abs() + 1) / torch.clamp(y, -0.5, 0.5).abs().add(1)
              + torch.maximum(x, y) - torch.minimum(x, y) + torch.erf(x) + F.silu(y) + x.pow(2))
        mean = x.mean(dim=(1, 2), keepdim=True)
        nrm = F.normalize(x.flatten(1), dim=-1)
        return c, s, t, sl, e, w, r, el, mean, nrm, x.sum(-1), x.amax(1), x.argmax(-1).to(torch.int32)


class AttnZoo(nn.Module):
    def forward(self, q, k, v):
        a = F.scaled_dot_product_attention(q, k, v)
        b = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril(diagonal=1)
        c = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return a, b, c


def _rand(*shape, seed=0, scale=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


OP_CASES = {
    # name: (module factory, args factory, input names, expected op types in the program)
    "conv": (ConvZoo, lambda: [_rand(1, 8, 17, 19)], ["x"], {"conv"}),
    "bn_pool": (BNPool, lambda: [_rand(1, 5, 11, 13, seed=1)], ["x"], {"batch_norm", "avg_pool", "max_pool"}),
    "gather": (GatherZoo, lambda: [torch.tensor([[3, 7, 49, 1, 0, 12], [5, 5, 2, 40, 9, 0]], dtype=torch.int32)],
               ["ids"], {"gather", "gather_nd", "gather_along_axis", "reduce_argmax"}),
    "norm": (NormZoo, lambda: [_rand(2, 7, 16, seed=2), _rand(2, 7, 5, seed=3)], ["x", "y"],
             {"layer_norm", "softmax", "matmul", "linear"}),
    "gelu": (GeluZoo, lambda: [_rand(3, 40, seed=4, scale=3.0)], ["x"], {"gelu"}),
    "tensor": (TensorZoo, lambda: [_rand(2, 6, 8, seed=5), _rand(2, 6, 8, seed=6)], ["x", "y"],
               {"split", "concat", "stack", "tile", "slice_by_index", "select", "transpose", "reshape",
                "reduce_mean", "reduce_l2_norm", "reduce_sum", "reduce_max", "reduce_argmax"}),
}


@pytest.mark.parametrize("case", sorted(OP_CASES))
def test_ops_vs_torch_fp32(case, tmp_path):
    factory, args_f, names, expect = OP_CASES[case]
    torch.manual_seed(0)
    prog, pairs = _run_vs_torch(factory(), args_f(), names, tmp_path, tag=case)
    types_ = set(prog.diagnostics["op_types"])
    assert expect <= types_, (expect - types_, types_)
    err = _max_abs(pairs)
    print(f"\n{case}: {prog.diagnostics['op_count']} ops {sorted(types_)}; max abs vs torch {err:.2e}")
    assert err <= 2e-6, err
    if case == "conv":   # grouped, dilated, strided and depthwise convs all made it into the program
        spec = prog.spec
        groups = sorted({int(np.asarray(prog.constants()[op.inputs["groups"].arguments[0].name]))
                         for op in _spec_ops(spec) if op.type == "conv"})
        dil = {tuple(prog.constants()[op.inputs["dilations"].arguments[0].name].tolist())
               for op in _spec_ops(spec) if op.type == "conv"}
        assert groups == [1, 4, 6] and (2, 2) in dil
    if case == "gelu":
        modes = {prog.constants()[op.inputs["mode"].arguments[0].name] for op in _spec_ops(prog.spec)
                 if op.type == "gelu"}
        assert modes == {"EXACT"}


@pytest.mark.parametrize("case", ["norm", "conv", "bn_pool", "gelu"])
def test_ops_vs_torch_fp16_and_pessimistic(case, tmp_path):
    factory, args_f, names, _ = OP_CASES[case]
    args, module = args_f(), factory()
    path = _convert_torch(module, args, tmp_path / f"{case}16.mlpackage", names, precision="fp16")
    prog = cr.load_program(path)
    assert prog.precision == "fp16"
    feed = {n: a.numpy() for n, a in zip(names, args)}
    got = prog.run(feed)
    pes = prog.run(feed, pessimistic=True)
    with torch.no_grad():
        ref = module.reference(*args) if hasattr(module, "reference") else module(*args)
    ref = [r.numpy() for r in (ref if isinstance(ref, (tuple, list)) else (ref,))]
    for g, p, r in zip(got.values(), pes.values(), ref):
        scale = max(float(np.abs(r).max()), 1.0)
        assert np.abs(g - r).max() <= 4e-3 * scale, (np.abs(g - r).max(), scale)
        assert np.abs(p - r).max() <= 2e-2 * scale, (np.abs(p - r).max(), scale)
    # every fp16 op output is rounded to fp16 (then cast back to fp32 for the program output)
    acts = prog.activations(feed)
    typed = {n: t.dtype for c in prog._ops for n, t, _ in c.outputs}
    assert {acts[n].dtype for n in acts if typed[n] == "FLOAT16"} == {np.dtype(np.float16)}
    diff = max(float(np.abs(got[k] - pes[k]).max()) for k in got)
    if case != "gelu":
        assert diff > 0        # pessimistic rounding changes the numbers (accumulations / statistics) ...
    assert diff < 0.05 * max(float(np.abs(r).max()) for r in ref)       # ... at fp16 level only


@pytest.mark.parametrize("ios", [16, 17, 18])
def test_attention_targets(ios, tmp_path):
    q, k, v = _rand(1, 2, 9, 8, seed=7), _rand(1, 2, 9, 8, seed=8), _rand(1, 2, 9, 8, seed=9)
    prog, pairs = _run_vs_torch(AttnZoo(), [q, k, v], ["q", "k", "v"], tmp_path, ios=ios, tag="attn")
    assert prog.opset == f"CoreML{ios - 10}"
    types_ = set(prog.diagnostics["op_types"])
    assert ("scaled_dot_product_attention" in types_) == (ios >= 18), types_
    assert _max_abs(pairs) <= 2e-6


# --- MIL builder programs: modes torch.export cannot emit, and coremltools' own value inference

MIL_CASES = {
    "gelu_exact": (lambda x: mb.gelu(x=x, mode="EXACT"), (4, 33)),
    "gelu_tanh": (lambda x: mb.gelu(x=x, mode="TANH_APPROXIMATION"), (4, 33)),
    "gelu_sigmoid": (lambda x: mb.gelu(x=x, mode="SIGMOID_APPROXIMATION"), (4, 33)),
    "softmax": (lambda x: mb.softmax(x=x, axis=0), (4, 33)),
    "layer_norm": (lambda x: mb.layer_norm(x=x, axes=[0], epsilon=1e-3), (4, 33)),
    "slice": (lambda x: mb.slice_by_index(x=x, begin=[3, 30], end=[0, 2], stride=[-1, -4],
                                         end_mask=[True, False]), (4, 33)),
    "slice_squeeze": (lambda x: mb.slice_by_index(x=x, begin=[1, 2], end=[2, 20], squeeze_mask=[True, False]),
                      (4, 33)),
    "gather_axis_neg": (lambda x: mb.gather(x=x, indices=np.array([[0, 3], [2, 1]], np.int32), axis=-1), (4, 33)),
    "gather_batch": (lambda x: mb.gather(x=x, indices=np.array([[0, 3], [2, 1], [1, 1], [0, 0]], np.int32),
                                         axis=1, batch_dims=1), (4, 33)),
    "gather_nd": (lambda x: mb.gather_nd(x=x, indices=np.array([[3, 1], [0, 32]], np.int32)), (4, 33),
                  lambda x: x[[3, 0], [1, 32]]),
    "split": (lambda x: mb.split(x=x, split_sizes=[10, 23], axis=1)[1], (4, 33)),
    # coremltools' value inference ignores `interleave`; the reference is the documented semantics
    "concat_interleave": (lambda x: mb.concat(values=[x, mb.mul(x=x, y=2.0)], axis=0, interleave=True), (4, 33),
                          lambda x: np.stack([x, 2 * x], 1).reshape(8, 33)),
    "tile": (lambda x: mb.tile(x=x, reps=[2, 3]), (4, 33)),
    "pad_reflect": (lambda x: mb.pad(x=x, pad=np.array([1, 2], np.int32), mode="reflect"), (4, 33)),
    "pad_const": (lambda x: mb.pad(x=x, pad=np.array([1, 0, 2, 3], np.int32), mode="constant",
                                   constant_val=0.5), (4, 33)),
    "reduce_prod": (lambda x: mb.reduce_prod(x=x, axes=[0], keep_dims=True), (4, 33)),
    "reduce_lse": (lambda x: mb.reduce_log_sum_exp(x=x, axes=[1]), (4, 33)),
    "reduce_sumsq": (lambda x: mb.reduce_sum_square(x=x, axes=[1]), (4, 33)),
    "reduce_argmin": (lambda x: mb.reduce_argmin(x=x, axis=0), (4, 33)),
    "rsqrt": (lambda x: mb.rsqrt(x=mb.abs(x=x), epsilon=1e-2), (4, 33)),
    "inverse": (lambda x: mb.inverse(x=x, epsilon=1e-4), (4, 33)),
    "log": (lambda x: mb.log(x=mb.abs(x=x), epsilon=1e-3), (4, 33)),
    "leaky_relu": (lambda x: mb.leaky_relu(x=x, alpha=0.2), (4, 33)),
    "elu": (lambda x: mb.elu(x=x, alpha=0.7), (4, 33)),
    "clip": (lambda x: mb.clip(x=x, alpha=-0.3, beta=0.4), (4, 33)),
    "relu6": (lambda x: mb.relu6(x=mb.mul(x=x, y=4.0)), (4, 33)),
    "softplus": (lambda x: mb.softplus(x=x), (4, 33)),
    "floor_div": (lambda x: mb.floor_div(x=x, y=0.3), (4, 33)),
    "mod": (lambda x: mb.mod(x=x, y=0.7), (4, 33)),
    "pow": (lambda x: mb.pow(x=mb.abs(x=x), y=1.5), (4, 33)),
    "cast_int": (lambda x: mb.cast(x=mb.mul(x=x, y=3.0), dtype="int32"), (4, 33)),
    "logic": (lambda x: mb.cast(x=mb.logical_xor(x=mb.greater(x=x, y=0.0), y=mb.less_equal(x=x, y=0.5)),
                                dtype="fp32"), (4, 33)),
    "avg_pool_ceil": (lambda x: mb.avg_pool(x=mb.reshape(x=x, shape=[1, 1, 4, 33]), kernel_sizes=[2, 4],
                                            strides=[2, 3], pad_type="valid", ceil_mode=True,
                                            exclude_padding_from_average=True), (4, 33),
                      lambda x: F.avg_pool2d(torch.from_numpy(x).reshape(1, 1, 4, 33), (2, 4), (2, 3),
                                             ceil_mode=True, count_include_pad=False).numpy()),
    "max_pool_same": (lambda x: mb.max_pool(x=mb.reshape(x=x, shape=[1, 1, 4, 33]), kernel_sizes=[3, 3],
                                            strides=[2, 2], pad_type="same"), (4, 33),
                      # TF-style SAME: total pad 1 (rows, all after) and 2 (cols, 1 + 1)
                      lambda x: F.max_pool2d(F.pad(torch.from_numpy(x).reshape(1, 1, 4, 33), (1, 1, 0, 1),
                                                   value=-math.inf), 3, 2).numpy()),
    "conv_same_lower": (lambda x: mb.conv(x=mb.reshape(x=x, shape=[1, 4, 33]),
                                          weight=np.linspace(-1, 1, 2 * 4 * 4).reshape(2, 4, 4).astype(np.float32),
                                          strides=[2], pad_type="same_lower"), (4, 33),
                        # SAME_LOWER: total pad 3, the larger half (2) before
                        lambda x: F.conv1d(F.pad(torch.from_numpy(x).reshape(1, 4, 33), (2, 1)),
                                           torch.from_numpy(np.linspace(-1, 1, 32).reshape(2, 4, 4).astype(np.float32)),
                                           stride=2).numpy()),
    "reshape_zero": (lambda x: mb.reshape(x=x, shape=[1, 0, -1, 0]), (4, 33)),
    "compare_logic": (lambda x: mb.cast(x=mb.logical_or(
        x=mb.logical_and(x=mb.equal(x=mb.floor(x=x), y=0.0), y=mb.not_equal(x=mb.ceil(x=x), y=1.0)),
        y=mb.logical_not(x=mb.less(x=x, y=1.0))), dtype="fp32"), (4, 33)),
    "unary_misc": (lambda x: mb.add(x=mb.add(x=mb.sin(x=x), y=mb.cos(x=x)),
                                    y=mb.add(x=mb.mul(x=mb.sign(x=x), y=mb.square(x=x)), y=mb.exp2(x=x))),
                   (4, 33)),
    "slice_by_size": (lambda x: mb.slice_by_size(x=x, begin=[1, 3], size=[2, -1]), (4, 33)),
    "reduce_l1_min_max": (lambda x: mb.concat(values=[mb.reduce_l1_norm(x=x, axes=[1], keep_dims=True),
                                                     mb.reduce_min(x=x, axes=[1], keep_dims=True),
                                                     mb.reduce_max(x=x, axes=[-1], keep_dims=True)], axis=1),
                          (4, 33)),
}


@pytest.fixture(scope="module")
def mil_zoo(tmp_path_factory):
    """All MIL_CASES as the outputs of one MIL program (one conversion), the interpreter's results and
    the references: coremltools' value inference of the same op on a constant copy of the input, or
    the documented semantics where coremltools has none."""
    x = np.random.default_rng(7).standard_normal((4, 33)).astype(np.float32)
    names = sorted(MIL_CASES)
    refs = {}

    @mb.program(input_specs=[mb.TensorSpec(shape=x.shape)], opset_version=ct.target.iOS17)
    def prog(v):
        outs = []
        for n in names:
            build, _, *explicit = MIL_CASES[n]
            refs[n] = explicit[0](x) if explicit else build(mb.const(val=x)).val
            outs.append(mb.identity(x=build(v), name=f"out_{n}"))
        return tuple(outs)
    path = _save_mil(prog, tmp_path_factory.mktemp("mil") / "zoo.mlpackage")
    p = cr.load_program(path)
    got = p.run({p.inputs[0].name: x})
    return {n: (got[f"out_{n}"], refs[n]) for n in names}, p


def test_mil_zoo_covers_ops(mil_zoo):
    types_ = set(mil_zoo[1].diagnostics["op_types"])
    want = {"avg_pool", "max_pool", "conv", "clip", "concat", "elu", "floor_div", "gather", "gather_nd", "gelu",
            "inverse", "layer_norm", "leaky_relu", "log", "logical_xor", "mod", "pad", "pow", "reduce_argmin",
            "reduce_log_sum_exp", "reduce_prod", "reduce_sum_square", "relu6", "reshape", "rsqrt",
            "slice_by_index", "softmax", "softplus", "split", "tile", "cast", "greater", "less_equal",
            "equal", "not_equal", "less", "logical_and", "logical_or", "logical_not", "floor", "ceil", "sin",
            "cos", "sign", "square", "exp2", "slice_by_size", "reduce_l1_norm", "reduce_min", "reduce_max"}
    assert want <= types_, want - types_


@pytest.mark.parametrize("case", sorted(MIL_CASES))
def test_mil_ops_vs_value_inference(case, mil_zoo):
    results, prog = mil_zoo
    got, ref = results[case]
    assert ref is not None, "coremltools computed no value for the constant-input copy"
    ref = np.asarray(ref)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    if got.dtype.kind in "iub":
        np.testing.assert_array_equal(got, ref)
    else:
        np.testing.assert_allclose(got, ref.astype(np.float32), rtol=2e-5, atol=2e-6)


def test_gelu_tanh_mode_vs_torch(tmp_path):
    """torch.export always yields exact GELU; the tanh mode comes from a MIL program built directly."""
    x = np.linspace(-6, 6, 241, dtype=np.float32).reshape(1, -1)
    paths = {}
    for mode in ("EXACT", "TANH_APPROXIMATION"):
        prog, _ = _mil_program(lambda v, m=mode: mb.gelu(x=v, mode=m), x.shape)
        paths[mode] = _save_mil(prog, tmp_path / f"{mode}.mlpackage")
    ex = list(cr.load_program(paths["EXACT"]).run({"x": x}).values())[0]
    th = list(cr.load_program(paths["TANH_APPROXIMATION"]).run({"x": x}).values())[0]
    t = torch.from_numpy(x)
    assert np.abs(ex - F.gelu(t).numpy()).max() <= 1e-6
    assert np.abs(th - F.gelu(t, approximate="tanh").numpy()).max() <= 1e-6
    assert np.abs(ex - th).max() > 1e-4          # the two modes really differ


def test_op_param_tables_match_coremltools_registry():
    """Every op the interpreter knows takes exactly the parameters coremltools defines for it, per
    opset (iOS16/17/18): a parameter the interpreter does not know cannot slip through."""
    from coremltools.converters.mil.mil.ops.registry import SSAOpRegistry

    checked = 0
    for ios, spec_version in ((15, 6), (16, 7), (17, 8), (18, 9)):
        for name, d in cr.registry.OPS.items():
            if ios < d.min_ios:
                continue
            cls = SSAOpRegistry.core_ops[name][spec_version]
            theirs = {k: not v.optional for k, v in cls.input_spec.input_types.items()}
            assert d.params(ios) == theirs, (name, ios, d.params(ios), theirs)
            checked += 1
    assert checked > 300


# ---------------------------------------------------------------------------------- constexpr ops

class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(11)
        self.conv = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32, 64)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.2

    def forward(self, x):
        return self.fc(F.relu(self.conv(x)).mean((2, 3)))


COMPRESS = {
    # name: (ios, config factory, expected constexpr op)
    "int8_per_channel_ios16": (16, lambda c: c.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8",
                                                                        weight_threshold=0),
                               "constexpr_affine_dequantize"),
    "uint8_affine_ios16": (16, lambda c: c.OpLinearQuantizerConfig(mode="linear", dtype="uint8", weight_threshold=0),
                           "constexpr_affine_dequantize"),
    "int4_block_ios18": (18, lambda c: c.OpLinearQuantizerConfig(mode="linear", dtype="int4",
                                                                  granularity="per_block", block_size=8,
                                                                  weight_threshold=0),
                         "constexpr_blockwise_shift_scale"),
    "int8_ios18": (18, lambda c: c.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8",
                                                            weight_threshold=0),
                   "constexpr_blockwise_shift_scale"),
    "palette4_ios16": (16, lambda c: c.OpPalettizerConfig(mode="kmeans", nbits=4, weight_threshold=0),
                       "constexpr_lut_to_dense"),
    "palette2_ios16": (16, lambda c: c.OpPalettizerConfig(mode="uniform", nbits=2, weight_threshold=0),
                       "constexpr_lut_to_dense"),
    "palette3_grouped_ios18": (18, lambda c: c.OpPalettizerConfig(mode="kmeans", nbits=3,
                                                                   granularity="per_grouped_channel",
                                                                   group_size=8, weight_threshold=0),
                               "constexpr_lut_to_dense"),
    "palette_vector_ios18": (18, lambda c: c.OpPalettizerConfig(mode="kmeans", nbits=2, cluster_dim=2,
                                                                 weight_threshold=0),
                             "constexpr_lut_to_dense"),
    "palette4_channel_scale_ios18": (18, lambda c: c.OpPalettizerConfig(mode="kmeans", nbits=4,
                                                                         enable_per_channel_scale=True,
                                                                         weight_threshold=0),
                                     "constexpr_blockwise_shift_scale"),      # fed by a lut_to_dense
    "prune_ios16": (16, lambda c: c.OpMagnitudePrunerConfig(target_sparsity=0.6, weight_threshold=0),
                    "constexpr_sparse_to_dense"),
    "prune_ios18": (18, lambda c: c.OpMagnitudePrunerConfig(target_sparsity=0.6, weight_threshold=0),
                    "constexpr_sparse_to_dense"),
    # joint compression: pruned, then palettized / quantized on the non-zero values only
    "prune_palettize_ios18": (18, lambda c: c.OpPalettizerConfig(mode="kmeans", nbits=2, weight_threshold=0),
                              "constexpr_lut_to_sparse"),
    "prune_quantize_ios18": (18, lambda c: c.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8",
                                                                      weight_threshold=0),
                             "constexpr_sparse_blockwise_shift_scale"),
}


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """TinyNet converted (fp32) for iOS16 and iOS18, once per module."""
    d = tmp_path_factory.mktemp("tiny")
    x = _rand(1, 16, 9, 9, seed=12)
    out = {}
    for ios in (16, 18):
        out[ios] = _convert_torch(TinyNet(), [x], d / f"tiny_ios{ios}.mlpackage", ["x"], ios=ios)
    return out, x


@pytest.mark.parametrize("case", sorted(COMPRESS))
def test_constexpr_decompression(case, tiny_models, tmp_path):
    import coremltools.optimize.coreml as cto

    ios, cfg, op_type = COMPRESS[case]
    paths, x = tiny_models
    model = ct.models.MLModel(str(paths[ios]), skip_model_load=True)
    config = cto.OptimizationConfig(global_config=cfg(cto))
    joint = case.startswith("prune_") and case.count("_") > 1
    if joint:
        model = cto.prune_weights(model, cto.OptimizationConfig(
            global_config=cto.OpMagnitudePrunerConfig(target_sparsity=0.5, weight_threshold=0)))
    if "Palettizer" in type(config.global_config).__name__:
        comp = cto.palettize_weights(model, config, joint_compression=joint)
    elif "Pruner" in type(config.global_config).__name__:
        comp = cto.prune_weights(model, config)
    else:
        comp = cto.linear_quantize_weights(model, config, joint_compression=joint)
    cpath = tmp_path / f"{case}.mlpackage"
    comp.save(str(cpath))
    # coremltools' own decompression of the same package: the oracle for our constexpr kernels
    dpath = tmp_path / f"{case}_decompressed.mlpackage"
    cto.decompress_weights(ct.models.MLModel(str(cpath), skip_model_load=True)).save(str(dpath))
    pc, pd = cr.load_program(cpath), cr.load_program(dpath)
    assert op_type in _constexpr_types(pc.spec), _constexpr_types(pc.spec)
    assert not _constexpr_types(pd.spec)
    feed = {"x": x.numpy()}
    yc, yd = pc.run(feed)[pc.output_names[0]], pd.run(feed)[pd.output_names[0]]
    np.testing.assert_array_equal(yc, yd)     # identical weights -> identical outputs
    # and the decompressed weights are close to the originals (the compression is lossy)
    with torch.no_grad():
        ref = TinyNet()(x).numpy()
    rel = np.abs(yc - ref).max() / np.abs(ref).max()
    print(f"\n{case}: {sorted(_constexpr_types(pc.spec))}, rel err vs uncompressed torch {rel:.3g}")
    assert 0 < rel < 1.0           # lossy (2-bit palettes lose the most), never garbage
    # every decompressed const equals coremltools' materialized value
    dconst = pd.constants()
    for name, val in pc.constants().items():
        if name in dconst and isinstance(val, np.ndarray) and val.dtype.kind == "f" and val.size > 16:
            np.testing.assert_array_equal(val, dconst[name])


def _constexpr_types(spec):
    return {op.type for op in _spec_ops(spec) if op.type.startswith("constexpr_")}


# ------------------------------------------------------------------------------ MobileCLIP-S0 exports

_S0 = {}


@pytest.fixture(scope="module")
def s0(fused_session, tmp_path_factory):
    """s0(which, precision, ios=17) -> (package path, spec); the repo's CoreMLBackend, once per module."""
    d = tmp_path_factory.mktemp("s0")
    backend = CoreMLBackend()

    def get(which, precision, ios=17):
        key = (which, precision, ios)
        if key not in _S0:
            m = fused_session("mobileclip_s0")
            wrapper = make_encoder(m.module, m.spec, which)
            out = d / f"s0_{which}_{precision}_ios{ios}.mlpackage"
            opts = {"ios": ios, "image_type": (which, precision, ios) == ("image", "fp32", 17)}
            t0 = time.perf_counter()
            res = backend.export(wrapper, example_input(m.spec, which), which, precision, out, m.spec, opts)
            TIMINGS[("s0", *key)] = round(time.perf_counter() - t0, 1)
            _S0[key] = (res.path, m.spec)
        return _S0[key]
    return get


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("which", ["image", "text"])
def test_s0_encoder(which, precision, s0, probe_reference):
    images, ids, ref_img, ref_txt = probe_reference("mobileclip_s0")
    path, _ = s0(which, precision)
    x, ref, other = (images, ref_img, ref_txt) if which == "image" else (ids, ref_txt, ref_img)
    t0 = time.perf_counter()
    fig = cr.verify_mlpackage(path, x, ref, precision, other_tower=other)
    t_verify = time.perf_counter() - t0
    prog = cr.load_program(path)
    assert fig["passed"] and fig["n"] == len(x) and fig["zero_shot_agreement"] == 1.0
    t = THRESHOLDS[precision]
    assert fig["max_abs"] <= t["max_abs"]
    if precision == "fp16":
        assert fig["cosine_min"] >= t["min_cosine"]
        assert fig["max_abs"] > 1e-5          # fp16 rounding is emulated, not skipped
        assert prog.precision == "fp16"
    else:
        assert fig["max_abs"] <= 1e-6 and prog.precision == "fp32"
        assert prog.diagnostics["overflow_warnings"] == []
    assert prog.diagnostics["first_nonfinite"] is None
    # two different inputs give clearly different embeddings (the test weights are not vacuous);
    # pessimistic fp16 rounding changes nothing in an fp32 program and stays near in an fp16 one
    name = prog.inputs[0].name
    out = [prog.run({name: x[i:i + 1]})["embedding"] for i in (0, 1)]
    assert float((out[0] * out[1]).sum()) < 0.999
    pes = prog.run({name: x[:1]}, pessimistic=True)["embedding"]
    if precision == "fp32":
        np.testing.assert_array_equal(pes, out[0])
    else:
        assert 0 < np.abs(pes - out[0]).max() < 5e-3
        assert float((pes * ref[:1]).sum() / np.linalg.norm(pes) / np.linalg.norm(ref[:1])) > 0.999
    print(f"\nS0 {which} {precision}: max abs {fig['max_abs']:.2e}, cos min {fig['cosine_min']:.7f}, "
          f"pessimistic max abs {np.abs(pes - ref[:1]).max():.2e} (row 0); {prog.diagnostics['op_count']} ops, "
          f"{fig['seconds_per_run'] * 1e3:.0f} ms/run; verify {t_verify:.1f}s; "
          f"export {TIMINGS.get(('s0', which, precision, 17))}s")


def test_s0_image_fp32_speed(s0, probe_reference):
    """The speed goal: S0 image encoder (fp32 program) through the interpreter <= 2 s warm."""
    images = probe_reference("mobileclip_s0")[0]
    path, _ = s0("image", "fp32")
    prog = cr.load_program(path)
    assert cr.load_program(path) is prog                  # cached
    feed = {"image": images[:1]}
    prog.run(feed)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        prog.run(feed)
        times.append(time.perf_counter() - t0)
    print(f"\nS0 image fp32 warm run: {min(times) * 1e3:.0f} ms (min of 3, {torch.get_num_threads()} torch "
          f"thread(s)), load {prog.load_time_s:.2f}s")
    assert min(times) <= 2.0


def test_s0_imagetype_variant(s0, probe_reference, fused_session):
    """ImageType input: the 1/255 scale is a `mul` op coremltools put in the program; the interpreter
    takes uint8 HxWx3 RGB (or float 0..255 [1,3,H,W]) like Core ML takes a pixel buffer."""
    path, spec = s0("image", "fp32")
    it_path = path.with_name(path.stem + "_imagetype.mlpackage")
    prog = cr.load_program(it_path)
    info = prog.inputs[0]
    assert info.image == {"color_space": "RGB", "width": 256, "height": 256}
    first = [op for op in _spec_ops(prog.spec) if op.type != "const"][0]
    assert first.type == "mul" and first.inputs["x"].arguments[0].name == "image"
    scale = prog.constants()[first.inputs["y"].arguments[0].name]
    assert float(scale) == pytest.approx(1 / 255.0)

    images = probe_reference("mobileclip_s0")[0]
    u8 = np.clip(np.round(images * 255), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)   # N,H,W,3 RGB
    m = fused_session("mobileclip_s0")
    with torch.no_grad():
        ref = make_encoder(m.module, m.spec, "image")(torch.from_numpy(u8.transpose(0, 3, 1, 2) / 255.0).float())
    fig = cr.verify_mlpackage(it_path, u8, ref.numpy(), "fp32")
    assert fig["max_abs"] <= 1e-6, fig
    # float 0..255 planar input gives the same numbers; a [0,1] image draws a warning
    one = prog.run({"image": u8[0]})["embedding"]
    same = prog.run({"image": u8[:1].transpose(0, 3, 1, 2).astype(np.float32)})["embedding"]
    np.testing.assert_array_equal(one, same)
    prog.run({"image": images[:1]})
    assert any("0..255" in w for w in prog.diagnostics["warnings"])
    with pytest.raises(cr.ProgramError, match=r"uint8 image of shape \(256, 255, 3\)"):
        prog.run({"image": u8[0][:, :255]})


@pytest.mark.parametrize("ios,opset", [(16, "CoreML6"), (18, "CoreML8")])
def test_s0_other_deployment_targets(ios, opset, s0, probe_reference):
    images, ids, ref_img, ref_txt = probe_reference("mobileclip_s0")
    which = "text" if ios == 16 else "image"        # iOS18: MCi0's attention stages become SDPA
    path, _ = s0(which, "fp32", ios)
    prog = cr.load_program(path)
    assert prog.opset == opset
    if ios == 18:
        assert "scaled_dot_product_attention" in prog.diagnostics["op_types"]
    x, ref = (ids, ref_txt) if which == "text" else (images, ref_img)
    fig = cr.verify_mlpackage(path, x[:3], ref[:3], "fp32")
    assert fig["max_abs"] <= 1e-6


# ------------------------------------------------------------------------------------ mutation tests

def test_mutation_unknown_gelu_mode(s0, tmp_path):
    path, _ = s0("text", "fp32")

    def edit(spec):
        gelu = next(op for op in _spec_ops(spec) if op.type == "gelu")
        const = _find_op(spec, gelu.inputs["mode"].arguments[0].name)
        const.attributes["val"].immediateValue.tensor.strings.values[0] = "ERF_APPROXIMATION"
    bad = _mutate(path, tmp_path / "bad_mode.mlpackage", edit)
    with pytest.raises(cr.UnsupportedOpError, match=r"op 'gelu' \(gelu\): unknown mode 'ERF_APPROXIMATION'") as e:
        cr.load_program(bad)
    assert (e.value.op_name, e.value.op_type) == ("gelu", "gelu")


def test_mutation_unknown_op_type(s0, tmp_path):
    path, _ = s0("text", "fp32")

    def edit(spec):
        _find_op(spec, "layer_norm_1").type = "layer_norm_v2"
    bad = _mutate(path, tmp_path / "bad_type.mlpackage", edit)
    with pytest.raises(cr.UnsupportedOpError, match=r"op 'layer_norm_1' \(layer_norm_v2\): unknown op type"):
        cr.verify_mlpackage(bad, np.zeros((1, 77), np.int32), np.zeros((1, 512)), "fp32")


def test_mutation_unknown_pad_type_and_shape(s0, tmp_path):
    path, _ = s0("text", "fp32")

    def pad(spec):
        conv = next(op for op in _spec_ops(spec) if op.type == "conv")
        _find_op(spec, conv.inputs["pad_type"].arguments[0].name).attributes[
            "val"].immediateValue.tensor.strings.values[0] = "reflect"
    with pytest.raises(cr.UnsupportedOpError, match=r"op 'conv2d' \(conv\): unknown pad_type 'reflect'"):
        cr.load_program(_mutate(path, tmp_path / "bad_pad.mlpackage", pad))

    def shape(spec):
        dims = _find_op(spec, "linear_2").outputs[0].type.tensorType.dimensions
        dims[-1].constant.size = 2047
    prog = cr.load_program(_mutate(path, tmp_path / "bad_shape.mlpackage", shape))
    with pytest.raises(cr.ProgramError, match=r"op 'linear_2' \(linear\): output shape \(1, 77, 2048\) "
                                              r"disagrees with the declared type FLOAT32\[1,77,2047\]"):
        prog.run({"text": np.zeros((1, 77), np.int32)})


@pytest.fixture(scope="module")
def s0_text_activations(fused_session):
    """PyTorch reference activations of the S0 text wrapper's exported graph (by node name)."""
    m = fused_session("mobileclip_s0")
    wrapper = make_encoder(m.module, m.spec, "text")
    ex = example_input(m.spec, "text")
    with torch.no_grad():
        ep = torch.export.export(wrapper.eval(), (ex,)).run_decompositions({})
    return lambda ids: cr.torch_activations(ep, torch.from_numpy(ids))


def test_mutation_gelu_tanh_localized(s0, probe_reference, s0_text_activations, tmp_path):
    """A valid but wrong attribute (exact -> tanh GELU) passes the strict loader; verification fails
    and names the op, both against the unmodified export and against PyTorch's own activations."""
    path, _ = s0("text", "fp32")
    _, ids, _, ref_txt = probe_reference("mobileclip_s0")

    def edit(spec):
        gelu = _find_op(spec, "gelu_2")
        _find_op(spec, gelu.inputs["mode"].arguments[0].name).attributes[
            "val"].immediateValue.tensor.strings.values[0] = "TANH_APPROXIMATION"
    bad = _mutate(path, tmp_path / "tanh.mlpackage", edit)
    fig = cr.verify_mlpackage(bad, ids, ref_txt, "fp32", check=False)
    assert not fig["passed"] and fig["max_abs"] > 1e-5, fig
    with pytest.raises(cr.VerificationError, match=r"first departing op 'gelu_2' \(gelu\)") as e:
        cr.verify_mlpackage(bad, ids, ref_txt, "fp32", baseline=path)
    assert e.value.op_name == "gelu_2" and e.value.figures["first_divergent_op"]["var"] == "gelu_2"
    acts = s0_text_activations(ids[:1])
    with pytest.raises(cr.VerificationError, match=r"first departing op 'gelu_2' \(gelu\)"):
        cr.verify_mlpackage(bad, ids, ref_txt, "fp32", activations=acts, localize_rtol=1e-5)
    # the unmodified program matches PyTorch's activations op by op
    good = cr.load_program(path)
    assert cr.diagnostics.localize(good, {"text": ids[:1]}, None, acts, False, 1e-5) is None


def test_mutation_weight_bytes(s0, probe_reference, tmp_path):
    path, _ = s0("text", "fp32")
    _, ids, _, ref_txt = probe_reference("mobileclip_s0")
    spec = cr.read_spec(path)
    assert spec == ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    linear = _find_op(spec, "linear_6")
    wname = linear.inputs["weight"].arguments[0].name
    offset = _find_op(spec, wname).attributes["val"].blobFileValue.offset

    def perturb(data):
        _, _, size, start = struct.unpack_from("<IIQQ", data, offset)
        w = np.frombuffer(data, np.float32, count=64, offset=start).copy()
        data[start:start + 256] = (w + 0.05).tobytes()
    bad = _mutate(path, tmp_path / "perturbed.mlpackage", edit_weights=perturb)
    with pytest.raises(cr.VerificationError, match=r"max abs error .* first departing op 'linear_6' \(linear\)"):
        cr.verify_mlpackage(bad, ids, ref_txt, "fp32", baseline=path)
    d = cr.diff_programs(path, bad, {"text": ids[:1]})
    assert d["differing_constants"] == [wname]
    assert d["first_divergent_op"]["name"] == "linear_6" and not d["changed_ops"]

    def sentinel(data):
        data[offset:offset + 4] = b"\x00\x00\x00\x00"
    with pytest.raises(cr.ProgramError, match=rf"op '{wname}' \(const\): .*bad MILBlob record sentinel"):
        cr.load_program(_mutate(path, tmp_path / "sentinel.mlpackage", edit_weights=sentinel))


def test_nonfinite_and_overflow_diagnostics(tmp_path):
    """fp32 program: big activations draw the 'fp16 export may overflow' warning; the fp16 program of
    the same net overflows and the first non-finite op is named (a -inf mask is not an origin)."""
    class Big(nn.Module):
        def forward(self, x):
            h = x * 300.0                      # |h| up to ~1000: fine in fp32, fine in fp16
            s = h * h                           # up to ~1e6: overflows fp16
            return torch.softmax(s * 1e-6, -1) + h.mean()

    x = _rand(2, 8, seed=13, scale=3.0)
    p32 = cr.load_program(_convert_torch(Big(), [x], tmp_path / "big32.mlpackage", ["x"]))
    p32.run({"x": x.numpy()})
    warn = p32.diagnostics["overflow_warnings"]
    assert warn and all(w["max_abs"] > cr.OVERFLOW_WARN for w in warn)
    assert any("fp16 export may overflow" in w for w in p32.diagnostics["warnings"])
    assert p32.diagnostics["first_nonfinite"] is None
    p16 = cr.load_program(_convert_torch(Big(), [x], tmp_path / "big16.mlpackage", ["x"], precision="fp16"))
    out = p16.run({"x": x.numpy()})
    bad = p16.diagnostics["first_nonfinite"]
    assert bad is not None and bad["type"] == "mul" and bad["inputs_finite"], bad
    assert not np.isfinite(list(out.values())[0]).all()
    with pytest.raises(cr.VerificationError, match=rf"non-finite outputs \(first non-finite value at op "
                                                   rf"'{bad['name']}' \(mul\)\)"):
        cr.verify_mlpackage(p16, x.numpy(), np.zeros((2, 8)), "fp16")


def test_strict_input_checks(s0):
    path, _ = s0("text", "fp32")
    prog = cr.load_program(path)
    with pytest.raises(cr.ProgramError, match=r"shape \(1, 76\) does not match the declared INT32\[1,77\]"):
        prog.run({"text": np.zeros((1, 76), np.int32)})
    with pytest.raises(cr.ProgramError, match="non-integer values"):
        prog.run({"text": np.full((1, 77), 0.5, np.float32)})
    with pytest.raises(cr.ProgramError, match="inputs"):
        prog.run({"ids": np.zeros((1, 77), np.int32)})
    ids = np.zeros((1, 77), np.int32)
    ids[0, :3] = [49406, 320, 49407]
    ids64 = ids.astype(np.int64)
    np.testing.assert_array_equal(prog.run({"text": ids})["embedding"], prog.run({"text": ids64})["embedding"])


# ------------------------------------------------------------------------- ExecuTorch .pte (Core ML)

def test_coreml_delegated_pte(fused_session, probe_reference, tmp_path):
    """The Core ML model inside a Core ML-delegated .pte (repo's executorch-coreml backend): extracted
    from the delegate payload (executorch's flattened directory) and interpreted."""
    from clipdeploy.export.backends.executorch_backend import ExecuTorchCoreMLBackend

    m = fused_session("mobileclip_s0")
    _, ids, _, ref_txt = probe_reference("mobileclip_s0")
    pte = tmp_path / "text_encoder.pte"
    t0 = time.perf_counter()
    ExecuTorchCoreMLBackend().export(make_encoder(m.module, m.spec, "text"), example_input(m.spec, "text"),
                                     "text", "fp32", pte, m.spec, {"ios": 17})
    t_export = time.perf_counter() - t0
    pkgs = pte_coreml.extract_coreml_from_pte(pte, tmp_path / "extracted")
    assert len(pkgs) == 1 and pkgs[0].name == "model.mlpackage"
    assert (pkgs[0].parent / "metadata.json").exists()
    # same bytes as executorch's own (C++) unflattening, where that module is importable
    try:
        from executorch.backends.apple.coreml import executorchcoreml
    except ImportError:
        executorchcoreml = None
    if executorchcoreml is not None:
        payload = pte_coreml._pte_payloads(pte.read_bytes())[0][2]
        theirs = tmp_path / "theirs"
        theirs.mkdir()
        assert executorchcoreml.unflatten_directory_contents(payload, str(theirs))
        (root,) = list(theirs.iterdir())                  # executorch keeps the root ("lowered_module")
        ours = sorted(str(f.relative_to(pkgs[0].parent)) for f in pkgs[0].parent.rglob("*") if f.is_file()
                      and f.name != "compile_specs.json")
        assert ours == sorted(str(f.relative_to(root)) for f in root.rglob("*") if f.is_file())
        for rel in ours:
            assert (root / rel).read_bytes() == (pkgs[0].parent / rel).read_bytes(), rel
    prog = cr.load_program(pkgs[0])
    assert prog.inputs[0].name == "text"
    fig = cr.verify_mlpackage(prog, ids, ref_txt, "fp32")
    assert fig["max_abs"] <= 1e-6
    print(f"\nS0 text .pte (Core ML delegate): export {t_export:.1f}s, max abs {fig['max_abs']:.2e}, "
          f"{prog.diagnostics['op_count']} ops")
    with pytest.raises(ValueError, match="not an ExecuTorch program"):
        pte_coreml.extract_coreml_from_pte(pkgs[0] / "Manifest.json", tmp_path / "x")
