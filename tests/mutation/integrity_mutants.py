"""Mutants of issue 21's integrity work (area ``integrity``): checks on every read, verify's gaps, the first-open race.

Kept in their own file (``mutants.py`` is near the 400-line limit); ``mutants.py`` appends them to ``MUTANTS`` as
``Mutant(*fields)`` (id, area, what, file, old, new, tests), so this file imports nothing from it.
"""
from __future__ import annotations


def M(*fields: object) -> tuple:  # noqa: N802 - reads like mutants.py's table
    return fields


READS = ("tests/store/test_read_integrity.py",)
SUMS = ("tests/store/test_checksums.py",)
VERIFY = ("tests/store/test_verify.py",)
RACE = ("tests/store/test_base.py",)

INTEGRITY_MUTANTS: list[tuple] = [
    M("IN1", "integrity", "feature rows read without their per-row check", "store/readers.py",
      "check=self.check.feats if self.check and self.check.per_row else None", "check=None", READS),
    M("IN2", "integrity", "class tokens not checked on read", "store/integrity.py",
      'for name, col, part in (("cls", 1, cls), ("scales", 2, scales)):',
      'for name, col, part in (("scales", 2, scales),):', READS),
    M("IN3", "integrity", "a done row's missing chunk read as zeros", "store/fastpath.py",
      "if self.required is not None and self.required[row]:", "if False:",
      READS + ("tests/store/test_store_damage.py::test_deleted_feature_chunk_is_found_marked_and_redone",)),
    M("IN4", "integrity", "an all-zero row stored as no chunk taken for damage", "store/integrity.py",
      "return valid & (self.row[:, 0] != zero)", "return valid", READS),
    M("IN5", "integrity", "native mask bits not checked on read", "store/mask_reader.py",
      "if self.row is not None and crc32(bits) != int(self.row[row, 1]):", "if False:", READS),
    M("IN6", "integrity", "row sums hash the first row for every row", "store/checksums.py",
      "out[i] = (crc32(feats[i]),", "out[i] = (crc32(feats[0]),", SUMS),
    M("IN7", "integrity", "a row's native-mask sum drops its last byte", "store/checksums.py",
      "crc32(bits[int(offsets[i]):int(offsets[i + 1])])", "crc32(bits[int(offsets[i]):int(offsets[i + 1]) - 1])",
      SUMS),
    M("IN8", "integrity", "verify skips the last done mask block", "store/verify.py",
      "    for block in np.flatnonzero(done):\n", "    for block in np.flatnonzero(done)[:-1]:\n", VERIFY),
    M("IN9", "integrity", "verify ignores changed feature row sums", "store/verify.py",
      "elif rows is not None and not np.array_equal(row_sums(feats, cls, scales), rows[lo:hi]):", "elif False:",
      VERIFY),
    M("IN10", "integrity", "the loser of the first-open race fails instead of opening the winner's root",
      "store/base.py", "        return zarr.open_group(url, mode=\"a\", storage_options=opts)\n", "        raise\n", RACE),
]
