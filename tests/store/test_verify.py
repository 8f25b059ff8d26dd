"""`declip store verify` (store/verify.py) finds every kind of damage (issue 21 item 4): lost or changed native-mask
chunks, damage in the last done block of every array a group keeps (data and bookkeeping alike), changed native-mask
offsets, a lost array metadata file; it reports instead of stopping, marks the blocks, and extract redoes them."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import zarr

from declip.pipeline.extract.extraction import ExtractConfig, run_extraction
from declip.store.feature_store import FeatureStore
from declip.store.verify import verify_store
from tests.fixtures import TINY_BACKBONE, TINY_DATASET, flip_bytes

LAYER = f"features/{TINY_BACKBONE}/layer2/{TINY_DATASET}"
MASKS = f"datasets/{TINY_DATASET}"
LAST = 7  # the tiny store: 60 rows in blocks of 8, the last (rows 56-59) short


@pytest.fixture
def copy(tiny_store, tmp_path):
    path = tmp_path / "s.zarr"
    shutil.copytree(tiny_store, path)
    return path


def _damaged(path) -> dict[str, dict[int, str]]:
    return {d.path: dict(d.reasons) for d in verify_store(FeatureStore(str(path), mode="r")) if d.blocks}


def _redo_and_compare(path, original, manifest) -> None:
    """verify marks, extract redoes, and the store then verifies clean with the original's bytes."""
    verify_store(FeatureStore(str(path)), redo=True)
    run_extraction(ExtractConfig(manifest=str(manifest), store=str(path), backbone=TINY_BACKBONE, layers="all",
                                 batch_size=8, progress=False))
    assert not [d for d in verify_store(FeatureStore(str(path), mode="r")) if d.damaged]
    for name in ("soft_masks", "native_bits", "native_offsets"):
        a = zarr.open_array(str(original / MASKS / name), mode="r")[:]
        np.testing.assert_array_equal(zarr.open_array(str(path / MASKS / name), mode="r")[:], a)
    for name in ("feats", "cls", "valid", "done", "sums", "row_sums"):
        a = zarr.open_array(str(original / LAYER / name), mode="r")[:]
        np.testing.assert_array_equal(zarr.open_array(str(path / LAYER / name), mode="r")[:], a)


def _native_chunk(path):
    return path / MASKS / "native_bits" / "c" / "0"


@pytest.mark.parametrize("how", ["lost", "changed", "undecodable"])
def test_a_lost_or_corrupted_native_bits_chunk_is_found_and_redone(copy, tiny_store, tiny_manifest, how):
    if how == "lost":
        _native_chunk(copy).unlink()
    elif how == "undecodable":
        flip_bytes(_native_chunk(copy), offset=0)  # the zstd frame header
    else:  # decodes, to other bits: one bit of the last fake's mask
        offsets = zarr.open_array(str(copy / MASKS / "native_offsets"), mode="r")[:]
        bits = zarr.open_array(str(copy / MASKS / "native_bits"), mode="a")
        bits[int(offsets[-1]) - 3] = bits[int(offsets[-1]) - 3] ^ 0x04
    damaged = _damaged(copy)
    assert list(damaged) == [MASKS]
    blocks = damaged[MASKS]
    assert LAST in blocks and all("native_bits" in r or "unreadable" in r for r in blocks.values()), blocks
    if how == "changed":
        assert list(blocks) == [LAST]
    _redo_and_compare(copy, tiny_store, tiny_manifest)


# Damage in the last done block, one array at a time: (group, array, chunk file of block 7 / row 59, byte offset)
LAST_BLOCK = {
    "feats": (LAYER, "feats/c.59.0.0.0", None), "cls": (LAYER, "cls/c/7/0", 8), "valid": (LAYER, "valid/c/7", 0),
    "done": (LAYER, "done/c/7", 0), "sums": (LAYER, "sums/c/7/0", 6), "row_sums": (LAYER, "row_sums/c/7/0", 6),
    "soft_masks": (MASKS, "soft_masks/c/59/0/0", None), "mask_done": (MASKS, "mask_done/c/7", 0),
    "mask_sums": (MASKS, "mask_sums/c/7/0", 6), "mask_row_sums": (MASKS, "mask_row_sums/c/7/0", 6),
}


@pytest.mark.parametrize("array", sorted(LAST_BLOCK))
def test_damage_in_the_last_done_block_is_found_in_every_array(copy, array):
    group, chunk, offset = LAST_BLOCK[array]
    if array == "soft_masks":  # row 59 may be a real (an all-zero mask, stored as no chunk): use the last fake
        samples = FeatureStore(str(copy), mode="r").samples(TINY_DATASET)
        row = int(np.flatnonzero(samples["label"].to_numpy() == 1)[-1])
        assert row >= 56, "the tiny data's last block holds a fake"
        chunk = f"soft_masks/c/{row}/0/0"
    flip_bytes(copy / group / chunk, offset=offset)
    damaged = _damaged(copy)
    assert list(damaged) == [group] and list(damaged[group]) == [LAST], damaged



@pytest.mark.parametrize("group,array,column", [(LAYER, "row_sums", 0), (LAYER, "row_sums", 1),
                                                (MASKS, "mask_row_sums", 0)])
def test_a_row_sum_rewritten_to_another_valid_value_is_found(copy, group, array, column):
    """A row's sum that still decodes but no longer matches its row (the block sums still match the data): the
    readers would refuse that row, so verify must name its block too."""
    sums = zarr.open_array(str(copy / group / array), mode="r+")
    row = 58 if array == "row_sums" else int(np.flatnonzero(sums[:, 0])[-1])  # masks: the last row with a soft mask
    value = sums[row]
    value[column] ^= 1
    sums[row] = value
    damaged = _damaged(copy)
    assert list(damaged) == [group] and list(damaged[group]) == [row // 8] and array in damaged[group][row // 8]

def test_every_last_block_damage_at_once_is_marked_and_redone(copy, tiny_store, tiny_manifest):
    for group, chunk, offset in LAST_BLOCK.values():
        if not chunk.startswith("soft_masks"):
            flip_bytes(copy / group / chunk, offset=offset)
    assert {k: list(v) for k, v in _damaged(copy).items()} == {LAYER: [LAST], MASKS: [LAST]}
    _redo_and_compare(copy, tiny_store, tiny_manifest)


def test_changed_native_offsets_are_reported_and_rebuilt(copy, tiny_store, tiny_manifest):
    offsets = zarr.open_array(str(copy / MASKS / "native_offsets"), mode="a")
    offsets[10] = offsets[10] + 1
    report = {d.path: d for d in verify_store(FeatureStore(str(copy), mode="r"))}
    assert report[MASKS].problems and "native_offsets changed" in report[MASKS].problems[0]
    assert not report[MASKS].blocks  # the bits themselves are intact, checked at the rebuilt offsets
    _redo_and_compare(copy, tiny_store, tiny_manifest)


def test_a_lost_array_metadata_file_is_reported_not_raised(copy):
    (copy / LAYER / "cls" / "zarr.json").unlink()
    report = {d.path: d for d in verify_store(FeatureStore(str(copy), mode="r"))}
    assert report[LAYER].damaged and "declip store rm" in report[LAYER].problems[0]


def test_verify_cli_prints_group_problems_and_fails(copy, capsys):
    from declip.cli.app import main

    offsets = zarr.open_array(str(copy / MASKS / "native_offsets"), mode="a")
    offsets[3] = offsets[3] + 7
    assert main(["store", "verify", "--store", str(copy), "--check-only"]) == 1
    out = capsys.readouterr().out
    assert f"{MASKS}: native_offsets changed" in out and "run without --check-only" in out
    assert main(["store", "verify", "--store", str(copy)]) == 1  # rebuilds them
    assert main(["store", "verify", "--store", str(copy), "--check-only"]) == 0
