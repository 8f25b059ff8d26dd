"""Extraction runner: manifest → (decode ∥ forward ∥ write) → store, resumable block by block.

One forward pass per block yields every requested layer that is still missing for that block; decoding runs ahead
in threads and store writes run behind in a writer thread, so the model is the bottleneck. Re-running skips every
block whose ``done`` flag is set in all requested layers. Prefect wraps this in ``flows/extract.py``; nothing here
imports Prefect.
"""
from __future__ import annotations

import logging
import math
import queue
import threading
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from features.backbones import Backbone, BackboneKey, load_backbone
from features.reader import ImageBatch, prefetch_batches
from features.taps import layer_info, parse_layers
from core.errors import DeclipError
from pipeline.data.manifest import read_manifest
from store.feature_store import FeatureStore, LayerArrays, dataset_checksum
from store.quantize import DEFAULT_STORAGE_DTYPE, check_storage_dtype, cls_dtype, encode

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractConfig:
    """One extraction job: a manifest, a backbone and its layers, into one store."""

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
               storage_dtype: str = DEFAULT_STORAGE_DTYPE) -> dict:
    info = layer_info(backbone, layer)
    return {
        "backbone": str(backbone.key), "arch": backbone.key.arch, "weights": backbone.key.weights,
        "weights_checksum": backbone.weights_checksum, "random_weights": backbone.key.is_random,
        "family": backbone.family, "recipe": recipe, "layer": layer, "layer_index": info.index,
        "semantics": info.semantics, "channels": info.channels, "grid": list(info.grid), "has_cls": info.has_cls,
        "n_rows": n_rows, "block_rows": block_rows, "dataset_checksum": checksum,
        "dtype": check_storage_dtype(storage_dtype),
    }


def _existing_block_rows(store: FeatureStore, backbone: str, dataset: str) -> int | None:
    for b, layer, d in store.iter_layers():
        if b == backbone and d == dataset:
            return int(store.open_layer(b, layer, d).block_rows)
    return None


def prepare_dataset(store: FeatureStore, manifest_path: str, dataset: str | None, progress: bool) -> str:
    """Register the manifest's rows in the store and cache its masks (soft 256² targets, native binary masks)."""
    from pipeline.data.masks import binary_native, fake_is_white, soft_target_256
    from features.images import open_mask_gray

    manifest = read_manifest(manifest_path)
    df = manifest.df.reset_index(drop=True)
    key = dataset_key_for(df, dataset)
    store.create_dataset(key, df, str(manifest.root), manifest.layout)
    block_rows = int(store.dataset_attrs(key)["block_rows"])
    pending = store.pending_mask_blocks(key)
    for block in tqdm(pending, desc=f"masks {key}", unit="block", disable=not progress or len(pending) == 0):
        rows = range(block * block_rows, min((block + 1) * block_rows, len(df)))
        soft = np.zeros((len(rows), 256, 256), dtype=np.uint8)
        native: list[np.ndarray | None] = []
        for i, row in enumerate(rows):
            rec = df.iloc[row]
            if rec["label"] == 1 and rec["mask_path"]:
                mask = fake_is_white(open_mask_gray(manifest.abspath(rec["mask_path"])), rec["mask_polarity"])
                soft[i] = soft_target_256(mask)
                native.append(binary_native(mask))
            else:
                native.append(None)
        store.write_masks(key, int(block), soft, native)
    return key


def run_extraction(cfg: ExtractConfig, backbone: Backbone | None = None) -> ExtractStats:
    """Extract every missing (block, layer) of ``cfg`` into the store; returns per-stage timings."""
    start = time.perf_counter()
    check_storage_dtype(cfg.storage_dtype)
    store = FeatureStore(cfg.store)
    dataset = prepare_dataset(store, cfg.manifest, cfg.dataset, cfg.progress)
    samples = store.samples(dataset)
    root = store.dataset_attrs(dataset)["root"]
    key = BackboneKey.parse(cfg.backbone)
    if cfg.half and not cfg.device.startswith("cuda"):
        raise DeclipError("--half needs --device cuda (fp16 on CPU is slow and not what DeCLIP did)")
    backbone = backbone or load_backbone(key, cfg.device)
    dtype = "float16" if cfg.half else "float32"
    recipe = backbone.recipe(dtype)
    layers = parse_layers(cfg.layers, backbone)
    block_rows = _existing_block_rows(store, str(key), dataset) or cfg.batch_size
    checksum = dataset_checksum(samples)
    arrays = {
        layer: store.open_layer(str(key), layer, dataset,
                                layer_meta(backbone, layer, recipe.to_dict(), len(samples), block_rows, checksum,
                                           cfg.storage_dtype),
                                shards=cfg.shards)
        for layer in layers
    }
    todo = _plan_blocks(arrays)
    stats = ExtractStats(str(key), dataset, layers, len(samples), math.ceil(len(samples) / block_rows))
    if todo:
        backbone.to(cfg.device, torch.float16 if cfg.half else torch.float32)
        _run_blocks(cfg, store, backbone, samples, root, recipe, arrays, todo, stats)
    stats.wall = time.perf_counter() - start
    return stats


def _plan_blocks(arrays: dict[str, LayerArrays]) -> dict[int, list[str]]:
    """block → the layers it still needs (a block done in every layer is skipped entirely)."""
    todo: dict[int, list[str]] = {}
    for layer, arr in arrays.items():
        for block in arr.pending_blocks():
            todo.setdefault(int(block), []).append(layer)
    return dict(sorted(todo.items()))


def _run_blocks(cfg, store, backbone, samples, root, recipe, arrays, todo, stats: ExtractStats) -> None:
    first = next(iter(arrays.values()))
    paths = samples["image_path"].tolist()
    jobs = []
    for block in todo:
        lo, hi = first.block_range(block)
        jobs.append((block, list(range(lo, hi)), [f"{root}/{paths[r]}" for r in range(lo, hi)]))
    writer = _Writer(store, arrays, stats)
    bar = tqdm(total=sum(len(j[1]) for j in jobs), desc=f"extract {stats.backbone}", unit="img",
               disable=not cfg.progress)
    try:
        for batch in prefetch_batches(jobs, recipe, workers=cfg.workers):
            stats.seconds["decode"] += batch.seconds
            if batch.problems and cfg.strict:
                p = batch.problems[0]
                raise DeclipError(f"{p['path']}: {p['reason']} ({p['detail']}); fix or remove it, or drop --strict "
                                  "to skip unreadable images")
            t0 = time.perf_counter()
            outputs = _forward(backbone, batch, todo[batch.key], cfg)
            stats.seconds["forward"] += time.perf_counter() - t0
            stats.images_encoded += int(batch.ok.sum())
            stats.bad_images += len(batch.problems)
            writer.put(batch, outputs)
            bar.update(len(batch.rows))
    finally:
        writer.close()
        bar.close()
    stats.blocks_run = len(jobs)


def _forward(backbone: Backbone, batch: ImageBatch, layers: list[str], cfg: ExtractConfig) -> dict:
    from features.taps import forward_layers

    pixels = batch.pixels
    cuda = str(cfg.device).startswith("cuda") and torch.cuda.is_available()
    if cuda:  # page-locked source: the copy runs asynchronously while the previous block is written
        pixels = pixels.pin_memory()
    x = pixels.to(cfg.device, torch.float16 if cfg.half else torch.float32, non_blocking=cuda)
    out = forward_layers(backbone, x, layers)
    ok = batch.ok.numpy()
    result = {}
    for layer, (feats, cls) in out.items():
        f, scales = encode(feats, cfg.storage_dtype)  # quantized on the device: fewer bytes to copy back
        f[~ok] = 0  # rows whose image failed stay zero and invalid
        if scales is not None:
            scales[~ok] = 0
        c = cls.to("cpu", getattr(torch, cls_dtype(cfg.storage_dtype))).numpy() if cls is not None else None
        result[layer] = (f, c, scales)
    return result


class _Writer:
    """Writes finished blocks behind the forward pass; a failed write stops the run instead of losing data."""

    def __init__(self, store: FeatureStore, arrays: dict[str, LayerArrays], stats: ExtractStats):
        self.store, self.arrays, self.stats = store, arrays, stats
        self.q: queue.Queue = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, name="store-writer", daemon=True)
        self.thread.start()

    def put(self, batch: ImageBatch, outputs: dict) -> None:
        if self.error:
            raise self.error
        self.q.put((batch, outputs))

    def _loop(self) -> None:
        while (item := self.q.get()) is not None:
            if self.error:
                continue
            batch, outputs = item
            t0 = time.perf_counter()
            try:
                valid = batch.ok.numpy()
                for layer, (feats, cls, scales) in outputs.items():
                    self.store.write_block(self.arrays[layer], batch.key, feats, cls, valid, batch.problems, scales)
            except BaseException as exc:  # noqa: BLE001
                self.error = exc
            self.stats.seconds["write"] += time.perf_counter() - t0

    def close(self) -> None:
        self.q.put(None)
        self.thread.join()
        if self.error:
            raise self.error
