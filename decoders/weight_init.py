"""DeCLIP's decoder initialisation (method §5.2), kept separate so every decoder applies the same rule."""
from __future__ import annotations

import torch
from torch import nn

INIT_GAIN = 0.02


@torch.no_grad()
def init_declip_(fc: nn.Sequential, gain: float = INIT_GAIN) -> None:
    """Draw every ``.weight`` in ``fc`` from N(0, gain), BatchNorm gammas included; biases keep PyTorch defaults.

    DeCLIP loops over ``model.fc`` and calls ``normal_`` on anything with a weight inside a bare try/except, so BN
    gammas start near 0 rather than 1. Modules outside ``fc`` (the attention blocks) are not touched.
    """
    for module in fc:
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor):
            nn.init.normal_(weight, 0.0, gain)
