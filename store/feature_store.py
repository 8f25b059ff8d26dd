"""The zarr (v3) feature store: cached layer features keyed by backbone/layer, per dataset.

Layout (design §3.3)::

    <store>/datasets/<dataset>/samples.parquet       the manifest rows, aligned row for row with every array below
    <store>/datasets/<dataset>/soft_masks            (N, 256, 256) uint8, fake = 255: DeCLIP's soft BCE targets
    <store>/datasets/<dataset>/native_bits           bit-packed native-resolution binary masks (fake = 1)
    <store>/datasets/<dataset>/mask_done             (blocks,) bool
    <store>/features/<backbone>/<layer>/<dataset>/feats   (N, C, H, W) float16, one sample per chunk
                                                          (float32, int8 or float8 bits with ``dtype``)
    <store>/features/<backbone>/<layer>/<dataset>/scales  (N, C) float32 per-channel scales (int8/float8 only)
    <store>/features/<backbone>/<layer>/<dataset>/cls     (N, C) float16 class token (ViT only; float32 with fp32)
    <store>/features/<backbone>/<layer>/<dataset>/valid   (N,) uint8: 1 = features written, 0 = image unreadable
    <store>/features/<backbone>/<layer>/<dataset>/done    (blocks,) bool: block b holds rows [b*R, (b+1)*R)

A view (a perturbation applied before encoding, ``features.views``) is cached as the dataset ``<dataset>@<view>``:
the same rows in the same order, its own features, and its own masks only when the view is geometric (a
photometric view's ``masks_of`` attribute points at the clean dataset). Clean data keeps its old keys.

Writers own whole blocks (a block is a whole number of chunks, or one shard when sharded), so concurrent writers
never touch the same chunk. A block's ``done`` flag is set only after its data writes returned (zarr's local store
writes each chunk to a temporary file and renames it), so an interrupted run never leaves rows that look done.
Opening an existing feature group with different metadata is refused: features from other weights or another
recipe must never mix with cached ones.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import math
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import fsspec
import numpy as np
import pandas as pd
import zarr

from declip.core.errors import DeclipError
from declip.core.keys import CLEAN_VIEW
from declip.store.locks import store_lock
from declip.store.quantize import DEFAULT_STORAGE_DTYPE, cls_dtype, disk_dtype, is_quantized

log = logging.getLogger(__name__)
SCHEMA_VERSION = 1
MASK_SIZE = 256
# Fields that must agree for cached features to be reused; the rest of the record is informational.
IDENTITY_FIELDS = (
    "schema_version", "backbone", "weights_checksum", "recipe", "layer", "semantics", "channels", "grid",
    "dtype", "n_rows", "block_rows", "dataset_checksum", "activation", "view",
)
# Identity fields added after stores were first written, with the values every older store implicitly has: before
# the activation was recorded, every ViT was built with exact GELU (and ResNets use ReLU), so only a QuickGELU
# request is refused by an old store.
LEGACY_VALUES = {"activation": ("gelu", "relu")}

#: A view's cached copy of dataset D is the dataset ``D@VIEW`` (``dolos@jpeg:75``); the clean copy stays ``D``.
VIEW_SEP = "@"


def view_dataset_key(dataset: str, view: str = CLEAN_VIEW) -> str:
    """Store key of ``dataset`` seen through ``view`` (a canonical view name); ``clean`` is the dataset itself."""
    return dataset if view in ("", CLEAN_VIEW) else f"{dataset}{VIEW_SEP}{view}"


def split_view_key(key: str) -> tuple[str, str]:
    """(dataset, view) of a store dataset key; inverse of :func:`view_dataset_key`."""
    base, sep, view = key.partition(VIEW_SEP)
    return (base, view) if sep else (key, CLEAN_VIEW)


def _restore_root_metadata(url: str) -> None:
    """A local store whose root ``zarr.json`` was deleted gets it back (it holds nothing but the node type)."""
    if "://" in url:
        return
    root = Path(url)
    if root.is_dir() and not (root / "zarr.json").exists() and ((root / "datasets").is_dir()
                                                                 or (root / "features").is_dir()):
        log.warning("%s/zarr.json was missing; restored it", url)
        (root / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}))


def local_path(url: str) -> str:
    """``file:///x/y.zarr`` → ``/x/y.zarr``: zarr's fsspec route cannot create a new local store, its local one can."""
    if url.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return unquote(urlparse(url).path)
    return url


def dies_with_process(url: str) -> bool:
    """A store that exists only in this process's memory (``memory://``): nothing written there outlives the run."""
    return str(url).startswith("memory://")


def dataset_checksum(samples: pd.DataFrame) -> str:
    """Identifies the exact rows (file contents and order) a feature array is aligned with."""
    digest = hashlib.sha256()
    for row in samples[["image_path", "mask_path", "sha256"]].itertuples(index=False):
        digest.update("\x1f".join(str(v) for v in row).encode() + b"\x1e")
    return digest.hexdigest()


def crc32(array: np.ndarray | None) -> int:
    """CRC-32 of an array's bytes (2 GB/s here: cheap next to encoding and writing the block)."""
    return 0 if array is None else zlib.crc32(np.ascontiguousarray(array).view(np.uint8).ravel())


def block_sums(feats: np.ndarray, cls: np.ndarray | None, valid: np.ndarray,
               scales: np.ndarray | None = None) -> list[int]:
    """What a done feature block must read back as: crc32 of its features, class tokens and valid flags as stored.

    Arrays are hashed in the dtype they are stored in (float16/float32 features, or int8/float8 bits); a quantized
    layer's float32 scales are folded into the features' sum (a CRC continued over the scales' bytes), so the
    ``(blocks, 3)`` shape stays that of unquantized and older stores and a changed scale flags the features.
    """
    f = crc32(feats)
    if scales is not None:
        f = zlib.crc32(np.ascontiguousarray(scales, dtype=np.float32).view(np.uint8).ravel(), f)
    return [f, crc32(cls), crc32(np.asarray(valid).astype(np.uint8))]


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for name in ("declip", "torch", "open_clip_torch", "zarr", "numpy"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "unknown"
    return out


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


class FeatureStore:
    """A zarr hierarchy at a local path or fsspec URL (``s3://…`` needs s3fs)."""

    def __init__(self, url: str, mode: str = "a", storage_options: dict | None = None):
        self.url = local_path(str(url)).rstrip("/")
        self.storage_options = storage_options or {}
        _restore_root_metadata(self.url)
        try:
            self.root = zarr.open_group(self.url, mode=mode, storage_options=self.storage_options or None)
        except FileNotFoundError as exc:
            raise DeclipError(f"no feature store at {self.url}; run `declip extract` to create one") from exc
        self.fs, self._fs_root = fsspec.core.url_to_fs(self.url, **self.storage_options)

    # ---- small files next to the arrays (sample tables, problem records) ----
    def _put_file(self, rel: str, data: bytes) -> None:
        path = f"{self._fs_root}/{rel}"
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex}.partial"  # unique: concurrent writers of the same file never collide
        self.fs.pipe_file(tmp, data)
        self.fs.mv(tmp, path)

    def _get_file(self, rel: str) -> bytes:
        return self.fs.cat_file(f"{self._fs_root}/{rel}")

    def _exists(self, rel: str) -> bool:
        return self.fs.exists(f"{self._fs_root}/{rel}")

    # ---- datasets ----
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

    def lock(self, name: str):
        """A lock shared by every process (on any host) writing this store; see :mod:`store.locks`."""
        return store_lock(self.url, name)

    def _create_dataset(self, key: str, samples: pd.DataFrame, root: str, layout: str, block_rows: int,
                        view: dict | None = None, masks_of: str | None = None) -> None:
        checksum = dataset_checksum(samples)
        path = f"datasets/{key}"
        if path not in self.root and self._exists(path):
            # the group's zarr.json is gone, so its attrs are too; masks and samples derive from the manifest: rebuild
            log.warning("%s/%s lost its zarr.json; rebuilding the dataset's registration and masks", self.url, path)
            self.fs.rm(f"{self._fs_root}/{path}", recursive=True)
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
            elif view is not None and _norm(attrs.get("view")) != _norm(view):
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
        buf = io.BytesIO()
        samples.reset_index(drop=True).to_parquet(buf, index=False)
        self._put_file(f"{path}/samples.parquet", buf.getvalue())
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
        bytes_per = [math.ceil(int(w) * int(h) / 8) if lab == 1 and mp else 0
                     for w, h, lab, mp in samples[["width", "height", "label", "mask_path"]].itertuples(index=False)]
        offsets = np.concatenate([[0], np.cumsum(bytes_per, dtype=np.int64)])
        group.create_array("native_offsets", data=offsets, chunks=(max(1, len(offsets)),))
        group.create_array("native_bits", shape=(max(1, int(offsets[-1])),), chunks=(1 << 20,), dtype="uint8",
                           fill_value=0, compressors=[zarr.codecs.ZstdCodec(level=1)])
        group.create_array("mask_done", shape=(blocks,), chunks=(1,), dtype="bool", fill_value=False)
        group.create_array("mask_sums", shape=(blocks, 2), chunks=(1, 2), dtype="uint32", fill_value=0)

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
        """Rewrite a damaged ``samples.parquet`` from the manifest rows, which the checksum has just shown are the same."""
        rel = f"datasets/{key}/samples.parquet"
        try:
            pd.read_parquet(io.BytesIO(self._get_file(rel)))
            return
        except Exception:  # noqa: BLE001
            pass
        buf = io.BytesIO()
        samples.reset_index(drop=True).to_parquet(buf, index=False)
        self._put_file(rel, buf.getvalue())

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

    def _write_masks(self, key: str, block: int, soft: np.ndarray, native: list[np.ndarray | None]) -> None:
        group = self.root[f"datasets/{key}"]
        br = int(group.attrs["block_rows"])
        start = block * br
        group["soft_masks"][start:start + len(soft)] = soft
        offsets = group["native_offsets"][start:start + len(soft) + 1]
        bits = np.zeros(int(offsets[-1] - offsets[0]), dtype=np.uint8)
        for i, mask in enumerate(native):
            lo, hi = offsets[i] - offsets[0], offsets[i + 1] - offsets[0]
            if mask is not None and hi > lo:
                bits[lo:hi] = np.packbits(mask.astype(bool).ravel())
        if len(bits):
            group["native_bits"][int(offsets[0]):int(offsets[-1])] = bits
        if "mask_sums" in group:
            group["mask_sums"][block] = [crc32(soft), crc32(bits)]
        group["mask_done"][block] = True

    def pending_mask_blocks(self, key: str) -> np.ndarray:
        group = self.root[f"datasets/{key}"]
        if "masks_of" in group.attrs:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(~group["mask_done"][:])

    def soft_masks(self, key: str, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        arr = self._mask_group(key)["soft_masks"]
        if isinstance(rows, slice):
            return arr[rows]
        return np.stack([arr[int(i)] for i in rows]) if len(rows) else np.zeros((0, MASK_SIZE, MASK_SIZE), "uint8")

    def native_mask(self, key: str, row: int, shape: tuple[int, int]) -> np.ndarray | None:
        """The native-resolution binary mask of ``row`` (None for rows without one: real and fully generated)."""
        group = self._mask_group(key)
        lo, hi = group["native_offsets"][row], group["native_offsets"][row + 1]
        if hi == lo:
            return None
        h, w = shape
        return np.unpackbits(group["native_bits"][lo:hi], count=h * w).reshape(h, w).astype(bool)

    # ---- features ----
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
        kw = {"shards": (br, c, h, w)} if shards else {}
        group.create_array("feats", shape=(n, c, h, w), chunks=(1, c, h, w), dtype=disk_dtype(storage),
                           fill_value=0, compressors=None, overwrite=True, **kw)
        if is_quantized(storage):
            group.create_array("scales", shape=(n, c), chunks=(br, c), dtype="float32", fill_value=0,
                               compressors=None, overwrite=True)
        if meta["has_cls"]:
            group.create_array("cls", shape=(n, c), chunks=(br, c), dtype=cls_dtype(storage), fill_value=0,
                               compressors=None, overwrite=True)
        group.create_array("valid", shape=(n,), chunks=(br,), dtype="uint8", fill_value=0, overwrite=True)
        group.create_array("done", shape=(max(1, math.ceil(n / br)),), chunks=(1,), dtype="bool",
                           fill_value=False, overwrite=True)
        group.create_array("sums", shape=(max(1, math.ceil(n / br)), 3), chunks=(1, 3), dtype="uint32",
                           fill_value=0, overwrite=True)
        record = dict(meta, created=dt.datetime.now(dt.timezone.utc).isoformat(), versions=library_versions(),
                      schema_version=SCHEMA_VERSION, layout="NCHW", dtype=storage)
        group.attrs["meta"] = record  # last: the group counts as existing only with its metadata
        return self._arrays(path, group, record)

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
        return LayerArrays(path, group["feats"], cls, group["valid"], group["done"], meta, scales, sums)

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
        arrays.feats[start:stop] = feats
        if scales is not None:
            arrays.scales[start:stop] = scales
        if arrays.cls is not None and cls is not None:
            arrays.cls[start:stop] = cls
        arrays.valid[start:stop] = valid.astype("uint8")
        if problems:
            self._put_file(f"{arrays.path}/problems/block-{block:06d}.json", json.dumps(problems).encode())
        if arrays.sums is not None:  # with the done flag: what a later read must find again
            stored_cls = None if arrays.cls is None or cls is None else np.asarray(cls, arrays.cls.dtype)
            stored_scales = None if scales is None else np.asarray(scales, arrays.scales.dtype)
            arrays.sums[block] = block_sums(feats, stored_cls, valid, stored_scales)
        arrays.done[block] = True

    def layer_problems(self, arrays: LayerArrays) -> list[dict]:
        base = f"{self._fs_root}/{arrays.path}/problems"
        if not self.fs.exists(base):
            return []
        out: list[dict] = []
        for name in sorted(self.fs.ls(base, detail=False)):
            if name.endswith(".json"):
                out.extend(json.loads(self.fs.cat_file(name)))
        return out

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
             for field in IDENTITY_FIELDS if field in wanted and _norm(existing.get(field)) != _norm(wanted.get(field))
             and not (field not in existing and wanted[field] in LEGACY_VALUES.get(field, ()))]
    if diffs:
        raise DeclipError(
            f"refusing to write into {url}/{path}: its cached features were made differently ("
            + "; ".join(diffs) + "). Nothing was changed. Use another --store, or remove the old features with "
            f"`declip store rm {path.removeprefix('features/')} --store {url}` if you mean to replace them."
        )


def _norm(value: Any) -> Any:
    return json.loads(json.dumps(value))  # tuples vs lists, as stored in JSON attrs
