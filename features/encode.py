"""The one decode → preprocess → forward sequence, shared by extraction, predict and the benches.

Why one function: a decoder trained on cached features must see, at predict time, exactly the tensors extraction
cached. Keeping the sequence in one place means a change to the input dtype, the device move or the CPU float16
conversion applies to every caller at once.
"""
from __future__ import annotations

import os
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from declip.features.backbones import Backbone
from declip.features.images import open_rgb
from declip.features.preprocess import Recipe, to_tensor
from declip.features.image_batches import ImageBatch
from declip.features.taps import forward_layers

#: ``{layer: (features (B, C, H, W), class token (B, C) or None)}``
LayerOutputs = dict[str, tuple[torch.Tensor, "torch.Tensor | None"]]
#: Storage encoding, run on the device before the copy back: features (B, C, H, W) → (stored array, scales or None).
#: Supplied by the caller (extraction passes :func:`store.quantize.encode` for its storage dtype): features/ does not
#: import store/.
Quantizer = Callable[[torch.Tensor], tuple[np.ndarray, "np.ndarray | None"]]


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


def to_host(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``tensor`` as ``dtype`` in host memory: converted where it is, then copied.

    Why not ``tensor.to("cpu", dtype)``: a blocking device-to-host copy that also changes the dtype converts on the
    CPU (PyTorch's CUDA copy kernel does so to avoid a temporary on the GPU), so float32 features would cross PCIe at
    twice the bytes of float16 and the extraction's main thread would convert every value -- ~0.35 ms per ViT-L/14
    layer and image on one core here (bench/p9_feed.py: 9.5 ms of main-thread work per image for 24 float16 layers,
    1.3 ms for 24 int8 layers, which are encoded on the device). On the CPU the two are the same conversion.
    """
    return tensor.to(dtype).cpu()


def to_cached(outputs: LayerOutputs, ok: np.ndarray | None = None, quantize: Quantizer | None = None,
              cls_dtype: torch.dtype = torch.float16) -> dict[str, tuple]:
    """Layer outputs as the store keeps them: float16 numpy on the CPU; rows not ``ok`` zeroed (their image failed).

    With ``quantize`` the features are encoded by it on their device (fewer bytes to copy back) and each layer comes
    back as ``(stored feats, cls, scales or None)``, class tokens in ``cls_dtype``; without it, as ``(feats, cls)``.
    """
    result = {}
    for layer, (feats, cls) in outputs.items():
        scales = None
        if quantize is None:
            f = to_host(feats, torch.float16).numpy()
        else:
            f, scales = quantize(feats)
        if ok is not None:
            f[~ok] = 0
            if scales is not None:
                scales[~ok] = 0
        c = to_host(cls, cls_dtype).numpy() if cls is not None else None
        result[layer] = (f, c) if quantize is None else (f, c, scales)
    return result


def encode_batch(backbone: Backbone, batch: ImageBatch, layers: list[str], device: str = "cpu",
                 half: bool = False, quantize: Quantizer | None = None,
                 cls_dtype: torch.dtype = torch.float16) -> dict[str, tuple]:
    """Extraction's mapper: one decoded block (:func:`features.image_batches.prefetch_batches`) → store-ready arrays.

    On CUDA the pixels are page-locked (the reader decodes into page-locked batches when asked: no copy here then),
    so their copy runs asynchronously while the previous block is written.
    """
    pixels = batch.pixels
    if str(device).startswith("cuda") and torch.cuda.is_available() and not pixels.is_pinned():
        pixels = pixels.pin_memory()
    return to_cached(encode_pixels(backbone, pixels, layers, device, half), batch.ok.numpy(), quantize, cls_dtype)
