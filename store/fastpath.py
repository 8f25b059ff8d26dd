"""A zero-copy read path for the common local case: uncompressed, unsharded, one-sample chunks.

Measured here (bench/p3_store_read.py, 2 cores): zarr-python's per-chunk pipeline costs ~5 ms per 512 KiB
sample read, 8× a plain file read, and a whole-layer ``a[:]`` runs at ~460 MiB/s against ~2 GiB/s for a
memmap. When a chunk's bytes on disk *are* the sample (``bytes`` codec, little-endian, no compressor, no
shard, local file system), we read them straight into the caller's buffer; every other layout goes through zarr.
A chunk file that was never written (all fill value) reads as the fill value, as zarr would.
"""
from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import zarr
from zarr.codecs import BytesCodec, ZstdCodec
from zarr.storage import LocalStore

from declip.core.errors import DeclipError


class DamagedChunk(DeclipError, OSError):
    def __init__(self, path: str, what: str, row: int | None = None, key: str = ""):
        self.chunk_path, self.what, self.row, self.key = path, what, row, key or path
        super().__init__(f"{path}: chunk {what} (the store is damaged); run `declip store verify --store STORE` to "
                         "mark the damaged blocks, then re-run `declip extract` with the same arguments to redo them")


class RowReader:
    """Reads rows (first-axis samples) of a zarr array into preallocated buffers."""

    def __init__(self, array: zarr.Array, threads: int = 4, required: np.ndarray | None = None,
                 check: Callable[[int, np.ndarray], None] | None = None):
        """``required``: rows whose chunk must exist (valid rows of done blocks); a missing one is damage, not zeros.
        ``check(row, buf)``: run on each row right after it is read, where its bytes are (in the reading thread)."""
        self.array = array
        self.required = required
        self.check = check
        self.row_shape = tuple(array.shape[1:])
        self.dtype = array.dtype
        self.row_bytes = int(np.prod(self.row_shape)) * array.dtype.itemsize
        self.base = _direct_base(array)
        self.threads = threads
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rows") if self.base else None

    @property
    def direct(self) -> bool:
        return self.base is not None

    def _key(self, row: int) -> str:
        return self.array.metadata.encode_chunk_key((row,) + (0,) * len(self.row_shape))

    def _path(self, row: int) -> str:
        return os.path.join(self.base, self._key(row))

    def _read_into(self, row: int, out: np.ndarray) -> None:
        try:
            with open(self._path(row), "rb", buffering=0) as fh:
                got = fh.readinto(memoryview(out).cast("B"))
            if got != self.row_bytes:
                raise DamagedChunk(self._path(row), f"{got} of {self.row_bytes} bytes", row, self._key(row))
        except FileNotFoundError:
            if self.required is not None and self.required[row]:
                raise DamagedChunk(self._path(row), "missing", row, self._key(row)) from None
            out[...] = self.array.fill_value
        if self.check is not None:
            self.check(row, out)

    def read(self, rows, out: np.ndarray | None = None) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        if out is None:  # zeros, not empty: calloc'd pages fill ~2x faster here than malloc'd ones (measured)
            out = np.zeros((len(rows), *self.row_shape), dtype=self.dtype)
        if not self.direct:
            for i, row in enumerate(rows):
                try:
                    out[i] = self.array[int(row)]
                except Exception as exc:  # noqa: BLE001 - codecs raise RuntimeError, ValueError, ...
                    raise DamagedChunk(f"{self.array.path}[{int(row)}]", f"cannot be decoded ({type(exc).__name__}: "
                                       f"{exc})", int(row), f"of row {int(row)}") from None
                if self.check is not None:
                    self.check(int(row), out[i])
            return out
        list(self._pool.map(lambda span: self._read_span(rows, out, *span), _spans(len(rows), self.threads)))
        return out

    def _read_span(self, rows: np.ndarray, out: np.ndarray, lo: int, hi: int) -> None:
        for i in range(lo, hi):
            self._read_into(int(rows[i]), out[i])

    def read_all(self) -> np.ndarray:
        """Every row, read directly (each checked in its thread); callers read other layouts through zarr."""
        if not self.direct:
            return self.array[:]
        return self.read(np.arange(self.array.shape[0]))


def _spans(n: int, threads: int, per_span: int = 64) -> list[tuple[int, int]]:
    """``[lo, hi)`` ranges covering ``n`` rows: one task per span, not per row (a task per 512 KiB row cost ~15 % of a
    whole-layer read in thread hand-offs), and at least ``threads`` spans when there are enough rows to share."""
    size = max(1, min(per_span, -(-n // threads)))
    return [(lo, min(n, lo + size)) for lo in range(0, n, size)]


def _direct_base(array: zarr.Array, any_rows: bool = False, zstd: bool = False) -> str | None:
    """The array's folder when its chunks are plain little-endian bytes on a local store, each one row (or, with
    ``any_rows``, any number of whole rows; with ``zstd``, also those bytes in one zstd frame); None for every other
    layout."""
    meta = array.metadata
    chunks = getattr(meta, "chunks", None)
    codecs = getattr(meta, "codecs", ())
    if not isinstance(array.store, LocalStore) or sys.byteorder != "little":
        return None
    if chunks is None or (chunks[0] != 1 and not any_rows) or tuple(chunks[1:]) != tuple(array.shape[1:]):
        return None
    if zstd and len(codecs) == 2 and isinstance(codecs[1], ZstdCodec):
        codecs = codecs[:1]
    if len(codecs) != 1 or not isinstance(codecs[0], BytesCodec):
        return None
    if codecs[0].endian is not None and codecs[0].endian.value != "little":  # None: one-byte dtypes (int8)
        return None
    return os.path.join(str(array.store.root), array.store_path.path)
