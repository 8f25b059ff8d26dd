"""Evaluation on cached features: predicted maps resized to each native mask, scored by the metric registry.

DeCLIP's protocol (declip-method §6): sigmoid of the 256×256 logits, bilinearly resized (antialiased) to the
native mask size, thresholded at 0.5, per-image IoU in percent averaged over the fake images of each test set.
Every other registered metric is computed alongside; image-level metrics use the real test images when the
dataset has them, with the score rule stated in the output.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from declip.decoders import Decoder, load_decoder
from declip.core.configs import JsonConfig
from declip.core.errors import DeclipError
from declip.core.stop import check_stop
from declip.core.keys import CLEAN_VIEW, SourceKey
from declip.core.validation import check_config, number, whole
from declip.pipeline.metrics.registry import MetricAccumulator
from declip.pipeline.metrics.weighted import HISTOGRAM_FILE, save_histograms
from declip.features.views import View
from declip.pipeline.data.cached_splits import CachedSplits
from declip.pipeline.data.splits import require_split
from declip.pipeline.evaluate.maps import native_maps, native_size
from declip.store.feature_store import view_dataset_key


@dataclass(frozen=True)
class EvalConfig(JsonConfig):
    """One evaluation of one decoder on test subsets of a cached dataset (written as JSON with :mod:`core.configs`)."""

    WHAT = "evaluation"

    store: str
    checkpoint: str  # a decoder directory (our training output, or `declip import-checkpoint --out`)
    dataset: str
    test_subsets: tuple[str, ...]
    out: str
    source: SourceKey | None = None  # default: the checkpoint's own source; text is parsed on construction
    split: str = "test"
    metrics: tuple[str, ...] | None = None
    image_score_rule: str = "mean_prob"
    include_reals: bool = True
    save_maps: bool = False
    batch_size: int = 64
    device: str = "cpu"
    memory_gb: float | None = None
    view: str = CLEAN_VIEW  # evaluate on the cached copy DATASET@VIEW (features.views), e.g. "jpeg:75"
    maps_dir: str | None = None  # with save_maps: maps go to MAPS_DIR/<test set>/ (DeCLIP's --output_save_path)

    def __post_init__(self) -> None:
        if self.source is not None:
            object.__setattr__(self, "source", SourceKey.parse(self.source))
        check_config(self, {"batch_size": whole(1), "memory_gb": number(at_least=0, optional=True)}, "evaluation")

    #: Fields that say where results go or how they are computed, never what they are.
    NOT_RESULTS = ("out", "save_maps", "batch_size", "device", "memory_gb", "maps_dir")

    def to_json(self) -> dict:
        data = super().to_json()
        if data.get("maps_dir") is None:  # records written before maps_dir existed keep their bytes
            data.pop("maps_dir", None)
        return data

    def identity(self) -> str:
        """Hash of everything that changes the numbers (why: a grid re-evaluates when, and only when, it must)."""
        keep = {k: v for k, v in self.to_json().items() if k not in self.NOT_RESULTS}
        if keep.get("view") == CLEAN_VIEW:  # evaluations made before views existed keep their identity
            keep.pop("view")
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]

    def subset_identity(self, subset: str) -> str:
        """The identity of this evaluation restricted to one test subset (what ``out/<subset>/`` holds)."""
        return replace(self, test_subsets=(subset,)).identity()


EVAL_RECORD = "eval.json"  # beside each subset's summary: the identity of the evaluation that wrote it


def score_many(models: list[tuple[Decoder, SourceKey]], data: CachedSplits, rows: np.ndarray, *, metrics=None,
               image_score_rule: str = "mean_prob", batch_size: int = 64, device: str = "cpu",
               maps_dirs: list[Path | None] | None = None, matrix_upsample: bool = False) -> list[MetricAccumulator]:
    """Run several (decoder, source) pairs over ``rows`` from one read of each batch; one accumulator each.

    Maps come from :mod:`declip.pipeline.evaluate.maps` at each native mask size and are scored there (DeCLIP's
    protocol); ``matrix_upsample`` is validation's faster upsampling (:func:`maps.probabilities`).
    """
    for decoder, _ in models:
        decoder.eval()
    accs = [MetricAccumulator(metrics, image_score_rule=image_score_rule) for _ in models]
    maps_dirs = maps_dirs or [None] * len(models)
    paths = data.samples["image_path"].tolist()
    sources = sorted({source for _, source in models})  # SourceKeys order by their text
    for batch in data.batches(rows, batch_size, shuffle=False, seed=0, sources=sources):
        check_stop()
        sizes = [native_size(data.samples, row) for row in batch.rows]
        truth = []
        for row in batch.rows:
            label = int(data.labels[int(row)])
            truth.append((data.native_mask(int(row)) if label == 1 else None, label, paths[int(row)]))
        for (decoder, source), acc, maps in zip(models, accs, maps_dirs):
            maps_now = native_maps(decoder, *batch.features[source], sizes, device, matrix_upsample)
            for native, (gt, label, path) in zip(maps_now, truth):
                acc.add(native, gt, label, path)
                if maps is not None:
                    _save_map(maps, path, native)
    return accs


def score_rows(decoder: Decoder, data: CachedSplits, source: SourceKey, rows: np.ndarray, *, metrics=None,
               image_score_rule: str = "mean_prob", batch_size: int = 64, device: str = "cpu",
               maps_dir: Path | None = None) -> MetricAccumulator:
    """Run the decoder over ``rows`` and accumulate every metric at native mask resolution."""
    return score_many([(decoder, source)], data, rows, metrics=metrics, image_score_rule=image_score_rule,
                      batch_size=batch_size, device=device, maps_dirs=[maps_dir])[0]


def _save_map(directory: Path, image_path: str, prob: np.ndarray) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    name = Path(image_path).with_suffix(".png").name
    Image.fromarray(np.clip(prob * 255.0 + 0.5, 0, 255).astype(np.uint8)).save(directory / name)


def validate_many(models: list[tuple[Decoder, SourceKey]], data: CachedSplits, rows: np.ndarray, mode: str,
                  device: str, batch_size: int = 64) -> list[dict]:
    """Per-epoch validation scores: mean IoU (localization) or image AP/accuracy/AUC (detection). Maps are upsampled
    by matrices, as in training (equal to evaluation's up to float rounding; a tenth of the time per head)."""
    names = ["iou"] if mode == "localization" else ["image_ap", "image_acc", "image_auc"]
    out = []
    for acc in score_many(models, data, rows, metrics=names, device=device, batch_size=batch_size,
                          matrix_upsample=True):
        table = acc.summary().set_index("metric")
        summary = table["value"]
        if mode == "localization":
            collapsed, why = acc.collapse.verdict()  # cheap statistics only: no per-epoch pixel AUC
            out.append({"iou": float(summary["iou"]), "collapsed": collapsed, "collapse_reason": why})
        else:
            out.append({"ap": float(summary["image_ap"]), "acc": float(summary["image_acc"]),
                        "auc": float(summary["image_auc"])})
    return out


def test_rows(samples: pd.DataFrame, valid: np.ndarray, subset: str, split: str, include_reals: bool) -> np.ndarray:
    keep = (samples["split"] == split) & (
        ((samples["subset"] == subset) & (samples["label"] == 1))
        | ((samples["label"] == 0) & include_reals)
    )
    return np.flatnonzero(keep.to_numpy() & valid)


def evaluate(cfg: EvalConfig) -> pd.DataFrame:
    """Evaluate one checkpoint on each test subset; returns the summary rows.

    Writes ``out/<subset>/{per_image,summary}.{parquet,csv}`` (and ``maps/`` on request), plus ``out/summary.*``
    across subsets when there are several.
    """
    decoder, meta = load_decoder(cfg.checkpoint)
    decoder.to(cfg.device)
    if cfg.source is None and not meta.get("source"):
        raise DeclipError(f"{cfg.checkpoint} does not say which cached features it reads; pass --source "
                          "BACKBONE/LAYER (e.g. ViT-L-14@openai/layer20)")
    source = cfg.source or SourceKey.parse(meta["source"])
    # the view: --view, or the one the source names (ViT-L-14@openai/layer20[jpeg:75]); read as DATASET@VIEW
    view = View.parse(cfg.view if cfg.view != CLEAN_VIEW else source.view)
    source = source.with_view(CLEAN_VIEW)
    key = view_dataset_key(cfg.dataset, view.name)
    data = CachedSplits.open(cfg.store, key, [source], cfg.memory_gb, partial=not view.is_clean)
    require_split(data.samples, cfg.split, cfg.dataset, "to evaluate")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    summaries = []
    described = dict(_describe(cfg, meta, source, data.sources[source].meta), view=view.name)
    for subset in cfg.test_subsets:
        if not view.is_clean:
            wanted = test_rows(data.samples, np.ones(len(data.samples), bool), subset, cfg.split, cfg.include_reals)
            data.require_written(wanted, f"{cfg.split}/{subset} under view {view.name}",
                                 f"run `declip extract --view {view.name} --split {cfg.split}` first")
        rows = test_rows(data.samples, data.valid, subset, cfg.split, cfg.include_reals)
        if not (data.labels[rows] == 1).any():
            raise DeclipError(f"no fake {cfg.split} images of subset {subset!r} in dataset {cfg.dataset!r}")
        t0 = time.perf_counter()
        set_dir = out / subset
        acc = score_rows(decoder, data, source, rows, metrics=cfg.metrics, image_score_rule=cfg.image_score_rule,
                         batch_size=cfg.batch_size, device=cfg.device,
                         maps_dir=_maps_dir(cfg, set_dir, subset))
        set_dir.mkdir(parents=True, exist_ok=True)
        record = {"identity": cfg.subset_identity(subset), "config": replace(cfg, test_subsets=(subset,)).to_json()}
        (set_dir / EVAL_RECORD).write_text(json.dumps(record, indent=2, default=str))
        write_per_image(acc, set_dir)
        summary = acc.summary()
        summary.insert(0, "test_set", subset)
        summary["seconds"] = round(time.perf_counter() - t0, 3)
        for key, value in described.items():
            summary[key] = value
        _write_table(summary, set_dir / "summary")
        summaries.append(summary)
    table = pd.concat(summaries, ignore_index=True)
    if len(cfg.test_subsets) > 1:
        _write_table(table, out / "summary")
    return table


def write_per_image(acc: MetricAccumulator, directory: Path) -> None:
    """``per_image.{parquet,csv}`` (one row per image, TP/FP/FN of the fakes) and, when a pooled pixel AP/AUC was
    computed, the fake images' pixel histograms (``pixel_hist.npz``): what every bootstrap interval and paired
    comparison of this evaluation resamples (images, never pixels)."""
    directory.mkdir(parents=True, exist_ok=True)
    _write_table(acc.per_image(), directory / "per_image")
    ids, hist = acc.pixel_histograms()
    if len(ids):
        save_histograms(directory / HISTOGRAM_FILE, ids, hist)


def _maps_dir(cfg: EvalConfig, set_dir: Path, subset: str) -> Path | None:
    if not cfg.save_maps:
        return None
    return Path(cfg.maps_dir) / subset if cfg.maps_dir else set_dir / "maps"


def _describe(cfg: EvalConfig, meta: dict, source: SourceKey, store_meta: dict) -> dict:
    return {
        "checkpoint": cfg.checkpoint, "source": str(source), "dataset": cfg.dataset, "split": cfg.split,
        "decoder": meta.get("name"), "faithful": bool(meta.get("faithful", False)), "width": meta.get("width", 1.0),
        "train_subsets": ",".join(meta.get("train_subsets", [])) or meta.get("train_dataset", ""),
        "seed": meta.get("seed", -1), "image_score_rule": cfg.image_score_rule,
        "random_weights": bool(store_meta.get("random_weights")), "backbone": store_meta.get("backbone"),
        "layer": source.layer,
    }


def _write_table(df: pd.DataFrame, stem: Path) -> None:
    for suffix, writer in ((".parquet", lambda p: df.to_parquet(p, index=False)),
                           (".csv", lambda p: df.to_csv(p, index=False))):
        tmp = stem.with_suffix(f"{suffix}.{os.getpid()}-{threading.get_ident()}.partial")
        writer(tmp)
        tmp.replace(stem.with_suffix(suffix))

