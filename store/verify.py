"""Find damaged blocks: every done block must read back to the checksums written with its done flag.

Why checksums of the content and not a listing of chunk files: zarr reads a deleted chunk as its fill value and does
not write all-fill chunks at all, so "file missing" is sometimes fine; a checksum of what the block *should* read
as catches a deleted chunk, a short one and a changed one alike. A damaged block gets its done flag cleared (with
``redo=True``), so the next ``declip extract`` with the same arguments redoes exactly those blocks.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from declip.store.feature_store import FeatureStore, LayerArrays, block_sums, crc32


@dataclass
class Damage:
    """The damaged blocks of one array group (a feature layer, or a dataset's masks)."""

    path: str
    blocks: list[int] = field(default_factory=list)
    reasons: dict[int, str] = field(default_factory=dict)
    unchecked: str = ""  # why nothing could be checked (a store written before checksums)


def _read_block(arrays: LayerArrays, block: int):
    lo, hi = arrays.block_range(block)
    cls = arrays.cls[lo:hi] if arrays.cls is not None else None
    scales = arrays.scales[lo:hi] if arrays.scales is not None else None  # quantized layers: part of the feats sum
    return arrays.feats[lo:hi], cls, arrays.valid[lo:hi], scales


def damaged_layer_blocks(arrays: LayerArrays, blocks=None) -> Damage:
    """Done blocks of a feature group whose content no longer matches its checksums (all done blocks by default)."""
    damage = Damage(arrays.path)
    if arrays.sums is None:
        damage.unchecked = "written before per-block checksums; cannot be verified (re-extract to add them)"
        return damage
    done = arrays.done[:]
    sums = arrays.sums[:]
    for block in (np.flatnonzero(done) if blocks is None else blocks):
        block = int(block)
        try:
            got = block_sums(*_read_block(arrays, block))
        except Exception as exc:  # noqa: BLE001 - a short or corrupt chunk fails to decode
            damage.blocks.append(block)
            damage.reasons[block] = f"unreadable chunk ({type(exc).__name__}: {exc})"
            continue
        names = [n for n, a, b in zip(("feats", "cls", "valid"), got, sums[block]) if int(a) != int(b)]
        if names:
            damage.blocks.append(block)
            damage.reasons[block] = f"{', '.join(names)} changed or missing"
    return damage


def damaged_valid_blocks(arrays: LayerArrays) -> list[int]:
    """The cheap check readers run on open: the small ``valid`` array against its checksums."""
    if arrays.sums is None:
        return []
    valid, sums, done = arrays.valid[:], arrays.sums[:], arrays.done[:]
    bad = []
    for block in np.flatnonzero(done):
        lo, hi = arrays.block_range(int(block))
        if crc32(valid[lo:hi].astype(np.uint8)) != int(sums[block][2]):
            bad.append(int(block))
    return bad


def damaged_mask_blocks(store: FeatureStore, dataset: str) -> Damage:
    group = store.root[f"datasets/{dataset}"]
    damage = Damage(f"datasets/{dataset}")
    if "masks_of" in group.attrs:  # a photometric view reads its clean dataset's masks, checked there
        return damage
    if "mask_sums" not in group:
        damage.unchecked = "written before per-block checksums; cannot be verified"
        return damage
    br = int(group.attrs["block_rows"])
    n = int(group.attrs["n_rows"])
    offsets = group["native_offsets"][:]
    sums, done = group["mask_sums"][:], group["mask_done"][:]
    for block in np.flatnonzero(done):
        lo, hi = int(block) * br, min((int(block) + 1) * br, n)
        try:
            got = [crc32(group["soft_masks"][lo:hi]), crc32(group["native_bits"][int(offsets[lo]):int(offsets[hi])])]
        except Exception as exc:  # noqa: BLE001
            damage.blocks.append(int(block))
            damage.reasons[int(block)] = f"unreadable chunk ({type(exc).__name__}: {exc})"
            continue
        if [int(x) for x in got] != [int(x) for x in sums[block]]:
            damage.blocks.append(int(block))
            damage.reasons[int(block)] = "masks changed or missing"
    return damage


def verify_store(store: FeatureStore, redo: bool = False) -> list[Damage]:
    """Every dataset's masks and every feature group; with ``redo``, damaged blocks are marked not done."""
    report = []
    for dataset in store.datasets():
        damage = damaged_mask_blocks(store, dataset)
        report.append(damage)
        if redo:
            for block in damage.blocks:
                store.root[f"datasets/{dataset}/mask_done"][block] = False
    for key in store.iter_layers():
        arrays = store.open_layer(*key)
        damage = damaged_layer_blocks(arrays)
        report.append(damage)
        if redo:
            for block in damage.blocks:
                arrays.done[block] = False
    return report
