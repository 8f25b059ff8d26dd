"""DeCLIP's linear decoder (method §3.2): one Linear(C -> 1) shared over patch tokens, bicubic upsampling to 256.

Key names: DeCLIP appends ``nn.Linear(1024, 1)`` to ``upscaling_layers`` and wraps that list in
``self.fc = nn.Sequential(*upscaling_layers)``, so the only keys are ``fc.0.weight`` [1, C] and ``fc.0.bias``
[1]; the attention decoder reuses the same head under the same keys.
"""
from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from declip.decoders.weight_init import init_declip_
from declip.decoders.registry import OUTPUT_SIZE, Decoder, make_config, register_decoder
from declip.decoders.token_scores import token_scores


def token_head(in_channels: int) -> nn.Sequential:
    """The shared per-token scorer, initialised as DeCLIP does."""
    fc = nn.Sequential(nn.Linear(in_channels, 1))
    init_declip_(fc)
    return fc


def scores_to_logits(scores: Tensor, grid: tuple[int, int]) -> Tensor:
    """``[B, H*W]`` token scores -> ``[B, 1, 256, 256]``, bicubic with align_corners False as DeCLIP."""
    grid_map = scores.reshape(scores.shape[0], 1, grid[0], grid[1])
    return F.interpolate(grid_map, size=(OUTPUT_SIZE, OUTPUT_SIZE), mode="bicubic", align_corners=False)


class LinearDecoder(Decoder):
    """Per-token linear probe; the CLS token is ignored (DeCLIP scores ``features[1:]`` only)."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.fc = token_head(config["in_channels"])

    scores_then_upsample = True

    def forward(self, feats: Tensor, cls_token: Tensor | None = None) -> Tensor:
        return scores_to_logits(self.token_scores(feats, cls_token), self.config["grid"])

    def token_scores(self, feats: Tensor, cls_token: Tensor | None = None) -> Tensor:
        """DeCLIP's ``fc`` on every patch token (row-major, CLIP's patch order), as one contraction over the channels
        of the NCHW map (:mod:`declip.decoders.token_scores`): ``nn.Linear`` on the ``[B, H*W, C]`` token view first
        copies the transposed map (2.4x slower on the CPU). The same numbers up to float rounding."""
        self.check_input(feats)
        linear = self.fc[0]
        return token_scores(linear.weight[0], linear.bias, feats)


@register_decoder("linear")
def linear(**kwargs: Any) -> LinearDecoder:
    """Linear probe: C + 1 parameters (1,025 for ViT-L/14). ``width`` and ``faithful`` change nothing."""
    return LinearDecoder(make_config("linear", **kwargs))
