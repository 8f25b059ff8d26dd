"""Layer taps equal an independent computation (forward hooks on the same random-weight model)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from declip.features.backbones import load_backbone
from declip.features.fusion import fuse
from declip.features.preprocess import make_recipe, to_tensor
from declip.features.taps import forward_layers, layer_info, layer_names, parse_layers
from declip.core.errors import DeclipError


@pytest.fixture(scope="module")
def vit():
    return load_backbone("test-vit-tiny@random-0")


@pytest.fixture(scope="module")
def rn():
    return load_backbone("test-rn-tiny@random-0")


def _hooked(module_list, visual, x):
    outs = {}
    handles = [m.register_forward_hook(lambda _m, _i, o, k=k: outs.__setitem__(k, o)) for k, m in module_list]
    try:
        visual(x)
    finally:
        for h in handles:
            h.remove()
    return outs


def test_vit_taps_equal_block_hooks(vit):
    x = torch.randn(3, 3, 64, 64)
    blocks = list(enumerate(vit.visual.transformer.resblocks))
    ref = _hooked(blocks, vit.visual, x)
    names = layer_names(vit)
    got = forward_layers(vit, x, names)
    grid = layer_info(vit, "layer0").grid
    for k, name in enumerate(names):
        tokens = ref[k]  # (B, 1 + HW, C), batch-first residual stream after block k, no LayerNorm
        feats, cls = got[name]
        expected = tokens[:, 1:].reshape(3, *grid, -1).permute(0, 3, 1, 2)
        torch.testing.assert_close(feats, expected, rtol=0, atol=0)
        torch.testing.assert_close(cls, tokens[:, 0], rtol=0, atol=0)


def test_vit_token_order_is_row_major(vit):
    """Token t sits at row t // W, column t % W (CLIP's patch flattening)."""
    x = torch.randn(1, 3, 64, 64)
    ref = _hooked([(0, vit.visual.transformer.resblocks[0])], vit.visual, x)[0]
    feats, _ = forward_layers(vit, x, ["layer0"])["layer0"]
    w = feats.shape[-1]
    for t in (0, 1, w, w + 3, 15):
        torch.testing.assert_close(feats[0, :, t // w, t % w], ref[0, 1 + t])


def test_deepest_tap_with_early_stop_equals_full_forward(vit):
    x = torch.randn(2, 3, 64, 64)
    early = forward_layers(vit, x, ["layer1"])["layer1"][0]
    full = forward_layers(vit, x, layer_names(vit))["layer1"][0]
    torch.testing.assert_close(early, full, rtol=0, atol=0)


def test_early_stop_runs_no_later_block(vit):
    calls = []
    handle = vit.visual.transformer.resblocks[3].register_forward_hook(lambda *a: calls.append(1))
    try:
        forward_layers(vit, torch.randn(1, 3, 64, 64), ["layer1"])
    finally:
        handle.remove()
    assert calls == []


def test_resnet_taps_equal_stage_hooks(rn):
    x = torch.randn(2, 3, 64, 64)
    stages = [(k, getattr(rn.visual, f"layer{k}")) for k in range(1, 5)]
    ref = _hooked(stages, rn.visual, x)
    got = forward_layers(rn, x, ["layer1", "layer3", "layer4"])
    for k in (1, 3, 4):
        torch.testing.assert_close(got[f"layer{k}"][0], ref[k], rtol=0, atol=0)
        assert got[f"layer{k}"][1] is None
        assert tuple(ref[k].shape[1:]) == (layer_info(rn, f"layer{k}").channels, *layer_info(rn, f"layer{k}").grid)


def test_open_clip_resnet_stop_early_quirk_is_pinned(rn):
    """open_clip 3.3's ModifiedResNet.forward_intermediates slices blocks when stop_early is *False*.

    Our taps do not use it; if this test starts failing, upstream fixed the quirk (no action needed beyond
    updating this note), and our own stage loop keeps the features unchanged either way.
    """
    calls = []
    handle = rn.visual.layer4.register_forward_hook(lambda *a: calls.append(1))
    try:
        rn.visual.forward_intermediates(torch.randn(1, 3, 64, 64), indices=[1], stop_early=False,
                                        intermediates_only=True)
    finally:
        handle.remove()
    assert calls == [], "stop_early=False skipped no blocks: the upstream quirk changed"
    ours = forward_layers(rn, torch.randn(1, 3, 64, 64), ["layer2"])["layer2"][0]
    assert ours.shape[1] == layer_info(rn, "layer2").channels


def test_real_geometries():
    """DeCLIP's shapes: ViT-L-14 layers are 1024×16×16; RN50 stages as declip-method §2.3 (no forward run)."""
    rn50 = load_backbone("RN50@random-0")
    assert [(layer_info(rn50, n).channels, layer_info(rn50, n).grid) for n in layer_names(rn50)] == [
        (256, (56, 56)), (512, (28, 28)), (1024, (14, 14)), (2048, (7, 7))]
    x = torch.randn(1, 3, 224, 224)
    out = forward_layers(rn50, x, ["layer3"])["layer3"][0]
    assert tuple(out.shape) == (1, 1024, 14, 14)


def test_parse_layers(vit, rn):
    assert parse_layers("0-2", vit) == ["layer0", "layer1", "layer2"]
    assert parse_layers("layer3,1", vit) == ["layer1", "layer3"]
    assert parse_layers("all", rn) == ["layer1", "layer2", "layer3", "layer4"]
    with pytest.raises(DeclipError, match="has no layer9"):
        parse_layers("layer9", vit)
    with pytest.raises(DeclipError, match="cannot read layer"):
        parse_layers("last", vit)


def test_fusion_view_shape_and_channel_order():
    vit_feats = torch.randn(2, 8, 16, 16)
    rn_feats = torch.randn(2, 4, 14, 14)
    fused = fuse(vit_feats, rn_feats)
    assert tuple(fused.shape) == (2, 12, 16, 16)
    torch.testing.assert_close(fused[:, :8], vit_feats)
    expected = F.interpolate(rn_feats, size=(16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(fused[:, 8:], expected)


def test_declip_preprocessing_matches_hand_reference():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (90, 130, 3), dtype=np.uint8))
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    recipe = make_recipe("declip", 224, mean, std)
    got = to_tensor(recipe, image)
    # torchvision's Resize((224, 224)) on a PIL image = PIL bilinear (antialiased) squash, no crop
    import torchvision.transforms as T

    ref = T.Compose([T.Resize((224, 224)), T.ToTensor(), T.Normalize(mean, std)])(image)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)
    crop = to_tensor(make_recipe("openclip", 224, mean, std), image)
    ref_crop = T.Compose([T.Resize(224, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(224), T.ToTensor(),
                          T.Normalize(mean, std)])(image)
    assert crop.shape == ref_crop.shape == (3, 224, 224)
    torch.testing.assert_close(crop, ref_crop, rtol=0, atol=1e-5)
    assert not torch.allclose(got, crop)
