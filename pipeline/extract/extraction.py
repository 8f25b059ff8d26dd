"""Extraction runner: manifest → (decode ∥ forward ∥ write) → store, resumable block by block.

One forward pass per block yields every requested layer that is still missing for that block; decoding runs ahead
in threads and store writes run behind in a writer thread, so the model is the bottleneck. Re-running skips every
block whose ``done`` flag is set in all requested layers. Prefect wraps this in ``flows/extract.py``; nothing here
imports Prefect.

Two steps, so the blocks can be spread over tasks (``pipeline.extract.shards``; threads, Dask or SLURM workers):
:func:`prepare_extraction` is the setup and the only writer of store metadata (dataset registration, masks, layer
arrays); :func:`extract_blocks` encodes and writes a set of blocks, feature chunks only. :func:`run_extraction` runs
both in this process.
"""
from __future__ import annotations

import contextlib
import errno
import logging
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
from declip.core.validation import check_config, whole
from declip.pipeline.extract.registration import prepare_dataset, prepare_view_dataset
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
    zarr_shards: bool = False  # one zarr shard per block (object/network storage); see store.layers
    storage_dtype: str = "float16"  # float32 (exact), int8 / float8_e4m3 (per-channel scales); see store.quantize
    progress: bool = True
    view: str = "clean"  # a perturbation applied before encoding (features.views); cached as DATASET@VIEW
    splits: tuple[str, ...] = ()  # encode only the blocks holding rows of these splits (default: every row)
    shards: int = 1  # block-range tasks an extraction flow fans out (pipeline.extract.shards); 1 = one task

    def __post_init__(self) -> None:
        check_config(self, {"batch_size": whole(1), "workers": whole(1), "shards": whole(1)}, "extraction")
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


def run_extraction(cfg: ExtractConfig, backbone: Backbone | None = None) -> ExtractStats:
    """Extract every missing (block, layer) of ``cfg`` into the store in this process; returns per-stage timings.

    The same two steps a sharded extraction runs as separate tasks (``pipeline.extract.shards``): the setup
    (:func:`prepare_extraction`, the only writer of metadata), then the blocks (:func:`extract_blocks`).
    """
    start = time.perf_counter()
    with _disk_full_as_one_line(cfg.store):
        setup, backbone = prepare_extraction(cfg, backbone, device=cfg.device)
        stats = extract_blocks(cfg, setup, setup.blocks, backbone)
    stats.wall = time.perf_counter() - start
    return stats


@contextlib.contextmanager
def _disk_full_as_one_line(store: str):
    """A full disk is reported as one line naming the store: finished blocks are kept (their done flags were set
    only after their data), so a re-run after freeing space resumes."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DeclipError(
                f"store {store}: no space left on the device ({exc.strerror}"
                + (f", writing {exc.filename}" if exc.filename else "") + "); free space or pass another --store, then "
                "re-run the same command: finished blocks are kept and it resumes") from None
        raise


@dataclass(frozen=True)
class ExtractionSetup(JsonConfig):
    """What the setup made and what is left: the cached dataset key, the layers, the block size and the blocks that
    still need work (ascending). Small and JSON-safe: it is what the setup task hands to every block-range task."""

    WHAT = "extraction setup"

    dataset: str
    layers: tuple[str, ...]
    block_rows: int
    rows: int
    blocks: tuple[int, ...]

    @property
    def blocks_total(self) -> int:
        return math.ceil(self.rows / self.block_rows)


def prepare_extraction(cfg: ExtractConfig, backbone: Backbone | None = None,
                       device: str = "cpu") -> tuple[ExtractionSetup, Backbone]:
    """The setup, and the only writer of store metadata: register the dataset (and its view), cache its masks, and
    create every requested layer's arrays; then list the blocks that still need work.

    Block-range tasks (:func:`extract_blocks`) then write feature chunks only, each its own blocks, so they need no
    lock and never race on metadata. The backbone is loaded on ``device`` (the CPU by default: the setup only reads
    its identity, and may run where there is no GPU); it is returned so a one-process run does not load it twice.
    """
    with _disk_full_as_one_line(cfg.store):
        if dies_with_process(cfg.store):
            raise DeclipError(f"--store {cfg.store}: a memory:// store vanishes when the command exits, so the "
                              "features would be lost; pass a folder path or a persistent URL (file://, s3://)")
        if cfg.half and not cfg.device.startswith("cuda"):
            raise DeclipError("--half needs --device cuda (fp16 on CPU is slow and not what DeCLIP did)")
        store = FeatureStore(cfg.store)
        key = BackboneKey.parse(cfg.backbone)
        backbone = backbone or load_backbone(key, device)
        recipe = backbone.recipe("float16" if cfg.half else "float32")
        view = View.parse(cfg.view)
        clean = prepare_dataset(store, cfg.manifest, cfg.dataset, cfg.progress, cfg.batch_size,
                                exif=recipe.applies_exif)
        dataset = prepare_view_dataset(store, clean, view, cfg.progress, exif=recipe.applies_exif)
        samples = store.samples(dataset)
        layers = parse_layers(cfg.layers, backbone)
        block_rows = (_existing_block_rows(store, str(key), dataset)
                      or _block_rows_for(samples, cfg.splits, cfg.batch_size))
        arrays = _layer_arrays(store, cfg, backbone, samples, dataset, layers, block_rows, create=True)
        todo = _only_splits(_plan_blocks(arrays), samples, cfg.splits, block_rows)
        return ExtractionSetup(dataset, tuple(layers), block_rows, len(samples), tuple(todo)), backbone


def extract_blocks(cfg: ExtractConfig, setup: ExtractionSetup, blocks, backbone: Backbone | None = None,
                   ) -> ExtractStats:
    """Encode and write the given blocks that are not done yet: one block-range task, or a whole one-process run.

    Writes feature chunks, their flags and checksums only, never metadata: the layers must exist (made by
    :func:`prepare_extraction`), and their recorded identity must match this process's backbone (a worker with
    other weights is refused). Done flags are re-read here, so a retried task resumes where it died.
    """
    start = time.perf_counter()
    with _disk_full_as_one_line(cfg.store):
        store = FeatureStore(cfg.store)
        key = BackboneKey.parse(cfg.backbone)
        backbone = backbone or load_backbone(key, cfg.device)
        recipe = backbone.recipe("float16" if cfg.half else "float32")
        samples = store.samples(setup.dataset)
        arrays = _layer_arrays(store, cfg, backbone, samples, setup.dataset, list(setup.layers), setup.block_rows,
                               create=False)
        wanted = {int(b) for b in blocks}
        todo = {block: layers for block, layers in _plan_blocks(arrays).items() if block in wanted}
        stats = ExtractStats(str(key), setup.dataset, list(setup.layers), len(samples), setup.blocks_total)
        if todo:
            backbone.to(cfg.device, torch.float16 if cfg.half else torch.float32)
            _run_blocks(cfg, store, backbone, samples, store.dataset_attrs(setup.dataset)["root"], recipe, arrays,
                        todo, stats, View.parse(cfg.view))
        stats.wall = time.perf_counter() - start
        return stats


def _layer_arrays(store: FeatureStore, cfg: ExtractConfig, backbone: Backbone, samples, dataset: str,
                  layers: list[str], block_rows: int, create: bool) -> dict[str, LayerArrays]:
    """The feature groups of ``layers``, identity-checked against this backbone; created only when ``create``."""
    key, recipe, view = str(backbone.key), backbone.recipe("float16" if cfg.half else "float32"), View.parse(cfg.view)
    checksum = dataset_checksum(samples)
    if not create:
        missing = [layer for layer in layers if not store.has_layer(key, layer, dataset)]
        if missing:
            raise DeclipError(f"store {cfg.store} has no {key} {missing} for {dataset}: a block-range task writes "
                              "only into layers its extraction's setup created; run the setup (or `declip extract`)")
    return {layer: store.open_layer(key, layer, dataset,
                                    layer_meta(backbone, layer, recipe.to_dict(), len(samples), block_rows, checksum,
                                               cfg.storage_dtype, view),
                                    shards=cfg.zarr_shards)
            for layer in layers}


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
        pin = cfg.device.startswith("cuda") and torch.cuda.is_available()
        for batch in prefetch_batches(jobs, recipe, workers=cfg.workers, view=view, pin=pin):
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
