"""Every read path checks what it read against the sums written with it (issue 21 item 1): a chunk changed in place
(same length) is one error naming the store, the array, the block and `declip store verify`, never valid data."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from declip.core.errors import DeclipError
from declip.store.feature_store import FeatureStore
from declip.store.readers import FeatureSource, LayerReader
from tests.fixtures import flip_bytes
from tests.store.store_fixtures import BB_A, DS, full_layer, make_meta, new_store, sample_chunk, write_blocks

N, BR = 10, 4  # blocks: rows 0-3, 4-7, 8-9


def _named(array: str, block: int, rows: str) -> str:
    return rf"s\.zarr: features/{BB_A}/layer1/{DS}/{array}, block {block} \(rows {rows}\): .*declip store verify"


def _layer(tmp_path, **kw):
    store, samples, arrays = full_layer(tmp_path / "s.zarr", n=N, block_rows=BR, **kw)
    return tmp_path / "s.zarr", arrays


def _reader(path, **kw) -> LayerReader:
    return LayerReader(FeatureStore(str(path), mode="r"), BB_A, "layer1", DS, **kw)


def _all_paths(path):
    """Each way a trainer reads features: whole layer, per-row reads, streamed batches, the in-memory copy."""
    source = FeatureSource(FeatureStore(str(path), mode="r"), f"{BB_A}/layer1", DS)
    loaded = FeatureSource(FeatureStore(str(path), mode="r"), f"{BB_A}/layer1", DS)
    return {
        "whole": lambda: _reader(path).read_all(),
        "rows": lambda: _reader(path).read_rows(np.array([9, 5, 1])),
        "stream": lambda: list(source.iter_batches(np.arange(N), 3, shuffle=True, seed=0)),
        "memory": lambda: (loaded.load_into_memory(), loaded.get(np.arange(N))),
    }


def test_a_feature_chunk_changed_in_place_is_refused_by_every_read_path(tmp_path):
    path, arrays = _layer(tmp_path)
    chunk = sample_chunk(path / arrays.path / "feats", 5)
    size = chunk.stat().st_size
    flip_bytes(chunk)
    assert chunk.stat().st_size == size
    for name, read in _all_paths(path).items():
        with pytest.raises(DeclipError, match=_named("feats", 1, "4-7")):
            read()
    _reader(path).read_rows(np.array([0, 9]))  # rows of undamaged blocks still read


def test_a_class_token_chunk_changed_in_place_is_refused(tmp_path):
    path, arrays = _layer(tmp_path)
    flip_bytes(path / arrays.path / "cls" / "c" / "2" / "0", offset=3 * 2)  # block 2 (rows 8-9), row 8's tokens
    for name, read in _all_paths(path).items():
        with pytest.raises(DeclipError, match=_named("cls", 2, "8-9")):
            read()


def test_quantized_scales_changed_in_place_are_refused(tmp_path):
    store, samples = new_store(tmp_path / "s.zarr", n=N, block_rows=BR)
    arrays = store.open_layer(BB_A, "layer1", DS, dict(make_meta(samples, block_rows=BR), dtype="int8"))
    rng = np.random.default_rng(0)
    for b in range(3):
        lo, hi = arrays.block_range(b)
        store.write_block(arrays, b, rng.integers(-127, 127, (hi - lo, 3, 4, 5), dtype=np.int8),
                          rng.random((hi - lo, 3)).astype(np.float16), np.ones(hi - lo, np.uint8), [],
                          rng.random((hi - lo, 3)).astype(np.float32) + 0.5)
    path = tmp_path / "s.zarr"
    flip_bytes(path / arrays.path / "scales" / "c" / "1" / "0", offset=16)  # row 5's second scale
    for name, read in _all_paths(path).items():
        with pytest.raises(DeclipError, match=_named("(scales|feats or scales)", 1, "4-7")):
            read()


def test_sharded_layer_read_through_zarr_is_checked_too(tmp_path):
    store, samples = new_store(tmp_path / "s.zarr", n=N, block_rows=BR)
    arrays = store.open_layer(BB_A, "layer1", DS, make_meta(samples, block_rows=BR), shards=True)
    write_blocks(store, arrays, range(3))
    path = tmp_path / "s.zarr"
    assert not _reader(path).rows.direct
    flip_bytes(sample_chunk(path / arrays.path / "feats", 1), offset=160)  # shard 1 (rows 4-7): row 5
    for name, read in _all_paths(path).items():
        with pytest.raises(DeclipError, match=_named("feats", 1, "4-7")):
            read()


def test_a_store_without_row_sums_is_checked_a_block_at_a_time(tmp_path):
    """Stores written before per-row sums: the first read of a row checks its whole block against the block sums."""
    path, arrays = _layer(tmp_path)
    shutil.rmtree(path / arrays.path / "row_sums")
    clean = _reader(path)
    assert not clean.check.per_row
    np.testing.assert_array_equal(clean.read_rows(np.array([6])).feats[0], arrays.feats[6])
    flip_bytes(sample_chunk(path / arrays.path / "feats", 7))  # row 7 is never asked for: its block is
    for name, read in _all_paths(path).items():
        with pytest.raises(DeclipError, match=_named("feats", 1, "4-7")):
            read()


def test_an_all_zero_row_stored_as_no_chunk_reads_as_zeros(tmp_path):
    """zarr (stores written before the direct chunk writes, and object stores, which still write through zarr) stores
    no chunk for an all-zero row: its absence matches the row's sum, it is not damage."""
    store, samples = new_store(tmp_path / "s.zarr", n=4, block_rows=4)
    arrays = store.open_layer(BB_A, "layer1", DS, make_meta(samples, block_rows=4))
    feats = np.ones((4, 3, 4, 5), np.float16)
    feats[2] = 0
    store.write_block(arrays, 0, feats, np.ones((4, 3), np.float16), np.ones(4, np.uint8), [])
    sample_chunk(tmp_path / "s.zarr" / arrays.path / "feats", 2).unlink()  # as zarr leaves a valid all-zero row
    np.testing.assert_array_equal(_reader(tmp_path / "s.zarr").read_all().feats, feats)


def test_an_unreadable_images_zero_row_is_written_as_no_chunk(tmp_path):
    store, samples = new_store(tmp_path / "s.zarr", n=4, block_rows=4)
    arrays = store.open_layer(BB_A, "layer1", DS, make_meta(samples, block_rows=4))
    feats = np.ones((4, 3, 4, 5), np.float16)
    feats[2] = 0
    valid = np.ones(4, np.uint8)
    valid[2] = 0
    store.write_block(arrays, 0, feats, np.ones((4, 3), np.float16), valid, [])
    assert not sample_chunk(tmp_path / "s.zarr" / arrays.path / "feats", 2).exists()
    np.testing.assert_array_equal(_reader(tmp_path / "s.zarr").read_all().feats, feats)


def _masked(tmp_path):
    """A store whose dataset has masks: odd rows are fakes with a 16x24 native mask."""
    store, samples = new_store(tmp_path / "s.zarr", n=N, block_rows=BR)
    rng = np.random.default_rng(3)
    for b in range(3):
        rows = range(b * BR, min(N, (b + 1) * BR))
        soft = rng.integers(1, 255, (len(rows), 256, 256), dtype=np.uint8)
        native = [rng.random((16, 24)) > 0.5 if r % 2 else None for r in rows]
        store.write_masks(DS, b, soft, native)
    return tmp_path / "s.zarr"


def _mask_reads(path):
    return {
        "soft rows": lambda: FeatureStore(str(path), mode="r").soft_masks(DS, np.array([5, 1])),
        "soft all": lambda: FeatureStore(str(path), mode="r").soft_masks(DS),
        "native": lambda: FeatureStore(str(path), mode="r").native_mask(DS, 5, (16, 24)),
    }


def test_a_soft_mask_chunk_changed_in_place_is_refused(tmp_path):
    path = _masked(tmp_path)
    flip_bytes(path / "datasets" / DS / "soft_masks" / "c" / "5" / "0" / "0")
    for name, read in list(_mask_reads(path).items())[:2]:
        with pytest.raises(DeclipError, match=rf"s\.zarr: datasets/{DS}/soft_masks, block 1 \(rows 4-7\): .*verify"):
            read()
    FeatureStore(str(path), mode="r").soft_masks(DS, np.array([0, 9]))


def test_native_bits_changed_or_undecodable_are_refused(tmp_path):
    import zarr

    path = _masked(tmp_path)
    bits = zarr.open_array(str(path / "datasets" / DS / "native_bits"), mode="a")
    offsets = zarr.open_array(str(path / "datasets" / DS / "native_offsets"), mode="r")[:]
    bits[int(offsets[5]) + 2] = bits[int(offsets[5]) + 2] ^ 0x10  # a decodable change in row 5's mask (block 1)
    with pytest.raises(DeclipError, match=rf"datasets/{DS}/native_bits, block 1 \(rows 4-7\): row 5.*checksum"):
        _mask_reads(path)["native"]()
    FeatureStore(str(path), mode="r").native_mask(DS, 1, (16, 24))  # row 1 (block 0) is unchanged
    flip_bytes(path / "datasets" / DS / "native_bits" / "c" / "0", offset=0)  # the zstd frame no longer decodes
    with pytest.raises(DeclipError, match=rf"native_bits, block 1 \(rows 4-7\): a chunk cannot be decoded.*verify"):
        _mask_reads(path)["native"]()


def test_masks_without_row_sums_are_checked_a_block_at_a_time_and_unwritten_blocks_refused(tmp_path):
    import zarr

    path = _masked(tmp_path)
    shutil.rmtree(path / "datasets" / DS / "mask_row_sums")
    flip_bytes(path / "datasets" / DS / "soft_masks" / "c" / "6" / "0" / "0")
    for name, read in _mask_reads(path).items():
        with pytest.raises(DeclipError, match=rf"datasets/{DS}/soft_masks, block 1 \(rows 4-7\)"):
            read()
    zarr.open_array(str(path / "datasets" / DS / "mask_done"), mode="a")[1] = False  # as verify marks it for redo
    with pytest.raises(DeclipError, match=rf"masks of datasets/{DS}, block 1 \(rows 4-7\), are not written.*extract"):
        FeatureStore(str(path), mode="r").soft_masks(DS, np.array([5]))
