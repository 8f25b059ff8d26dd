"""The checksums every write records and every read checks (store/checksums.py): CRC-32 as zlib defines it."""
from __future__ import annotations

import zlib

import numpy as np

from declip.store.checksums import block_sums, crc32, mask_row_sums, row_sums


def test_crc32_is_the_standard_crc32():
    """The published CRC-32 check value (0xCBF43926 for b"123456789") and zlib's values: stores written with
    either library agree."""
    assert crc32(np.frombuffer(b"123456789", dtype=np.uint8)) == 0xCBF43926
    data = np.random.default_rng(0).standard_normal((3, 7, 5)).astype(np.float16)
    assert crc32(data) == zlib.crc32(data.tobytes())
    assert crc32(data[:, ::2]) == zlib.crc32(np.ascontiguousarray(data[:, ::2]).tobytes())  # strided: its values
    assert crc32(None) == 0


def test_row_sums_hash_each_row_and_block_sums_continue_over_the_scales():
    rng = np.random.default_rng(1)
    feats = rng.integers(-127, 127, (4, 2, 3, 3), dtype=np.int8)
    cls, scales = rng.random((4, 2)).astype(np.float16), rng.random((4, 2)).astype(np.float32)
    got = row_sums(feats, cls, scales)
    assert got.dtype == np.uint32 and got.shape == (4, 3)
    for i in range(4):
        assert list(got[i]) == [zlib.crc32(feats[i].tobytes()), zlib.crc32(cls[i].tobytes()),
                                zlib.crc32(scales[i].tobytes())]
    assert list(row_sums(feats, None)[:, 1:].ravel()) == [0] * 8
    valid = np.array([1, 0, 1, 1], np.uint8)
    assert block_sums(feats, cls, valid, scales) == [zlib.crc32(feats.tobytes() + scales.tobytes()),
                                                     zlib.crc32(cls.tobytes()), zlib.crc32(valid.tobytes())]


def test_mask_row_sums_cover_each_rows_own_bits():
    soft = np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4)
    bits = np.arange(10, dtype=np.uint8)
    got = mask_row_sums(soft, bits, np.array([0, 4, 4, 10]))
    assert [list(r) for r in got] == [[zlib.crc32(soft[0].tobytes()), zlib.crc32(bits[:4].tobytes())],
                                      [zlib.crc32(soft[1].tobytes()), 0],
                                      [zlib.crc32(soft[2].tobytes()), zlib.crc32(bits[4:].tobytes())]]
