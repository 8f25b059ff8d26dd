"""Damaged bytes are caught when read: what a reader reads is checked against the checksums written with it.

Two kinds of sums are written with every block (:mod:`store.checksums`): per block (``sums``, ``mask_sums``: what
``declip store verify`` and whole-layer loads check) and per row (``row_sums``, ``mask_row_sums``: what streamed and
per-row reads check, on the bytes they just read, in the reader's threads, without reading anything twice). A
mismatch, or a chunk that cannot be decoded, is one :class:`DamagedBlock` error naming the store, the array, the block
and the fix. Groups written before per-row sums are checked a block at a time (the first read of a row reads its whole
block once); groups written before any checksums cannot be checked (``declip store verify`` says so).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from declip.core.errors import DeclipError
from declip.store.checksums import block_sums, crc32

REPAIR = ("run `declip store verify --store {store}` to mark the damaged blocks, then re-run `declip extract` with the "
          "same arguments to redo them")


class DamagedBlock(DeclipError):
    """A read found bytes that differ from what was written, or cannot be decoded at all."""

    def __init__(self, store_url: str, array: str, block: int, rows: tuple[int, int] | None, what: str):
        self.store_url, self.array, self.block = store_url, array, block
        where = f"block {block}" + (f" (rows {rows[0]}-{rows[1] - 1})" if rows else "")
        super().__init__(f"store {store_url}: {array}, {where}: {what}; the store is damaged: "
                         + REPAIR.format(store=store_url))


def decode_error(exc: BaseException) -> str:
    return f"a chunk cannot be decoded ({type(exc).__name__}: {exc})"


@dataclass(frozen=True)
class Blocks:
    """The block grid of one array group (a feature layer, or a dataset's masks): names what a damaged read hit."""

    store_url: str
    path: str  # the group, e.g. features/<backbone>/<layer>/<dataset> or datasets/<dataset>
    block_rows: int
    n_rows: int

    @property
    def count(self) -> int:
        return max(1, -(-self.n_rows // self.block_rows))

    def of(self, row: int) -> int:
        return int(row) // self.block_rows

    def rows(self, block: int) -> tuple[int, int]:
        return block * self.block_rows, min((block + 1) * self.block_rows, self.n_rows)

    def damaged(self, array: str, block: int, what: str) -> DamagedBlock:
        return DamagedBlock(self.store_url, f"{self.path}/{array}", int(block), self.rows(int(block)), what)

    def read(self, array: Any, name: str, lo: int = 0, hi: int | None = None, by_block: bool = False) -> np.ndarray:
        """``array[lo:hi]`` (indices are rows, or blocks with ``by_block``); a chunk that fails to decode is named by
        its block, found by reading the range a block at a time."""
        try:
            return array[lo:hi]
        except DeclipError:
            raise
        except Exception as first:  # noqa: BLE001 - codecs raise RuntimeError, ValueError, ...: find the block
            hi = array.shape[0] if hi is None else hi
            span = range(lo, hi) if by_block else range(self.of(lo), self.of(max(lo, hi - 1)) + 1)
            for block in span:
                a, b = (block, block + 1) if by_block else (max(lo, self.rows(block)[0]), min(hi, self.rows(block)[1]))
                try:
                    array[a:b]
                except Exception as exc:  # noqa: BLE001
                    raise self.damaged(name, block, decode_error(exc)) from None
            raise self.damaged(name, self.of(lo) if not by_block else lo, decode_error(first)) from None


def zero_crc(row_shape: tuple[int, ...], dtype: Any) -> int:
    """The sum of an all-zero row: zarr stores no chunk for one, so its missing file is no damage."""
    return crc32(np.zeros(row_shape, dtype=dtype))


class LayerCheck:
    """The checksums of one feature group, loaded once when a reader opens it, and the checks its reads run."""

    def __init__(self, blocks: Blocks, arrays: Any, read_block: Callable[[int], tuple]):
        self.blocks = blocks
        self.done = blocks.read(arrays.done, "done", by_block=True).astype(bool)
        self.sums = None if arrays.sums is None else blocks.read(arrays.sums, "sums", by_block=True)
        rows = getattr(arrays, "row_sums", None)
        self.row = None if rows is None or self.sums is None else blocks.read(rows, "row_sums")
        self.read_block = read_block  # block -> (feats, cls, valid, scales) as stored, for groups without row sums
        self.checked = np.zeros(len(self.done), dtype=bool)

    @property
    def per_row(self) -> bool:
        return self.row is not None

    def required(self, valid: np.ndarray, zero: int) -> np.ndarray:
        """Rows whose feature chunk must exist: valid rows, less those written as all zeros (stored as no chunk)."""
        if self.row is None:
            return valid
        return valid & (self.row[:, 0] != zero)

    def valid_blocks(self, valid: np.ndarray) -> list[int]:
        """Done blocks whose ``valid`` flags (read on open: small) differ from their sums."""
        if self.sums is None:
            return []
        return [int(b) for b in np.flatnonzero(self.done)
                if crc32(valid[slice(*self.blocks.rows(int(b)))].astype(np.uint8)) != int(self.sums[b][2])]

    def _done(self, row: int) -> bool:
        return bool(self.done[row // self.blocks.block_rows])

    def feats(self, row: int, buf: np.ndarray) -> None:
        """Run by the reader's threads right after a row's bytes landed in ``buf`` (zlib releases the GIL)."""
        if self.row is not None and self._done(row) and crc32(buf) != int(self.row[row, 0]):
            raise self.blocks.damaged("feats", self.blocks.of(row), f"row {row} does not match its checksum")

    def small(self, rows: np.ndarray, cls: np.ndarray | None, scales: np.ndarray | None) -> None:
        """Class tokens and scales of ``rows`` (in that order) against their rows' sums."""
        if self.row is None:
            return
        for name, col, part in (("cls", 1, cls), ("scales", 2, scales)):
            if part is None:
                continue
            for i, row in enumerate(rows):
                row = int(row)
                if self._done(row) and crc32(part[i]) != int(self.row[row, col]):
                    raise self.blocks.damaged(name, self.blocks.of(row), f"row {row} does not match its checksum")

    def block(self, block: int, feats: np.ndarray, cls: np.ndarray | None, valid: np.ndarray,
              scales: np.ndarray | None) -> None:
        """One done block's rows as read, against its block sums."""
        got = block_sums(feats, cls, valid, scales)
        for name, a, b in zip(("feats" if scales is None else "feats or scales", "cls", "valid"), got,
                              self.sums[block]):
            if int(a) != int(b):
                raise self.blocks.damaged(name, block, "does not match its checksum")

    def whole(self, feats: np.ndarray, cls: np.ndarray | None, valid: np.ndarray, scales: np.ndarray | None) -> None:
        """A whole layer in memory: every done block against its block sums."""
        if self.sums is None:
            return
        for block in np.flatnonzero(self.done):
            lo, hi = self.blocks.rows(int(block))
            self.block(int(block), feats[lo:hi], None if cls is None else cls[lo:hi], valid[lo:hi],
                       None if scales is None else scales[lo:hi])

    def blocks_of(self, rows: np.ndarray) -> None:
        """Groups with block sums only: check every done block ``rows`` touch, once, by reading it whole."""
        if self.row is not None or self.sums is None or not len(rows):
            return
        for block in np.unique(np.asarray(rows, dtype=np.int64) // self.blocks.block_rows):
            block = int(block)
            if self.done[block] and not self.checked[block]:
                self.block(block, *self.read_block(block))
                self.checked[block] = True
