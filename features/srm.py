"""SRM noise-residual statistics: a classical forensic feature source beside the CLIP backbones (positive control).

Inpainting and splicing leave the local noise of a photo changed: classical fills (Telea, Navier-Stokes,
biharmonic) are smoother than camera noise, pastes carry another photo's noise. The rich-model high-pass filters of
Fridrich & Kodovský (2012) expose that noise; RGB-N (Zhou et al., CVPR 2018) uses three of them as its noise stream.
A decoder that cannot learn from these features on such data is broken, and CLIP-feature decoders should beat them,
so they are the pipeline's positive control, even with random backbone weights.

Definition (recorded in the store with every array, see :func:`definition`):

* input: RGB in 0-255 units on a 256×256 squash-resize (recipe ``srm``: DeCLIP's bilinear squash with mean 0 and
  std 1/255, i.e. identity for 256×256 images such as Dolos and the demo);
* residuals: each of the three RGB-N SRM kernels (:data:`KERNELS`, all symmetric, so correlation = convolution)
  applied to each colour channel separately, reflect padding (``d c b | a b c d``) → 9 residual maps;
* pooling: per 16×16-pixel patch (a 16×16 grid, the grid of a ViT-L/14 layer) and per residual map, the statistics
  of :data:`STATS`: ``log1p`` of the mean absolute residual, ``log1p`` of its standard deviation, and the fractions
  of pixels with |r| < 0.5, 0.5 ≤ |r| < 1.5 and |r| ≥ 1.5 (the residual quantised with step q = 1 and truncated at
  T = 2: the bins 0, ±1 and ±2);
* relative energy: the two ``log1p`` statistics again, minus their median over the image's 256 patches, so a patch
  smoother (or noisier) than the rest of its own photo stands out whatever the camera's noise level;
* channel order: stat-major, then colour (R, G, B), then kernel: ``channel = (s * 3 + c) * 3 + k`` → 63 channels.

The family is ``srm`` (registered in :mod:`features.families`, recipe ``srm``): backbone key ``srm@fixed``, one layer
``layer0`` (no class token). Nothing here is trained.
"""
from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from declip.core.errors import DeclipError
from declip.core.keys import BackboneKey
from declip.features.families import FeatureFamily, LayerInfo, LayerOutputs, TowerShapes, register_family
from declip.features.preprocess import RECIPES, Recipe

if TYPE_CHECKING:
    from declip.features.backbones import Backbone

ARCH = "srm"
WEIGHTS = "fixed"
KEY = f"{ARCH}@{WEIGHTS}"
LAYER = "layer0"
INPUT_SIZE = 256
PATCH = 16
GRID = (INPUT_SIZE // PATCH, INPUT_SIZE // PATCH)
MEAN = (0.0, 0.0, 0.0)
STD = (1.0 / 255.0,) * 3  # to_tensor divides by 255 first: pixels come out in 0-255 units
COLOURS = ("R", "G", "B")
STATS = ("log1p_mean_abs", "log1p_std", "frac_q0", "frac_q1", "frac_q2plus", "rel_log1p_mean_abs", "rel_log1p_std")
QUANT_STEP = 1.0  # residual quantisation step in 0-255 units
TRUNCATION = 2

# The three SRM kernels of RGB-N (Zhou et al. 2018, after Fridrich & Kodovský 2012), as 5×5 arrays.
KERNELS: dict[str, np.ndarray] = {
    "kb_2nd_order_3x3": np.array([[0, 0, 0, 0, 0],
                                  [0, -1, 2, -1, 0],
                                  [0, 2, -4, 2, 0],
                                  [0, -1, 2, -1, 0],
                                  [0, 0, 0, 0, 0]], dtype=np.float64) / 4.0,
    "kv_3rd_order_5x5": np.array([[-1, 2, -2, 2, -1],
                                  [2, -6, 8, -6, 2],
                                  [-2, 8, -12, 8, -2],
                                  [2, -6, 8, -6, 2],
                                  [-1, 2, -2, 2, -1]], dtype=np.float64) / 12.0,
    "horizontal_2nd_order": np.array([[0, 0, 0, 0, 0],
                                      [0, 0, 0, 0, 0],
                                      [0, 1, -2, 1, 0],
                                      [0, 0, 0, 0, 0],
                                      [0, 0, 0, 0, 0]], dtype=np.float64) / 2.0,
}
CHANNELS = len(STATS) * len(COLOURS) * len(KERNELS)


def channel_names() -> list[str]:
    """``stat/colour/kernel`` for each output channel, in order."""
    return [f"{s}/{c}/{k}" for s in STATS for c in COLOURS for k in KERNELS]


def definition() -> dict:
    """Everything that determines the features, as stored beside them (and hashed into the 'weights' checksum)."""
    return {
        "family": ARCH, "input": f"RGB 0-255, squash-resized to {INPUT_SIZE}x{INPUT_SIZE} (bilinear)",
        "kernels": {name: k.tolist() for name, k in KERNELS.items()}, "per_colour_channel": True,
        "padding": "reflect (d c b | a b c d)", "patch": PATCH, "grid": list(GRID), "stats": list(STATS),
        "relative": "rel_* = the log1p statistic minus its median over the image's patches",
        "quant_step": QUANT_STEP, "truncation": TRUNCATION, "bins": "|r|<0.5, 0.5<=|r|<1.5, |r|>=1.5", "channel_order": "stat, colour (R,G,B), kernel",
        "channels": channel_names(),
        "references": ["Fridrich & Kodovsky 2012, Rich models for steganalysis of digital images",
                       "Zhou et al. 2018, Learning rich features for image manipulation detection (RGB-N)"],
    }


def checksum() -> str:
    return hashlib.sha256(json.dumps(definition(), sort_keys=True).encode()).hexdigest()


class SrmFeatures(nn.Module):
    """(B, 3, 256, 256) pixels in 0-255 units → (B, 63, 16, 16) patch statistics of the SRM residuals."""

    def __init__(self) -> None:
        super().__init__()
        weight = torch.tensor(np.stack(list(KERNELS.values())), dtype=torch.float32).unsqueeze(1)
        self.register_buffer("kernels", weight)  # (3 kernels, 1, 5, 5)
        # the definition's hash as state, so the store's weights checksum changes whenever the definition does
        self.register_buffer("definition_sha256", torch.tensor(list(bytes.fromhex(checksum())), dtype=torch.uint8))

    def residuals(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) → (B, 9, H, W): colour-major, kernel-minor."""
        b, c, h, w = images.shape
        x = F.pad(images.reshape(b * c, 1, h, w).float(), (2, 2, 2, 2), mode="reflect")
        return F.conv2d(x, self.kernels.float()).reshape(b, c * len(KERNELS), h, w)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"SRM features expect {INPUT_SIZE}x{INPUT_SIZE} inputs, got {tuple(images.shape[-2:])}")
        r = self.residuals(images)
        mean_abs = F.avg_pool2d(r.abs(), PATCH)
        mean, mean_sq = F.avg_pool2d(r, PATCH), F.avg_pool2d(r * r, PATCH)
        std = (mean_sq - mean * mean).clamp_min(0).sqrt()
        q = r.abs() / QUANT_STEP
        fractions = [F.avg_pool2d((q < 0.5).float(), PATCH), F.avg_pool2d(((q >= 0.5) & (q < 1.5)).float(), PATCH),
                     F.avg_pool2d((q >= TRUNCATION - 0.5).float(), PATCH)]
        energy = [torch.log1p(mean_abs), torch.log1p(std)]
        relative = [e - torch.quantile(e.flatten(2), 0.5, dim=2)[..., None, None] for e in energy]
        return torch.cat([*energy, *fractions, *relative], dim=1)



@RECIPES.register("srm")
def srm_recipe(size: int, mean, std, dtype: str = "float32") -> Recipe:
    return Recipe("srm", size, "bilinear", False, tuple(mean), tuple(std), dtype)


@register_family
class SrmFamily(FeatureFamily):
    """``srm@fixed``: one layer, ``layer0``, of SRM residual statistics (no class token, nothing trained)."""

    name = ARCH
    default_recipe = "srm"
    test_keys = (KEY,)
    positive_control = True

    def handles(self, arch: str) -> bool:
        return arch == ARCH

    def offline_key(self, arch: str) -> str:
        return KEY

    def build(self, key: BackboneKey) -> nn.Module:
        if key.weights != WEIGHTS:
            raise DeclipError(f"the SRM feature family has one key, {KEY} (got {key}): its kernels are fixed, "
                              "there are no weights to choose")
        return SrmFeatures()

    def input_spec(self, visual: nn.Module) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
        return INPUT_SIZE, MEAN, STD

    def layer_names(self, backbone: "Backbone") -> list[str]:
        return [LAYER]

    def layer_info(self, backbone: "Backbone", layer: str) -> LayerInfo:
        if layer != LAYER:
            raise DeclipError(f"{KEY} has one layer, {LAYER} (got {layer!r})")
        return self.layer_shapes(ARCH).layers[0]

    def layer_shapes(self, arch: str) -> TowerShapes:
        if arch != ARCH:
            raise DeclipError(f"the SRM feature family builds one architecture, {ARCH} (got {arch!r})")
        return TowerShapes(ARCH, self.name, (LayerInfo(
            LAYER, 0, CHANNELS, GRID, False, f"SRM residual statistics per {PATCH}x{PATCH}-pixel patch "
            f"({', '.join(STATS)}; 3 kernels x 3 colour channels), see features/srm.py"),))

    @torch.no_grad()
    def forward_layers(self, backbone: "Backbone", images: torch.Tensor, layers: list[str]) -> LayerOutputs:
        for layer in layers:
            self.layer_info(backbone, layer)
        return {LAYER: (backbone.visual(images), None)}

    def definition(self) -> dict:
        """Recorded in the store beside the features (extraction asks every family for it)."""
        return definition()
