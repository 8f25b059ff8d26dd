"""Find damaged blocks: every done block must read back to the checksums written with its done flag.

Why checksums of the content and not a listing of chunk files: zarr reads a deleted chunk as its fill value and does
not write all-fill chunks at all, so "file missing" is sometimes fine; a checksum of what the block *should* read
as catches a deleted chunk, a short one and a changed one alike. Each block is checked against its block sums and,
where the group has them, its per-row sums (what reads check); the bookkeeping arrays themselves (done flags, sums,
valid flags, native-mask offsets) are read a block at a time, so a chunk of them that no longer decodes is reported
as its block's damage instead of stopping the check. A damaged block gets its done flag cleared (with ``redo=True``),
so the next ``declip extract`` with the same arguments redoes exactly those blocks (rewriting every chunk of them).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from declip.core.errors import DeclipError
from declip.store.checksums import mask_row_sums, row_sums
from declip.store.datasets import native_offsets
from declip.store.feature_store import FeatureStore, LayerArrays, block_sums, crc32
from declip.store.integrity import Blocks, decode_error


@dataclass
class Damage:
    """The damaged blocks of one array group (a feature layer, or a dataset's masks)."""

    path: str
    blocks: list[int] = field(default_factory=list)
    reasons: dict[int, str] = field(default_factory=dict)
    unchecked: str = ""  # why nothing could be checked (a store written before checksums)
    problems: list[str] = field(default_factory=list)  # damage to the group as a whole (not one block's)

    def add(self, block: int, reason: str) -> None:
        block = int(block)
        if block not in self.reasons:
            self.blocks.append(block)
            self.reasons[block] = reason
        elif reason not in self.reasons[block]:
            self.reasons[block] += f"; {reason}"

    @property
    def damaged(self) -> bool:
        return bool(self.blocks or self.problems)


def _read(array, name: str, grid: Blocks, damage: Damage, by_block: bool = False) -> np.ndarray:
    """All of a bookkeeping array; a block whose chunk does not decode is recorded and reads as zeros."""
    try:
        return array[:]
    except Exception:  # noqa: BLE001 - codecs raise RuntimeError, ValueError, ...: read it a block at a time
        out = np.zeros(array.shape, dtype=array.dtype)
        for block in range(grid.count):
            lo, hi = (block, block + 1) if by_block else grid.rows(block)
            try:
                out[lo:hi] = array[lo:hi]
            except Exception as exc:  # noqa: BLE001
                damage.add(block, f"{name}: {decode_error(exc)}")
        return out


def damaged_layer_blocks(arrays: LayerArrays, blocks=None, store_url: str = "") -> Damage:
    """Done blocks of a feature group whose content no longer matches its checksums (all done blocks by default)."""
    damage = Damage(arrays.path)
    if arrays.sums is None:
        damage.unchecked = "written before per-block checksums; cannot be verified (re-extract to add them)"
        return damage
    grid = Blocks(store_url, arrays.path, arrays.block_rows, arrays.n_rows)
    done = _read(arrays.done, "done", grid, damage, by_block=True).astype(bool)
    sums = _read(arrays.sums, "sums", grid, damage, by_block=True)
    rows = None if arrays.row_sums is None else _read(arrays.row_sums, "row_sums", grid, damage)
    for block in (np.flatnonzero(done) if blocks is None else blocks):
        block = int(block)
        if block in damage.reasons:
            continue
        lo, hi = grid.rows(block)
        try:
            feats, valid = arrays.feats[lo:hi], arrays.valid[lo:hi]
            cls = arrays.cls[lo:hi] if arrays.cls is not None else None
            scales = arrays.scales[lo:hi] if arrays.scales is not None else None  # quantized: in the feats sum
        except Exception as exc:  # noqa: BLE001 - a short or corrupt chunk fails to decode
            damage.add(block, f"unreadable chunk ({type(exc).__name__}: {exc})")
            continue
        got = block_sums(feats, cls, valid, scales)
        names = [n for n, a, b in zip(("feats", "cls", "valid"), got, sums[block]) if int(a) != int(b)]
        if names:
            damage.add(block, f"{', '.join(names)} changed or missing")
        elif rows is not None and not np.array_equal(row_sums(feats, cls, scales), rows[lo:hi]):
            damage.add(block, "row_sums changed or missing (the data matches its block sums)")
    return damage


def damaged_mask_blocks(store: FeatureStore, dataset: str) -> Damage:
    group = store.root[f"datasets/{dataset}"]
    damage = Damage(f"datasets/{dataset}")
    if "masks_of" in group.attrs:  # a photometric view reads its clean dataset's masks, checked there
        return damage
    if "mask_sums" not in group:
        damage.unchecked = "written before per-block checksums; cannot be verified"
        return damage
    n = int(group.attrs["n_rows"])
    grid = Blocks(store.url, damage.path, int(group.attrs["block_rows"]), n)
    offsets = _offsets(store, dataset, group, damage)
    done = _read(group["mask_done"], "mask_done", grid, damage, by_block=True).astype(bool)
    sums = _read(group["mask_sums"], "mask_sums", grid, damage, by_block=True)
    rows = _read(group["mask_row_sums"], "mask_row_sums", grid, damage) if "mask_row_sums" in group else None
    for block in np.flatnonzero(done):
        if int(block) in damage.reasons:
            continue
        lo, hi = grid.rows(int(block))
        try:
            soft, bits = group["soft_masks"][lo:hi], group["native_bits"][int(offsets[lo]):int(offsets[hi])]
        except Exception as exc:  # noqa: BLE001
            damage.add(block, f"unreadable chunk ({type(exc).__name__}: {exc})")
            continue
        names = [n for n, a, b in zip(("soft_masks", "native_bits"), (crc32(soft), crc32(bits)), sums[block])
                 if int(a) != int(b)]
        if names:
            damage.add(block, f"{', '.join(names)} changed or missing")
        elif rows is not None and not np.array_equal(mask_row_sums(soft, bits, offsets[lo:hi + 1] - offsets[lo]),
                                                     rows[lo:hi]):
            damage.add(block, "mask_row_sums changed or missing (the masks match their block sums)")
    return damage


def _offsets(store: FeatureStore, dataset: str, group, damage: Damage) -> np.ndarray:
    """Where each row's native mask starts: derived again from the registered rows and compared with the stored ones
    (which every native-mask read trusts); the derived ones are what the blocks are checked with."""
    why = ""
    try:
        stored = group["native_offsets"][:]
    except Exception as exc:  # noqa: BLE001
        stored, why = None, decode_error(exc)
    try:
        expected = native_offsets(store.samples(dataset))
    except DeclipError as exc:
        damage.problems.append(str(exc))
        if stored is None:
            raise DeclipError(f"store {store.url}: datasets/{dataset}/native_offsets: {why}, and the registered rows "
                              "it is rebuilt from are damaged too; re-run `declip extract` with the dataset's "
                              "manifest") from None
        return stored
    if stored is None or not np.array_equal(stored, expected):
        damage.problems.append("native_offsets " + (why if stored is None else "changed") + " (rebuilt from the "
                               "registered rows by `declip store verify` without --check-only)")
    return expected


def _clear_undecodable(bits) -> None:
    """Native-mask chunks are shared by many blocks and rewritten in part (read, modify, write): one that no longer
    decodes would stop the redo, so it is cleared. Every block with bits in it failed to read, so all are redone."""
    size = bits.chunks[0]
    for lo in range(0, bits.shape[0], size):
        try:
            bits[lo:lo + size]
        except Exception:  # noqa: BLE001
            bits[lo:lo + size] = 0  # a whole chunk of fill: written without reading the old one (zarr drops it)


def verify_store(store: FeatureStore, redo: bool = False) -> list[Damage]:
    """Every dataset's masks and every feature group; with ``redo``, damaged blocks are marked not done (and a
    dataset's native-mask offsets rebuilt from its registered rows)."""
    report = []
    for dataset in store.datasets():
        damage = damaged_mask_blocks(store, dataset)
        report.append(damage)
        if redo:
            if any(p.startswith("native_offsets") for p in damage.problems):
                store.root[f"datasets/{dataset}/native_offsets"][:] = native_offsets(store.samples(dataset))
            if any(r.startswith("unreadable") for r in damage.reasons.values()):
                _clear_undecodable(store.root[f"datasets/{dataset}/native_bits"])
            for block in damage.blocks:
                store.root[f"datasets/{dataset}/mask_done"][block] = False
    for key in store.iter_layers():
        try:
            arrays = store.open_layer(*key)
        except DeclipError as exc:  # an array's metadata is gone: nothing of it can be read
            report.append(Damage(store.layer_path(*key), problems=[str(exc)]))
            continue
        damage = damaged_layer_blocks(arrays, store_url=store.url)
        report.append(damage)
        if redo:
            for block in damage.blocks:
                arrays.done[block] = False
    store.forget_masks()
    return report
