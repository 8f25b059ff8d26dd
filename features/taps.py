"""Layer taps: which layers a backbone has, what each holds, and one forward pass that yields every requested one.

The per-family work (ViT residual stream, ResNet stages, any other registered family) lives in
:mod:`features.families`; this module is the family-generic front that extraction, predict and the benches call.
Each pass stops after the deepest requested layer, so caching ``layer3`` of a 24-block ViT costs 4 blocks.
"""
from __future__ import annotations

import re

import torch

from declip.core.errors import DeclipError
from declip.features.backbones import Backbone
from declip.features.families import LayerInfo, LayerOutputs

__all__ = ["LayerInfo", "forward_layers", "layer_index", "layer_info", "layer_names", "parse_layers"]


def layer_names(backbone: Backbone) -> list[str]:
    return backbone.feature_family.layer_names(backbone)


def parse_layers(spec: str | list[str], backbone: Backbone) -> list[str]:
    """``"0-23"``, ``"20"``, ``"layer20"``, ``"layer3,layer4"``, ``"all"`` (or a family's own layer names) → layer
    names in depth order."""
    valid = layer_names(backbone)
    items = spec if isinstance(spec, list) else [s for s in re.split(r"[,\s]+", str(spec).strip()) if s]
    chosen: set[str] = set()
    for item in items:
        if item == "all":
            chosen.update(valid)
            continue
        if item in valid:
            chosen.add(item)
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


def layer_info(backbone: Backbone, layer: str) -> LayerInfo:
    """Shape and meaning of ``layer`` for this backbone, computed without running the model."""
    return backbone.feature_family.layer_info(backbone, layer)


def layer_index(backbone: Backbone, layer: str) -> int:
    return layer_info(backbone, layer).index


@torch.no_grad()
def forward_layers(backbone: Backbone, images: torch.Tensor, layers: list[str]) -> LayerOutputs:
    """One pass → ``{layer: (features NCHW, class token (B, C) or None)}``, stopping after the deepest layer."""
    return backbone.feature_family.forward_layers(backbone, images, layers)
