"""Issue 21 item 6: a DeCLIP checkpoint with no embedded backbone whose decoder fits two families is refused, not
guessed: a hand-stripped RN50 layer4 checkpoint (2048 channels) used to import silently as the fused ViT layer4 +
RN50 layer3 (1024 + 1024). Item 11: a plain pickle is named as such, not told to "re-download"."""
import pickle

import pytest

from declip.core.errors import DeclipError
from declip.decoders import build_decoder, save_declip_checkpoint
from declip.pipeline.infer.checkpoint_import import import_declip_checkpoint


def _stripped(tmp_path, family, channels, grid, layer, name="conv-4"):
    """A DeCLIP checkpoint of ``name`` with no CLIP weights under model.* (DeCLIP's fused ones have none)."""
    dec = build_decoder(name, in_channels=channels, grid=grid, family=family, layer=layer, width=1 / 16, seed=0)
    return save_declip_checkpoint(dec, tmp_path / f"{family}-{layer}.pth", feature_layer=layer)


def test_an_rn50_layer4_checkpoint_without_its_backbone_is_ambiguous(tmp_path):
    path = _stripped(tmp_path, "resnet", 2048, (7, 7), "layer4")
    with pytest.raises(DeclipError) as refused:
        import_declip_checkpoint(path, tmp_path / "out")
    text = str(refused.value)
    assert "fused (ViT-L-14@openai/layer4+RN50@openai/layer3) or resnet (RN50@openai/layer4)" in text
    assert "--family fused|resnet or --backbone" in text and not (tmp_path / "out").exists()
    assert import_declip_checkpoint(path, tmp_path / "rn", family="resnet")["source"] == "RN50@openai/layer4"
    assert import_declip_checkpoint(path, tmp_path / "rn2", backbone="RN50@openai")["source"] == "RN50@openai/layer4"


def test_a_fused_checkpoint_is_not_ambiguous(tmp_path):
    """DeCLIP's ViT+RN50 checkpoints carry no backbone either: at layer20 (2048 channels) only the fused reading fits."""
    path = _stripped(tmp_path, "fused", 2048, (16, 16), "layer20", name="conv-20")
    assert import_declip_checkpoint(path, tmp_path / "out")["source"] == \
        "ViT-L-14@openai/layer20+RN50@openai/layer3"


def test_a_plain_pickle_is_named_and_not_sent_to_redownload(tmp_path):
    path = _stripped(tmp_path, "fused", 2048, (16, 16), "layer20", name="conv-20")
    import torch

    plain = tmp_path / "plain.pth"
    plain.write_bytes(pickle.dumps(torch.load(path, weights_only=True), protocol=4))
    with pytest.raises(DeclipError) as refused:
        import_declip_checkpoint(plain, tmp_path / "out")
    text = str(refused.value)
    assert "plain Python pickle" in text and "pickle.load" in text and "re-download" not in text
    legacy = tmp_path / "legacy.pth"  # torch.save's pre-zip format is a pickle too, and still reads
    torch.save(torch.load(path, weights_only=True), legacy, _use_new_zipfile_serialization=False)
    assert import_declip_checkpoint(legacy, tmp_path / "legacy")["source"].endswith("/layer3")
