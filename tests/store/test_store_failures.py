"""Failure injection for every array write of the store: a write that fails never leaves a block marked done.

Each test makes exactly one named array refuse writes (as a full disk would), checks that the block is still
pending for a fresh reader, then lets writes through and checks that the retry completes it with the right bytes.
"""
from __future__ import annotations

import numpy as np
import pytest
import zarr

from declip.store.feature_store import FeatureStore
from tests.store.store_fixtures import BB_A, DS, block_data, make_meta, make_samples, new_store

FEATURE_ARRAYS = ("feats", "cls", "valid", "done")
MASK_ARRAYS = ("soft_masks", "native_bits", "mask_done")


@pytest.fixture
def failing_array(monkeypatch):
    """``failing_array(name)``: writes to any zarr array whose path ends in ``/name`` raise OSError, through zarr or
    through the direct chunk-file path (store/chunk_writes.py) that feature rows take on a local store."""
    from declip.store import chunk_writes

    real, real_put = zarr.Array.__setitem__, chunk_writes._atomic_put
    failing: set[str] = set()

    def setitem(self, key, value):
        if self.path.rsplit("/", 1)[-1] in failing:
            raise OSError(f"injected: disk full while writing {self.path}")
        return real(self, key, value)

    def put(path, data):
        array = next((name for name in failing if f"/{name}/c" in path), None)
        if array:
            raise OSError(f"injected: disk full while writing {array} chunk {path}")
        return real_put(path, data)

    monkeypatch.setattr(zarr.Array, "__setitem__", setitem)
    monkeypatch.setattr(chunk_writes, "_atomic_put", put)
    return failing


@pytest.mark.parametrize("name", FEATURE_ARRAYS)
def test_failed_feature_write_leaves_the_block_pending(tmp_path, failing_array, name):
    store, samples = new_store(tmp_path / "s.zarr", n=10, block_rows=4)
    arrays = store.open_layer(BB_A, "layer1", DS, make_meta(samples))
    f, c, v = block_data(arrays, 1)
    failing_array.add(name)
    with pytest.raises(OSError, match="injected"):
        store.write_block(arrays, 1, f, c, v, [])
    failing_array.clear()
    fresh = FeatureStore(str(tmp_path / "s.zarr"), mode="r").open_layer(BB_A, "layer1", DS)
    assert fresh.pending_blocks().tolist() == [0, 1, 2], name
    store.write_block(arrays, 1, f, c, v, [])  # the retry
    fresh = FeatureStore(str(tmp_path / "s.zarr"), mode="r").open_layer(BB_A, "layer1", DS)
    assert fresh.pending_blocks().tolist() == [0, 2]
    np.testing.assert_array_equal(fresh.feats[4:8], f)
    np.testing.assert_array_equal(fresh.cls[4:8], c)
    np.testing.assert_array_equal(fresh.valid[4:8], v)


def _mask_store(path):
    sizes = [(5, 9), (5, 9), (7, 3), (7, 3), (6, 6), (6, 6)]  # (height, width), odd rows fake, non-square
    samples = make_samples(len(sizes), sizes)
    store = FeatureStore(str(path))
    store.create_dataset(DS, samples, "/data", "list", block_rows=2)
    rng = np.random.default_rng(3)
    soft = rng.integers(1, 256, (len(sizes), 256, 256), dtype=np.uint8)
    native = [rng.random((h, w)) > 0.5 if i % 2 else None for i, (h, w) in enumerate(sizes)]
    return store, sizes, soft, native


@pytest.mark.parametrize("name", MASK_ARRAYS)
def test_failed_mask_write_leaves_the_block_pending(tmp_path, failing_array, name):
    store, sizes, soft, native = _mask_store(tmp_path / "s.zarr")
    store.write_masks(DS, 0, soft[0:2], native[0:2])
    failing_array.add(name)
    with pytest.raises(OSError, match="injected"):
        store.write_masks(DS, 1, soft[2:4], native[2:4])
    failing_array.clear()
    assert FeatureStore(str(tmp_path / "s.zarr"), mode="r").pending_mask_blocks(DS).tolist() == [1, 2], name
    store.write_masks(DS, 1, soft[2:4], native[2:4])  # the retry
    store.write_masks(DS, 2, soft[4:6], native[4:6])
    again = FeatureStore(str(tmp_path / "s.zarr"), mode="r")
    assert again.pending_mask_blocks(DS).tolist() == []
    np.testing.assert_array_equal(again.soft_masks(DS), soft)
    for i, (h, w) in enumerate(sizes):
        got = again.native_mask(DS, i, (h, w))
        assert (got is None) if native[i] is None else np.array_equal(got, native[i]), i


def test_injection_reaches_every_array_it_names(tmp_path, failing_array):
    """The fixture really intercepts each array (else the tests above would pass vacuously)."""
    store, sizes, soft, native = _mask_store(tmp_path / "m.zarr")
    samples = make_samples(4)
    fs = FeatureStore(str(tmp_path / "f.zarr"))
    fs.create_dataset(DS, samples, "/data", "list", block_rows=4)
    arrays = fs.open_layer(BB_A, "layer1", DS, make_meta(samples))
    for name in FEATURE_ARRAYS + MASK_ARRAYS:
        failing_array.clear()
        failing_array.add(name)
        with pytest.raises(OSError, match=name):
            if name in FEATURE_ARRAYS:
                fs.write_block(arrays, 0, *block_data(arrays, 0), [])
            else:
                store.write_masks(DS, 0, soft[0:2], native[0:2])
