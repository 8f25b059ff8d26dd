"""Import of DeCLIP's released checkpoint layout (method §8), export back to it, and `declip import-checkpoint`."""
import argparse
import hashlib
import json
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

from declip.decoders import build_decoder, load_declip_checkpoint, load_decoder, save_declip_checkpoint
from declip.core.errors import DeclipError

from tests.fixtures import REPO  # noqa: E402

VIT_BACKBONE = {  # a few stand-ins for the 1.7 GB of CLIP weights a ViT-only checkpoint carries
    "positional_embedding": torch.zeros(77, 8), "visual.class_embedding": torch.zeros(8),
    "visual.conv1.weight": torch.zeros(8, 3, 14, 14), "visual.transformer.resblocks.20.ln_1.weight": torch.ones(8),
    "transformer.resblocks.0.mlp.c_fc.weight": torch.zeros(32, 8),
}
RN50_BACKBONE = {"visual.conv1.weight": torch.zeros(4, 3, 3, 3), "visual.layer1.0.bn1.running_mean": torch.zeros(4)}


def train_a_little(dec, feats, cls=None):
    """Move BN running stats and weights away from init so the comparison covers every stored tensor."""
    dec.train()
    opt = torch.optim.SGD(dec.trainable_parameters(), lr=0.1)
    dec(feats, cls).mean().backward()
    opt.step()
    return dec.eval()


def write_declip(tmp_path, dec, layer, backbone=None, fname="ckpt.pth"):
    path = tmp_path / fname
    save_declip_checkpoint(dec, path, feature_layer=layer, total_steps=1234, include_backbone_state=backbone)
    return path


def assert_same_outputs(a, b, feats, cls=None):
    with torch.no_grad():
        assert torch.equal(a(feats, cls), b(feats, cls))


@pytest.mark.parametrize("name, family, c, grid, layer, backbone, width", [
    ("conv-4", "vit", 1024, (16, 16), "layer20", VIT_BACKBONE, 1.0),
    ("conv-20", "vit", 1024, (16, 16), "layer20", VIT_BACKBONE, 1 / 16),
    ("conv-20", "fused", 2048, (16, 16), "layer20", None, 1 / 16),
    ("conv-12", "resnet", 512, (28, 28), "layer2", RN50_BACKBONE, 1 / 16),
    ("conv-4", "resnet", 2048, (7, 7), "layer4", RN50_BACKBONE, 1 / 16),
    ("linear", "vit", 1024, (16, 16), "layer20", VIT_BACKBONE, 1.0),
    ("attention", "vit", 1024, (16, 16), "layer20", VIT_BACKBONE, 1.0),
])
def test_round_trip_is_bit_identical(tmp_path, name, family, c, grid, layer, backbone, width):
    torch.manual_seed(0)
    faithful = name == "attention"  # DeCLIP-trained attention decoders run with its causal mask
    dec = build_decoder(name, in_channels=c, grid=grid, family=family, layer=layer, width=width, faithful=faithful)
    feats, cls = torch.randn(1, c, *grid), torch.randn(1, c)
    train_a_little(dec, feats, cls)
    path = write_declip(tmp_path, dec, layer, backbone)

    loaded, info = load_declip_checkpoint(path)
    assert not loaded.training and loaded.config == dec.config
    assert info == {
        "feature_layer": layer, "decoder_type": name, "family": family, "in_channels": c, "grid": grid,
        "total_steps": 1234, "ignored_keys": len(backbone or {}),
        "num_params": sum(p.numel() for p in dec.parameters()),
        "embedded_family": family if backbone else None,  # what the embedded CLIP weights say
    }
    for (k1, v1), (k2, v2) in zip(dec.state_dict().items(), loaded.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    assert_same_outputs(dec, loaded, feats, cls)


def test_written_file_has_declip_layout(tmp_path):
    dec = build_decoder("attention", in_channels=64, grid=(4, 4), family="vit", layer="layer20")
    ckpt = torch.load(write_declip(tmp_path, dec, "layer20", VIT_BACKBONE), weights_only=True)
    assert set(ckpt) == {"model", "optimizer", "total_steps", "feature_layer", "decoder_type"}
    keys = list(ckpt["model"])
    assert keys[:len(VIT_BACKBONE)] == [f"model.{k}" for k in VIT_BACKBONE]  # backbone first, as DeCLIP registers it
    assert keys[len(VIT_BACKBONE)] == "att1.attn.in_proj_weight" and keys[-1] == "fc.0.bias"
    assert ckpt["decoder_type"] == "attention" and ckpt["feature_layer"] == "layer20"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pth"]  # atomic write left no temp file


def test_full_size_fused_conv20_keys_are_inferred_without_backbone(tmp_path):
    """Released ViT+RN50 files hold only fc.*; the extra identity Upsample moves the final conv to fc.65."""
    with torch.device("meta"):
        meta = build_decoder("conv-20", in_channels=2048, grid=(16, 16), family="fused", layer="layer20")
    state = OrderedDict((k, torch.zeros(v.shape, dtype=v.dtype)) for k, v in meta.state_dict().items())
    assert "fc.65.weight" in state and "fc.64.weight" not in state
    path = tmp_path / "ViT_layer20+RN50_layer3_conv-20_lama.pth"
    torch.save({"model": state, "optimizer": {}, "total_steps": 5, "feature_layer": "layer20",
                "decoder_type": "conv-20"}, path)
    dec, info = load_declip_checkpoint(path)
    assert (info["family"], info["in_channels"], info["grid"]) == ("fused", 2048, (16, 16))
    assert round(info["num_params"] / 1e6, 2) == 65.35


def test_vit_checkpoint_without_backbone_keys_is_vit(tmp_path):
    dec = build_decoder("conv-4", in_channels=1024, grid=(16, 16), family="vit", layer="layer20", width=1 / 16)
    assert load_declip_checkpoint(write_declip(tmp_path, dec, "layer20"))[1]["family"] == "vit"


def test_non_faithful_attention_reimports_with_faithful_false(tmp_path):
    dec = build_decoder("attention", in_channels=64, grid=(4, 4), family="vit", layer="layer20", seed=0).eval()
    path = write_declip(tmp_path, dec, "layer20")
    loaded, _ = load_declip_checkpoint(path, faithful=False, grid=(4, 4))
    feats, cls = torch.randn(1, 64, 4, 4), torch.randn(1, 64)
    assert_same_outputs(dec, loaded, feats, cls)
    masked, _ = load_declip_checkpoint(path, grid=(4, 4))
    assert masked.faithful and not loaded.faithful
    with torch.no_grad():
        assert not torch.allclose(masked(feats, cls), dec(feats, cls))


# ------------------------------------------------------------------------------------------------ errors


def _save(tmp_path, obj, name="bad.pth"):
    path = tmp_path / name
    torch.save(obj, path)
    return path


def _good_state():
    dec = build_decoder("conv-4", in_channels=64, grid=(4, 4), family="vit", layer="layer20", width=1 / 16)
    return OrderedDict(dec.state_dict())


def test_error_missing_file(tmp_path):
    with pytest.raises(DeclipError, match="no such checkpoint file"):
        load_declip_checkpoint(tmp_path / "nope.pth")


def test_error_not_a_dict(tmp_path):
    with pytest.raises(DeclipError, match=r"bad\.pth holds a list"):
        load_declip_checkpoint(_save(tmp_path, [torch.zeros(1)]))


def test_error_missing_keys(tmp_path):
    with pytest.raises(DeclipError, match=r"bad\.pth lacks top-level keys \['feature_layer', 'decoder_type'\]"):
        load_declip_checkpoint(_save(tmp_path, {"model": _good_state()}))


def test_error_unknown_decoder_type(tmp_path):
    path = _save(tmp_path, {"model": _good_state(), "feature_layer": "layer20", "decoder_type": "conv-8"})
    with pytest.raises(DeclipError, match=r"bad\.pth: unknown decoder_type 'conv-8'"):
        load_declip_checkpoint(path)


def test_error_shape_mismatch_names_file_and_key(tmp_path):
    state = _good_state()
    state["fc.4.weight"] = torch.zeros(32, 32, 3, 3)
    path = _save(tmp_path, {"model": state, "feature_layer": "layer20", "decoder_type": "conv-4"})
    with pytest.raises(DeclipError, match=r"bad\.pth: .*shape mismatch at 'fc\.4\.weight'"):
        load_declip_checkpoint(path, family="vit", grid=(4, 4))
    with pytest.raises(DeclipError, match=r"bad\.pth: shape mismatch at 'fc\.0\.weight'.*64 input channels"):
        load_declip_checkpoint(path, in_channels=1024)


def test_error_missing_decoder_weights(tmp_path):
    path = _save(tmp_path, {"model": {"model.visual.conv1.weight": torch.zeros(1)}, "feature_layer": "layer20",
                            "decoder_type": "conv-20"})
    with pytest.raises(DeclipError, match=r"bad\.pth: no decoder weights \(model\['fc\.0\.weight'\] is missing"):
        load_declip_checkpoint(path)


def test_error_unsafe_pickle_says_how_to_convert(tmp_path):
    path = _save(tmp_path, {"model": _good_state(), "feature_layer": "layer20", "decoder_type": "conv-4",
                            "opt": argparse.Namespace(lr=1e-3)})
    with pytest.raises(DeclipError, match=r"bad\.pth contains pickled Python objects.*weights_only=False"):
        load_declip_checkpoint(path)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_error_torchscript_says_how_to_convert(tmp_path):
    path = tmp_path / "scripted.pth"
    torch.jit.script(nn.Linear(2, 1)).save(str(path))
    with pytest.raises(DeclipError, match=r"scripted\.pth is a TorchScript archive.*torch\.jit\.load"):
        load_declip_checkpoint(path)


def test_error_garbage_file(tmp_path):
    path = tmp_path / "half.pth"
    path.write_bytes(b"\x00not a checkpoint")
    with pytest.raises(DeclipError, match=r"half\.pth is not a readable PyTorch checkpoint"):
        load_declip_checkpoint(path)


# ------------------------------------------------------------------------------------------------- CLI


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "declip.cli", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.slow
def test_import_checkpoint_cli(tmp_path):
    dec = build_decoder("conv-20", in_channels=1024, grid=(16, 16), family="vit", layer="layer20", width=1 / 16,
                        seed=0).eval()
    src = write_declip(tmp_path, dec, "layer20", VIT_BACKBONE, fname="ViT_layer20_conv-20_lama.pth")
    out = tmp_path / "imported"
    res = run_cli("import-checkpoint", src, "--out", out)
    assert res.returncode == 0, res.stderr
    for text in ("conv-20", "layer20", "vit (1024 channels, 16x16 grid)", f"ignored keys   {len(VIT_BACKBONE)}"):
        assert text in res.stdout

    meta = json.loads((out / "config.json").read_text())
    assert meta["source"] == "ViT-L-14@openai/layer20" and meta["imported_from"] == "declip"
    assert meta["feature_layer"] == "layer20" and meta["total_steps"] == 1234
    assert meta["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    loaded, _ = load_decoder(out)
    assert_same_outputs(dec, loaded, torch.randn(1, 1024, 16, 16))

    again = run_cli("import-checkpoint", src, "--out", out)  # a DeclipError: exit 2, one line, no traceback
    assert again.returncode == 2 and "--force" in again.stderr and "Traceback" not in again.stderr


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_error_malicious_pickle_is_named_as_such(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": _Payload(), "feature_layer": "layer20", "decoder_type": "conv-4"}, path)
    with pytest.raises(DeclipError) as err:
        load_declip_checkpoint(path)
    text = str(err.value)
    assert "evil.pth refuses to load safely" in text and "system" in text and "can run code" in text
    assert "re-download" not in text
