"""The direct chunk-file reader (store/fastpath.py): equal to zarr, fill chunks, truncated chunks, fallbacks."""
from __future__ import annotations

import numpy as np
import pytest
import zarr

from tests.store.store_fixtures import BB_A, DS, full_layer, make_meta, new_store, write_blocks


def test_rowreader_direct_equals_zarr_and_handles_fill_chunks(tmp_path):
    from declip.store.fastpath import RowReader

    store, samples = new_store(tmp_path / "s.zarr", n=9, block_rows=4)
    arrays = store.open_layer(BB_A, "layer1", DS, make_meta(samples))
    write_blocks(store, arrays, [0, 2])  # block 1 (rows 4..7) never written: no chunk files
    feats = zarr.open_array(str(tmp_path / "s.zarr" / arrays.path / "feats"), mode="r")
    reader = RowReader(feats)
    assert reader.direct
    rows = np.array([8, 5, 0, 3, 4, 0])
    got = reader.read(rows)
    want = np.stack([feats[int(r)] for r in rows])
    assert got.dtype == np.float16 and got.shape == (6, 3, 4, 5)
    np.testing.assert_array_equal(got, want)
    assert not got[1].any() and got[0].any()
    buf = np.full((6, 3, 4, 5), 9, np.float16)
    assert reader.read(rows, buf) is buf
    np.testing.assert_array_equal(buf, want)
    np.testing.assert_array_equal(reader.read_all(), feats[:])


def test_rowreader_truncated_chunk_is_an_error(tmp_path):
    from declip.store.fastpath import RowReader

    store, samples, arrays = full_layer(tmp_path / "s.zarr", n=4, block_rows=4)
    reader = RowReader(arrays.feats)
    path = reader._path(2)
    with open(path, "r+b") as fh:
        fh.truncate(10)
    with pytest.raises(OSError, match="of 120 bytes"):
        reader.read(np.array([2]))


@pytest.mark.parametrize("kind", ["zstd", "sharded", "chunk2"])
def test_rowreader_falls_back_to_zarr(tmp_path, kind):
    from declip.store.fastpath import RowReader

    kw = {"zstd": dict(chunks=(1, 3, 4, 5), compressors=[zarr.codecs.ZstdCodec()]),
          "sharded": dict(chunks=(1, 3, 4, 5), shards=(4, 3, 4, 5), compressors=None),
          "chunk2": dict(chunks=(2, 3, 4, 5), compressors=None)}[kind]
    arr = zarr.create_array(str(tmp_path / "a.zarr"), shape=(8, 3, 4, 5), dtype="float16", fill_value=0, **kw)
    data = np.random.default_rng(0).standard_normal((8, 3, 4, 5)).astype(np.float16)
    arr[:4] = data[:4]  # rows 4..7 never written
    reader = RowReader(zarr.open_array(str(tmp_path / "a.zarr"), mode="r"))
    assert not reader.direct
    rows = np.array([6, 1, 3, 0])
    want = data[rows].copy()
    want[0] = 0
    np.testing.assert_array_equal(reader.read(rows), want)
    np.testing.assert_array_equal(reader.read_all()[:4], data[:4])
