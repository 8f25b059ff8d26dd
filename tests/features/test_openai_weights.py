"""OpenAI-trained weights run with QuickGELU: pretrained tags (offline, from a Hugging Face cache), OpenAI's
TorchScript archives, ``-quickgelu`` architecture names for plain state dicts, and the activation in the store."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from declip.core.errors import DeclipError
from declip.core.keys import BackboneKey
from declip.features.backbones import load_backbone, state_checksum
from declip.features.open_clip import activation_of
from declip.features.taps import forward_layers, layer_names


def _has_gelu(module: nn.Module) -> bool:
    return any(isinstance(m, nn.GELU) for m in module.modules())


# --- an independent ViT forward: residual blocks written out by hand ----------------------------------------


def _layer_norm(x, ln):
    return F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)


def _attention(x, mha):
    b, n, c = x.shape
    h = mha.num_heads
    q, k, v = (x @ mha.in_proj_weight.T + mha.in_proj_bias).split(c, dim=-1)
    q, k, v = (t.reshape(b, n, h, c // h).transpose(1, 2) for t in (q, k, v))
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(c // h), dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(b, n, c)
    return out @ mha.out_proj.weight.T + mha.out_proj.bias


def reference_residual_stream(visual, images, act):
    """Residual stream (B, 1 + HW, C) after every block, computed from the weights without open_clip's forward."""
    x = F.conv2d(images, visual.conv1.weight, stride=visual.conv1.stride)
    x = x.flatten(2).transpose(1, 2)
    cls = visual.class_embedding.expand(x.shape[0], 1, -1)
    x = _layer_norm(torch.cat([cls, x], dim=1) + visual.positional_embedding, visual.ln_pre)
    outs = []
    for block in visual.transformer.resblocks:
        x = x + _attention(_layer_norm(x, block.ln_1), block.attn)
        hidden = _layer_norm(x, block.ln_2) @ block.mlp.c_fc.weight.T + block.mlp.c_fc.bias
        x = x + act(hidden) @ block.mlp.c_proj.weight.T + block.mlp.c_proj.bias
        outs.append(x)
    return outs


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


def _assert_taps_equal(backbone, images, act):
    got = forward_layers(backbone, images, layer_names(backbone))
    for k, tokens in enumerate(reference_residual_stream(backbone.visual, images, act)):
        feats, cls = got[f"layer{k}"]
        grid = feats.shape[-2:]
        torch.testing.assert_close(feats, tokens[:, 1:].reshape(len(images), *grid, -1).permute(0, 3, 1, 2),
                                   rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(cls, tokens[:, 0], rtol=1e-4, atol=1e-5)


def test_quickgelu_arch_name_builds_quickgelu_on_the_same_weights():
    plain, quick = load_backbone("test-vit-tiny@random-0"), load_backbone("test-vit-tiny-quickgelu@random-0")
    assert plain.weights_checksum == quick.weights_checksum  # the activation has no weights: shared random init
    assert (plain.activation, quick.activation) == ("gelu", "quick_gelu")
    assert _has_gelu(plain.visual) and not _has_gelu(quick.visual)
    images = torch.randn(2, 3, 64, 64)
    _assert_taps_equal(quick, images, quick_gelu)
    _assert_taps_equal(plain, images, F.gelu)
    a = forward_layers(quick, images, ["layer3"])["layer3"][0]
    b = forward_layers(plain, images, ["layer3"])["layer3"][0]
    assert (a - b).abs().max() > 1e-3  # the two activations give different features from the same weights


def test_resnet_activation_is_relu():
    assert load_backbone("test-rn-tiny@random-0").activation == "relu"


# --- the ``openai`` tag, offline, from a Hugging Face cache filled with random weights ----------------------


@pytest.fixture()
def hf_cache_with_random_openai_vit_b_32(tmp_path, monkeypatch):
    """The cache layout hf_hub_download reads offline: models--ORG--NAME/{refs/main, snapshots/REV/FILE}."""
    import huggingface_hub.constants as hf_constants
    import open_clip
    from safetensors.torch import save_file

    repo_id = open_clip.get_pretrained_cfg("ViT-B-32", "openai")["hf_hub"].rstrip("/")
    with torch.device("meta"):
        model = open_clip.model.CLIP(**open_clip.get_model_config("ViT-B-32"))
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    pool = torch.randn(1 << 20, generator=torch.Generator().manual_seed(7)).mul_(0.02).half()
    tensors = {}
    for i, (name, shape) in enumerate(sorted(shapes.items())):
        n = math.prod(shape)
        tensors[name] = pool.roll(i * 7919)[: min(n, pool.numel())].repeat(-(-n // pool.numel()))[:n].reshape(shape)
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = tmp_path / "hub" / f"models--{repo_id.replace('/', '--')}"
    (repo_dir / "snapshots" / revision).mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(revision)
    save_file(tensors, str(repo_dir / "snapshots" / revision / "open_clip_model.safetensors"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tensors


def test_openai_tag_builds_quickgelu_offline_from_the_hf_cache(hf_cache_with_random_openai_vit_b_32):
    tensors = hf_cache_with_random_openai_vit_b_32
    backbone = load_backbone("ViT-B-32@openai")
    assert backbone.activation == "quick_gelu" and not _has_gelu(backbone.visual)
    torch.testing.assert_close(backbone.visual.conv1.weight, tensors["visual.conv1.weight"].float(), rtol=0, atol=0)


def test_declip_clip_names_resolve_to_the_openai_tag():
    assert BackboneKey.parse("CLIP:ViT-L/14") == BackboneKey.parse("ViT-L-14@openai")
    assert BackboneKey.parse("CLIP:RN50").weights == "openai"


# --- OpenAI's TorchScript archive --------------------------------------------------------------------------


def save_openai_style_archive(arch: str, path, seed: int = 0) -> nn.Module:
    """A TorchScript archive like OpenAI's ``ViT-*.pt``: the whole CLIP's weights (fp16 values) under OpenAI's names."""
    import open_clip

    from declip.features.open_clip import register_local_configs

    register_local_configs()
    torch.manual_seed(seed)
    model = open_clip.create_model(arch, pretrained=None, force_quick_gelu=True)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())  # OpenAI ships fp16 values; the loader casts to fp16 and back

    class Archive(nn.Module):
        def __init__(self, clip: nn.Module) -> None:
            super().__init__()
            for name, child in clip.named_children():
                setattr(self, name, child)
            for name, param in clip.named_parameters(recurse=False):
                self.register_parameter(name, param)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.logit_scale

    torch.jit.trace(Archive(model), torch.ones(1)).save(str(path))
    return model


def test_torchscript_archive_loads_with_quickgelu(tmp_path):
    path = tmp_path / "ViT-tiny.pt"
    model = save_openai_style_archive("demo-vit-small", path)
    backbone = load_backbone(f"demo-vit-small@{path}")
    assert backbone.key.weights.startswith("file-")
    assert backbone.activation == "quick_gelu" and not _has_gelu(backbone.visual)
    assert backbone.weights_checksum == state_checksum(model.visual.eval())
    images = torch.randn(1, 3, 224, 224)
    _assert_taps_equal(backbone, images, quick_gelu)


def test_torchscript_archive_of_another_architecture_is_refused(tmp_path):
    path = tmp_path / "ViT-tiny.pt"
    save_openai_style_archive("demo-vit-small", path)
    with pytest.raises(DeclipError, match="different architecture"):
        load_backbone(f"test-vit-tiny@{path}")


def test_plain_state_dict_states_its_activation(tmp_path):
    import open_clip

    torch.manual_seed(3)
    model = open_clip.create_model("test-vit-tiny", pretrained=None)
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    assert load_backbone(f"test-vit-tiny@{path}").activation == "gelu"
    quick = load_backbone(f"test-vit-tiny-quickgelu@{path}")
    assert quick.activation == "quick_gelu" and quick.weights_checksum == state_checksum(model.visual.eval())
    assert activation_of(quick.visual) == "quick_gelu"


# --- the activation is part of the cached features' identity -----------------------------------------------


def test_store_refuses_features_made_with_another_activation(tiny_manifest, tmp_path):
    from declip.pipeline.extract.extraction import ExtractConfig, run_extraction

    cfg = ExtractConfig(manifest=str(tiny_manifest), store=str(tmp_path / "s.zarr"), backbone="test-vit-tiny@random-0",
                        layers="layer0", batch_size=8, progress=False)
    gelu = load_backbone(cfg.backbone)
    run_extraction(cfg, backbone=gelu)
    relabelled = load_backbone(cfg.backbone)
    relabelled.activation = "quick_gelu"  # same key and weights, other activation: what an old ViT-L-14@openai cache is
    with pytest.raises(DeclipError, match="activation: stored 'gelu' vs requested 'quick_gelu'"):
        run_extraction(cfg, backbone=relabelled)

