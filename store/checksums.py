"""What stored rows and blocks must read back as: the dataset checksum and the per-block CRC-32 sums.

Why a module of its own: the writers (the dataset and layer parts of the store), the readers and ``declip store
verify`` must hash exactly the same bytes; one definition keeps them from drifting.
"""
from __future__ import annotations

import hashlib
import zlib

import numpy as np
import pandas as pd


def dataset_checksum(samples: pd.DataFrame) -> str:
    """Identifies the exact rows (file contents and order) a feature array is aligned with."""
    digest = hashlib.sha256()
    for row in samples[["image_path", "mask_path", "sha256"]].itertuples(index=False):
        digest.update("\x1f".join(str(v) for v in row).encode() + b"\x1e")
    return digest.hexdigest()


def crc32(array: np.ndarray | None) -> int:
    """CRC-32 of an array's bytes (2 GB/s here: cheap next to encoding and writing the block)."""
    return 0 if array is None else zlib.crc32(np.ascontiguousarray(array).view(np.uint8).ravel())


def block_sums(feats: np.ndarray, cls: np.ndarray | None, valid: np.ndarray,
               scales: np.ndarray | None = None) -> list[int]:
    """What a done feature block must read back as: crc32 of its features, class tokens and valid flags as stored.

    Arrays are hashed in the dtype they are stored in (float16/float32 features, or int8/float8 bits); a quantized
    layer's float32 scales are folded into the features' sum (a CRC continued over the scales' bytes), so the
    ``(blocks, 3)`` shape stays that of unquantized and older stores and a changed scale flags the features.
    """
    f = crc32(feats)
    if scales is not None:
        f = zlib.crc32(np.ascontiguousarray(scales, dtype=np.float32).view(np.uint8).ravel(), f)
    return [f, crc32(cls), crc32(np.asarray(valid).astype(np.uint8))]
