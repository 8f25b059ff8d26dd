"""Forward and training FLOPs of backbones (to a given layer) and decoders, counted without computing anything.

Models are built on PyTorch's ``meta`` device and run under ``FlopCounterMode``: shapes flow, no memory is used and no
weights are read, so ViT-L/14 and a full-width conv-20 are counted on any machine. A backbone is counted through its
own feature family (its offline key built on ``meta``, the family's ``forward_layers`` to the layer), so any
registered family plans like the CLIP towers. ViT-L/14 gives 162.0 GFLOP per 224 px image, 141.8 to layer20; conv-20
on its 1024×16×16 layers 80.7 GFLOP forward (the design's figures).

Counting runs each model under a dispatch mode (~0.1 s each, ~30 s for the 140 models of DeCLIP's full ablation), so
counts are memoised in the process and the full ablation's are committed in :mod:`declip.pipeline.grid.flop_table`
(regenerate: ``python -m declip.pipeline.grid.model_flops --write``; a test recounts entries on the meta device).
A decoder's count depends on its geometry (channels, grid, family, width), not on the layer's name; a contract test
holds every registered decoder to that, so 24 same-shaped ViT layers are one count.
"""
from __future__ import annotations

import argparse
from functools import lru_cache
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from declip.decoders import build_decoder, list_decoders
from declip.decoders.registry import canonical_name
from declip.features.backbones import load_backbone
from declip.features.families import family_for, layer_shapes
from declip.features.taps import forward_layers
from declip.pipeline.grid import flop_table

FULL_WIDTH = 1.0
TABLE_ARCHES = ("ViT-L-14", "RN50")  # DeCLIP's towers: the full ablation and every dry run's projection of it


@lru_cache(maxsize=None)
def encode_flops(arch: str, deepest_layer: str) -> float:
    """FLOPs per image to run ``arch``'s image tower up to ``deepest_layer`` (the extraction's early stop)."""
    layer_shapes(arch)[deepest_layer]  # an unknown layer fails here, naming the tower's layers
    known = flop_table.ENCODE.get((arch, deepest_layer))
    return known if known is not None else count_encode_flops(arch, deepest_layer)


def count_encode_flops(arch: str, layer: str) -> float:
    """The meta-device count behind :func:`encode_flops` (the family's offline key, weightless)."""
    backbone = load_backbone(family_for(arch).offline_key(arch), device="meta")
    images = torch.empty(1, 3, backbone.image_size, backbone.image_size, device="meta")
    with FlopCounterMode(display=False) as counter:
        forward_layers(backbone, images, [layer])
    return float(counter.get_total_flops())


def decoder_flops(decoder: str, channels: int, grid: tuple[int, int], family: str,
                  width: float = FULL_WIDTH) -> tuple[float, float]:
    """(forward, training step) FLOPs per image for a decoder reading a (channels, *grid) feature map."""
    return _decoder_flops(canonical_name(decoder), int(channels), (int(grid[0]), int(grid[1])), family, float(width))


@lru_cache(maxsize=None)
def _decoder_flops(decoder: str, channels: int, grid: tuple[int, int], family: str,
                   width: float) -> tuple[float, float]:
    known = flop_table.DECODER.get((decoder, channels, grid, family, width))
    return known if known is not None else count_decoder_flops(decoder, channels, grid, family, width)


def count_decoder_flops(decoder: str, channels: int, grid: tuple[int, int], family: str,
                        width: float = FULL_WIDTH, layer: str = "layer0") -> tuple[float, float]:
    """The meta-device count behind :func:`decoder_flops`: a forward, then a forward + backward (a training step on
    frozen features: no gradient reaches the input)."""
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


# ---- the committed table ------------------------------------------------------------------------------------------

def table_models() -> tuple[list[tuple[str, str]], list[tuple[str, int, tuple[int, int], str, float]]]:
    """What the table holds: every layer of DeCLIP's two towers (its full ablation), and every registered decoder at
    full width on each distinct geometry of those layers."""
    layers = [(arch, name) for arch in TABLE_ARCHES for name in layer_shapes(arch).names]
    geometries = dict.fromkeys((info.channels, info.grid, layer_shapes(arch).family)
                               for arch in TABLE_ARCHES for info in layer_shapes(arch).layers)
    return layers, [(d, c, g, f, FULL_WIDTH) for d in list_decoders() for c, g, f in geometries]


def table_source() -> str:
    """The text of ``flop_table.py``, counted afresh on the meta device."""
    layers, decoders = table_models()
    lines = ['"""FLOP counts of DeCLIP\'s full-ablation models on the meta device, committed so that planning them',
             "counts nothing (``python -m declip.pipeline.grid.model_flops --write`` regenerates this file; tests",
             "recount entries). Keys: (architecture, layer) -> encode FLOPs per image; (decoder, channels, grid,",
             'family, width) -> (forward, training step) FLOPs per image."""', "",
             "ENCODE: dict[tuple[str, str], float] = {"]
    lines += [f"    {key!r}: {count_encode_flops(*key)!r}," for key in layers]
    lines += ["}", "", "DECODER: dict[tuple[str, int, tuple[int, int], str, float], tuple[float, float]] = {"]
    lines += [f"    {key!r}: {count_decoder_flops(*key)!r}," for key in decoders]
    return "\n".join(lines + ["}", ""])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="count the full ablation's FLOPs on the meta device")
    parser.add_argument("--write", action="store_true", help=f"rewrite {Path(flop_table.__file__).name}")
    args = parser.parse_args(argv)
    text = table_source()
    if args.write:
        Path(flop_table.__file__).write_text(text)
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
