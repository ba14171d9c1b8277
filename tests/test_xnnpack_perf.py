"""XNNPACK export performance work, checked on the real runtime: large depthwise kernels banded so that
XNNPACK runs them with its DWConv kernels (ETDump's per-op events name the kernel XNNPACK chose), the
delegation check refusing a .pte that leaves a compute op to the portable kernels, and the int8
(PT2E, mixed precision by measured sensitivity) text tower passing the int8 bars."""
import numpy as np
import pytest
import torch
from torch import nn

from clipdeploy.export.backends.executorch_backend import ExecuTorchBackend, NotDelegated, _units
from clipdeploy.export.backends.xnnpack_modules import BandedDepthwiseConv2d, split_large_depthwise
from clipdeploy.export.parity import check, measure
from clipdeploy.export.wrappers import encoder, example_input

import executorch.runtime  # noqa: E402,F401  (pinned: fail, never skip)


@pytest.mark.parametrize("k,pad,size", [(7, 3, (64, 61)), (7, 3, (5, 5)), (9, 4, (16, 16)), (11, 5, (12, 20)),
                                        ((7, 5), (3, 2), (9, 14)), (7, 1, (10, 10))])
def test_banded_depthwise_equals_the_convolution(k, pad, size):
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 16, k, padding=pad, groups=16).eval()
    banded = BandedDepthwiseConv2d(conv)
    x = torch.randn(2, 16, *size)
    with torch.no_grad():
        want, got = conv(x), banded(x)
    assert got.shape == want.shape and (got - want).abs().max() < 1e-5
    kh, kw = conv.kernel_size
    assert all(w.shape[2] * kw <= 25 for w in banded.weights) and sum(w.shape[2] for w in banded.weights) == kh


def test_split_only_touches_large_stride1_depthwise():
    m = nn.Sequential(nn.Conv2d(8, 8, 7, padding=3, groups=8),        # banded
                      nn.Conv2d(8, 8, 5, padding=2, groups=8),        # 25 taps: DWConv already
                      nn.Conv2d(8, 16, 7, stride=2, padding=3, groups=8),   # channel multiplier: IGEMM anyway
                      nn.Conv2d(16, 16, 3, padding=1))
    split, n = split_large_depthwise(m)
    assert n == 1 and isinstance(split[0], BandedDepthwiseConv2d) and type(m[0]) is nn.Conv2d
    assert [type(x) for x in split[1:]] == [type(x) for x in m[1:]]
    x = torch.randn(1, 8, 20, 20)
    with torch.no_grad():
        assert (split(x) - m(x)).abs().max() < 1e-5


def _kernel_events(pte, x):
    """Names of the XNNPACK operator events of one run, from ETDump."""
    import warnings

    from executorch.devtools import Inspector
    from executorch.extension.pybindings import portable_lib
    m = portable_lib._load_for_executorch(str(pte), enable_etdump=True)
    m.forward([x])
    dump = pte.with_suffix(".etdump")
    m.write_etdump_result_to_file(str(dump))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = Inspector(etdump_path=str(dump)).to_dataframe()
    return [str(e) for e in df[df.event_block_name == "Execute"].event_name]


def test_large_depthwise_runs_on_dwconv_kernels(tmp_path):
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.dw = nn.Conv2d(32, 32, 7, padding=3, groups=32)
            self.pw = nn.Conv2d(32, 32, 1)

        def forward(self, image):
            return self.pw(self.dw(image)).mean((2, 3), keepdim=True)

    torch.manual_seed(0)
    block = Block().eval()
    x = torch.rand(1, 32, 32, 32)
    events = {}
    for rewrite in (False, True):
        r = ExecuTorchBackend().export(block, x, "image", "fp32", tmp_path / f"b{rewrite}.pte", None,
                                       {"rewrite": rewrite})
        got = ExecuTorchBackend().run(r.path, x.numpy())
        with torch.no_grad():
            assert np.abs(got - block(x).numpy().reshape(1, -1)).max() < 1e-5
        events[rewrite] = [e for e in _kernel_events(r.path, x) if e.startswith("Convolution")]
        assert r.info["banded_depthwise_convs"] == (1 if rewrite else 0)
    print("\nwithout banding:", events[False], "\nwith banding:", events[True])
    # XNNPACK's DWConv kernels take at most 25 taps: the 7x7 kernel alone falls back to a grouped IGEMM
    assert any("IGEMM" in e for e in events[False])
    assert not any("IGEMM" in e for e in events[True]) and sum("DWConv" in e for e in events[True]) == 3


def test_a_compute_op_outside_the_delegate_fails_the_export(tmp_path):
    class CumSum(nn.Module):            # XNNPACK has no cumulative sum: it would run on portable kernels
        def forward(self, image):
            return torch.cumsum(image * 2.0, dim=-1).mean((2, 3), keepdim=True)

    with pytest.raises(NotDelegated, match="aten.cumsum"):
        ExecuTorchBackend().export(CumSum().eval(), torch.rand(1, 3, 8, 8), "image", "fp32",
                                   tmp_path / "c.pte", None)
    assert not (tmp_path / "c.pte").exists()


def test_units_of_the_encoders(fused_session):
    m = fused_session("mobileclip_s0")
    img = _units(encoder(m.module, m.spec, "image"))
    txt = _units(encoder(m.module, m.spec, "text"))
    assert img == [f"visual.trunk.stem.{i}" for i in range(3)] + \
        [f"visual.trunk.stages.{i}" for i in range(4)] + [""]
    assert txt == [f"text.transformer.{i}" for i in range(6)] + [""]


def test_int8_text_tower_passes_its_bars(fused_session, probe_reference, tmp_path):
    name = "mobileclip_s0"
    m = fused_session(name)
    images, ids, ref_img, ref_txt = probe_reference(name)
    b = ExecuTorchBackend()
    r = b.export(encoder(m.module, m.spec, "text"), example_input(m.spec, "text"), "text", "int8",
                 tmp_path / "text_int8.pte", m.spec, {"calibration": ids, "other_tower": ref_img})
    q = r.info["int8"]
    print(f"\nint8 text: {q['units_quantized']}/{q['units_total']} units, float32 {q['float32_units']}, "
          f"simulated cos {q['simulated_cosine_min']:.6f}, {q['seconds']}s, size {r.info['size_bytes']:,}")
    assert q["scheme"] == "dynamic" and 1 <= q["units_quantized"] <= q["units_total"] == 7
    assert q["trials"][0]["units"] == 7            # the whole tower was tried first
    figures = measure(ref_txt, b.run(r.path, ids), ref_img)
    print(f"gate: max abs {figures['max_abs']:.3g}, cos min {figures['cosine_min']:.6f}, "
          f"zero-shot {figures['zero_shot_agreement']:.0%}")
    assert check(figures, "int8", "int8 text .pte")["passed"]
    assert figures["max_abs"] > 1e-6                # really quantized: not the float32 program
    d = r.info["delegation"]
    assert d["compute_ops_outside"] == {} and d["partitions"] <= 2
    assert any("quantize" in k or "dynamic" in k for k in d["ops_delegated"]), d["ops_delegated"]
