"""How cached features are stored on disk: float16 (default), float32 (exact reproduction), int8 or float8.

The 24 layers of ViT-L/14 take 12.6 MB per image in float16; int8 and float8 halve that. Quantized features carry
one float32 scale per (sample, channel) -- the absolute maximum of that channel's map, mapped to the format's
largest value -- so a channel with huge activations (ViT residual streams have a few) does not crush the others.
Scales cost C × 4 bytes per sample (1.5 % of an int8 ViT-L layer). Encoding runs on the extraction device, before
the copy to the host; decoding runs wherever the reader wants the floats (host or training device), so int8 rows
stay int8 in RAM and on the GPU until a batch is used.

Storage dtypes are a registry (:data:`STORAGE_DTYPES`): a new one is one :class:`StorageDtype` entry below, and
the CLI choices, the grid's TOML check and ``tests/test_contracts.py`` pick it up. The error bounds an entry declares
are the format's published properties (IEEE 754 binary16's 11-bit significand, OCP FP8 E4M3's 4-bit one, half a
step of a rounding integer code); the contract test holds every entry to its own.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from declip.core.errors import DeclipError
from declip.core.registry import Registry

if TYPE_CHECKING:  # torch is imported where tensors are made, so the CLI can list the choices without it
    import torch


@dataclass(frozen=True)
class StorageDtype:
    """One way of storing a feature map; quantized formats (``max_code`` set) also store per-channel scales."""

    name: str
    disk: str  # numpy dtype of the ``feats`` array on disk
    compute: str  # torch dtype readers hand out
    cls: str  # numpy dtype of the class tokens (tiny: C values per image)
    help: str
    max_code: float | None = None  # largest stored magnitude a channel's absolute maximum maps to (quantized only)
    to_codes: Callable[["torch.Tensor"], "torch.Tensor"] | None = None  # scaled floats -> stored bits (quantized)
    from_codes: Callable[["torch.Tensor"], "torch.Tensor"] | None = None  # stored bits -> float32 (quantized)
    relative_error: float = 0.0  # round-trip bound: |x' - x| <= relative_error * |x| + absolute_error ...
    absolute_error: float = 0.0  # ... (in units of the channel's scale for quantized formats)

    @property
    def quantized(self) -> bool:
        return self.max_code is not None


STORAGE_DTYPES: Registry[StorageDtype] = Registry("storage dtype")
DEFAULT_STORAGE_DTYPE = "float16"


def _register(spec: StorageDtype) -> StorageDtype:
    return STORAGE_DTYPES.add(spec.name, spec)


def _int8_codes(x: "torch.Tensor") -> "torch.Tensor":
    import torch

    return x.round_().clamp_(-127, 127).to(torch.int8)


def _float8_codes(x: "torch.Tensor") -> "torch.Tensor":
    import torch

    return x.clamp_(-448, 448).to(torch.float8_e4m3fn).view(torch.uint8)  # the bits: numpy has no float8


def _float8_values(codes: "torch.Tensor") -> "torch.Tensor":
    import torch

    return codes.view(torch.float8_e4m3fn).float()


_register(StorageDtype("float16", "float16", "float16", "float16", "half of float32's bytes",
                       relative_error=2.0**-11, absolute_error=2.0**-25))
_register(StorageDtype("float32", "float32", "float32", "float32", "exact reproduction; 2x the bytes"))
_register(StorageDtype("int8", "int8", "float16", "float16", "half the bytes; per-channel scales",
                       max_code=127.0, to_codes=_int8_codes, from_codes=lambda codes: codes.float(),
                       absolute_error=0.5))
_register(StorageDtype("float8_e4m3", "uint8", "float16", "float16", "half the bytes; per-channel scales",
                       max_code=448.0, to_codes=_float8_codes, from_codes=_float8_values,
                       relative_error=2.0**-4, absolute_error=2.0**-10))


def storage_dtype(name: str) -> StorageDtype:
    """The registered entry, or one clear error listing them."""
    return STORAGE_DTYPES.get(name)


def check_storage_dtype(name: str) -> str:
    storage_dtype(name)
    return name


def disk_dtype(name: str) -> str:
    """The numpy dtype of the ``feats`` array on disk."""
    return storage_dtype(name).disk


def is_quantized(name: str) -> bool:
    return storage_dtype(name).quantized


def cls_dtype(name: str) -> str:
    """Class tokens are tiny (C values per image): kept in float32 for exact storage, float16 otherwise."""
    return storage_dtype(name).cls


def compute_dtype(name: str) -> "torch.dtype":
    """What readers hand out: float32 features stay float32; everything else decodes to float16."""
    import torch

    return getattr(torch, storage_dtype(name).compute)


def bytes_per_sample(name: str, channels: int, grid: tuple[int, int], has_cls: bool) -> int:
    """Bytes one sample takes on disk in this format (features, scales, class token, valid flag)."""
    h, w = grid
    feats = channels * h * w * np.dtype(disk_dtype(name)).itemsize
    scales = channels * 4 if is_quantized(name) else 0
    cls = channels * np.dtype(cls_dtype(name)).itemsize if has_cls else 0
    return int(feats + scales + cls + 1)


def encode(feats: "torch.Tensor", name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(B, C, H, W) float tensor (any device) -> (stored array, per-channel scales (B, C) float32 or None)."""
    import torch

    from declip.features.encode import to_host

    spec = storage_dtype(name)
    if not spec.quantized:
        return to_host(feats, getattr(torch, spec.disk)).numpy(), None
    x = feats.float()
    amax = x.abs().amax(dim=(2, 3))
    scales = torch.where(amax > 0, amax / spec.max_code, torch.ones_like(amax))
    stored = spec.to_codes(x / scales[:, :, None, None])
    return stored.cpu().numpy(), scales.cpu().numpy()


def decode(stored: "torch.Tensor", scales: "torch.Tensor | None", name: str,
           dtype: "torch.dtype | None" = None) -> "torch.Tensor":
    """Inverse of :func:`encode` on whatever device ``stored`` is on; float formats pass through (cast to ``dtype``)."""
    spec = storage_dtype(name)
    dtype = dtype or compute_dtype(name)
    if not spec.quantized:
        return stored.to(dtype)
    if scales is None:
        raise DeclipError(f"{name} features need their per-channel scales, and none were given")
    values = spec.from_codes(stored)
    return (values * scales.float()[:, :, None, None].to(values.device)).to(dtype)
