"""Forward and training FLOPs of backbones (to a given layer) and decoders, counted without computing anything.

Models are built on PyTorch's ``meta`` device and run under ``FlopCounterMode``: shapes flow, no memory is used, so
ViT-L/14 and a full-width conv-20 are counted in milliseconds on any machine. ViT towers use the closed form of
:func:`features.layer_shapes.vit_forward_flops` (checked against the counter in the tests).
"""
from __future__ import annotations

from functools import lru_cache

import torch
from torch.utils.flop_counter import FlopCounterMode

from declip.features.layer_shapes import layer_shape, vision_config, vit_forward_flops


@lru_cache(maxsize=None)
def encode_flops(arch: str, deepest_layer: str) -> float:
    """FLOPs per image to run ``arch``'s image tower up to ``deepest_layer`` (the extraction's early stop)."""
    shape = layer_shape(arch, deepest_layer)
    if shape.family == "vit":
        return vit_forward_flops(arch, int(deepest_layer.removeprefix("layer")))
    from open_clip.modified_resnet import ModifiedResNet

    v = vision_config(arch)
    size = int(v.get("image_size", 224))
    with torch.device("meta"):
        net = ModifiedResNet(layers=v["layers"], output_dim=64, heads=max(1, v.get("width", 64) * 32 // 64),
                             image_size=size, width=v.get("width", 64))
        x = torch.empty(1, 3, size, size)
    with FlopCounterMode(display=False) as counter:
        x = net.stem(x)
        for k in range(1, int(deepest_layer.removeprefix("layer")) + 1):
            x = getattr(net, f"layer{k}")(x)
    return float(counter.get_total_flops())


@lru_cache(maxsize=None)
def decoder_flops(decoder: str, channels: int, grid: tuple[int, int], family: str, layer: str,
                  width: float = 1.0) -> tuple[float, float]:
    """(forward, training step) FLOPs per image for a decoder reading a (channels, *grid) feature map."""
    from declip.decoders import build_decoder

    with torch.device("meta"):
        model = build_decoder(decoder, in_channels=channels, grid=grid, family=family, layer=layer, width=width)
        x = torch.empty(1, channels, *grid)
        cls = torch.empty(1, channels)
    with FlopCounterMode(display=False) as counter:
        model(x, cls)
    forward = float(counter.get_total_flops())
    with FlopCounterMode(display=False) as counter:
        model(x, cls).sum().backward()
    return forward, float(counter.get_total_flops())
