"""DeCLIP's layer taps: which tensor ``layerK`` is, and one forward pass that yields every requested layer.

ViT ``layerK`` is the residual stream after block K (0-based), with no LayerNorm applied (DeCLIP never applies
``ln_post`` to it), the class token split off, and the patch tokens laid out row-major as an (C, H, W) grid
(declip-method §2.2). ResNet ``layer1..layer4`` are the stage outputs (§2.3). The pass stops after the deepest
requested layer, so caching ``layer3`` of a 24-block ViT costs 4 blocks.

open_clip's ``ModifiedResNet.forward_intermediates`` has an inverted ``stop_early`` test (stack-notes §4.1): we run
the stages ourselves and keep a test that pins the quirk down, so a fix upstream cannot change our features.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from features.backbones import Backbone
from core.errors import DeclipError

RESNET_LAYERS = ("layer1", "layer2", "layer3", "layer4")


@dataclass(frozen=True)
class LayerInfo:
    """What one cached layer holds: the store's array schema."""

    name: str
    index: int  # ViT block index, or ResNet stage number (1-4)
    channels: int
    grid: tuple[int, int]
    has_cls: bool
    semantics: str


def layer_names(backbone: Backbone) -> list[str]:
    if backbone.family == "vit":
        return [f"layer{k}" for k in range(backbone.num_blocks)]
    return list(RESNET_LAYERS)


def parse_layers(spec: str | list[str], backbone: Backbone) -> list[str]:
    """``"0-23"``, ``"20"``, ``"layer20"``, ``"layer3,layer4"``, ``"all"`` → layer names in depth order."""
    valid = layer_names(backbone)
    items = spec if isinstance(spec, list) else [s for s in re.split(r"[,\s]+", str(spec).strip()) if s]
    chosen: set[str] = set()
    for item in items:
        if item == "all":
            chosen.update(valid)
            continue
        m = re.fullmatch(r"(?:layer)?(\d+)(?:-(?:layer)?(\d+))?", item)
        if not m:
            raise DeclipError(f"cannot read layer {item!r}; use e.g. 20, layer20, 0-23, layer3,layer4 or all")
        lo, hi = int(m.group(1)), int(m.group(2) if m.group(2) is not None else m.group(1))
        for k in range(lo, hi + 1):
            name = f"layer{k}"
            if name not in valid:
                raise DeclipError(
                    f"{backbone.key.arch} has no {name}; its layers are {valid[0]}..{valid[-1]} ({backbone.family})"
                )
            chosen.add(name)
    if not chosen:
        raise DeclipError("no layers requested")
    return [name for name in valid if name in chosen]


def layer_index(backbone: Backbone, layer: str) -> int:
    return int(layer.removeprefix("layer"))


def layer_info(backbone: Backbone, layer: str) -> LayerInfo:
    """Shape and meaning of ``layer`` for this backbone, computed without running the model."""
    v = backbone.visual
    k = layer_index(backbone, layer)
    if backbone.family == "vit":
        ph, pw = v.patch_size if isinstance(v.patch_size, tuple) else (v.patch_size, v.patch_size)
        grid = (backbone.image_size // ph, backbone.image_size // pw)
        width = v.transformer.width
        return LayerInfo(layer, k, width, grid, True,
                         f"residual stream after block {k} (0-based), no LayerNorm, class token stored apart")
    stage = getattr(v, layer)
    channels = stage[-1].bn3.num_features if hasattr(stage[-1], "bn3") else stage[-1].conv3.out_channels
    side = backbone.image_size // (4 * 2 ** (k - 1))
    return LayerInfo(layer, k, channels, (side, side), False, f"output of ResNet stage {k}")


@torch.no_grad()
def forward_layers(
    backbone: Backbone, images: torch.Tensor, layers: list[str]
) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    """One pass → ``{layer: (features NCHW, class token (B, C) or None)}``, stopping after the deepest layer."""
    indices = sorted(layer_index(backbone, name) for name in layers)
    if backbone.family == "vit":
        out = backbone.visual.forward_intermediates(
            images, indices=indices, stop_early=True, intermediates_only=True,
            output_fmt="NCHW", output_extra_tokens=True,
        )
        feats, prefix = out["image_intermediates"], out["image_intermediates_prefix"]
        return {f"layer{k}": (f, p[:, 0]) for k, f, p in zip(indices, feats, prefix)}
    v = backbone.visual
    x = v.stem(images)
    result = {}
    for k in range(1, max(indices) + 1):
        x = getattr(v, f"layer{k}")(x)
        if k in indices:
            result[f"layer{k}"] = (x, None)
    return result
