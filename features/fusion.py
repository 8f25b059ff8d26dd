"""DeCLIP's ViT+RN50 fusion (declip-method §2.4) as a read-time view over two cached layers.

RN50 ``layer3`` (1024×14×14) is bilinearly resized (align_corners False) to the ViT grid and concatenated after the
ViT channels: [ViT, RN50] = 2048×16×16. Both layers stay cached separately, so fusion costs no storage.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def fuse(vit: torch.Tensor, resnet: torch.Tensor) -> torch.Tensor:
    """(B, Cv, H, W) and (B, Cr, h, w) → (B, Cv + Cr, H, W), ViT channels first."""
    if resnet.shape[-2:] != vit.shape[-2:]:
        resnet = F.interpolate(resnet.float(), size=vit.shape[-2:], mode="bilinear", align_corners=False)
    return torch.cat([vit.float(), resnet.float()], dim=1)
