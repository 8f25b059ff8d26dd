"""How cached features are stored on disk: float16 (default), float32 (exact reproduction), int8 or float8.

The 24 layers of ViT-L/14 take 12.6 MB per image in float16; int8 and float8 halve that. Quantized features carry
one float32 scale per (sample, channel) -- the absolute maximum of that channel's map, mapped to the format's
largest value -- so a channel with huge activations (ViT residual streams have a few) does not crush the others.
Scales cost C × 4 bytes per sample (1.5 % of an int8 ViT-L layer). Encoding runs on the extraction device, before
the copy to the host; decoding runs wherever the reader wants the floats (host or training device), so int8 rows
stay int8 in RAM and on the GPU until a batch is used.
"""
from __future__ import annotations

import numpy as np
import torch

from declip.core.errors import DeclipError

# name -> (numpy dtype on disk, quantized?, largest representable magnitude used for the scale)
_FORMATS = {
    "float16": ("float16", False, None),
    "float32": ("float32", False, None),
    "int8": ("int8", True, 127.0),
    "float8_e4m3": ("uint8", True, 448.0),  # torch.float8_e4m3fn bits; numpy has no float8
}
STORAGE_DTYPES = tuple(_FORMATS)
DEFAULT_STORAGE_DTYPE = "float16"


def check_storage_dtype(name: str) -> str:
    if name not in _FORMATS:
        raise DeclipError(f"unknown storage dtype {name!r}; choose one of {', '.join(STORAGE_DTYPES)}")
    return name


def disk_dtype(name: str) -> str:
    """The numpy dtype of the ``feats`` array on disk."""
    return _FORMATS[check_storage_dtype(name)][0]


def is_quantized(name: str) -> bool:
    return _FORMATS[check_storage_dtype(name)][1]


def cls_dtype(name: str) -> str:
    """Class tokens are tiny (C values per image): kept in float32 for exact storage, float16 otherwise."""
    return "float32" if name == "float32" else "float16"


def compute_dtype(name: str) -> torch.dtype:
    """What readers hand out: float32 features stay float32; everything else decodes to float16."""
    return torch.float32 if name == "float32" else torch.float16


def bytes_per_sample(name: str, channels: int, grid: tuple[int, int], has_cls: bool) -> int:
    """Bytes one sample takes on disk in this format (features, scales, class token, valid flag)."""
    h, w = grid
    feats = channels * h * w * np.dtype(disk_dtype(name)).itemsize
    scales = channels * 4 if is_quantized(name) else 0
    cls = channels * np.dtype(cls_dtype(name)).itemsize if has_cls else 0
    return int(feats + scales + cls + 1)


def encode(feats: torch.Tensor, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(B, C, H, W) float tensor (any device) -> (stored array, per-channel scales (B, C) float32 or None)."""
    if not is_quantized(name):
        return feats.to("cpu", getattr(torch, name)).numpy(), None
    x = feats.float()
    top = _FORMATS[name][2]
    amax = x.abs().amax(dim=(2, 3))
    scales = torch.where(amax > 0, amax / top, torch.ones_like(amax))
    scaled = x / scales[:, :, None, None]
    if name == "int8":
        stored = scaled.round_().clamp_(-top, top).to(torch.int8)
    else:
        stored = scaled.clamp_(-top, top).to(torch.float8_e4m3fn).view(torch.uint8)
    return stored.cpu().numpy(), scales.cpu().numpy()


def decode(stored: torch.Tensor, scales: torch.Tensor | None, name: str,
           dtype: torch.dtype | None = None) -> torch.Tensor:
    """Inverse of :func:`encode` on whatever device ``stored`` is on; float formats pass through (cast to ``dtype``)."""
    dtype = dtype or compute_dtype(name)
    if not is_quantized(name):
        return stored.to(dtype)
    if scales is None:
        raise DeclipError(f"{name} features need their per-channel scales, and none were given")
    values = stored.float() if name == "int8" else stored.view(torch.float8_e4m3fn).float()
    return (values * scales.float()[:, :, None, None].to(values.device)).to(dtype)
