"""Feature rows written straight to their chunk files: the bytes zarr would write, where zarr reads them, atomically."""
import os
from pathlib import Path

import numpy as np
import pytest
import zarr
from zarr.codecs import GzipCodec, ZstdCodec

from declip.store import chunk_writes
from declip.store.chunk_writes import write_rows
from tests.store.store_fixtures import BB_A, DS, make_meta, new_store, sample_chunk


def _rows(n: int, seed: int = 0, dtype=np.float16) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((n, 3, 4, 5)) * 50).astype(dtype)


def test_each_row_file_holds_its_c_order_little_endian_bytes_and_zarr_reads_them(tmp_path):
    store, samples = new_store(tmp_path / "s.zarr", n=8, block_rows=4)
    arrays = store.open_layer(BB_A, "layer1", DS, make_meta(samples))
    rows = _rows(4)
    write_rows(arrays.feats, 4, rows)
    folder = tmp_path / "s.zarr" / arrays.path / "feats"
    for i in range(4):
        assert sample_chunk(folder, 4 + i).read_bytes() == rows[i].astype("<f2").tobytes()
    again = zarr.open_array(str(folder), mode="r")
    np.testing.assert_array_equal(again[4:8], rows)
    assert not again[0:4].any()  # rows never written read as the fill value


def test_new_feature_arrays_keep_every_sample_file_in_the_array_folder(tmp_path):
    store, samples = new_store(tmp_path / "s.zarr", n=8, block_rows=4)
    arrays = store.open_layer(BB_A, "layer1", DS, make_meta(samples))
    store.write_block(arrays, 1, _rows(4), None, np.ones(4, np.uint8), [])
    folder = tmp_path / "s.zarr" / arrays.path / "feats"
    assert sorted(p.name for p in folder.iterdir()) == ["c.4.0.0.0", "c.5.0.0.0", "c.6.0.0.0", "c.7.0.0.0",
                                                        "zarr.json"]


def test_arrays_with_nested_keys_are_written_where_zarr_reads_them(tmp_path):
    """Stores made before the flat keys keep zarr's default ``c/ROW/0/0/0``; their array metadata says so."""
    array = zarr.create_array(str(tmp_path / "old"), shape=(6, 3, 4, 5), chunks=(1, 3, 4, 5), dtype="float16",
                              fill_value=0, compressors=None)
    rows = _rows(3, seed=1)
    write_rows(array, 2, rows)
    assert (tmp_path / "old" / "c" / "3" / "0" / "0" / "0").read_bytes() == rows[1].tobytes()
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "old"), mode="r")[2:5], rows)


def test_unreadable_zero_rows_have_no_chunk_and_valid_zero_rows_keep_theirs(tmp_path):
    store, samples = new_store(tmp_path / "s.zarr", n=4, block_rows=4)
    arrays = store.open_layer(BB_A, "layer1", DS, make_meta(samples))
    folder = tmp_path / "s.zarr" / arrays.path / "feats"
    write_rows(arrays.feats, 0, _rows(4, seed=2))  # a first run: every row present
    rows = _rows(4, seed=3)
    rows[0] = 0  # a valid image whose features are all zero
    rows[1] = 0  # an unreadable image (zeroed by extraction)
    write_rows(arrays.feats, 0, rows, valid=np.array([1, 0, 0, 1], dtype=np.uint8))  # row 2: invalid, not zero
    assert sample_chunk(folder, 0).read_bytes() == rows[0].tobytes()
    assert not sample_chunk(folder, 1).exists()
    assert sample_chunk(folder, 2).read_bytes() == rows[2].tobytes()
    np.testing.assert_array_equal(zarr.open_array(str(folder), mode="r")[:], rows)


@pytest.mark.parametrize("layout", ["sharded", "compressed", "float32 rows"])
def test_layouts_only_zarr_can_write_go_through_zarr(tmp_path, layout):
    kw = {"shards": (2, 3, 4, 5)} if layout == "sharded" else {}
    array = zarr.create_array(str(tmp_path / "a"), shape=(4, 3, 4, 5), chunks=(1, 3, 4, 5), dtype="float16",
                              fill_value=0, compressors=None if layout != "compressed" else "auto", **kw)
    rows = _rows(2, seed=4, dtype=np.float32 if layout == "float32 rows" else np.float16)
    write_rows(array, 2, rows)
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "a"), mode="r")[2:4], rows.astype(np.float16))


def test_a_failed_rewrite_keeps_the_old_chunk_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    store, samples = new_store(tmp_path / "s.zarr", n=4, block_rows=4)
    arrays = store.open_layer(BB_A, "layer1", DS, make_meta(samples))
    folder = tmp_path / "s.zarr" / arrays.path / "feats"
    first = _rows(4, seed=5)
    write_rows(arrays.feats, 0, first)
    real_write, calls = os.write, []

    def write(fd, data):  # the disk fills up half-way through the second row
        calls.append(len(data))
        if len(calls) == 2:
            real_write(fd, bytes(data)[:10])
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(chunk_writes.os, "write", write)
    with pytest.raises(OSError, match="No space"):
        write_rows(arrays.feats, 0, _rows(4, seed=6))
    assert sample_chunk(folder, 1).read_bytes() == first[1].tobytes()
    assert not [p for p in Path(folder).iterdir() if p.name.endswith(".partial")]


ZSTD_SETTINGS = {"plain": None, "zstd default": "auto", "zstd level 5 + checksum": [ZstdCodec(level=5, checksum=True)]}


@pytest.mark.parametrize("compressors", ZSTD_SETTINGS.values(), ids=ZSTD_SETTINGS.keys())
@pytest.mark.parametrize("dtype,width", [("uint32", 3), ("float16", 5), ("uint8", None), ("bool", None)])
def test_a_whole_chunk_written_directly_reads_back_as_zarrs_own_write(tmp_path, dtype, width, compressors):
    """Oracle: the same values written through zarr into a twin array, compared byte for byte. Blocks of 4 rows over
    10 rows: two whole chunks and a short last one (padded with the fill value on disk, as zarr stores edge chunks).
    zstd-compressed arrays (zarr's default; the done flags) get zarr's own frame, level and checksum included."""
    from declip.store.chunk_writes import write_chunk

    shape = (10,) if width is None else (10, width)
    kw = dict(shape=shape, chunks=(4, *shape[1:]), dtype=dtype, fill_value=0, compressors=compressors)
    direct = zarr.create_array(str(tmp_path / "direct"), **kw)
    via_zarr = zarr.create_array(str(tmp_path / "zarr"), **kw)
    values = (np.arange(np.prod(shape)).reshape(shape) % 251 + 1).astype(dtype)
    with pytest.MonkeyPatch.context() as patch:  # the direct path, not zarr's write, made these files
        patch.setattr(zarr.Array, "__setitem__", lambda *a: pytest.fail("write_chunk went through zarr"))
        for start in (0, 4, 8):
            write_chunk(direct, start, values[start:start + 4])
    for start in (0, 4, 8):
        via_zarr[start:start + 4] = values[start:start + 4]
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "direct"), mode="r")[:], values)
    for key in ("c/0", "c/1", "c/2") if width is None else ("c/0/0", "c/1/0", "c/2/0"):
        assert (tmp_path / "direct" / key).read_bytes() == (tmp_path / "zarr" / key).read_bytes(), key
    assert not list((tmp_path / "direct").rglob("*.partial"))


def test_a_range_that_is_not_one_whole_chunk_goes_through_zarr(tmp_path):
    from declip.store.chunk_writes import write_chunk

    array = zarr.create_array(str(tmp_path / "a"), shape=(10,), chunks=(4,), dtype="uint8", fill_value=0,
                              compressors=None)
    write_chunk(array, 2, np.array([7, 8, 9], np.uint8))  # straddles chunks 0 and 1
    write_chunk(array, 4, np.array([5, 6], np.uint8))  # part of chunk 1
    assert array[:].tolist() == [0, 0, 7, 8, 5, 6, 0, 0, 0, 0]
    gzip = zarr.create_array(str(tmp_path / "z"), shape=(8,), chunks=(4,), dtype="uint8", fill_value=0,
                             compressors=[GzipCodec()])
    write_chunk(gzip, 4, np.array([1, 2, 3, 4], np.uint8))  # a codec only zarr encodes
    assert gzip[:].tolist() == [0, 0, 0, 0, 1, 2, 3, 4]
    assert gzip.metadata.codecs[1] == GzipCodec()
