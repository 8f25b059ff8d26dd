"""README step 5: `declip import-checkpoint` → `declip predict --ckpt` / `declip evaluate --ckpt` with no extra flags,
on a DeCLIP-format checkpoint saved from random weights for a tiny backbone; and what import refuses."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.fixtures import TINY_BACKBONE
from declip.core.errors import DeclipError
from declip.decoders import build_decoder, save_declip_checkpoint
from declip.pipeline.infer.checkpoint_import import import_declip_checkpoint

from tests.fixtures import REPO  # noqa: E402
VIT_STANDIN = {"visual.class_embedding": torch.zeros(8), "visual.transformer.resblocks.0.ln_1.weight": torch.ones(8)}


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "declip.cli", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def declip_file(tmp_path, layer="layer1", name="conv-4", channels=64, grid=(8, 8), family="vit", backbone=None,
                fname="ViT_layer1_conv-4_tint.pth", poison=False):
    dec = build_decoder(name, in_channels=channels, grid=grid, family=family, layer=layer, width=1 / 16, seed=0)
    if poison:
        with torch.no_grad():
            next(dec.parameters())[0].fill_(float("nan"))
    path = tmp_path / fname
    save_declip_checkpoint(dec.eval(), path, feature_layer=layer, total_steps=7,
                           include_backbone_state=VIT_STANDIN if backbone is None else backbone)
    return path


@pytest.mark.slow
def test_import_then_predict_and_evaluate_with_no_extra_flags(tmp_path, tiny_store, tiny_dolos):
    ckpt = tmp_path / "imported"
    res = run_cli("import-checkpoint", declip_file(tmp_path), "--out", ckpt, "--backbone", TINY_BACKBONE)
    assert res.returncode == 0, res.stderr
    meta = json.loads((ckpt / "config.json").read_text())
    assert meta["source"] == f"{TINY_BACKBONE}/layer1" and meta["imported_from"] == "declip"
    assert f"source         {TINY_BACKBONE}/layer1" in res.stdout

    images = sorted((tiny_dolos / "celebahq" / "fake" / "tint" / "images" / "test").glob("*.png"))[:2]
    res = run_cli("predict", *images, "--ckpt", ckpt, "--out", tmp_path / "pred", "--no-overlays")
    assert res.returncode == 0, res.stderr
    scores = pd.read_csv(tmp_path / "pred" / "scores.csv")
    assert (scores["status"] == "ok").sum() == 2

    res = run_cli("evaluate", "--store", tiny_store, "--dataset", "dolos-celebahq", "--ckpt", ckpt, "--test", "tint",
                  "--out", tmp_path / "eval", "--no-flow")
    assert res.returncode == 0, res.stderr
    assert "iou" in res.stdout and "Traceback" not in res.stderr


def test_default_sources_are_declips(tmp_path):
    vit = import_declip_checkpoint(declip_file(tmp_path, layer="layer20", channels=1024, grid=(16, 16)),
                                   tmp_path / "vit")
    assert vit["source"] == "ViT-L-14@openai/layer20"
    fused = declip_file(tmp_path, layer="layer20", channels=2048, grid=(16, 16), family="fused", backbone={},
                        fname="fused.pth")
    assert import_declip_checkpoint(fused, tmp_path / "fused")["source"] == \
        "ViT-L-14@openai/layer20+RN50@openai/layer3"
    rn = declip_file(tmp_path, layer="layer3", channels=1024, grid=(14, 14), family="resnet",
                     backbone={"visual.layer1.0.bn1.running_mean": torch.zeros(4)}, fname="rn.pth")
    assert import_declip_checkpoint(rn, tmp_path / "rn")["source"] == "RN50@openai/layer3"


def test_import_refuses_a_layer_the_backbone_lacks(tmp_path):
    bad = declip_file(tmp_path, layer="layer99", channels=1024, grid=(16, 16), fname="bad.pth")
    with pytest.raises(DeclipError, match=r"bad\.pth: feature_layer 'layer99' does not exist .*ViT-L-14 has "
                                          r"layer0\.\.layer23"):
        import_declip_checkpoint(bad, tmp_path / "out")
    with pytest.raises(DeclipError, match="'layer99' does not exist"):
        import_declip_checkpoint(bad, tmp_path / "out", backbone=TINY_BACKBONE)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_import_refuses_nan_weights_and_a_mismatched_backbone(tmp_path):
    res = run_cli("import-checkpoint", declip_file(tmp_path, poison=True, fname="nan.pth"), "--out",
                  tmp_path / "out", "--backbone", TINY_BACKBONE)
    assert res.returncode == 2 and "nan.pth: decoder weights contain NaN" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "out").exists()
    with pytest.raises(DeclipError, match="takes 64 input channels, not the 192 requested"):
        import_declip_checkpoint(declip_file(tmp_path), tmp_path / "out", backbone="demo-vit-small@random-0")


def rn50_style_checkpoint(tmp_path, drift: float = 0.5):
    """An RN50-only DeCLIP checkpoint on the tiny ResNet: its whole CLIP under model.*, BatchNorm statistics drifted
    as DeCLIP's train-mode BN leaves them."""
    import open_clip

    from declip.features.open_clip import register_local_configs

    register_local_configs()
    torch.manual_seed(0)  # the weights test-rn-tiny@random-0 builds
    clip = open_clip.create_model("test-rn-tiny", pretrained=None)
    state = clip.state_dict()
    for key in state:
        if key.startswith("visual.") and key.endswith("running_mean"):
            state[key] = state[key] + drift
    return declip_file(tmp_path, layer="layer3", channels=256, grid=(4, 4), family="resnet", backbone=state,
                       fname="RN50_layer3_conv-4.pth"), state


def test_rn50_checkpoint_can_use_its_embedded_backbone(tmp_path):
    from declip.decoders import load_decoder
    from declip.features.taps import forward_layers
    from declip.pipeline.infer.predict import Predictor, resolve_source, weights_files

    path, state = rn50_style_checkpoint(tmp_path)
    stock = import_declip_checkpoint(path, tmp_path / "stock", backbone="test-rn-tiny@random-0")
    assert stock["source"] == "test-rn-tiny@random-0/layer3" and "weights_files" not in stock
    own = import_declip_checkpoint(path, tmp_path / "own", backbone="test-rn-tiny@random-0",
                                   use_embedded_backbone=True)
    assert own["source"].startswith("test-rn-tiny@file-") and own["source"].endswith("/layer3")
    assert own["weights_files"] == {own["source"].rsplit("/", 1)[0]: "embedded-backbone.pt"}

    decoder, meta = load_decoder(tmp_path / "own")
    predictor = Predictor(decoder, resolve_source(meta, None), "cpu", weights_files(meta, tmp_path / "own"))
    visual = predictor.backbones[0].visual
    torch.testing.assert_close(visual.layer1[0].bn1.running_mean, state["visual.layer1.0.bn1.running_mean"])
    x = torch.randn(1, 3, 64, 64)
    stock_pred = Predictor(*load_decoder(tmp_path / "stock")[:1], resolve_source(meta | {"source": stock["source"]},
                                                                                  None), "cpu")
    a = forward_layers(predictor.backbones[0], x, ["layer3"])["layer3"][0]
    b = forward_layers(stock_pred.backbones[0], x, ["layer3"])["layer3"][0]
    assert (a - b).abs().max() > 1e-3  # the drifted statistics change the features the decoder was trained on


def test_embedded_backbone_is_only_for_rn50_checkpoints(tmp_path):
    with pytest.raises(DeclipError, match="RN50-only checkpoints; .* is vit: ViT towers have no BatchNorm"):
        import_declip_checkpoint(declip_file(tmp_path), tmp_path / "out", backbone=TINY_BACKBONE,
                                 use_embedded_backbone=True)
