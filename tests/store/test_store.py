"""The zarr feature store: layout, resume, metadata refusal, masks, concurrent writers (readers, the fast path
and HDF5 have files of their own).

Stores are built directly by the builders of ``tests/store/store_fixtures.py`` (no extraction, no model).
"""
from __future__ import annotations

import multiprocessing as mp
import threading
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr

from declip.core.errors import DeclipError
from declip.store.feature_store import IDENTITY_FIELDS, FeatureStore
from tests.store.store_fixtures import (BB_A, BB_B, DS, block_data, chunk_files, expected_layer, full_layer,
                                        make_meta, make_samples, new_store, write_blocks)

# ---------------------------------------------------------------- layout and contract
def test_layout_paths_chunks_dtype_no_compressor(tmp_path):
    store, samples, arrays = full_layer(tmp_path / "s.zarr", n=10, block_rows=4)
    base = tmp_path / "s.zarr" / "features" / BB_A / "layer1" / DS
    feats = zarr.open_array(str(base / "feats"), mode="r")
    assert feats.shape == (10, 3, 4, 5) and feats.chunks == (1, 3, 4, 5)
    assert feats.dtype == np.float16 and feats.compressors == ()
    assert zarr.open_array(str(base / "cls"), mode="r").shape == (10, 3)
    assert zarr.open_array(str(base / "valid"), mode="r").dtype == np.uint8
    assert zarr.open_array(str(base / "done"), mode="r").shape == (3,)  # ceil(10 / 4)
    for name in ("soft_masks", "native_bits", "native_offsets", "mask_done", "samples.parquet"):
        assert (tmp_path / "s.zarr" / "datasets" / DS / name).exists(), name
    # one file per sample: 10 chunk files
    assert len([p for p in (base / "feats").rglob("*") if p.is_file() and p.name != "zarr.json"]) == 10
    got = store.samples(DS)
    pd.testing.assert_frame_equal(got, samples)  # extra columns and order kept
    assert arrays.meta["dtype"] == "float16" and arrays.meta["schema_version"] == 1 and "created" in arrays.meta
    f, c, v = expected_layer(arrays)
    np.testing.assert_array_equal(arrays.feats[:], f)
    np.testing.assert_array_equal(arrays.cls[:], c)
    np.testing.assert_array_equal(arrays.valid[:], v)
    assert store.layer_problems(arrays) == [{"row": 0, "reason": "x"}]


def test_no_cls_array_for_resnet_layers(tmp_path):
    store, samples = new_store(tmp_path / "s.zarr")
    arrays = store.open_layer(BB_B, "layer3", DS, make_meta(samples, BB_B, "layer3", has_cls=False))
    assert arrays.cls is None
    write_blocks(store, arrays, range(3))
    assert arrays.complete


def test_pending_complete_and_unwritten_blocks(tmp_path):
    store, samples = new_store(tmp_path / "s.zarr", n=10, block_rows=4)
    arrays = store.open_layer(BB_A, "layer1", DS, make_meta(samples))
    assert arrays.pending_blocks().tolist() == [0, 1, 2] and not arrays.complete
    assert arrays.block_range(2) == (8, 10)
    write_blocks(store, arrays, [1])
    assert arrays.pending_blocks().tolist() == [0, 2] and not arrays.complete
    assert not arrays.feats[0:4].any() and not arrays.valid[0:4].any()  # never written: fill value, still pending
    write_blocks(store, arrays, [2])
    assert arrays.pending_blocks().tolist() == [0] and not arrays.complete
    write_blocks(store, arrays, [0])
    assert arrays.pending_blocks().tolist() == [] and arrays.complete


def test_done_flag_is_set_only_after_the_data(tmp_path):
    store, samples = new_store(tmp_path / "s.zarr", n=10, block_rows=4)
    arrays = store.open_layer(BB_A, "layer1", DS, make_meta(samples))
    real_valid = arrays.valid

    class Boom:
        def __setitem__(self, key, value):
            raise OSError("disk full")

    arrays.valid = Boom()  # the last data write fails: the block must not be marked done
    f, c, v = block_data(arrays, 1)
    with pytest.raises(OSError):
        store.write_block(arrays, 1, f, c, v, [])
    assert not arrays.done[1]
    arrays.valid = real_valid
    reopened = FeatureStore(str(tmp_path / "s.zarr")).open_layer(BB_A, "layer1", DS)
    assert reopened.pending_blocks().tolist() == [0, 1, 2]
    store.write_block(arrays, 1, f, c, v, [])
    assert reopened.pending_blocks().tolist() == [0, 2]


def test_iter_layers_order_and_delete(tmp_path):
    store, samples = new_store(tmp_path / "s.zarr")
    for layer in ("layer10", "layer2", "layer1", "stem"):
        store.open_layer(BB_A, layer, DS, make_meta(samples, layer=layer))
    store.open_layer(BB_B, "layer3", DS, make_meta(samples, BB_B, "layer3", has_cls=False))
    assert list(store.iter_layers()) == [(BB_A, "layer1", DS), (BB_A, "layer2", DS), (BB_A, "layer10", DS),
                                         (BB_A, "stem", DS), (BB_B, "layer3", DS)]
    store.delete_layer(BB_A, "layer2", DS)
    assert not store.has_layer(BB_A, "layer2", DS)
    assert (BB_A, "layer2", DS) not in list(FeatureStore(str(tmp_path / "s.zarr")).iter_layers())
    assert not (tmp_path / "s.zarr" / "features" / BB_A / "layer2" / DS).exists()
    with pytest.raises(DeclipError, match="has no"):
        store.delete_layer(BB_A, "layer2", DS)
    with pytest.raises(DeclipError, match="declip extract"):
        store.open_layer(BB_A, "layer2", DS)  # no meta: nothing to create from


# ---------------------------------------------------------------- resume
def test_resume_from_a_fresh_store_object_is_byte_identical(tmp_path):
    one, samples, _ = full_layer(tmp_path / "one.zarr", n=11, block_rows=3)
    meta = make_meta(samples, block_rows=3)

    store, _ = new_store(tmp_path / "two.zarr", n=11, block_rows=3)
    arrays = store.open_layer(BB_A, "layer1", DS, meta)
    write_blocks(store, arrays, [0, 2])
    del store, arrays

    again = FeatureStore(str(tmp_path / "two.zarr"))
    again.create_dataset(DS, samples, "/data", "list", block_rows=3)  # same rows: a no-op
    arrays = again.open_layer(BB_A, "layer1", DS, dict(meta))
    assert arrays.pending_blocks().tolist() == [1, 3]
    write_blocks(again, arrays, arrays.pending_blocks())
    assert arrays.complete
    a = tmp_path / "one.zarr" / "features"
    b = tmp_path / "two.zarr" / "features"
    files_a, files_b = chunk_files(a), chunk_files(b)
    assert files_a.keys() == files_b.keys() and len(files_a) > 11
    assert files_a == files_b


# ---------------------------------------------------------------- metadata refusal
def _changed(field: str, value):
    if field == "view":  # clean features carry no view record; any view differs from them
        return {"view": "jpeg:75"}
    if field == "grid":
        return [value[0] + 1, value[1]]
    if field == "recipe":
        return dict(value, size=336)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    return f"{value}-other"


@pytest.mark.parametrize("field", IDENTITY_FIELDS)
def test_metadata_mismatch_is_refused_and_changes_nothing(tmp_path, field):
    store, samples, arrays = full_layer(tmp_path / "s.zarr", n=6, block_rows=4)
    before = chunk_files(tmp_path / "s.zarr")
    meta = dict(arrays.meta)  # everything as stored, then one identity field changed
    meta[field] = _changed(field, meta.get(field))
    with pytest.raises(DeclipError) as err:
        FeatureStore(str(tmp_path / "s.zarr")).open_layer(BB_A, "layer1", DS, meta)
    msg = str(err.value)
    assert f"{field}:" in msg and "Nothing was changed" in msg and "declip store rm" in msg
    assert chunk_files(tmp_path / "s.zarr") == before
    assert FeatureStore(str(tmp_path / "s.zarr")).open_layer(BB_A, "layer1", DS).meta == arrays.meta


def test_non_identity_fields_do_not_trigger_refusal(tmp_path):
    store, samples, arrays = full_layer(tmp_path / "s.zarr", n=6, block_rows=4)
    meta = dict(make_meta(samples), created="1999-01-01T00:00:00", versions={"torch": "0.0"},
                random_weights=False, family="other", grid=(4, 5))  # tuple vs stored list: same
    again = store.open_layer(BB_A, "layer1", DS, meta)
    assert again.complete and again.meta["created"] == arrays.meta["created"]


def test_store_written_before_the_activation_was_recorded(tmp_path):
    """Old stores lack ``activation``; every ViT then ran exact GELU, so only a QuickGELU request is refused."""
    store, samples = new_store(tmp_path / "s.zarr", n=6, block_rows=4)
    legacy = make_meta(samples)
    del legacy["activation"]
    store.open_layer(BB_A, "layer1", DS, legacy)
    assert store.open_layer(BB_A, "layer1", DS, make_meta(samples)).meta.get("activation") is None
    with pytest.raises(DeclipError, match="activation: stored None vs requested 'quick_gelu'"):
        store.open_layer(BB_A, "layer1", DS, dict(make_meta(samples), activation="quick_gelu"))


def test_dataset_reregistration(tmp_path):
    store, samples = new_store(tmp_path / "s.zarr", n=6, block_rows=4)
    store.write_masks(DS, 0, np.full((4, 256, 256), 7, np.uint8), [None] * 4)
    store.create_dataset(DS, samples.copy(), "/elsewhere", "list", block_rows=2)  # same rows: no-op
    assert store.dataset_attrs(DS)["root"] == "/data" and store.dataset_attrs(DS)["block_rows"] == 4
    assert store.pending_mask_blocks(DS).tolist() == [1]
    assert (store.soft_masks(DS, slice(0, 4)) == 7).all()
    for other in (make_samples(7), make_samples(6, tag="x"), samples.iloc[::-1].reset_index(drop=True)):
        with pytest.raises(DeclipError, match="different files"):
            store.create_dataset(DS, other, "/data", "list", block_rows=4)
    assert store.datasets() == [DS]
    with pytest.raises(DeclipError, match="no dataset 'nope'.*known: ds"):
        store.samples("nope")


def test_interrupted_dataset_registration_is_redone(tmp_path):
    """A crash between creating the group and recording its checksum must not wedge the store."""
    store = FeatureStore(str(tmp_path / "s.zarr"))
    store.root.create_group(f"datasets/{DS}")  # what an interrupted create_dataset leaves behind
    samples = make_samples(5)
    store.create_dataset(DS, samples, "/data", "list", block_rows=2)
    pd.testing.assert_frame_equal(store.samples(DS), samples)
    assert store.pending_mask_blocks(DS).tolist() == [0, 1, 2]


# ---------------------------------------------------------------- masks
def test_soft_and_native_masks_round_trip(tmp_path):
    sizes = [(37, 53), (37, 53), (8, 8), (1, 1), (3, 5), (64, 31), (9, 7)]
    samples = make_samples(len(sizes), sizes)
    store = FeatureStore(str(tmp_path / "s.zarr"))
    store.create_dataset(DS, samples, "/data", "list", block_rows=3)
    rng = np.random.default_rng(0)
    soft = rng.integers(0, 256, (len(sizes), 256, 256), dtype=np.uint8)
    native = [rng.random((h, w)) > 0.5 if i % 2 else None for i, (h, w) in enumerate(sizes)]
    for b in (2, 0, 1):  # any order
        lo, hi = b * 3, min(b * 3 + 3, len(sizes))
        store.write_masks(DS, b, soft[lo:hi], native[lo:hi])
    assert store.pending_mask_blocks(DS).tolist() == []
    again = FeatureStore(str(tmp_path / "s.zarr"), mode="r")
    np.testing.assert_array_equal(again.soft_masks(DS), soft)
    np.testing.assert_array_equal(again.soft_masks(DS, np.array([5, 0, 3])), soft[[5, 0, 3]])
    assert again.soft_masks(DS, np.array([], dtype=int)).shape == (0, 256, 256)
    for i, (h, w) in enumerate(sizes):
        got = again.native_mask(DS, i, (h, w))
        if native[i] is None:
            assert got is None, i
        else:
            assert got.dtype == bool and got.shape == (h, w)
            np.testing.assert_array_equal(got, native[i])


def test_mask_blocks_read_back_through_zarr_itself_and_rows_without_a_mask_keep_no_chunk(tmp_path):
    """The block's soft masks, checksums and done flag are written to their chunk files directly: zarr (not our
    readers) must read them as written, checksums as zlib computes them, and an all-zero soft mask must leave no
    chunk file (as zarr leaves an all-fill chunk)."""
    samples = make_samples(5)
    store = FeatureStore(str(tmp_path / "s.zarr"))
    store.create_dataset(DS, samples, "/data", "list", block_rows=2)
    soft = np.zeros((5, 256, 256), dtype=np.uint8)
    soft[1, 10:20, 30:40] = 255
    soft[4] = 3
    for b in (0, 1, 2):
        store.write_masks(DS, b, soft[2 * b:2 * b + 2], [None] * len(soft[2 * b:2 * b + 2]))
    folder = tmp_path / "s.zarr" / "datasets" / DS
    np.testing.assert_array_equal(zarr.open_array(str(folder / "soft_masks"), mode="r")[:], soft)
    assert zarr.open_array(str(folder / "mask_done"), mode="r")[:].tolist() == [True, True, True]
    sums = zarr.open_array(str(folder / "mask_sums"), mode="r")[:]
    assert sums[:, 0].tolist() == [zlib.crc32(soft[2 * b:2 * b + 2].tobytes()) for b in range(3)]
    rows = zarr.open_array(str(folder / "mask_row_sums"), mode="r")[:]
    assert rows[:, 0].tolist() == [zlib.crc32(m.tobytes()) for m in soft]
    chunks = sorted(p.relative_to(folder / "soft_masks").parts[1] for p in (folder / "soft_masks").rglob("*")
                    if p.is_file() and p.name != "zarr.json")
    assert chunks == ["1", "4"]


# ---------------------------------------------------------------- concurrent writers
def test_two_threads_owning_different_blocks_lose_nothing(tmp_path):
    store, samples = new_store(tmp_path / "s.zarr", n=23, block_rows=2)
    meta = make_meta(samples, block_rows=2)
    arrays = store.open_layer(BB_A, "layer1", DS, meta)
    barrier = threading.Barrier(2)
    errors = []

    def worker(parity: int) -> None:
        try:
            own = FeatureStore(str(tmp_path / "s.zarr"))
            arr = own.open_layer(BB_A, "layer1", DS, meta)
            barrier.wait()
            write_blocks(own, arr, [b for b in range(arr.done.shape[0]) if b % 2 == parity])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(p,)) for p in (0, 1)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    _assert_layer_equals_expected(tmp_path / "s.zarr")


def _assert_layer_equals_expected(path: Path) -> None:
    arrays = FeatureStore(str(path), mode="r").open_layer(BB_A, "layer1", DS)
    assert arrays.complete
    f, c, v = expected_layer(arrays)
    np.testing.assert_array_equal(arrays.feats[:], f)
    np.testing.assert_array_equal(arrays.cls[:], c)
    np.testing.assert_array_equal(arrays.valid[:], v)


def _process_writer(path: str, parity: int, barrier) -> None:
    store = FeatureStore(path)
    arrays = store.open_layer(BB_A, "layer1", DS)
    barrier.wait()
    write_blocks(store, arrays, [b for b in range(arrays.done.shape[0]) if b % 2 == parity])


@pytest.mark.slow  # two spawned writer processes
def test_two_processes_owning_different_blocks_lose_nothing(tmp_path):
    store, samples = new_store(tmp_path / "s.zarr", n=31, block_rows=2)
    store.open_layer(BB_A, "layer1", DS, make_meta(samples, block_rows=2))
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_process_writer, args=(str(tmp_path / "s.zarr"), p, barrier)) for p in (0, 1)]
    [p.start() for p in procs]
    [p.join(60) for p in procs]
    assert [p.exitcode for p in procs] == [0, 0]
    _assert_layer_equals_expected(tmp_path / "s.zarr")
