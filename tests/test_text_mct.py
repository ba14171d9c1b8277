"""MobileCLIP-S0's text tower against a functional implementation of ARCHITECTURE.md's description.

The functional version reads Apple-layout weights directly (no modules), so a wiring mistake in the
module (branch order, qkv split, layer scale placement, pooling, projection orientation) shows here.
"""
import torch
import torch.nn.functional as F


def _bn(x, sd, p):
    return F.batch_norm(x, sd[p + "running_mean"], sd[p + "running_var"], sd[p + "weight"],
                        sd[p + "bias"], False, 0.0, 1e-5)


def _dw(x, w):  # depthwise (1, 11), no bias, padding (0, 5)
    return F.conv2d(x, w, None, 1, (0, 5), 1, x.shape[1])


def _repmixer_block(x, sd, p):
    x = x.transpose(1, 2).unsqueeze(2)                       # (B, C, 1, L)
    t = p + "token_mixer."
    mixer = _bn(_dw(x, sd[t + "mixer.rbr_conv.0.conv.weight"]), sd, t + "mixer.rbr_conv.0.bn.") \
        + _bn(x, sd, t + "mixer.rbr_skip.")
    x = x + sd[t + "layer_scale"] * (mixer - _bn(x, sd, t + "norm.rbr_skip."))
    c = p + "convffn."
    h = _bn(_dw(x, sd[c + "conv.conv.weight"]), sd, c + "conv.bn.")
    h = F.conv2d(F.gelu(F.conv2d(h, sd[c + "fc1.weight"], sd[c + "fc1.bias"])), sd[c + "fc2.weight"],
                 sd[c + "fc2.bias"])
    x = x + sd[p + "layer_scale"] * h
    return x.squeeze(2).transpose(1, 2)


def _transformer_layer(x, sd, p, heads=8):
    b, n, c = x.shape
    h = F.layer_norm(x, (c,), sd[p + "pre_norm_mha.0.weight"], sd[p + "pre_norm_mha.0.bias"], 1e-5)
    qkv = F.linear(h, sd[p + "pre_norm_mha.1.qkv_proj.weight"], sd[p + "pre_norm_mha.1.qkv_proj.bias"])
    q, k, v = qkv.reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    a = torch.softmax(q @ k.transpose(-1, -2) / (c // heads) ** 0.5, dim=-1)
    o = (a @ v).transpose(1, 2).reshape(b, n, c)
    x = x + F.linear(o, sd[p + "pre_norm_mha.1.out_proj.weight"], sd[p + "pre_norm_mha.1.out_proj.bias"])
    h = F.layer_norm(x, (c,), sd[p + "pre_norm_ffn.0.weight"], sd[p + "pre_norm_ffn.0.bias"], 1e-5)
    h = F.linear(F.gelu(F.linear(h, sd[p + "pre_norm_ffn.1.weight"], sd[p + "pre_norm_ffn.1.bias"])),
                 sd[p + "pre_norm_ffn.4.weight"], sd[p + "pre_norm_ffn.4.bias"])
    return x + h


def functional_s0_text(sd, ids):
    p = "text_encoder."
    x = F.embedding(ids, sd[p + "embedding_layer.weight"])
    x = x + sd[p + "positional_embedding.pos_embed.pos_embed"].reshape(1, 77, -1)
    x = _repmixer_block(x, sd, p + "transformer.0.")
    for i in range(1, 5):
        x = _transformer_layer(x, sd, p + f"transformer.{i}.")
    x = _repmixer_block(x, sd, p + "transformer.5.")
    x = F.layer_norm(x, (x.shape[-1],), sd[p + "final_layer_norm.weight"], sd[p + "final_layer_norm.bias"], 1e-5)
    x = x[torch.arange(len(ids)), ids.argmax(dim=-1)]
    return F.normalize(x @ sd[p + "projection_layer"], dim=-1)


def test_s0_text_tower_matches_the_description(seeded_model):
    m = seeded_model("mobileclip_s0")
    sd = m.state_dict("apple")
    ids = m.tokenize(["a photo of a dog", "", "a diagram of a rocket engine with many parts"])
    with torch.no_grad():
        ref = functional_s0_text(sd, ids.long())
    got = m.encode_text(ids)
    assert (got - ref).abs().max() < 1e-5
    # and the reference is sensitive: dropping a layer scale moves it by far more than that
    sd2 = dict(sd)
    sd2["text_encoder.transformer.0.layer_scale"] = torch.ones_like(sd["text_encoder.transformer.0.layer_scale"])
    with torch.no_grad():
        assert (functional_s0_text(sd2, ids.long()) - ref).abs().max() > 1e-2
