"""Decoders: parameter counts, DeCLIP key layout, output geometry, init, faithful attention, our checkpoint dir."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from declip.decoders import (
    build_decoder, decoder_from_config, list_decoders, load_decoder, needs_final_resize, register_decoder,
    save_decoder, upsample_skips,
)
from declip.core.errors import DeclipError

ALL = ["linear", "attention", "conv-4", "conv-12", "conv-20"]

# name, family, in_channels, grid, layer
GEOMETRIES = {
    "vit-l-14": ("vit", 1024, (16, 16), "layer20"),
    "rn50-layer1": ("resnet", 256, (56, 56), "layer1"),
    "rn50-layer2": ("resnet", 512, (28, 28), "layer2"),
    "rn50-layer3": ("resnet", 1024, (14, 14), "layer3"),
    "rn50-layer4": ("resnet", 2048, (7, 7), "layer4"),
    "fused": ("fused", 2048, (16, 16), "layer20"),
    "vit-b-32": ("vit", 768, (7, 7), "layer8"),
    "tiny": ("vit", 64, (4, 4), "layer1"),
}

# method §3.1 / §3.2 / §3.3 tables, in millions
PARAMS_M = {
    ("conv-4", 1024): 17.41, ("conv-4", 2048): 30.52,
    ("conv-12", 1024): 34.83, ("conv-12", 2048): 47.93,
    ("conv-20", 1024): 52.24, ("conv-20", 2048): 65.35,
    ("attention", 1024): 25.19,
}


def make(name, geometry="vit-l-14", *, meta=False, **kw):
    family, c, grid, layer = GEOMETRIES[geometry]
    kwargs = dict(in_channels=c, grid=grid, family=family, layer=layer) | kw
    if meta:  # shapes and names only: no memory, no init cost
        with torch.device("meta"):
            return build_decoder(name, **kwargs)
    return build_decoder(name, **kwargs)


def n_params(module, trainable_only=False):
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def declip_reference_layers(arch, layer, num_convs, filters):
    """DeCLIP's ``_set_decoder`` conv loop, transcribed from its rules (the arch string decides, not the grid)."""
    mods = []
    for i in range(1, len(filters)):
        mods.append(("Conv2d", filters[i - 1], filters[i]))
        mods += [("BatchNorm2d", filters[i]), ("ReLU",)]
        for _ in range(num_convs // 4 - 1):
            mods += [("Conv2d", filters[i], filters[i]), ("BatchNorm2d", filters[i]), ("ReLU",)]
        skip = (layer == "layer2" and i == 1 or layer == "layer1" and i <= 2) and ("RN50" in arch)
        if not skip:
            mods.append(("Upsample", 2.0))
    if "RN50" in arch:
        mods.append(("Upsample", (256, 256)))
    mods.append(("Conv2d", filters[-1], 1))
    return mods


def describe(module):
    if isinstance(module, nn.Conv2d):
        assert module.kernel_size == (5, 5) and module.padding == (2, 2) and module.bias is not None
        return ("Conv2d", module.in_channels, module.out_channels)
    if isinstance(module, nn.BatchNorm2d):
        return ("BatchNorm2d", module.num_features)
    if isinstance(module, nn.Upsample):
        assert module.mode == "bilinear" and not module.align_corners
        return ("Upsample", module.size if module.size is not None else float(module.scale_factor))
    return (type(module).__name__,)


# ------------------------------------------------------------------------------------------- registry


def test_registry_lists_and_aliases():
    assert list_decoders() == ["attention", "conv-4", "conv-12", "conv-20", "linear"]
    assert list_decoders("conv_*") == list_decoders("conv-*") == ["conv-4", "conv-12", "conv-20"]
    assert make("conv_4", "tiny", width=1 / 16).name == "conv-4"
    with pytest.raises(DeclipError, match="unknown decoder 'conv-8'"):
        make("conv-8", "tiny")
    with pytest.raises(DeclipError, match="unknown input family 'cnn'"):
        build_decoder("linear", in_channels=8, grid=(2, 2), family="cnn", layer="layer1")
    with pytest.raises(ValueError, match="registered twice"):
        register_decoder("linear")(lambda **kw: None)


def test_input_families_are_declips_three_plus_every_feature_family():
    from declip.decoders.registry import DECLIP_INPUT_FAMILIES, input_families

    assert DECLIP_INPUT_FAMILIES == ("vit", "resnet", "fused")  # DeCLIP's ViT, RN50 and ViT+RN50 models
    assert input_families()[:3] == DECLIP_INPUT_FAMILIES and "srm" in input_families()
    assert make("linear", "tiny", family="srm").config["family"] == "srm"


def test_config_rebuilds_the_same_decoder_through_json():
    dec = make("conv-12", "rn50-layer2", width=1 / 16, seed=3)
    config = json.loads(json.dumps(dec.config))
    again = decoder_from_config(config, seed=3)
    assert again.config == dec.config and again.config["grid"] == (28, 28)
    for (k1, v1), (k2, v2) in zip(dec.state_dict().items(), again.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)


# ------------------------------------------------------------------------------------- parameter counts


@pytest.mark.parametrize("name, channels", sorted(PARAMS_M))
def test_parameter_counts_match_method_table(name, channels):
    dec = make(name, "vit-l-14" if channels == 1024 else "fused", meta=True)
    assert round(n_params(dec) / 1e6, 2) == PARAMS_M[name, channels]


@pytest.mark.parametrize("channels", [1024, 2048])
def test_linear_parameter_count(channels):
    assert n_params(make("linear", "vit-l-14" if channels == 1024 else "fused", meta=True)) == channels + 1


def test_attention_trainable_sets():
    faithful = make("attention", meta=True, faithful=True)
    assert round(sum(p.numel() for p in faithful.trainable_parameters()) / 1e6, 2) == 8.40
    assert round(n_params(faithful, trainable_only=True) / 1e6, 2) == 8.40  # the rest is frozen
    assert sorted(faithful.trainable_names()) == sorted(
        f"{b}.mlp.c_fc.{w}" for b in ("att1", "att2") for w in ("weight", "bias")) + ["fc.0.bias", "fc.0.weight"]
    fixed = make("attention", meta=True)
    assert n_params(fixed) == sum(p.numel() for p in fixed.trainable_parameters()) == 25_193_473


@pytest.mark.parametrize("name", ["conv-4", "linear"])
def test_faithful_changes_nothing_for_conv_and_linear(name):
    a, b = make(name, "tiny", width=1 / 16), make(name, "tiny", width=1 / 16, faithful=True)
    assert a.trainable_names() == b.trainable_names() == [n for n, _ in a.named_parameters()]


# --------------------------------------------------------------------------------------- DeCLIP layout


@pytest.mark.parametrize("name, family, final", [
    ("conv-4", "vit", 16), ("conv-4", "fused", 17), ("conv-12", "vit", 40), ("conv-12", "fused", 41),
    ("conv-20", "vit", 64), ("conv-20", "fused", 65),
])
def test_conv_state_dict_indices(name, family, final):
    dec = make(name, "vit-l-14" if family == "vit" else "fused", meta=True)
    n = int(name.split("-")[1]) // 4
    per_stage = 3 * n + 1
    convs = [per_stage * s + 3 * j for s in range(4) for j in range(n)]
    expected = []
    for idx in convs:
        expected += [f"fc.{idx}.weight", f"fc.{idx}.bias"]
        expected += [f"fc.{idx + 1}.{k}" for k in ("weight", "bias", "running_mean", "running_var",
                                                    "num_batches_tracked")]
    expected += [f"fc.{final}.weight", f"fc.{final}.bias"]
    assert list(dec.state_dict()) == expected
    shapes = {k: tuple(v.shape) for k, v in dec.state_dict().items()}
    assert shapes["fc.0.weight"] == (512, 1024 if family == "vit" else 2048, 5, 5)
    assert shapes[f"fc.{final}.weight"] == (1, 64, 5, 5)


def test_conv20_released_shapes():
    shapes = {k: tuple(v.shape) for k, v in make("conv-20", meta=True).state_dict().items()}
    assert all(shapes[f"fc.{i}.weight"] == (512, 512, 5, 5) for i in (3, 6, 9, 12))
    assert shapes["fc.16.weight"] == (256, 512, 5, 5)
    assert all(shapes[f"fc.{i}.weight"] == (256, 256, 5, 5) for i in (19, 22, 25, 28))
    assert shapes["fc.32.weight"] == (128, 256, 5, 5) and shapes["fc.48.weight"] == (64, 128, 5, 5)
    assert all(shapes[f"fc.{i}.weight"] == (64, 64, 5, 5) for i in (51, 54, 57, 60))


@pytest.mark.parametrize("name", ["conv-4", "conv-12", "conv-20"])
@pytest.mark.parametrize("arch, geometry", [
    ("ViT-L/14", "vit-l-14"), ("ViT-L/14,RN50", "fused"), ("RN50", "rn50-layer1"), ("RN50", "rn50-layer2"),
    ("RN50", "rn50-layer3"), ("RN50", "rn50-layer4"),
])
def test_conv_module_order_matches_declip(name, arch, geometry):
    family, c, grid, layer = GEOMETRIES[geometry]
    dec = make(name, geometry, meta=True)
    reference = declip_reference_layers(arch, layer, int(name.split("-")[1]), [c, 512, 256, 128, 64])
    assert [describe(m) for m in dec.fc] == reference


def test_attention_block_keys():
    state = make("attention", meta=True).state_dict()
    block = [
        ("attn.in_proj_weight", (3072, 1024)), ("attn.in_proj_bias", (3072,)),
        ("attn.out_proj.weight", (1024, 1024)), ("attn.out_proj.bias", (1024,)),
        ("ln_1.weight", (1024,)), ("ln_1.bias", (1024,)),
        ("mlp.c_fc.weight", (4096, 1024)), ("mlp.c_fc.bias", (4096,)),
        ("mlp.c_proj.weight", (1024, 4096)), ("mlp.c_proj.bias", (1024,)),
        ("ln_2.weight", (1024,)), ("ln_2.bias", (1024,)),
    ]
    expected = [(f"{b}.{k}", s) for b in ("att1", "att2") for k, s in block] + [
        ("fc.0.weight", (1, 1024)), ("fc.0.bias", (1,))]
    assert [(k, tuple(v.shape)) for k, v in state.items()] == expected
    assert make("attention", meta=True).att1.attn.num_heads == 16



def test_attention_blocks_use_clips_quickgelu():
    """DeCLIP's attention blocks are OpenAI CLIP's, whose MLP activation is QuickGELU, x·σ(1.702x) (open_clip's)."""
    from open_clip.transformer import QuickGELU

    activations = [m for name, m in make("attention", "tiny").named_modules() if name.endswith("mlp.gelu")]
    assert len(activations) == 2
    x = torch.linspace(-6, 6, 241)
    for act in activations:
        torch.testing.assert_close(act(x), QuickGELU()(x))
    assert float(activations[0](torch.tensor(1.0))) == pytest.approx(1 / (1 + 2.718281828459045 ** -1.702))


def _hand_block(block, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """CLIP's residual attention block written out from its definition (Radford et al. 2021, open_clip's
    ResidualAttentionBlock): pre-LayerNorm multi-head attention, then an MLP with x·σ(1.702x) between its layers."""
    T, B, C = x.shape
    heads = block.attn.num_heads

    def ln(v, mod):
        mu = v.mean(-1, keepdim=True)
        var = ((v - mu) ** 2).mean(-1, keepdim=True)
        return (v - mu) / torch.sqrt(var + 1e-5) * mod.weight + mod.bias

    h = ln(x, block.ln_1)
    q, k, v = (h @ block.attn.in_proj_weight.T + block.attn.in_proj_bias).chunk(3, dim=-1)
    split = lambda t: t.reshape(T, B * heads, C // heads).transpose(0, 1)  # noqa: E731
    scores = split(q) @ split(k).transpose(1, 2) / (C // heads) ** 0.5
    if mask is not None:
        scores = scores + mask
    att = (torch.softmax(scores, -1) @ split(v)).transpose(0, 1).reshape(T, B, C)
    x = x + att @ block.attn.out_proj.weight.T + block.attn.out_proj.bias
    u = ln(x, block.ln_2) @ block.mlp.c_fc.weight.T + block.mlp.c_fc.bias
    u = u * (1.0 / (1.0 + torch.exp(-1.702 * u)))
    return x + u @ block.mlp.c_proj.weight.T + block.mlp.c_proj.bias


@pytest.mark.parametrize("masked", [False, True])
def test_attention_block_equals_a_hand_written_clip_block(masked):
    """Each block against the formula, so a changed constant (1.702), norm or mask placement shows."""
    from declip.decoders.attention import causal_mask

    torch.manual_seed(0)
    decoder = make("attention", "tiny")
    with torch.no_grad():
        for p in decoder.parameters():  # LayerNorm at init is the identity: make every weight matter
            p.add_(0.3 * torch.randn_like(p))
    x = 2.0 * torch.randn(9, 2, decoder.att1.ln_1.normalized_shape[0])
    mask = causal_mask(9, x) if masked else None
    for block in (decoder.att1, decoder.att2):
        with torch.no_grad():
            torch.testing.assert_close(block(x, mask), _hand_block(block, x, mask), atol=1e-4, rtol=1e-4)


def test_linear_keys():
    assert [(k, tuple(v.shape)) for k, v in make("linear", meta=True).state_dict().items()] == [
        ("fc.0.weight", (1, 1024)), ("fc.0.bias", (1,))]


# ------------------------------------------------------------------------------------ geometry and output


@pytest.mark.parametrize("grid, skips", [((16, 16), 0), ((14, 14), 0), ((7, 7), 0), ((28, 28), 1), ((56, 56), 2),
                                         ((64, 64), 2), ((4, 4), 0), ((300, 300), 4)])
def test_upsample_skip_rule(grid, skips):
    assert upsample_skips(grid) == skips


@pytest.mark.parametrize("geometry, path", [
    ("vit-l-14", [16, 32, 64, 128, 256]), ("rn50-layer3", [14, 28, 56, 112, 224, 256]),
    ("rn50-layer4", [7, 14, 28, 56, 112, 256]), ("rn50-layer2", [28, 56, 112, 224, 256]),
    ("rn50-layer1", [56, 112, 224, 256]), ("fused", [16, 32, 64, 128, 256, 256]),
    ("vit-b-32", [7, 14, 28, 56, 112, 256]), ("tiny", [4, 8, 16, 32, 64, 256]),
])
def test_spatial_path(geometry, path):
    dec = make("conv-4", geometry, width=1 / 16).eval()
    family, c, grid, _ = GEOMETRIES[geometry]
    sizes = []
    for m in dec.fc:
        if isinstance(m, nn.Upsample):
            m.register_forward_hook(lambda mod, inp, out: sizes.append(out.shape[-1]))
    with torch.no_grad():
        dec(torch.randn(1, c, *grid))
    assert [grid[0]] + sizes == path
    assert needs_final_resize(grid, family) == (len(sizes) == 5 - upsample_skips(grid))


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
@pytest.mark.parametrize("name", ALL)
def test_output_shape(name, geometry):
    family, c, grid, _ = GEOMETRIES[geometry]
    dec = make(name, geometry, width=1 / 16, seed=0).eval()
    feats = torch.randn(2, c, *grid)
    with torch.no_grad():
        out = dec(feats, torch.randn(2, c)) if name == "attention" else dec(feats)
    assert out.shape == (2, 1, 256, 256) and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_wrong_input_geometry_is_a_clear_error():
    dec = make("conv-4", "rn50-layer3", width=1 / 16)
    with pytest.raises(DeclipError, match=r"\[B, 1024, 14, 14\].*layer3"):
        dec(torch.randn(1, 1024, 16, 16))


def test_linear_matches_declip_token_loop():
    dec = make("linear", "tiny", seed=0).eval()
    feats, cls = torch.randn(2, 64, 4, 4), torch.randn(2, 64)
    seq = torch.cat([cls[None], feats.flatten(2).permute(2, 0, 1)])  # DeCLIP's [257, B, C] layout
    scores = torch.cat([dec.fc(part) for part in seq[1:]], dim=1).view(2, 4, 4)
    ref = F.interpolate(scores.unsqueeze(1), size=(256, 256), mode="bicubic")
    with torch.no_grad():
        torch.testing.assert_close(dec(feats, cls), ref, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------- init


def test_declip_init_statistics():
    dec = make("conv-20", seed=0)
    bn = torch.cat([m.weight.flatten() for m in dec.fc if isinstance(m, nn.BatchNorm2d)])
    conv = torch.cat([m.weight.flatten() for m in dec.fc if isinstance(m, nn.Conv2d)])
    assert abs(bn.std().item() - 0.02) < 0.001 and abs(bn.mean().item()) < 0.001  # gammas near 0, not 1
    assert abs(conv.std().item() - 0.02) < 1e-4 and abs(conv.mean().item()) < 1e-4
    assert all(torch.all(m.bias == 0) for m in dec.fc if isinstance(m, nn.BatchNorm2d))
    assert all(m.bias.abs().max() > 0 for m in dec.fc if isinstance(m, nn.Conv2d))  # PyTorch default, not 0


def test_attention_blocks_keep_pytorch_init():
    dec = make("attention", "tiny", seed=0)
    assert torch.all(dec.att1.ln_1.weight == 1) and torch.all(dec.att1.attn.in_proj_bias == 0)
    assert abs(dec.fc[0].weight.std().item() - 0.02) < 0.01


def test_seed_is_deterministic_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a, b = make("attention", "tiny", seed=7), make("attention", "tiny", seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    c = make("attention", "tiny", seed=8)
    assert not torch.equal(a.att1.attn.in_proj_weight, c.att1.attn.in_proj_weight)


# ------------------------------------------------------------------------------------- causal attention


def _block_outputs(dec, feats, cls):
    seen = []
    handle = dec.att2.register_forward_hook(lambda mod, inp, out: seen.append(out))
    with torch.no_grad():
        dec(feats, cls)
    handle.remove()
    return seen[0]


@pytest.mark.parametrize("with_cls", [True, False])
def test_causal_mask_only_in_faithful_mode(with_cls):
    torch.manual_seed(0)
    feats, cls = torch.randn(1, 64, 4, 4), (torch.randn(1, 64) if with_cls else None)
    later = feats.clone()
    later.view(1, 64, 16)[:, :, 6:] += torch.randn(1, 64, 10)  # perturb patch tokens 6..15
    keep = 7 if with_cls else 6  # sequence positions before the first perturbed token
    faithful = make("attention", "tiny", seed=0, faithful=True).eval()
    a, b = _block_outputs(faithful, feats, cls), _block_outputs(faithful, later, cls)
    assert a.shape[0] == 16 + with_cls
    torch.testing.assert_close(a[:keep], b[:keep], rtol=0, atol=1e-6)
    assert not torch.allclose(a[keep:], b[keep:])
    fixed = make("attention", "tiny", seed=0).eval()
    a, b = _block_outputs(fixed, feats, cls), _block_outputs(fixed, later, cls)
    assert not torch.allclose(a[:keep], b[:keep])  # full attention: earlier tokens see later ones


def test_cls_token_matters_only_for_attention():
    feats, cls = torch.randn(1, 64, 4, 4), torch.randn(1, 64)
    with torch.no_grad():
        att = make("attention", "tiny", seed=0).eval()
        assert not torch.allclose(att(feats, cls), att(feats))
        conv = make("conv-4", "tiny", width=1 / 16, seed=0).eval()
        assert torch.equal(conv(feats, cls), conv(feats))


def test_trainable_parameters_freeze_the_rest():
    dec = make("attention", "tiny", faithful=True)
    params = dec.trainable_parameters()
    assert all(p.requires_grad for p in params)
    assert not dec.att1.attn.in_proj_weight.requires_grad and dec.att1.mlp.c_fc.weight.requires_grad
    feats = torch.randn(2, 64, 4, 4)
    dec(feats, torch.randn(2, 64)).mean().backward()
    assert dec.att1.attn.in_proj_weight.grad is None and dec.att2.mlp.c_fc.weight.grad is not None


# ---------------------------------------------------------------------------------- our checkpoint dir


def test_save_and_load_decoder_directory(tmp_path):
    dec = make("conv-4", "rn50-layer2", width=1 / 16, seed=1).eval()
    save_decoder(dec, tmp_path / "ck", {"feature_layer": "layer2", "epoch": 3})
    loaded, meta = load_decoder(tmp_path / "ck")
    assert meta["epoch"] == 3 and meta["grid"] == [28, 28] and meta["name"] == "conv-4"
    assert loaded.config == dec.config and not loaded.training
    feats = torch.randn(1, 512, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(feats), dec(feats))
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["config.json", "decoder.pt"]  # no temp files


def test_load_decoder_errors(tmp_path):
    with pytest.raises(DeclipError, match="decoder.pt not found"):
        load_decoder(tmp_path)
    with pytest.raises(ValueError, match="overwrite"):
        save_decoder(make("linear", "tiny"), tmp_path / "x", {"name": "conv-4"})
