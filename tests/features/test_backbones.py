"""Backbone keys, weight sources (tag / local file / random seed) and their failure messages."""
import socket

import pytest
import torch

from declip.core.keys import BackboneKey, parse_declip_arch
from declip.features.backbones import load_backbone, state_checksum
from declip.core.errors import DeclipError


def test_key_parsing():
    assert str(BackboneKey.parse("ViT-L-14@openai")) == "ViT-L-14@openai"
    k = BackboneKey.parse("ViT-B-32@random-3~openclip")
    assert (k.arch, k.weights, k.recipe, k.is_random) == ("ViT-B-32", "random-3", "openclip", True)
    assert str(k) == "ViT-B-32@random-3~openclip"
    assert BackboneKey.parse("ViT-B-32@random").weights == "random-0"
    with pytest.raises(DeclipError, match="ARCH@WEIGHTS"):
        BackboneKey.parse("ViT-B-32")
    with pytest.raises(DeclipError, match="integer seed"):
        BackboneKey.parse("ViT-B-32@random-x")
    with pytest.raises(DeclipError, match="does not exist"):
        BackboneKey.parse("ViT-B-32@/no/such/file.pt")


def test_declip_arch_names():
    assert [str(k) for k in parse_declip_arch("CLIP:ViT-L/14")] == ["ViT-L-14@openai"]
    assert [str(k) for k in parse_declip_arch("CLIP:ViT-L/14,RN50")] == ["ViT-L-14@openai", "RN50@openai"]
    assert str(BackboneKey.parse("CLIP:RN50")) == "RN50@openai"
    with pytest.raises(DeclipError, match="DeCLIP accepts"):
        parse_declip_arch("CLIP:xceptionnet")


def test_random_init_is_seeded():
    a, b, c = (load_backbone(k) for k in ("test-vit-tiny@random-0", "test-vit-tiny@random-0", "test-vit-tiny@random-1"))
    assert a.weights_checksum == b.weights_checksum != c.weights_checksum
    assert not any(p.requires_grad for p in a.visual.parameters()) and not a.visual.training


def test_local_state_dict_file_is_keyed_by_checksum(tmp_path):
    import open_clip

    torch.manual_seed(5)
    model = open_clip.create_model("test-vit-tiny", pretrained=None)
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    key = BackboneKey.parse(f"test-vit-tiny@{path}")
    assert key.weights.startswith("file-") and len(key.weights) == 21
    loaded = load_backbone(key)
    assert loaded.weights_checksum == state_checksum(model.visual.eval())
    (tmp_path / "other.pt").write_bytes(path.read_bytes())
    assert BackboneKey.parse(f"test-vit-tiny@{tmp_path / 'other.pt'}").weights == key.weights


def test_bad_local_file_says_what_it_needs(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(DeclipError, match="state_dict"):
        load_backbone(f"test-vit-tiny@{path}")


def test_unreachable_tag_fails_fast_with_local_file_advice(monkeypatch):
    """Offline, a tag fails at once (no connection attempted, so no retries to wait for) and names the local form."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    attempts = []

    def refuse(sock, address):
        attempts.append(address)
        raise OSError("no network in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    with pytest.raises(DeclipError) as err:
        load_backbone("ViT-B-32@openai")
    assert attempts == []
    assert "ViT-B-32@/path/to/weights.pt" in str(err.value)


def test_unknown_tag_and_arch():
    with pytest.raises(DeclipError, match="no pretrained tag"):
        load_backbone("ViT-B-32@no-such-tag")
    with pytest.raises(DeclipError, match="no feature family builds"):
        load_backbone("ViT-Q-99@random-0")
