"""``reparameterize(m)``: fold every train-time branch into inference blocks, verified fold by fold.

Passes, in order (each pass finds its candidates in the current module tree):

1. timm's own ``reparameterize()`` for MobileOneBlock, RepMixer, ReparamLargeKernelConv and RepCPE
   (image towers) — delegated, not re-implemented;
2. our rule for the S0 text tower's RepMixer (depthwise 1x11): mixer conv-BN + identity BN − norm BN,
   scaled by the layer scale, plus the identity, as one depthwise conv;
3. every conv followed by a BatchNorm (ConvMlp's depthwise conv, the S0 text ConvFFN, ViT-B's stem):
   BN folded into the conv; then the generic form of the same rule: any module whose traced forward
   feeds a child conv's output only into a child BN (ModifiedResNet stems, bottlenecks, downsamples);
4. a BatchNorm that *precedes* a linear (FastViT attention block: BN → qkv): folded into the qkv;
5. layer scales folded into the conv/linear that produces what they scale (RepMixerBlock → mlp.fc2,
   attention block → attention proj and mlp.fc2, S0 text block → convffn.fc2).

Every fold is checked: the module is run before and after on the activation it sees on the probe
inputs and on a random input of the same shape and scale; an error above tolerance raises
:class:`FoldError` naming the module. Then the whole model is compared on the probe set (normalized
embeddings, max abs error ≤ 1e-5). Running it on a fused model finds nothing to fold and changes nothing.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import torch
from torch import nn

from . import folds
from clipdeploy.models.errors import ClipDeployError

UNIT_RTOL = 1e-5        # per fold: max abs error <= UNIT_ATOL + UNIT_RTOL * max |reference|
UNIT_ATOL = 1e-6
MODEL_TOL = 1e-5        # whole model: normalized-embedding max abs error


class FoldError(ClipDeployError, RuntimeError):
    """A fold changed what its module computes (beyond fp32 rounding); the CLIs end with its one line
    and exit 1."""
    exit_code = 1

    def __init__(self, module_name: str, kind: str, max_abs: float, rel: float, tol: float):
        super().__init__(f"fold '{kind}' of module '{module_name}' changed its output: max abs error "
                         f"{max_abs:.3g} (relative {rel:.3g}) > tolerance {tol:.3g}")
        self.module_name, self.kind, self.max_abs, self.rel = module_name, kind, max_abs, rel


@dataclass
class FoldRecord:
    module: str
    kind: str
    max_abs: float
    rel: float


def _timm():
    from timm.models import fastvit
    return fastvit


def _mct():
    from clipdeploy.models import text_mct
    return text_mct


# ---------------------------------------------------------------------------------------------
# rules: (kind, match(module) -> bool, apply(model, name, module) -> None)


def _parent(model: nn.Module, name: str):
    if "." in name:
        p, attr = name.rsplit(".", 1)
        return model.get_submodule(p), attr
    return model, name


def _replace(model, name, new):
    parent, attr = _parent(model, name)
    setattr(parent, attr, new)


def _is_bn(m):
    return isinstance(m, nn.modules.batchnorm._BatchNorm)


def _timm_train_form(m) -> bool:
    fv = _timm()
    types = (fv.MobileOneBlock, fv.RepMixer, fv.ReparamLargeKernelConv, fv.RepConditionalPosEnc)
    return isinstance(m, types) and getattr(m, "reparam_conv", None) is None


def _apply_timm(model, name, m):
    m.reparameterize()


def _is_text_repmixer(m) -> bool:
    return isinstance(m, _mct().RepMixer)


def _apply_text_repmixer(model, name, m):
    conv = m.mixer.rbr_conv[0].conv
    c, k = conv.out_channels, conv.kernel_size
    w = torch.zeros(c, 1, *k, dtype=torch.float64)
    b = torch.zeros(c, dtype=torch.float64)
    for branch in m.mixer.rbr_conv:
        bw, bb = folds.fuse_conv_bn(branch.conv, branch.bn)
        w, b = w + bw, b + bb
    sw, sb = folds.fuse_identity_bn(m.mixer.rbr_skip, c, c, k)
    nw, nb = folds.fuse_identity_bn(m.norm.rbr_skip, c, c, k)
    ls = m.layer_scale.double().reshape(-1)
    w = folds.identity_kernel(c, c, k) + ls.reshape(-1, 1, 1, 1) * (w + sw - nw)
    b = ls * (b + sb - nb)
    _replace(model, name, folds.new_conv(conv, w, b))


def _is_conv_bn(m) -> bool:
    from timm.layers import ConvNormAct
    if isinstance(m, ConvNormAct):
        return _is_bn(m.bn)
    return isinstance(m, _mct().ConvBN)


def _apply_conv_bn(model, name, m):
    w, b = folds.fuse_conv_bn(m.conv, m.bn)
    conv = folds.new_conv(m.conv, w, b)
    if isinstance(m, _mct().ConvBN):
        _replace(model, name, conv)
        return
    bn = m.bn
    m.conv = conv
    rest = [mod for mod in (getattr(bn, "drop", None), getattr(bn, "act", None))
            if mod is not None and not isinstance(mod, nn.Identity)]
    m.bn = nn.Sequential(*rest) if rest else nn.Identity()


class _RootTracer(torch.fx.Tracer):
    """Traces a module's own forward only: every submodule call stays one ``call_module`` node."""

    def is_leaf_module(self, m, qualname) -> bool:
        return True


def _conv_bn_pairs(m) -> list:
    """[(conv child, BN child)] of ``m`` where the BN reads the conv's output and nothing else does —
    the generic rule for plain conv -> BN code (OpenAI/TinyCLIP ModifiedResNet stems, bottlenecks and
    downsample Sequentials), found from ``m``'s traced forward, not from attribute names."""
    kids = dict(m.named_children())
    if not (any(isinstance(c, nn.Conv2d) for c in kids.values()) and any(_is_bn(c) for c in kids.values())):
        return []
    try:
        graph = _RootTracer().trace(m)
    except Exception:  # a forward FX cannot trace: no generic fold for this module
        return []
    pairs = []
    for node in graph.nodes:
        if node.op == "call_module" and _is_bn(kids.get(node.target)) and node.args:
            src = node.args[0]
            if (isinstance(src, torch.fx.Node) and src.op == "call_module" and len(src.users) == 1
                    and isinstance(kids.get(src.target), nn.Conv2d)):
                pairs.append((src.target, node.target))
    return pairs


def _apply_conv_bn_pairs(model, name, m):
    for conv_name, bn_name in _conv_bn_pairs(m):
        conv, bn = getattr(m, conv_name), getattr(m, bn_name)
        setattr(m, conv_name, folds.new_conv(conv, *folds.fuse_conv_bn(conv, bn)))
        setattr(m, bn_name, nn.Identity())


def _is_bn_before_linear(m) -> bool:
    return isinstance(m, _timm().AttentionBlock) and _is_bn(m.norm)


def _apply_bn_before_linear(model, name, m):
    scale, shift = folds.bn_scale_shift(m.norm)
    qkv = m.token_mixer.qkv
    m.token_mixer.qkv = folds.new_linear(qkv, *folds.fold_input_affine_into_linear(qkv, scale, shift))
    m.norm = nn.Identity()


def _layer_scale_targets(m):
    """[(layer-scale attribute, the conv/linear producing what it scales)] still to fold in ``m``."""
    fv = _timm()
    out = []
    if isinstance(m, fv.RepMixerBlock) and isinstance(m.layer_scale, fv.LayerScale2d):
        out.append(("layer_scale", m.mlp.fc2))
    if isinstance(m, fv.AttentionBlock):
        if isinstance(m.layer_scale_1, fv.LayerScale2d):
            out.append(("layer_scale_1", m.token_mixer.proj))
        if isinstance(m.layer_scale_2, fv.LayerScale2d):
            out.append(("layer_scale_2", m.mlp.fc2))
    if isinstance(m, _mct().RepMixerBlock) and m.layer_scale is not None:
        out.append(("layer_scale", m.convffn.fc2))
    return out


def _apply_layer_scale(model, name, m):
    for attr, layer in _layer_scale_targets(m):
        ls = getattr(m, attr)
        gamma = ls.gamma if hasattr(ls, "gamma") else ls
        folds.set_weights(layer, *folds.scale_output_channels(layer.weight, layer.bias, gamma.detach()))
        if isinstance(ls, nn.Parameter):
            delattr(m, attr)
            m.register_parameter(attr, None)
        else:
            setattr(m, attr, nn.Identity())


@dataclass
class Rule:
    kind: Callable  # module -> kind label
    match: Callable
    apply: Callable
    nested: bool = False  # True: folds only a module's direct children, so nested matches all apply
    # [(child that computes, child folded into it)] of a module: the fold is verified on each such pair
    # alone (its own captured input), not through the whole module, whose depth would amplify the
    # fold's fp32 rounding (a ResNet stem folded and checked through the entire tower)
    parts: Optional[Callable] = None


RULES = [
    Rule(lambda m: type(m).__name__, _timm_train_form, _apply_timm),
    Rule(lambda m: "RepMixer (text 1x11)", _is_text_repmixer, _apply_text_repmixer),
    Rule(lambda m: "conv-BN", _is_conv_bn, _apply_conv_bn),
    Rule(lambda m: "conv-BN", lambda m: bool(_conv_bn_pairs(m)), _apply_conv_bn_pairs, nested=True,
         parts=_conv_bn_pairs),
    Rule(lambda m: "BN->qkv", _is_bn_before_linear, _apply_bn_before_linear),
    Rule(lambda m: "layer scale", lambda m: bool(_layer_scale_targets(m)), _apply_layer_scale),
]


def train_time_modules(module: nn.Module) -> list:
    """Names of modules still in train-time form (anything a rule would fold)."""
    return [n for n, m in module.named_modules() if any(r.match(m) for r in RULES)]


def batchnorm_modules(module: nn.Module) -> list:
    return [n for n, m in module.named_modules() if _is_bn(m)]


# ---------------------------------------------------------------------------------------------
# the engine


def _top_level(model, match) -> list:
    names = []
    for n, m in model.named_modules():
        if match(m) and not any(n.startswith(p + ".") for p in names):
            names.append(n)
    return names


def _sub(name: str, child: str) -> str:
    return f"{name}.{child}" if name else child


def _probe_forward(model: nn.Module, spec, images, tokens):
    with torch.no_grad():
        model.encode_image(images)
        model.encode_text(tokens)


def _capture_inputs(model, names, spec, images, tokens) -> dict:
    seen, handles = {}, []
    for n in names:
        def hook(mod, args, n=n):
            if n not in seen and args and isinstance(args[0], torch.Tensor):
                seen[n] = args[0].detach().clone()
        handles.append(model.get_submodule(n).register_forward_pre_hook(hook))
    try:
        _probe_forward(model, spec, images, tokens)
    finally:
        for h in handles:
            h.remove()
    return seen


def _compare(ref_mod, new_mod, x) -> tuple:
    g = torch.Generator().manual_seed(0)
    rnd = torch.randn(x.shape, generator=g, dtype=x.dtype) * x.float().std() + x.float().mean()
    worst_abs, worst_rel = 0.0, 0.0
    with torch.no_grad():
        for inp in (x, rnd):
            a, b = ref_mod(inp), new_mod(inp)
            err = float((a - b).abs().max())
            scale = float(a.abs().max())
            worst_abs = max(worst_abs, err)
            worst_rel = max(worst_rel, err / max(scale, 1e-12))
            if err > UNIT_ATOL + UNIT_RTOL * scale:
                return err, err / max(scale, 1e-12), False
    return worst_abs, worst_rel, True


def fold_module_tree(model: nn.Module, spec=None, verify: bool = True, images=None, tokens=None):
    """Apply every rule to ``model`` in place; returns [FoldRecord]. Verifies each fold if asked."""
    records: List[FoldRecord] = []
    model.eval()
    for rule in RULES:
        names = ([n for n, m in model.named_modules() if rule.match(m)] if rule.nested
                 else _top_level(model, rule.match))
        if not names:
            continue
        parts = {n: rule.parts(model.get_submodule(n)) for n in names} if rule.parts and verify else {}
        where = [_sub(n, a) for n in names for a, _ in parts.get(n, ())] if parts else names
        inputs = _capture_inputs(model, where, spec, images, tokens) if verify else {}
        for n in names:
            m = model.get_submodule(n)
            kind = rule.kind(m)
            if parts:
                refs = [(a, nn.Sequential(copy.deepcopy(getattr(m, a)), copy.deepcopy(getattr(m, b))))
                        for a, b in parts[n]]
                rule.apply(model, n, m)
                worst = (0.0, 0.0)
                for a, ref in refs:
                    if _sub(n, a) not in inputs:
                        raise FoldError(_sub(n, a), kind, float("nan"), float("nan"), 0.0)
                    err, rel, ok = _compare(ref, getattr(m, a), inputs[_sub(n, a)])
                    if not ok:
                        raise FoldError(_sub(n, a), kind, err, rel, UNIT_ATOL + UNIT_RTOL)
                    worst = max(worst, (err, rel))
                records.append(FoldRecord(n, kind, *worst))
                continue
            ref = copy.deepcopy(m) if verify else None
            rule.apply(model, n, m)
            if not verify:
                records.append(FoldRecord(n, kind, float("nan"), float("nan")))
                continue
            if n not in inputs:
                raise FoldError(n, kind, float("nan"), float("nan"), 0.0)
            err, rel, ok = _compare(ref, model.get_submodule(n), inputs[n])
            if not ok:
                raise FoldError(n, kind, err, rel, UNIT_ATOL + UNIT_RTOL)
            records.append(FoldRecord(n, kind, err, rel))
    return records


def to_inference_form(module: nn.Module) -> nn.Module:
    """The structural transformation alone (no verification): for building a fused model to load
    a fused checkpoint into. Mutates and returns ``module``."""
    fold_module_tree(module, verify=False)
    return module


def not_folded(module: nn.Module) -> list:
    """What is left in train-time form or as a BatchNorm, each with the reason it was not folded."""
    out = []
    for n in batchnorm_modules(module):
        out.append({"module": n, "type": "BatchNorm", "reason": "no adjacent conv/linear to fold into"})
    for n in train_time_modules(module):
        out.append({"module": n, "type": type(module.get_submodule(n)).__name__,
                    "reason": "no fold rule applies to this configuration"})
    return out
