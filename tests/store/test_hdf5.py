"""HDF5 export and import of a cached layer (store/hdf5.py)."""
from __future__ import annotations

import pytest

from declip.core.errors import DeclipError
from declip.store.feature_store import FeatureStore
from tests.store.store_fixtures import (BB_A, DS, chunk_files, full_layer, make_meta, make_samples, new_store,
                                        sample_chunk, write_blocks)


def test_hdf5_export_delete_import_round_trip(tmp_path):
    from declip.store.hdf5 import export_hdf5, import_hdf5

    path = tmp_path / "s.zarr"
    store, samples, arrays = full_layer(path, n=10, block_rows=4)
    before = chunk_files(path / "features")
    meta = dict(arrays.meta)
    out = export_hdf5(store, BB_A, "layer1", DS, str(tmp_path / "x.h5"))
    assert out == str(tmp_path / "x.h5") and sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr", "x.h5"]
    problems = store.layer_problems(arrays)
    assert problems == [{"row": 0, "reason": "x"}]  # what write_blocks recorded for block 0
    store.delete_layer(BB_A, "layer1", DS)
    assert not store.has_layer(BB_A, "layer1", DS)
    assert import_hdf5(FeatureStore(str(path)), out) == f"{BB_A}/layer1/{DS}"
    back = FeatureStore(str(path)).open_layer(BB_A, "layer1", DS)
    assert back.complete
    assert chunk_files(path / "features") == before
    assert {k: v for k, v in back.meta.items() if k != "created"} == {k: v for k, v in meta.items() if k != "created"}
    assert FeatureStore(str(path)).layer_problems(back) == problems  # unreadable-image records travel with the file
    # importing again over the complete layer is a no-op, not a duplicate write
    assert import_hdf5(FeatureStore(str(path)), out) == f"{BB_A}/layer1/{DS}"
    assert chunk_files(path / "features") == before


def test_hdf5_export_of_incomplete_layer_is_refused(tmp_path):
    from declip.store.hdf5 import export_hdf5

    store, samples = new_store(tmp_path / "s.zarr", n=9, block_rows=4)
    arrays = store.open_layer(BB_A, "layer1", DS, make_meta(samples))
    write_blocks(store, arrays, [0])
    with pytest.raises(DeclipError, match="incomplete"):
        export_hdf5(store, BB_A, "layer1", DS, str(tmp_path / "x.h5"))
    assert not (tmp_path / "x.h5").exists()


def test_hdf5_import_needs_the_same_dataset(tmp_path):
    from declip.store.hdf5 import export_hdf5, import_hdf5

    store, samples, arrays = full_layer(tmp_path / "s.zarr", n=6, block_rows=4)
    out = export_hdf5(store, BB_A, "layer1", DS, str(tmp_path / "x.h5"))
    empty = FeatureStore(str(tmp_path / "empty.zarr"))
    with pytest.raises(DeclipError, match="no dataset 'ds'"):
        import_hdf5(empty, out)
    assert list(empty.iter_layers()) == []
    other = FeatureStore(str(tmp_path / "other.zarr"))
    other.create_dataset(DS, make_samples(6, tag="other"), "/data", "list", block_rows=4)  # same name, other rows
    with pytest.raises(DeclipError, match="dataset_checksum"):
        import_hdf5(other, out)
    assert list(other.iter_layers()) == []


def test_hdf5_export_of_a_damaged_layer_is_refused(tmp_path):
    """A chunk changed in place is not copied out as data: export stops naming the block (issue 21 item 1)."""
    from declip.store.hdf5 import export_hdf5
    from tests.fixtures import flip_bytes

    store, samples, arrays = full_layer(tmp_path / "s.zarr", n=10, block_rows=4)
    flip_bytes(sample_chunk(tmp_path / "s.zarr" / arrays.path / "feats", 9))
    with pytest.raises(DeclipError, match=r"layer1/ds/feats, block 2 \(rows 8-9\).*store verify"):
        export_hdf5(store, BB_A, "layer1", DS, str(tmp_path / "x.h5"))
    assert not (tmp_path / "x.h5").exists()
