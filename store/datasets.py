"""The dataset part of the feature store: registered rows (``samples.parquet``) and their masks.

::

    <store>/datasets/<dataset>/samples.parquet       the manifest rows, aligned row for row with every feature array
    <store>/datasets/<dataset>/soft_masks            (N, 256, 256) uint8, fake = 255: DeCLIP's soft BCE targets
    <store>/datasets/<dataset>/native_bits           bit-packed native-resolution binary masks (fake = 1)
    <store>/datasets/<dataset>/mask_done             (blocks,) bool
    <store>/datasets/<dataset>/mask_sums             (blocks, 2) crc32 of a block's soft masks and native bits
    <store>/datasets/<dataset>/mask_row_sums         (N, 2) the same per row: what every mask read is checked against

A view's copy ``<dataset>@<view>`` (``core.keys.DatasetKey``) is a dataset of its own with the same rows; a
photometric view stores no masks and points at the clean dataset's (``masks_of``).
"""
from __future__ import annotations

import io
import logging
import math
from typing import Any

import numpy as np
import pandas as pd
import zarr

from declip.core.errors import DeclipError
from declip.store.base import SCHEMA_VERSION, StoreBase, as_stored
from declip.store.checksums import crc32, dataset_checksum, mask_row_sums
from declip.store.chunk_writes import write_chunk, write_rows
from declip.store.mask_reader import MaskReader

log = logging.getLogger(__name__)
MASK_SIZE = 256
#: Row facts the cached masks depend on; the others (split, subset, group_id, ...) may change on a re-scan.
MASK_COLUMNS = ("label", "kind", "mask_polarity", "width", "height")


class StoreDatasets(StoreBase):
    """Registration of a dataset's rows, and the masks every feature layer of it shares."""

    def datasets(self) -> list[str]:
        return sorted(self.root["datasets"].group_keys()) if "datasets" in self.root else []

    def create_dataset(self, key: str, samples: pd.DataFrame, root: str, layout: str, block_rows: int = 64,
                       view: dict | None = None, masks_of: str | None = None) -> None:
        """Register a dataset's rows (or check that the registered rows are the same ones).

        Under the dataset's store lock: two extractions starting together register it once. A view's copy
        (``view`` = its record) whose masks equal another dataset's (a photometric view) passes ``masks_of``: its
        masks are read from there instead of being stored twice.
        """
        with self.lock(f"dataset-{key}"):
            self._create_dataset(key, samples, root, layout, block_rows, view, masks_of)
        self.forget_masks()

    def _create_dataset(self, key: str, samples: pd.DataFrame, root: str, layout: str, block_rows: int,
                        view: dict | None = None, masks_of: str | None = None) -> None:
        checksum = dataset_checksum(samples)
        path = f"datasets/{key}"
        if path not in self.root and self._exists(path):
            # the group's zarr.json is gone, so its attrs are too; masks and samples derive from the manifest: rebuild
            log.warning("%s/%s lost its zarr.json; rebuilding the dataset's registration and masks", self.url, path)
            self.fs.rm(self._full(path), recursive=True)
        if path in self.root:
            attrs = self.root[path].attrs
            existing = attrs.get("dataset_checksum")
            if existing is None:  # an interrupted registration (attrs are written last): redo it from scratch
                del self.root[path]
            elif existing != checksum:
                raise DeclipError(
                    f"dataset {key!r} in store {self.url} was registered from different files (checksum "
                    f"{existing[:12]} vs {checksum[:12]}); use another --dataset name or another store"
                )
            elif view is not None and as_stored(attrs.get("view")) != as_stored(view):
                raise DeclipError(
                    f"view dataset {key!r} in store {self.url} was made differently (stored {attrs.get('view')!r} vs "
                    f"requested {view!r}): a library that computes the view changed. Nothing was changed; use "
                    f"another --store or remove {key!r} and its features first"
                )
            else:
                self._repair_samples(key, samples)
                return
        n = len(samples)
        group = self.root.create_group(path)
        if masks_of is None:
            self._create_mask_arrays(group, samples, block_rows)
        self._put_file(f"{path}/samples.parquet", _parquet_bytes(samples))
        extra = {"view": view} if view is not None else {}
        if masks_of is not None:
            extra["masks_of"] = masks_of
        # attrs last: a dataset group is usable only once its checksum is recorded
        group.attrs.update({"dataset_checksum": checksum, "n_rows": n, "root": str(root), "layout": layout,
                            "block_rows": block_rows, "schema_version": SCHEMA_VERSION, **extra})

    @staticmethod
    def _create_mask_arrays(group: zarr.Group, samples: pd.DataFrame, block_rows: int) -> None:
        n = len(samples)
        blocks = max(1, math.ceil(n / block_rows))
        group.create_array("soft_masks", shape=(n, MASK_SIZE, MASK_SIZE), chunks=(1, MASK_SIZE, MASK_SIZE),
                           dtype="uint8", fill_value=0, compressors=None)
        offsets = native_offsets(samples)
        group.create_array("native_offsets", data=offsets, chunks=(max(1, len(offsets)),))
        group.create_array("native_bits", shape=(max(1, int(offsets[-1])),), chunks=(1 << 20,), dtype="uint8",
                           fill_value=0, compressors=[zarr.codecs.ZstdCodec(level=1)])
        group.create_array("mask_done", shape=(blocks,), chunks=(1,), dtype="bool", fill_value=False)
        group.create_array("mask_sums", shape=(blocks, 2), chunks=(1, 2), dtype="uint32", fill_value=0)
        group.create_array("mask_row_sums", shape=(n, 2), chunks=(block_rows, 2), dtype="uint32", fill_value=0)

    def samples(self, key: str) -> pd.DataFrame:
        self._require_dataset(key)
        rel = f"datasets/{key}/samples.parquet"
        try:
            return pd.read_parquet(io.BytesIO(self._get_file(rel)))
        except Exception as exc:  # noqa: BLE001 - missing, truncated or not parquet: pyarrow raises several types
            raise DeclipError(
                f"{self.url}/{rel} is damaged or missing ({type(exc).__name__}); re-run `declip extract` with the "
                "dataset's manifest: it checks the rows against the store and rebuilds the file"
            ) from None

    def _repair_samples(self, key: str, samples: pd.DataFrame) -> None:
        """Rewrite ``samples.parquet`` from the manifest rows (the checksum just showed they are the same files) when
        it is damaged, or when only row facts the cached arrays do not depend on changed (a re-scan that gave the
        rows splits: ``--split-ratios``); refuse when a fact the cached masks depend on changed."""
        rel = f"datasets/{key}/samples.parquet"
        try:
            current = pd.read_parquet(io.BytesIO(self._get_file(rel)))
        except Exception:  # noqa: BLE001
            current = None
        if current is not None:
            changed = [c for c in samples.columns if c not in current.columns or not current[c].astype(str)
                       .reset_index(drop=True).equals(samples[c].astype(str).reset_index(drop=True))]
            if not changed:
                return
            fixed = [c for c in changed if c in MASK_COLUMNS]
            if fixed:
                raise DeclipError(
                    f"dataset {key!r} in store {self.url} was registered with other {', '.join(fixed)} for the same "
                    "files, and its cached masks depend on them; use another --dataset name or another store")
            log.info("%s: dataset %s takes the manifest's new %s", self.url, key, ", ".join(changed))
        self._put_file(rel, _parquet_bytes(samples))

    def set_dataset_attrs(self, key: str, **attrs: Any) -> None:
        """Record facts about a dataset's cached masks (e.g. how they were oriented) beside its registration."""
        self._require_dataset(key)
        self.root[f"datasets/{key}"].attrs.update(attrs)

    def dataset_attrs(self, key: str) -> dict:
        self._require_dataset(key)
        return dict(self.root[f"datasets/{key}"].attrs)

    def _require_dataset(self, key: str) -> None:
        if f"datasets/{key}" not in self.root or "dataset_checksum" not in self.root[f"datasets/{key}"].attrs:
            known = ", ".join(self.datasets()) or "none"
            raise DeclipError(f"store {self.url} has no dataset {key!r} (known: {known}); extract it first")

    def _mask_group(self, key: str) -> zarr.Group:
        """The group holding ``key``'s masks: its own, or the clean dataset's for a photometric view."""
        group = self.root[f"datasets/{key}"]
        owner = group.attrs.get("masks_of")
        return self.root[f"datasets/{owner}"] if owner else group

    def write_masks(self, key: str, block: int, soft: np.ndarray, native: list[np.ndarray | None]) -> None:
        """Write one block of masks, then mark it done.

        ``native_bits`` chunks span many blocks (read-modify-write), so every writer holds the dataset's lock; a block
        another process finished meanwhile is left as it is.
        """
        with self.lock(f"dataset-{key}"):
            if not self.root[f"datasets/{key}/mask_done"][block]:
                self._write_masks(key, block, soft, native)
        self.forget_masks()

    def _write_masks(self, key: str, block: int, soft: np.ndarray, native: list[np.ndarray | None]) -> None:
        group = self.root[f"datasets/{key}"]
        br = int(group.attrs["block_rows"])
        start = block * br
        # straight to the chunk files where the layout allows (store/chunk_writes.py: the bytes zarr would write;
        # a row without a mask keeps no chunk, as zarr leaves an all-zero one): a block's five zarr writes cost
        # ~10 ms, most of a real-only dataset's registration
        write_rows(group["soft_masks"], start, soft, valid=soft.reshape(len(soft), -1).any(axis=1))
        offsets = group["native_offsets"][start:start + len(soft) + 1]
        bits = np.zeros(int(offsets[-1] - offsets[0]), dtype=np.uint8)
        for i, mask in enumerate(native):
            lo, hi = offsets[i] - offsets[0], offsets[i + 1] - offsets[0]
            if mask is not None and hi > lo:
                bits[lo:hi] = np.packbits(mask.astype(bool).ravel())
        if len(bits):
            group["native_bits"][int(offsets[0]):int(offsets[-1])] = bits
        if "mask_sums" in group:
            write_chunk(group["mask_sums"], block, np.asarray([[crc32(soft), crc32(bits)]], dtype=np.uint32))
        if "mask_row_sums" in group:
            write_chunk(group["mask_row_sums"], start, mask_row_sums(soft, bits, offsets - offsets[0]))
        write_chunk(group["mask_done"], block, np.ones(1, dtype=bool))

    def pending_mask_blocks(self, key: str) -> np.ndarray:
        group = self.root[f"datasets/{key}"]
        if "masks_of" in group.attrs:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(~group["mask_done"][:])

    def mask_reader(self, key: str) -> MaskReader:
        """``key``'s masks, read and checked (one reader per dataset, kept: it holds the checksums)."""
        readers = self.__dict__.setdefault("_mask_readers", {})
        if key not in readers:
            group = self._mask_group(key)
            readers[key] = MaskReader(self.url, group.path, group)
        return readers[key]

    def forget_masks(self) -> None:
        """Drop the kept mask readers (their checksums): after this process wrote or marked mask blocks."""
        self.__dict__.pop("_mask_readers", None)

    def soft_masks(self, key: str, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        reader = self.mask_reader(key)
        if isinstance(rows, slice):
            rows = np.arange(reader.blocks.n_rows)[rows]
        return reader.soft_masks(np.asarray(rows, dtype=np.int64))

    def native_mask(self, key: str, row: int, shape: tuple[int, int]) -> np.ndarray | None:
        """The native-resolution binary mask of ``row`` (None for rows without one: real and fully generated)."""
        return self.mask_reader(key).native_mask(int(row), shape)


def native_offsets(samples: pd.DataFrame) -> np.ndarray:
    """(N + 1,) int64: where each row's packed native mask starts in ``native_bits`` (fakes with a mask have one)."""
    bytes_per = [math.ceil(int(w) * int(h) / 8) if lab == 1 and mp else 0
                 for w, h, lab, mp in samples[["width", "height", "label", "mask_path"]].itertuples(index=False)]
    return np.concatenate([[0], np.cumsum(bytes_per, dtype=np.int64)])


def _parquet_bytes(samples: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    samples.reset_index(drop=True).to_parquet(buf, index=False)
    return buf.getvalue()
