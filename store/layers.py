"""The layer part of the feature store: cached features of one (backbone, layer, dataset) and their identity.

::

    <store>/features/<backbone>/<layer>/<dataset>/feats   (N, C, H, W) float16, one sample per chunk
                                                          (float32, int8 or float8 bits with ``dtype``)
    <store>/features/<backbone>/<layer>/<dataset>/scales  (N, C) float32 per-channel scales (int8/float8 only)
    <store>/features/<backbone>/<layer>/<dataset>/cls     (N, C) float16 class token (ViT only; float32 with fp32)
    <store>/features/<backbone>/<layer>/<dataset>/valid   (N,) uint8: 1 = features written, 0 = image unreadable
    <store>/features/<backbone>/<layer>/<dataset>/done    (blocks,) bool: block b holds rows [b*R, (b+1)*R)
    <store>/features/<backbone>/<layer>/<dataset>/sums    (blocks, 3) crc32 of feats(+scales), cls, valid
    <store>/features/<backbone>/<layer>/<dataset>/row_sums  (N, 3) crc32 of each row's feats, cls, scales

Writers own whole blocks (a block is a whole number of chunks, or one shard when sharded), so concurrent writers
never touch the same chunk. A block's ``done`` flag is set only after its data writes returned (zarr's local store
writes each chunk to a temporary file and renames it), so an interrupted run never leaves rows that look done.
Both sums are written with the block: readers check every row they read against them (:mod:`store.integrity`).
Opening an existing feature group with different metadata is refused: features from other weights or another
recipe must never mix with cached ones.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import posixpath
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import zarr

from declip.core.errors import DeclipError
from declip.core.versions import library_versions
from declip.store.base import SCHEMA_VERSION, StoreBase, as_stored
from declip.store.checksums import block_sums, row_sums
from declip.store.chunk_writes import FLAT_CHUNK_KEYS, write_chunk, write_rows
from declip.store.quantize import DEFAULT_STORAGE_DTYPE, cls_dtype, disk_dtype, is_quantized

# Fields that must agree for cached features to be reused; the rest of the record is informational.
IDENTITY_FIELDS = (
    "schema_version", "backbone", "weights_checksum", "recipe", "layer", "semantics", "channels", "grid",
    "dtype", "n_rows", "block_rows", "dataset_checksum", "activation", "view",
)
# Identity fields added after stores were first written, with the values every older store implicitly has: before
# the activation was recorded, every ViT was built with exact GELU (and ResNets use ReLU), so only a QuickGELU
# request is refused by an old store.
LEGACY_VALUES = {"activation": ("gelu", "relu")}
_PROBLEM_FILE = "block-{:06d}.json"  # unreadable-image records of one block, beside the layer's arrays


@dataclass
class LayerArrays:
    """The arrays of one (backbone, layer, dataset) feature group."""

    path: str
    feats: zarr.Array
    cls: zarr.Array | None
    valid: zarr.Array
    done: zarr.Array
    meta: dict[str, Any]
    scales: zarr.Array | None = None  # per-(sample, channel) scales of quantized features
    sums: zarr.Array | None = None  # (blocks, 3) crc32 of feats(+scales), cls, valid as stored; None before checksums
    row_sums: zarr.Array | None = None  # (N, 3) crc32 of each row's feats, cls, scales; None before per-row sums

    @property
    def storage_dtype(self) -> str:
        return str(self.meta.get("dtype", DEFAULT_STORAGE_DTYPE))

    @property
    def block_rows(self) -> int:
        return int(self.meta["block_rows"])

    @property
    def n_rows(self) -> int:
        return int(self.meta["n_rows"])

    def block_range(self, block: int) -> tuple[int, int]:
        start = block * self.block_rows
        return start, min(start + self.block_rows, self.n_rows)

    def pending_blocks(self) -> np.ndarray:
        return np.flatnonzero(~self.done[:])

    @property
    def complete(self) -> bool:
        return bool(self.done[:].all())


class StoreLayers(StoreBase):
    """Creation (identity-checked), block writes, listing and deletion of cached feature layers."""

    @staticmethod
    def layer_path(backbone: str, layer: str, dataset: str) -> str:
        return f"features/{backbone}/{layer}/{dataset}"

    def has_layer(self, backbone: str, layer: str, dataset: str) -> bool:
        path = self.layer_path(backbone, layer, dataset)
        return path in self.root and "meta" in self.root[path].attrs

    def open_layer(self, backbone: str, layer: str, dataset: str, meta: dict | None = None,
                   shards: bool = False) -> LayerArrays:
        """Open a feature group; with ``meta``, create it or refuse if the existing one disagrees."""
        path = self.layer_path(backbone, layer, dataset)
        if self.has_layer(backbone, layer, dataset):
            group = self.root[path]
            existing = group.attrs["meta"]
            if meta is not None:
                _refuse_mismatch(self.url, path, existing, meta)
            return self._arrays(path, group, existing)
        if meta is None:
            raise DeclipError(f"store {self.url} has no features at {path}; run `declip extract` for it")
        with self.lock(f"layer-{backbone}-{layer}-{dataset}"):  # exclusive creation: re-check under the lock
            if self.has_layer(backbone, layer, dataset):
                return self.open_layer(backbone, layer, dataset, meta, shards)
            return self._create_layer(path, meta, shards)

    def _create_layer(self, path: str, meta: dict, shards: bool) -> LayerArrays:
        n, br, c = meta["n_rows"], meta["block_rows"], meta["channels"]
        h, w = meta["grid"]
        storage = meta.get("dtype", DEFAULT_STORAGE_DTYPE)
        group = self.root.require_group(path)
        made: dict[str, zarr.Array] = {}  # kept as created: reopening each by name is another metadata read

        def array(name: str, **kw) -> None:
            made[name] = group.create_array(name, overwrite=True, **kw)

        array("feats", shape=(n, c, h, w), chunks=(1, c, h, w), dtype=disk_dtype(storage), fill_value=0,
              compressors=None, chunk_key_encoding=FLAT_CHUNK_KEYS, **({"shards": (br, c, h, w)} if shards else {}))
        if is_quantized(storage):
            array("scales", shape=(n, c), chunks=(br, c), dtype="float32", fill_value=0, compressors=None)
        if meta["has_cls"]:
            array("cls", shape=(n, c), chunks=(br, c), dtype=cls_dtype(storage), fill_value=0, compressors=None)
        # the per-block arrays the block checksums cover are small and written once per block, straight to their
        # chunk files (store/chunk_writes.py: write_chunk); uncompressed, so no codec runs (layers made before keep
        # zstd, framed as zarr frames it). The done flag keeps zstd: nothing else covers it, and zstd's frame check
        # catches a damaged one
        blocks = max(1, math.ceil(n / br))
        array("valid", shape=(n,), chunks=(br,), dtype="uint8", fill_value=0, compressors=None)
        array("done", shape=(blocks,), chunks=(1,), dtype="bool", fill_value=False)
        array("sums", shape=(blocks, 3), chunks=(1, 3), dtype="uint32", fill_value=0, compressors=None)
        array("row_sums", shape=(n, 3), chunks=(br, 3), dtype="uint32", fill_value=0, compressors=None)
        record = dict(meta, created=dt.datetime.now(dt.timezone.utc).isoformat(), versions=library_versions(),
                      schema_version=SCHEMA_VERSION, layout="NCHW", dtype=storage)
        group.attrs["meta"] = record  # last: the group counts as existing only with its metadata
        return LayerArrays(path, made["feats"], made.get("cls"), made["valid"], made["done"], record,
                           made.get("scales"), made["sums"], made["row_sums"])

    def _arrays(self, path: str, group: zarr.Group, meta: dict) -> LayerArrays:
        quantized = is_quantized(str(meta.get("dtype", DEFAULT_STORAGE_DTYPE)))
        for name in (("feats", "valid", "done") + (("cls",) if meta.get("has_cls") else ())
                     + (("scales",) if quantized else ())):
            if name not in group:
                key = path.removeprefix("features/")
                raise DeclipError(
                    f"{self.url}/{path}/{name}/zarr.json is missing (the array's metadata was deleted), so its data "
                    f"cannot be read; remove the entry with `declip store rm {key} --store {self.url}` and re-run "
                    "`declip extract` to rebuild it")
        cls = group["cls"] if "cls" in group else None
        scales = group["scales"] if "scales" in group else None
        sums = group["sums"] if "sums" in group else None
        rows = group["row_sums"] if "row_sums" in group else None
        return LayerArrays(path, group["feats"], cls, group["valid"], group["done"], meta, scales, sums, rows)

    def write_block(self, arrays: LayerArrays, block: int, feats: np.ndarray, cls: np.ndarray | None,
                    valid: np.ndarray, problems: list[dict], scales: np.ndarray | None = None) -> None:
        """Write one block's rows, then (and only then) mark the block done."""
        start, stop = arrays.block_range(block)
        assert len(feats) == stop - start, (len(feats), start, stop)
        if (arrays.scales is None) != (scales is None):
            raise DeclipError(f"{arrays.path} stores {arrays.storage_dtype} features: scales are "
                              f"{'required' if arrays.scales is not None else 'not expected'} when writing them")
        if np.dtype(feats.dtype) != np.dtype(arrays.feats.dtype):
            raise DeclipError(f"{arrays.path} stores {arrays.feats.dtype} features; got {feats.dtype}")
        write_rows(arrays.feats, start, feats, valid)  # the chunk files directly on a local store
        if scales is not None:
            write_chunk(arrays.scales, start, scales)
        if arrays.cls is not None and cls is not None:
            write_chunk(arrays.cls, start, cls)
        write_chunk(arrays.valid, start, valid.astype("uint8"))
        if problems:
            self._put_file(f"{arrays.path}/problems/{_PROBLEM_FILE.format(block)}", json.dumps(problems).encode())
        if arrays.sums is not None:  # with the done flag: what a later read must find again
            stored_cls = None if arrays.cls is None or cls is None else np.asarray(cls, arrays.cls.dtype)
            stored_scales = None if scales is None else np.asarray(scales, arrays.scales.dtype)
            write_chunk(arrays.sums, block, np.asarray([block_sums(feats, stored_cls, valid, stored_scales)]))
            if arrays.row_sums is not None:
                write_chunk(arrays.row_sums, start, row_sums(feats, stored_cls, stored_scales))
        write_chunk(arrays.done, block, np.ones(1, dtype=bool))

    def block_problems(self, arrays: LayerArrays) -> dict[int, list[dict]]:
        """{block: the unreadable-image records :meth:`write_block` stored for it}."""
        out: dict[int, list[dict]] = {}
        for name in self._list_files(f"{arrays.path}/problems"):
            stem = posixpath.basename(name)
            if stem.startswith("block-") and stem.endswith(".json"):
                out[int(stem.removeprefix("block-").removesuffix(".json"))] = json.loads(self.fs.cat_file(name))
        return out

    def layer_problems(self, arrays: LayerArrays) -> list[dict]:
        return [record for _, records in sorted(self.block_problems(arrays).items()) for record in records]

    def iter_layers(self) -> Iterator[tuple[str, str, str]]:
        """(backbone, layer, dataset) of every feature group."""
        if "features" not in self.root:
            return
        for backbone in sorted(self.root["features"].group_keys()):
            for layer in sorted(self.root[f"features/{backbone}"].group_keys(), key=_layer_sort_key):
                for dataset in sorted(self.root[f"features/{backbone}/{layer}"].group_keys()):
                    if self.has_layer(backbone, layer, dataset):
                        yield backbone, layer, dataset

    def delete_layer(self, backbone: str, layer: str, dataset: str) -> None:
        path = self.layer_path(backbone, layer, dataset)
        if path not in self.root:
            raise DeclipError(f"store {self.url} has no {path}")
        group = self.root[path]
        if "meta" in group.attrs:  # first: a deletion cut short must not leave a layer that looks complete
            group.attrs.put({k: v for k, v in group.attrs.asdict().items() if k != "meta"})
        del self.root[path]


def _layer_sort_key(name: str) -> tuple[int, str]:
    digits = name.removeprefix("layer")
    return (int(digits), name) if digits.isdigit() else (10**6, name)


def _refuse_mismatch(url: str, path: str, existing: dict, wanted: dict) -> None:
    diffs = [f"{field}: stored {existing.get(field)!r} vs requested {wanted.get(field)!r}"
             for field in IDENTITY_FIELDS
             if field in wanted and as_stored(existing.get(field)) != as_stored(wanted.get(field))
             and not (field not in existing and wanted[field] in LEGACY_VALUES.get(field, ()))]
    if diffs:
        raise DeclipError(
            f"refusing to write into {url}/{path}: its cached features were made differently ("
            + "; ".join(diffs) + "). Nothing was changed. Use another --store, or remove the old features with "
            f"`declip store rm {path.removeprefix('features/')} --store {url}` if you mean to replace them."
        )
