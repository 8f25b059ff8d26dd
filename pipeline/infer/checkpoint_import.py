"""Import a released DeCLIP ``.pth`` as a decoder directory that names the features it reads.

The imported ``config.json`` records its real feature source (``ViT-L-14@openai/layer20``, ``RN50@openai/layer3``
or the fused ``ViT-L-14@openai/layer20+RN50@openai/layer3``), so ``declip predict`` and ``declip evaluate`` need no
extra flags. Everything that can be checked without weights is checked here, before anything is written: the layer
exists for the backbone, the decoder's input channels and grid are that layer's, and no weight is NaN or inf.

RN50-only checkpoints carry their own backbone: DeCLIP trained them with the frozen RN50's BatchNorm in train mode,
so its running statistics drifted and were saved under ``model.*``. ``use_embedded_backbone`` writes that backbone
next to the decoder and makes it the source (a local-file backbone, keyed by checksum like any other), because the
stock OpenAI RN50 cannot reproduce those features. ViT BatchNorm-free towers and fused checkpoints (which embed no
backbone) are unaffected.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from declip.core.errors import DeclipError
from declip.core.io import file_sha256
from declip.core.keys import BackboneKey, parse_declip_arch
from declip.features.families import TowerShapes, layer_shapes

DECLIP_BACKBONES = {"vit": "ViT-L-14@openai", "resnet": "RN50@openai"}
FUSED_RESNET_LAYER = "layer3"  # DeCLIP's ViT+RN50 model always takes RN50's layer3 (method §2.4)
EMBEDDED_FILE = "embedded-backbone.pt"


def parse_backbones(text: str | None) -> list[BackboneKey] | None:
    """``--backbone`` → backbone keys: one key, two comma-separated keys (fused), or a DeCLIP ``CLIP:`` name."""
    if not text:
        return None
    if text.startswith("CLIP:"):
        return parse_declip_arch(text)
    keys = [BackboneKey.parse(part) for part in text.split(",") if part.strip()]
    if not 1 <= len(keys) <= 2:
        raise DeclipError(f"--backbone {text!r}: give one backbone key, or two (ViT,ResNet) for a fused checkpoint")
    return keys


def import_declip_checkpoint(file: str | os.PathLike, out: str | os.PathLike, *, backbone: str | None = None,
                             family: str | None = None, use_embedded_backbone: bool = False,
                             force: bool = False) -> dict[str, Any]:
    """Check and convert ``file``; returns the import info plus ``source`` (and ``weights_files`` if embedded)."""
    from declip.decoders import load_declip_checkpoint, save_decoder
    from declip.decoders.declip_checkpoint import declip_feature_layer

    file, out = Path(file), Path(out)
    if (out / "decoder.pt").exists() and not force:
        raise DeclipError(f"{out / 'decoder.pt'} already exists; pass --force to overwrite or pick another --out")
    layer = declip_feature_layer(file)
    given = parse_backbones(backbone)
    extra: dict[str, Any] = {}
    if given is not None:
        keys = [str(k) for k in given]
        files = {str(k): k.weights_path for k in given if k.weights_path}
        if files:  # local weights: the store knows them by checksum, predict needs the file
            extra["weights_files"] = files
        family = family or ("fused" if len(keys) == 2 else _tower(keys[0]).family)
        parts = _parts(keys, family, layer, file)
        channels = _channels(parts)
        decoder, info = load_declip_checkpoint(file, family=family, grid=_grid(parts), in_channels=channels)
    else:
        _refuse_unknown_layer(layer, [DECLIP_BACKBONES["vit"], DECLIP_BACKBONES["resnet"]], file)
        guessed = family is None
        decoder, info = load_declip_checkpoint(file, family=family)
        family = info["family"]
        parts = _parts(_declip_keys(family), family, layer, file)
        if guessed and info.get("embedded_family") is None:
            _refuse_ambiguous(file, layer, info, parts)
    _check_geometry(parts, info, file)
    if use_embedded_backbone:
        parts, extra = _embedded(file, out, parts, family)
    source = "+".join(f"{k}/{l}" for k, l in parts)
    meta = {"feature_layer": info["feature_layer"], "source": source, "imported_from": "declip",
            "source_file": str(file), "source_sha256": file_sha256(str(file)), "total_steps": info["total_steps"], **extra}
    save_decoder(decoder, out, meta)
    return {**info, "source": source, **extra}


def _declip_keys(family: str) -> list[str]:
    """DeCLIP's backbones for a checkpoint family (the fused model: the ViT first)."""
    return [DECLIP_BACKBONES["vit"], DECLIP_BACKBONES["resnet"]] if family == "fused" else [DECLIP_BACKBONES[family]]


def _refuse_ambiguous(file: Path, layer: str, info: dict, parts: list[tuple[str, str]]) -> None:
    """A checkpoint that embeds no backbone says its family only through its decoder's shapes, and conv decoders do
    not depend on the grid: RN50 layer4 (2048 channels) reads like the fused ViT layer4 + RN50 layer3 (1024 + 1024).
    When another family fits the weights and DeCLIP's backbones as well, refuse to guess."""
    from declip.decoders import load_declip_checkpoint

    readings = {info["family"]: parts}
    for other in ("fused", "vit", "resnet"):
        if other in readings:
            continue
        try:
            _, other_info = load_declip_checkpoint(file, family=other)
            other_parts = _parts(_declip_keys(other), other, layer, file)
            _check_geometry(other_parts, other_info, file)
        except DeclipError:
            continue
        readings[other] = other_parts
    if len(readings) > 1:
        said = " or ".join(f"{fam} ({'+'.join(f'{k}/{l}' for k, l in p)})" for fam, p in readings.items())
        raise DeclipError(
            f"{file}: its {info['decoder_type']} decoder ({info['in_channels']} channels, feature_layer {layer!r}) "
            f"reads as {said}, and the file holds no backbone weights that would tell (a hand-stripped checkpoint?); "
            f"pass --family {'|'.join(readings)} or --backbone KEY")


def _parts(keys: list[str], family: str, layer: str, file: Path) -> list[tuple[str, str]]:
    if family == "fused":
        if len(keys) != 2:
            raise DeclipError(f"{file} is a fused ViT+RN50 checkpoint: give --backbone VIT_KEY,RESNET_KEY")
        parts = [(keys[0], layer), (keys[1], FUSED_RESNET_LAYER)]
    else:
        if len(keys) != 1:
            raise DeclipError(f"{file} is a {family} checkpoint: give one --backbone key, not {len(keys)}")
        parts = [(keys[0], layer)]
    for key, part_layer in parts:
        _refuse_unknown_layer(part_layer, [key], file)
    return parts


def _tower(key: str) -> TowerShapes:
    """The backbone's layers from its architecture's config (its feature family answers; no weights read)."""
    return layer_shapes(BackboneKey.parse(key).arch)


def _refuse_unknown_layer(layer: str, keys: list[str], file: Path) -> None:
    known = {key: _tower(key) for key in keys}
    if not any(layer in tower for tower in known.values()):
        have = "; ".join(f"{t.arch} has {t.names[0]}..{t.names[-1]}" for t in known.values())
        raise DeclipError(f"{file}: feature_layer {layer!r} does not exist ({have}); the checkpoint is damaged or "
                          f"was trained on another backbone (pass --backbone KEY)")


def _grid(parts: list[tuple[str, str]]) -> tuple[int, int]:
    key, layer = parts[0]
    return _tower(key)[layer].grid


def _channels(parts: list[tuple[str, str]]) -> int:
    return sum(_tower(key)[layer].channels for key, layer in parts)


def _check_geometry(parts: list[tuple[str, str]], info: dict, file: Path) -> None:
    """The decoder must take exactly the features the source gives: channels (summed when fused) and grid."""
    channels = _channels(parts)
    if channels != info["in_channels"] or tuple(info["grid"]) != _grid(parts):
        source = "+".join(f"{k}/{l}" for k, l in parts)
        raise DeclipError(f"{file}: its decoder takes {info['in_channels']} channels on a "
                          f"{'x'.join(map(str, info['grid']))} grid, but {source} gives {channels} channels on "
                          f"{'x'.join(map(str, _grid(parts)))}; pass the --backbone it was trained on")


def _embedded(file: Path, out: Path, parts: list[tuple[str, str]], family: str) -> tuple[list, dict]:
    from declip.decoders.checkpoint_io import atomic_torch_save
    from declip.decoders.declip_checkpoint import embedded_backbone_state
    from declip.features.backbones import load_backbone

    if family != "resnet":
        why = ("ViT towers have no BatchNorm, so the embedded copy equals the stock weights" if family == "vit"
               else "ViT+RN50 checkpoints embed no backbone (DeCLIP evaluates them on the stock OpenAI weights)")
        raise DeclipError(f"--use-embedded-backbone is for RN50-only checkpoints; {file} is {family}: {why}")
    state = embedded_backbone_state(file)
    if not any(k.startswith("visual.") for k in state):
        raise DeclipError(f"{file} embeds no backbone (no model.visual.* keys); import it without "
                          f"--use-embedded-backbone")
    out.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(state, out / EMBEDDED_FILE)
    arch = BackboneKey.parse(parts[0][0]).arch
    key = BackboneKey.parse(f"{arch}@{out / EMBEDDED_FILE}")
    load_backbone(key)  # fails now, with the loader's message, if the weights do not fit the architecture
    return [(str(key), parts[0][1])], {"weights_files": {str(key): EMBEDDED_FILE}}
