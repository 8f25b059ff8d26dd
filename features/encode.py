"""The one decode → preprocess → forward sequence, shared by extraction, predict and the benches.

Why one function: a decoder trained on cached features must see, at predict time, exactly the tensors extraction
cached. Keeping the sequence in one place means a change to the input dtype, the device move or the CPU float16
conversion applies to every caller at once.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from features.backbones import Backbone
from features.images import open_rgb
from features.preprocess import Recipe, to_tensor
from features.reader import ImageBatch
from features.taps import forward_layers

#: ``{layer: (features (B, C, H, W), class token (B, C) or None)}``
LayerOutputs = dict[str, tuple[torch.Tensor, "torch.Tensor | None"]]


def images_to_pixels(recipe: Recipe, images: Sequence[Image.Image]) -> torch.Tensor:
    """Decoded RGB images → the model's (B, 3, S, S) float32 input, by the recipe."""
    return torch.stack([to_tensor(recipe, im) for im in images])


def compute_dtype(half: bool) -> torch.dtype:
    return torch.float16 if half else torch.float32


@torch.no_grad()
def encode_pixels(backbone: Backbone, pixels: torch.Tensor, layers: list[str], device: str = "cpu",
                  half: bool = False) -> LayerOutputs:
    """One forward pass of preprocessed pixels on ``device``; every requested layer at once."""
    x = pixels.to(device, compute_dtype(half), non_blocking=True)
    return forward_layers(backbone, x, layers)


def encode_images(backbone: Backbone, recipe: Recipe, images: Sequence[Image.Image], layers: list[str],
                  device: str = "cpu", half: bool = False) -> LayerOutputs:
    """Decoded images → layer features (predict's path)."""
    return encode_pixels(backbone, images_to_pixels(recipe, images), layers, device, half)


def encode_files(backbone: Backbone, recipe: Recipe, paths: Sequence[str | os.PathLike], layers: list[str],
                 device: str = "cpu", half: bool = False) -> LayerOutputs:
    """Image files → layer features; an unreadable file raises :class:`features.images.ImageProblem` (benches)."""
    images = [open_rgb(str(p), exif=recipe.applies_exif) for p in paths]
    return encode_images(backbone, recipe, images, layers, device, half)


def to_cached(outputs: LayerOutputs, ok: np.ndarray | None = None) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Layer outputs as the store keeps them: float16 numpy on the CPU; rows not ``ok`` zeroed (their image failed)."""
    result = {}
    for layer, (feats, cls) in outputs.items():
        f = feats.to("cpu", torch.float16).numpy()
        if ok is not None:
            f[~ok] = 0
        c = cls.to("cpu", torch.float16).numpy() if cls is not None else None
        result[layer] = (f, c)
    return result


def encode_batch(backbone: Backbone, batch: ImageBatch, layers: list[str], device: str = "cpu",
                 half: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Extraction's mapper: one decoded block (from :func:`features.reader.prefetch_batches`) → store-ready arrays."""
    return to_cached(encode_pixels(backbone, batch.pixels, layers, device, half), batch.ok.numpy())
