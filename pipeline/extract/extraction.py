"""Extraction runner: manifest → (decode ∥ forward ∥ write) → store, resumable block by block.

One forward pass per block yields every requested layer that is still missing for that block; decoding runs ahead
in threads and store writes run behind in a writer thread, so the model is the bottleneck. Re-running skips every
block whose ``done`` flag is set in all requested layers. Prefect wraps this in ``flows/extract.py``; nothing here
imports Prefect.
"""
from __future__ import annotations

import logging
import errno
import math
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from declip.features.backbones import Backbone, BackboneKey, load_backbone
from declip.features.encode import encode_batch
from declip.features.image_batches import prefetch_batches
from declip.features.taps import layer_info, parse_layers
from declip.features.views import View
from declip.core.configs import JsonConfig
from declip.core.errors import DeclipError
from declip.core.stop import check_stop
from declip.core.keys import view_dataset_key
from declip.core.validation import check_config, whole
from declip.pipeline.data.manifest import read_manifest
from declip.store.block_writer import BlockWriter
from declip.store.feature_store import FeatureStore, LayerArrays, dataset_checksum, dies_with_process
from declip.store.quantize import DEFAULT_STORAGE_DTYPE, check_storage_dtype, cls_dtype, encode

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractConfig(JsonConfig):
    """One extraction job: a manifest, a backbone and its layers, into one store."""

    WHAT = "extraction"

    manifest: str
    store: str
    backbone: str
    layers: str = "all"
    dataset: str | None = None
    batch_size: int = 32
    device: str = "cpu"
    half: bool = False
    strict: bool = False
    workers: int = 2
    shards: bool = False
    storage_dtype: str = "float16"  # float32 (exact), int8 / float8_e4m3 (per-channel scales); see store.quantize
    progress: bool = True
    view: str = "clean"  # a perturbation applied before encoding (features.views); cached as DATASET@VIEW
    splits: tuple[str, ...] = ()  # encode only the blocks holding rows of these splits (default: every row)

    def __post_init__(self) -> None:
        check_config(self, {"batch_size": whole(1), "workers": whole(1)}, "extraction")
        check_storage_dtype(self.storage_dtype)


@dataclass
class ExtractStats:
    backbone: str
    dataset: str
    layers: list[str]
    rows: int
    blocks_total: int
    blocks_run: int = 0
    images_encoded: int = 0
    bad_images: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: {"decode": 0.0, "forward": 0.0, "write": 0.0})
    wall: float = 0.0

    @property
    def images_per_s(self) -> float:
        return self.images_encoded / self.wall if self.wall else 0.0

    def to_dict(self) -> dict:
        return dict(asdict(self), images_per_s=self.images_per_s)


def dataset_key_for(manifest_df, override: str | None) -> str:
    if override:
        return override
    names = sorted(set(manifest_df["dataset"]))
    if len(names) != 1:
        raise DeclipError(f"the manifest mixes datasets {names}; pass --dataset NAME to name the cached copy")
    return names[0]


def layer_meta(backbone: Backbone, layer: str, recipe: dict, n_rows: int, block_rows: int, checksum: str,
               storage_dtype: str = DEFAULT_STORAGE_DTYPE, view: View | None = None) -> dict:
    info = layer_info(backbone, layer)
    extra = {"view": view.record()} if view is not None and not view.is_clean else {}  # clean: as before
    return {**extra,
        "backbone": str(backbone.key), "arch": backbone.key.arch, "weights": backbone.key.weights,
        "weights_checksum": backbone.weights_checksum, "random_weights": backbone.key.is_random,
        "family": backbone.family, "activation": backbone.activation, "recipe": recipe, "layer": layer,
        "layer_index": info.index,
        "semantics": info.semantics, "channels": info.channels, "grid": list(info.grid), "has_cls": info.has_cls,
        "n_rows": n_rows, "block_rows": block_rows, "dataset_checksum": checksum,
        **_definition(backbone),
        "dtype": check_storage_dtype(storage_dtype),
    }


def _definition(backbone: Backbone) -> dict:
    """A non-CLIP family's own description of what it computes (e.g. the SRM kernels and statistics)."""
    describe = getattr(backbone.feature_family, "definition", None)
    return {"definition": describe()} if callable(describe) else {}


def _existing_block_rows(store: FeatureStore, backbone: str, dataset: str) -> int | None:
    for b, layer, d in store.iter_layers():
        if b == backbone and d == dataset:
            return int(store.open_layer(b, layer, d).block_rows)
    return None


def prepare_dataset(store: FeatureStore, manifest_path: str, dataset: str | None, progress: bool,
                    block_rows: int = 64, exif: bool = False) -> str:
    """Register the manifest's rows in the store and cache its masks (soft 256² targets, native binary masks).

    A new dataset's masks are written in blocks of ``block_rows`` (the extraction batch), each under the store lock.
    Masks are oriented like the images of the recipe that first caches them (``exif``: EXIF orientation applied);
    the dataset records it, and a recipe that orients images the other way is refused for this dataset.
    """
    manifest = read_manifest(manifest_path)
    df = manifest.df.reset_index(drop=True)
    key = dataset_key_for(df, dataset)
    store.create_dataset(key, df, str(manifest.root), manifest.layout, block_rows=block_rows)
    _cache_masks(store, key, df, manifest.abspath, exif, None, progress)
    return key


def prepare_view_dataset(store: FeatureStore, dataset: str, view: View, progress: bool, exif: bool = False) -> str:
    """Register ``dataset@view``: the same rows, sizes as the view leaves them, masks moved by geometric views.

    A photometric view reads the clean dataset's masks (nothing is stored twice). A geometric view's masks are read
    as the recipe orients them (``exif``, like the clean dataset's), then moved by the view.
    """
    if view.is_clean:
        return dataset
    key = view_dataset_key(dataset, view.name)
    attrs = store.dataset_attrs(dataset)
    clean = store.samples(dataset)
    df = clean
    if view.geometric:
        sizes = [view.image_size(int(w), int(h)) for w, h in df[["width", "height"]].itertuples(index=False)]
        df = df.assign(width=[w for w, _ in sizes], height=[h for _, h in sizes])
    store.create_dataset(key, df, attrs["root"], attrs["layout"], int(attrs["block_rows"]), view=view.record(),
                         masks_of=None if view.geometric else dataset)
    if view.geometric:
        root = attrs["root"]
        _cache_masks(store, key, clean, lambda rel: os.path.normpath(os.path.join(root, rel)), exif, view, progress)
    return key


def _cache_masks(store: FeatureStore, key: str, df, abspath, exif: bool, view: View | None, progress: bool) -> None:
    """Soft 256² targets and native binary masks of every pending block of ``key``.

    ``df`` holds the rows as scanned (clean sizes); each mask is read as ``exif`` says, checked against its image's
    size, then moved by ``view``'s geometry (if any).
    """
    from declip.pipeline.data.masks import binary_native, fake_is_white, soft_target_256
    from declip.features.images import open_mask_gray

    pending = store.pending_mask_blocks(key)
    block_rows = int(store.dataset_attrs(key)["block_rows"])
    _check_mask_orientation(store, key, exif, fresh=len(pending) == max(1, math.ceil(len(df) / block_rows)))
    for block in tqdm(pending, desc=f"masks {key}", unit="block", disable=not progress or len(pending) == 0):
        rows = range(block * block_rows, min((block + 1) * block_rows, len(df)))
        soft = np.zeros((len(rows), 256, 256), dtype=np.uint8)
        native: list[np.ndarray | None] = []
        for i, row in enumerate(rows):
            rec = df.iloc[row]
            if rec["label"] == 1 and rec["mask_path"]:
                path = abspath(rec["mask_path"])
                mask = fake_is_white(open_mask_gray(path, exif=exif), rec["mask_polarity"])
                if mask.shape != (int(rec["height"]), int(rec["width"])):
                    raise DeclipError(
                        f"{path}: read as stored (EXIF orientation ignored, as DeCLIP does) the mask is "
                        f"{mask.shape[1]}x{mask.shape[0]}, but the scan recorded its image upright as "
                        f"{int(rec['width'])}x{int(rec['height'])}: an EXIF rotation swaps its sides. Extract with "
                        f"the upright recipe (--backbone ...~declip+exif) or remove the orientation tag"
                    )
                if view is not None:
                    mask = view.apply_mask(mask)
                soft[i] = soft_target_256(mask)
                native.append(binary_native(mask))
            else:
                native.append(None)
        store.write_masks(key, int(block), soft, native)


def _check_mask_orientation(store: FeatureStore, key: str, exif: bool, fresh: bool) -> None:
    wanted = "apply" if exif else "ignore"
    recorded = store.dataset_attrs(key).get("mask_exif_orientation")
    if recorded is None:
        if not fresh:
            recorded = "apply"  # masks cached before the setting existed were always turned upright
        else:
            store.set_dataset_attrs(key, mask_exif_orientation=wanted)
            return
    if recorded != wanted:
        raise DeclipError(
            f"dataset {key!r} in {store.url} caches its masks with exif_orientation={recorded!r}, but this recipe "
            f"{'applies' if exif else 'ignores'} it, so masks and images would not line up; register the manifest "
            f"again under another --dataset name (or use another store) for this recipe"
        )


def run_extraction(cfg: ExtractConfig, backbone: Backbone | None = None) -> ExtractStats:
    """Extract every missing (block, layer) of ``cfg`` into the store; returns per-stage timings.

    A full disk is reported as one line naming the store: finished blocks are kept (their done flags were set only
    after their data), so a re-run after freeing space resumes.
    """
    try:
        return _run_extraction(cfg, backbone)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DeclipError(
                f"store {cfg.store}: no space left on the device ({exc.strerror}"
                + (f", writing {exc.filename}" if exc.filename else "") + "); free space or pass another --store, then "
                "re-run the same command: finished blocks are kept and it resumes") from None
        raise


def _run_extraction(cfg: ExtractConfig, backbone: Backbone | None) -> ExtractStats:
    start = time.perf_counter()
    if dies_with_process(cfg.store):
        raise DeclipError(f"--store {cfg.store}: a memory:// store vanishes when the command exits, so the features "
                          "would be lost; pass a folder path or a persistent URL (file://, s3://)")
    store = FeatureStore(cfg.store)
    key = BackboneKey.parse(cfg.backbone)
    if cfg.half and not cfg.device.startswith("cuda"):
        raise DeclipError("--half needs --device cuda (fp16 on CPU is slow and not what DeCLIP did)")
    backbone = backbone or load_backbone(key, cfg.device)
    dtype = "float16" if cfg.half else "float32"
    recipe = backbone.recipe(dtype)
    view = View.parse(cfg.view)
    clean = prepare_dataset(store, cfg.manifest, cfg.dataset, cfg.progress, cfg.batch_size, exif=recipe.applies_exif)
    dataset = prepare_view_dataset(store, clean, view, cfg.progress, exif=recipe.applies_exif)
    samples = store.samples(dataset)
    root = store.dataset_attrs(dataset)["root"]
    layers = parse_layers(cfg.layers, backbone)
    block_rows = _existing_block_rows(store, str(key), dataset) or _block_rows_for(samples, cfg.splits, cfg.batch_size)
    checksum = dataset_checksum(samples)
    arrays = {
        layer: store.open_layer(str(key), layer, dataset,
                                layer_meta(backbone, layer, recipe.to_dict(), len(samples), block_rows, checksum,
                                           cfg.storage_dtype, view),
                                shards=cfg.shards)
        for layer in layers
    }
    todo = _only_splits(_plan_blocks(arrays), samples, cfg.splits, block_rows)
    stats = ExtractStats(str(key), dataset, layers, len(samples), math.ceil(len(samples) / block_rows))
    if todo:
        backbone.to(cfg.device, torch.float16 if cfg.half else torch.float32)
        _run_blocks(cfg, store, backbone, samples, root, recipe, arrays, todo, stats, view)
    stats.wall = time.perf_counter() - start
    return stats


def _plan_blocks(arrays: dict[str, LayerArrays]) -> dict[int, list[str]]:
    """block → the layers it still needs (a block done in every layer is skipped entirely)."""
    todo: dict[int, list[str]] = {}
    for layer, arr in arrays.items():
        for block in arr.pending_blocks():
            todo.setdefault(int(block), []).append(layer)
    return dict(sorted(todo.items()))


def _block_rows_for(samples, splits: tuple[str, ...], batch_size: int, waste: float = 0.25) -> int:
    """Rows per block of a new feature group. Encoding only some splits works block by block, so when the split's
    rows come in short runs (small datasets) the blocks shrink until at most ``waste`` of the encoded rows lie
    outside the split; on large datasets (runs of thousands of rows) this is just ``batch_size``."""
    if not splits:
        return batch_size
    rows = np.flatnonzero(samples["split"].isin(splits).to_numpy())
    block = batch_size
    while block > 1:
        encoded = len(np.unique(rows // block)) * block
        if encoded - len(rows) <= waste * max(1, len(rows)):
            return block
        block //= 2
    return 1


def _only_splits(todo: dict[int, list[str]], samples, splits: tuple[str, ...], block_rows: int) -> dict:
    """Keep the blocks that hold a row of ``splits`` (a view for testing needs only the test split encoded)."""
    if not splits:
        return todo
    unknown = sorted(set(splits) - set(samples["split"]))
    if unknown:
        raise DeclipError(f"no rows of split(s) {unknown} in the manifest (splits: {sorted(set(samples['split']))})")
    wanted = set(np.flatnonzero(samples["split"].isin(splits).to_numpy()) // block_rows)
    return {block: layers for block, layers in todo.items() if block in wanted}


def _run_blocks(cfg, store, backbone, samples, root, recipe, arrays, todo, stats: ExtractStats,
                view: View | None = None) -> None:
    """reader (decode ahead, sha256-checked, perturbed by ``view``) → mapper (:func:`features.encode.encode_batch`)
    → writer (:class:`BlockWriter`)."""
    first = next(iter(arrays.values()))
    paths, hashes = samples["image_path"].tolist(), samples["sha256"].tolist()
    jobs = []
    for block in todo:
        lo, hi = first.block_range(block)
        jobs.append((block, list(range(lo, hi)), [os.path.normpath(os.path.join(root, paths[r])) for r in range(lo, hi)],
                     hashes[lo:hi], paths[lo:hi]))  # image ids (relative paths) seed the view: root-independent
    writer = BlockWriter(store, arrays)

    def quantize(feats: torch.Tensor):  # on the device, before the copy back: int8/float8 move a quarter of fp32
        return encode(feats, cfg.storage_dtype)

    bar = tqdm(total=sum(len(j[1]) for j in jobs), desc=f"extract {stats.backbone} {stats.dataset}", unit="img",
               disable=not cfg.progress)
    try:
        for batch in prefetch_batches(jobs, recipe, workers=cfg.workers, view=view):
            check_stop()  # Ctrl-C / SIGTERM: the writer below still finishes the blocks already encoded
            stats.seconds["decode"] += batch.seconds
            if batch.problems and cfg.strict:
                p = batch.problems[0]
                raise DeclipError(f"{p['path']}: {p['reason']} ({p['detail']}); fix or remove it, or drop --strict "
                                  "to skip unreadable images")
            t0 = time.perf_counter()
            outputs = encode_batch(backbone, batch, todo[batch.key], cfg.device, cfg.half, quantize,
                                   getattr(torch, cls_dtype(cfg.storage_dtype)))
            stats.seconds["forward"] += time.perf_counter() - t0
            stats.images_encoded += int(batch.ok.sum())
            stats.bad_images += len(batch.problems)
            writer.put(batch.key, outputs, batch.ok.numpy(), batch.problems)
            bar.update(len(batch.rows))
    finally:
        try:
            writer.close()
        finally:
            stats.seconds["write"] += writer.seconds
            bar.close()
    stats.blocks_run = len(jobs)
