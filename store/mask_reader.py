"""Reading one dataset's cached masks, each row checked against the sums written with it.

Soft masks (one 64 KiB chunk per row) are read straight from their chunk files when the layout allows
(:class:`store.fastpath.RowReader`), checked in the reading threads; a native mask's packed bits (zstd chunks of
1 MiB shared by many rows) are checked after decoding. A chunk that cannot be decoded, a row that does not match its
sum, and a row whose block was never written are each one error naming the store, the array and the block.
Datasets written before per-row mask sums are checked a block at a time (the first read of a row checks its block).
"""
from __future__ import annotations

import numpy as np
import zarr

from declip.core.errors import DeclipError
from declip.store.checksums import crc32
from declip.store.fastpath import DamagedChunk, RowReader
from declip.store.integrity import REPAIR, Blocks, decode_error, zero_crc


class MaskReader:
    """Soft and native masks of one dataset group (``datasets/<dataset>``; a photometric view reads its clean one)."""

    def __init__(self, store_url: str, path: str, group: zarr.Group):
        self.blocks = Blocks(store_url, path, int(group.attrs["block_rows"]), int(group.attrs["n_rows"]))
        self.group = group
        self.bits = group["native_bits"]
        try:
            self.offsets = group["native_offsets"][:]
        except Exception as exc:  # noqa: BLE001 - one chunk for the whole dataset: no block to name
            raise DeclipError(f"store {store_url}: {path}/native_offsets: {decode_error(exc)}; the store is damaged: "
                              + REPAIR.format(store=store_url)) from None
        self.soft_array = group["soft_masks"]
        self.checked = np.zeros(self.blocks.count, dtype=bool)
        self._load_sums()
        self.soft = RowReader(self.soft_array, required=self._required(), check=self._check_soft)

    def _load_sums(self) -> None:
        group, blocks = self.group, self.blocks
        self.done = blocks.read(group["mask_done"], "mask_done", by_block=True).astype(bool)
        self.sums = blocks.read(group["mask_sums"], "mask_sums", by_block=True) if "mask_sums" in group else None
        self.row = (blocks.read(group["mask_row_sums"], "mask_row_sums")
                    if "mask_row_sums" in group and self.sums is not None else None)

    def _required(self) -> np.ndarray | None:
        """Rows whose soft-mask chunk must exist: those written with a mask that is not all zero."""
        if self.row is None:
            return None
        done = np.repeat(self.done, self.blocks.block_rows)[: self.blocks.n_rows]
        return done & (self.row[:, 0] != zero_crc(self.soft_array.shape[1:], self.soft_array.dtype))

    def _check_soft(self, row: int, buf: np.ndarray) -> None:
        if self.row is not None and crc32(buf) != int(self.row[row, 0]):
            raise self.blocks.damaged("soft_masks", self.blocks.of(row), f"row {row} does not match its checksum")

    def _ready(self, rows: np.ndarray) -> None:
        """Refuse rows whose mask block was never written (or was marked for redo); check old groups' blocks whole."""
        blocks = np.unique(rows // self.blocks.block_rows) if len(rows) else np.zeros(0, np.int64)
        if len(blocks) and not self.done[blocks].all():  # another process may have finished them since we looked
            self._load_sums()
            self.soft.required, self.soft.check = self._required(), self._check_soft
        pending = blocks[~self.done[blocks]] if len(blocks) else blocks
        if len(pending):
            lo, hi = self.blocks.rows(int(pending[0]))
            raise DeclipError(
                f"store {self.blocks.store_url}: the masks of {self.blocks.path}, block {int(pending[0])} (rows "
                f"{lo}-{hi - 1}), are not written (an unfinished extraction, or a block `declip store verify` marked "
                "for redo); re-run `declip extract` with the same arguments to write them")
        if self.row is None and self.sums is not None:
            for block in blocks[~self.checked[blocks]]:
                self._check_block(int(block))
                self.checked[block] = True

    def _check_block(self, block: int) -> None:
        lo, hi = self.blocks.rows(block)
        soft = self._soft(np.arange(lo, hi))
        bits = self._bits(block, int(self.offsets[lo]), int(self.offsets[hi]))
        for name, got, want in (("soft_masks", crc32(soft), self.sums[block][0]),
                                ("native_bits", crc32(bits), self.sums[block][1])):
            if got != int(want):
                raise self.blocks.damaged(name, block, "does not match its checksum")

    def _soft(self, rows: np.ndarray) -> np.ndarray:
        try:
            return self.soft.read(rows)
        except DamagedChunk as exc:
            raise self.blocks.damaged("soft_masks", self.blocks.of(exc.row), f"chunk {exc.key} {exc.what}") from None

    def _bits(self, block: int, lo: int, hi: int) -> np.ndarray:
        try:
            return self.bits[lo:hi]
        except Exception as exc:  # noqa: BLE001 - a zstd chunk that no longer decodes
            raise self.blocks.damaged("native_bits", block, decode_error(exc)) from None

    def soft_masks(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), 256, 256) uint8 soft masks, fake = 255."""
        rows = np.asarray(rows, dtype=np.int64)
        self._ready(rows)
        return self._soft(rows)

    def native_mask(self, row: int, shape: tuple[int, int]) -> np.ndarray | None:
        """The native-resolution binary mask of ``row`` (None for rows without one: real and fully generated)."""
        lo, hi = int(self.offsets[row]), int(self.offsets[row + 1])
        if hi == lo:
            return None
        self._ready(np.array([row]))
        block = self.blocks.of(row)
        bits = self._bits(block, lo, hi)
        if self.row is not None and crc32(bits) != int(self.row[row, 1]):
            raise self.blocks.damaged("native_bits", block, f"row {row}'s native mask does not match its checksum")
        h, w = shape
        return np.unpackbits(bits, count=h * w).reshape(h, w).astype(bool)
