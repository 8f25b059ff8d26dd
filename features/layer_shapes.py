"""Layer shapes and forward FLOPs from an architecture's open_clip config alone: no model built, no weights read.

The cost plan (``declip grid --dry-run``) sizes stores and encode times for ViT-L/14 and RN50 at Dolos scale on a
machine that may hold neither their weights nor the memory to build them. Shapes agree with
:func:`features.taps.layer_info` on a built model (tested).
"""
from __future__ import annotations

from dataclasses import dataclass

from declip.core.errors import DeclipError


@dataclass(frozen=True)
class LayerShape:
    arch: str
    layer: str
    family: str  # "vit" or "resnet"
    channels: int
    grid: tuple[int, int]
    has_cls: bool
    num_layers: int  # blocks (ViT) or stages (ResNet) of the tower


def vision_config(arch: str) -> dict:
    from declip.features.backbones import _register_local_configs
    import open_clip

    _register_local_configs()
    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        raise DeclipError(f"unknown open_clip architecture {arch!r}; see open_clip.list_models()")
    return cfg["vision_cfg"]


def _size(value) -> int:
    return int(value[0] if isinstance(value, (list, tuple)) else value)


def layer_shape(arch: str, layer: str) -> LayerShape:
    v = vision_config(arch)
    k = int(layer.removeprefix("layer"))
    size = _size(v.get("image_size", 224))
    if isinstance(v.get("layers"), (list, tuple)):  # ModifiedResNet: bottleneck stages, expansion 4
        if not 1 <= k <= 4:
            raise DeclipError(f"{arch} has no {layer}; its layers are layer1..layer4 (resnet)")
        width = int(v.get("width", 64))
        side = size // (4 * 2 ** (k - 1))
        return LayerShape(arch, layer, "resnet", width * 2 ** (k - 1) * 4, (side, side), False, 4)
    blocks = int(v["layers"])
    if not 0 <= k < blocks:
        raise DeclipError(f"{arch} has no {layer}; its layers are layer0..layer{blocks - 1} (vit)")
    patch = _size(v["patch_size"])
    return LayerShape(arch, layer, "vit", int(v["width"]), (size // patch, size // patch), True, blocks)


def vit_forward_flops(arch: str, up_to_block: int | None = None) -> float:
    """Multiply-adds × 2 of a ViT image tower through block ``up_to_block`` (0-based; None = the whole tower).

    Per block with n tokens of width d and MLP ratio r: QKV + output projections 4nd², MLP 2rnd², attention 2n²d.
    ViT-L/14 at 224 px: 161.6 GFLOP for 24 blocks, 141.5 to layer20 (the head and patch embedding add < 1 %).
    """
    v = vision_config(arch)
    if isinstance(v.get("layers"), (list, tuple)):
        raise DeclipError(f"{arch} is a ResNet; its FLOPs are measured (bench/gpu.py), not computed here")
    d, blocks = int(v["width"]), int(v["layers"])
    ratio = float(v.get("mlp_ratio", 4.0))
    n = (_size(v.get("image_size", 224)) // _size(v["patch_size"])) ** 2 + 1
    per_block = 2 * (4 * n * d * d + 2 * ratio * n * d * d + 2 * n * n * d)
    count = blocks if up_to_block is None else up_to_block + 1
    return per_block * count
