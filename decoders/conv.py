"""DeCLIP's conv-N decoders (method §3.1): four stages of N/4 (conv5x5 + BN + ReLU), x2 upsampling, final conv.

The layers live in one flat ``nn.Sequential`` named ``fc`` in DeCLIP's exact order, parameter-free ReLU and
Upsample entries included, so state-dict indices (``fc.64`` / ``fc.65`` for conv-20) match the released
checkpoints without any key remapping.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from declip.decoders.weight_init import init_declip_
from declip.decoders.registry import OUTPUT_SIZE, Decoder, make_config, register_decoder

BASE_FILTERS = (512, 256, 128, 64)
NUM_STAGES = len(BASE_FILTERS)


def stage_filters(in_channels: int, width: float = 1.0) -> list[int]:
    """``[C_in, 512, 256, 128, 64]`` with the decoder channels scaled by ``width`` (1.0 is DeCLIP)."""
    return [in_channels] + [max(1, round(f * width)) for f in BASE_FILTERS]


def upsample_skips(grid: tuple[int, int]) -> int:
    """How many of the first stage upsamples to drop so four stages do not overshoot 256.

    The smallest k with ``grid * 2**(4 - k) <= 256``. This reproduces DeCLIP's hard-coded RN50 rules
    (layer2 28x28 skips 1, layer1 56x56 skips 2, layer3/4 and ViT 16x16 skip none) from the geometry alone.
    """
    side = max(grid)
    k = 0
    while k < NUM_STAGES and side * 2 ** (NUM_STAGES - k) > OUTPUT_SIZE:
        k += 1
    return k


def needs_final_resize(grid: tuple[int, int], family: str) -> bool:
    """DeCLIP appends ``Upsample(size=256)`` for any "RN50" backbone (an identity resize for ViT+RN50, but it
    takes a Sequential index); we also need it whenever the stages do not land exactly on 256x256."""
    scale = 2 ** (NUM_STAGES - upsample_skips(grid))
    return family in ("resnet", "fused") or (grid[0] * scale, grid[1] * scale) != (OUTPUT_SIZE, OUTPUT_SIZE)


def _conv_block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel_size=5, padding=2), nn.BatchNorm2d(c_out), nn.ReLU()]


def build_conv_layers(
        filters: list[int], convs_per_stage: int, grid: tuple[int, int], family: str,
) -> list[nn.Module]:
    """The flat module list in DeCLIP's order (``_set_decoder`` in its ``clip_models.py``)."""
    skips = upsample_skips(grid)
    layers: list[nn.Module] = []
    for stage in range(1, len(filters)):
        layers += _conv_block(filters[stage - 1], filters[stage])
        for _ in range(convs_per_stage - 1):
            layers += _conv_block(filters[stage], filters[stage])
        if stage > skips:
            layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
    if needs_final_resize(grid, family):
        layers.append(nn.Upsample(size=(OUTPUT_SIZE, OUTPUT_SIZE), mode="bilinear", align_corners=False))
    layers.append(nn.Conv2d(filters[-1], 1, kernel_size=5, padding=2))
    return layers


class ConvDecoder(Decoder):
    """conv-N over a feature map; the CLS token is not used (DeCLIP drops it before the decoder)."""

    def __init__(self, config: dict[str, Any], num_convs: int) -> None:
        super().__init__(config)
        filters = stage_filters(config["in_channels"], config["width"])
        self.fc = nn.Sequential(*build_conv_layers(filters, num_convs // NUM_STAGES, config["grid"], config["family"]))
        init_declip_(self.fc)

    def forward(self, feats: Tensor, cls_token: Tensor | None = None) -> Tensor:
        self.check_input(feats)
        return self.fc(feats)


def _conv(num_convs: int, **kwargs: Any) -> ConvDecoder:
    return ConvDecoder(make_config(f"conv-{num_convs}", **kwargs), num_convs)


@register_decoder("conv-4")
def conv_4(**kwargs: Any) -> ConvDecoder:
    """One conv per stage: 17.41 M parameters at 1024 input channels."""
    return _conv(4, **kwargs)


@register_decoder("conv-12")
def conv_12(**kwargs: Any) -> ConvDecoder:
    """Three convs per stage: 34.83 M parameters at 1024 input channels."""
    return _conv(12, **kwargs)


@register_decoder("conv-20")
def conv_20(**kwargs: Any) -> ConvDecoder:
    """Five convs per stage (DeCLIP's released models): 52.24 M parameters at 1024 input channels."""
    return _conv(20, **kwargs)
