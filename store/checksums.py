"""What stored rows and blocks must read back as: the dataset checksum and the per-block CRC-32 sums.

Why a module of its own: the writers (the dataset and layer parts of the store), the readers and ``declip store
verify`` must hash exactly the same bytes; one definition keeps them from drifting.

Why ISA-L's CRC-32 (``isal``): every read checks the CRC of every row it reads, and zlib's CRC-32 (4-7 GB/s here)
costs about as much as copying the row out of the page cache; ISA-L computes the same checksum (same polynomial, same
values, so stores written with either agree) with carry-less multiplication at 25-65 GB/s, which makes the check
nearly free next to the read (bench/p3_store_read.py). Where no isal wheel exists, zlib gives the same values.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

try:
    from isal.isal_zlib import crc32 as _crc32
except ImportError:  # pragma: no cover - a platform without an isal wheel: the same checksums, slower
    from zlib import crc32 as _crc32


def dataset_checksum(samples: pd.DataFrame) -> str:
    """Identifies the exact rows (file contents and order) a feature array is aligned with."""
    digest = hashlib.sha256()
    for row in samples[["image_path", "mask_path", "sha256"]].itertuples(index=False):
        digest.update("\x1f".join(str(v) for v in row).encode() + b"\x1e")
    return digest.hexdigest()


def crc32(array: np.ndarray | None) -> int:
    """CRC-32 of an array's bytes, where they are (no copy for a contiguous array; zlib's CRC-32 values)."""
    return 0 if array is None else _crc32(np.ascontiguousarray(array).view(np.uint8).ravel())


def block_sums(feats: np.ndarray, cls: np.ndarray | None, valid: np.ndarray,
               scales: np.ndarray | None = None) -> list[int]:
    """What a done feature block must read back as: crc32 of its features, class tokens and valid flags as stored.

    Arrays are hashed in the dtype they are stored in (float16/float32 features, or int8/float8 bits); a quantized
    layer's float32 scales are folded into the features' sum (a CRC continued over the scales' bytes), so the
    ``(blocks, 3)`` shape stays that of unquantized and older stores and a changed scale flags the features.
    """
    f = crc32(feats)
    if scales is not None:
        f = _crc32(np.ascontiguousarray(scales, dtype=np.float32).view(np.uint8).ravel(), f)
    return [f, crc32(cls), crc32(np.asarray(valid).astype(np.uint8))]


def row_sums(feats: np.ndarray, cls: np.ndarray | None, scales: np.ndarray | None = None) -> np.ndarray:
    """(B, 3) uint32: per row, crc32 of its features, class token and scales as stored (0 where a part is absent).

    Why per row as well as per block: training streams shuffled rows, and a block's sum can only be checked by
    reading the whole block; a row's own sum lets every read check exactly the bytes it read, where they already are.
    """
    out = np.zeros((len(feats), 3), dtype=np.uint32)
    for i in range(len(feats)):
        out[i] = (crc32(feats[i]), crc32(None if cls is None else cls[i]), crc32(None if scales is None else scales[i]))
    return out


def mask_row_sums(soft: np.ndarray, bits: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(B, 2) uint32: per row, crc32 of its soft mask and of its packed native mask (``bits[offsets[i]:offsets[i+1]]``,
    offsets relative to ``bits``)."""
    out = np.zeros((len(soft), 2), dtype=np.uint32)
    for i in range(len(soft)):
        out[i] = (crc32(soft[i]), crc32(bits[int(offsets[i]):int(offsets[i + 1])]))
    return out
