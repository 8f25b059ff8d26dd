"""Decoder training on cached features: DeCLIP's recipe, no images and no backbone in the loop.

Localization (DeCLIP's ``--fully_supervised``): fake images only, BCE-with-logits against the 256×256 soft masks,
AdamW lr 1e-3 (no weight decay), batch 64, the plateau schedule of :mod:`declip.pipeline.train.schedule`, the best epoch on
validation IoU kept. Detection (DeCLIP's broken mode, made to work): real + fake images, image logit = mean of the
pixel logits, selection on validation AP.

Tiny data (the demo, a quick check) gets its budget in optimizer steps: ``min_steps_per_epoch`` re-shuffles the
training rows within an epoch until that many steps ran (0 = DeCLIP's single pass; a no-op on Dolos-sized sets).
A run whose validation maps stay collapsed (:mod:`pipeline.metrics.collapse`) for ``collapse_patience`` epochs in a
row is stopped (0 = never), and every summary says whether the kept epoch's maps were collapsed.

Several heads (e.g. a linear head on every layer) train together from one read of each batch: each head has its
own optimizer, schedule and run directory; the loop runs until every head has stopped. Every epoch writes a
resumable state file atomically, so an interrupted run continues from its last finished epoch with identical
results (data order is seeded per epoch).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from declip.decoders import Decoder, build_decoder, save_decoder
from declip.decoders.checkpoint_io import atomic_torch_save
from declip.core.errors import DeclipError
from declip.core.keys import SourceKey
from declip.core.validation import check_config, choice, number, whole
from declip.pipeline.train.recipe import RECIPE
from declip.pipeline.train.schedule import PlateauSchedule
from declip.features.views import parse_views
from declip.pipeline.data.augmentation import AugmentedSplits
from declip.pipeline.data.cached_splits import CachedSplits, memory_note, select_rows
from declip.pipeline.train.precision import (PRECISIONS, autocast, decoder_input, device_budget_bytes,
                                        prepare_decoder, use_channels_last)
from declip.pipeline.evaluate.evaluation import validate_many

log = logging.getLogger(__name__)


#: What every training run accepts (checked when a :class:`TrainConfig` is built; the grid uses the same rules).
TRAIN_RULES = {
    "batch_size": whole(1), "max_epochs": whole(1), "patience": whole(0), "lr": number(above=0),
    "min_lr": number(at_least=0), "width": number(above=0), "seed": whole(0),
    "mode": choice("localization", "detection"), "memory_gb": number(at_least=0, optional=True),
    "precision": choice(*PRECISIONS), "device_memory_gb": number(at_least=0, optional=True),
}


@dataclass(frozen=True)
class TrainConfig:
    """One decoder run; CLI flags map one-to-one onto these fields (DeCLIP's names are aliases)."""

    store: str
    source: SourceKey  # text (BACKBONE/LAYER, or two fused with +) is parsed on construction
    dataset: str
    train_subsets: tuple[str, ...]
    out: str
    decoder: str = "conv-20"
    width: float = 1.0
    faithful: bool = False
    mode: str = "localization"  # or "detection"
    lr: float = RECIPE.lr
    batch_size: int = RECIPE.batch_size
    max_epochs: int = RECIPE.max_epochs
    patience: int = RECIPE.patience
    min_lr: float = RECIPE.min_lr
    seed: int = 0
    train_split: str = "train"
    valid_split: str = "valid"
    device: str = "cpu"
    memory_gb: float | None = None
    progress: bool = True
    min_steps_per_epoch: int = 0  # 0: one pass over the training rows per epoch (DeCLIP)
    collapse_patience: int = 0  # stop after this many collapsed validation epochs in a row (0: never)
    precision: str = "fp32"  # "bf16": autocast for the decoder (changes results slightly: part of the identity)
    channels_last: bool | None = None  # None: on for conv decoders on CUDA
    compile: bool = False  # torch.compile the decoder
    device_memory_gb: float | None = None  # features kept on the device when they fit (None: 60 % free CUDA, 0 CPU)
    train_views: tuple[str, ...] = ()  # cached views sampled per epoch for training rows (augmentation); () = clean

    #: Fields that say where a run is written, where it runs or how it is shown, never what it computes.
    NOT_RESULTS = ("out", "progress", "memory_gb", "device", "channels_last", "compile", "device_memory_gb")

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", SourceKey.parse(self.source))
        check_config(self, TRAIN_RULES, "training")

    def to_json(self) -> dict:
        """JSON-safe fields (the source as its string, so stored run configs and identities stay unchanged)."""
        raw = {f.name: getattr(self, f.name) for f in fields(self)}
        return json.loads(json.dumps(dict(raw, source=str(self.source))))

    @classmethod
    def from_json(cls, d: dict) -> "TrainConfig":
        return cls(**dict(d, train_subsets=tuple(d["train_subsets"]), train_views=tuple(d.get("train_views", ()))))

    def identity(self) -> str:
        """Hash of everything that changes the result (not where it is written or how it is shown).

        Options added later enter the hash only when set (precision: when not fp32), so runs made before they
        existed keep their identity.
        """
        keep = {k: v for k, v in self.to_json().items() if k not in self.NOT_RESULTS}
        for name in _LATER_OPTIONS:
            if not keep[name]:
                del keep[name]
        if keep.get("precision") == "fp32":
            del keep["precision"]
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


_LATER_OPTIONS = ("min_steps_per_epoch", "collapse_patience", "train_views")


@dataclass
class Head:
    cfg: TrainConfig
    decoder: Decoder
    optimizer: torch.optim.Optimizer
    schedule: PlateauSchedule
    out: Path
    history: list[dict] = field(default_factory=list)
    stop_reason: str = ""
    forward: Callable | None = None  # the decoder as run (compiled and/or channels_last)
    channels_last: bool = False

    @property
    def active(self) -> bool:
        return not self.schedule.stopped and not self.stop_reason

    @property
    def collapsed_streak(self) -> int:
        n = 0
        for row in reversed(self.history):
            if not row.get("val_collapsed"):
                break
            n += 1
        return n


def _check_compatible(cfgs: list[TrainConfig]) -> None:
    shared = ("store", "dataset", "train_subsets", "mode", "batch_size", "seed", "train_split", "valid_split",
              "device", "min_steps_per_epoch", "precision", "device_memory_gb", "train_views")
    for field_name in shared:
        values = {json.dumps(getattr(c, field_name)) for c in cfgs}
        if len(values) > 1:
            raise DeclipError(f"heads trained together must share {field_name} (got {sorted(values)})")


def _build_head(cfg: TrainConfig, data: CachedSplits) -> Head:
    src = data.sources[cfg.source]
    decoder = build_decoder(cfg.decoder, in_channels=src.channels, grid=src.grid, family=src.family,
                            layer=cfg.source.layer,
                            width=cfg.width, faithful=cfg.faithful, seed=cfg.seed).to(cfg.device)
    params = decoder.trainable_parameters()
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=RECIPE.betas, weight_decay=RECIPE.weight_decay)
    schedule = PlateauSchedule(lr=cfg.lr, patience=cfg.patience, min_lr=cfg.min_lr, max_epochs=cfg.max_epochs)
    channels_last = use_channels_last(cfg.device, cfg.decoder, cfg.channels_last)
    forward = prepare_decoder(decoder, channels_last, cfg.compile)
    return Head(cfg, decoder, optimizer, schedule, Path(cfg.out), forward=forward, channels_last=channels_last)


def _prepare_dir(head: Head) -> int:
    """Write config.json (or check it); return the epoch to start from (resume from state.pt when present)."""
    head.out.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(head.out)
    cfg_path = head.out / "config.json"
    cfg_json = dict(head.cfg.to_json(), identity=head.cfg.identity())
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        if old.get("identity") != cfg_json["identity"]:
            raise DeclipError(f"{head.out} holds a run with a different config; choose another --out or delete it")
    else:
        _atomic_write(cfg_path, json.dumps(cfg_json, indent=2))
    state_path = head.out / "state.pt"
    if not state_path.exists():
        return 0
    state = torch.load(state_path, map_location=head.cfg.device, weights_only=True)
    head.decoder.load_state_dict(state["decoder"])
    head.optimizer.load_state_dict(state["optimizer"])
    head.schedule = PlateauSchedule.from_state(state["schedule"])
    head.history = list(state["history"])
    head.stop_reason = state.get("stop_reason", "")
    return int(head.schedule.epoch)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".partial")
    tmp.write_text(text)
    tmp.replace(path)


def _loss(logits: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "detection":
        return F.binary_cross_entropy_with_logits(logits.mean(dim=(1, 2, 3)), labels.float())
    return F.binary_cross_entropy_with_logits(logits[:, 0], masks)


def train_heads(cfgs: list[TrainConfig]) -> list[dict]:
    """Train one or more decoders together; returns one summary per head (also written as summary.json)."""
    _check_compatible(cfgs)
    base = cfgs[0]
    torch.manual_seed(base.seed)
    sources = sorted({c.source for c in cfgs})
    data = CachedSplits.open(base.store, base.dataset, sources, base.memory_gb)
    train_data = _augmented(base, sources)
    train_rows = select_rows(data.samples, data.valid, base.train_subsets, base.train_split, base.mode)
    if train_data is not None:
        train_data.require_written(train_rows, base.train_split)
        train_rows = train_rows[train_data.valid[train_rows]]
    valid_rows = select_rows(data.samples, data.valid, base.train_subsets, base.valid_split, base.mode)
    if len(train_rows) == 0 or len(valid_rows) == 0:
        raise DeclipError(
            f"no {base.mode} rows for subsets {list(base.train_subsets)} in dataset {base.dataset!r} "
            f"(train {len(train_rows)}, valid {len(valid_rows)}); the dataset's subsets are "
            f"{sorted(data.samples['subset'].unique())} (`declip store ls --store {base.store}` lists them by split)"
        )
    warnings = small_data_warnings(base, len(train_rows))
    for text in warnings:
        log.warning(text)
    heads = [_build_head(c, data) for c in cfgs]
    starts = {_prepare_dir(h) for h in heads}
    if len(starts) > 1:
        raise DeclipError("heads trained together were interrupted at different epochs; resume them separately")
    start = starts.pop()
    budget = device_budget_bytes(base.device, base.device_memory_gb)
    if train_data is None:
        data.warm(np.concatenate([train_rows, valid_rows]), base.device, budget)
    else:  # clean validation rows and the training copies share the device budget
        data.warm(valid_rows, base.device, budget // 2)
        train_data.warm(train_rows, base.device, budget // 2)
    log.info(memory_note(data))
    epoch = start
    bar = tqdm(total=_epochs_bound(heads, epoch), initial=start, desc=f"train {len(heads)} head(s)", unit="epoch",
               disable=not base.progress)
    while any(h.active for h in heads):
        t0 = time.perf_counter()
        active = [h for h in heads if h.active]
        losses = _train_epoch(active, train_data or data, train_rows, base, epoch)
        with autocast(base.device, base.precision):
            scores = validate_many([(h.decoder, h.cfg.source) for h in active], data, valid_rows, base.mode,
                                   base.device, base.batch_size)
        for h, score in zip(active, scores):
            _end_epoch(h, score, losses[id(h)], epoch, time.perf_counter() - t0)
        epoch += 1
        bar.total = _epochs_bound(heads, epoch)
        bar.update(1)
        best = max(heads, key=lambda h: h.schedule.best)
        bar.set_postfix({"val": f"{best.schedule.best:.2f}", "lr": f"{best.schedule.lr:g}"})
    bar.close()
    return [_finish(h, warnings) for h in heads]


def _epochs_bound(heads: list[Head], epoch: int) -> int:
    """The last epoch any head can reach if nothing improves from now on (early stopping, not max_epochs): what the
    progress bar counts to, so its ETA is an honest upper bound that shrinks only when a head stops."""
    left = [h.schedule.epochs_left_if_flat() for h in heads if h.active]
    return epoch + max(left, default=0)


def small_data_warnings(cfg: TrainConfig, n_train: int) -> list[str]:
    """What makes a run on few images unlikely to learn, said before it starts."""
    out = []
    steps = math.ceil(n_train / cfg.batch_size)
    if cfg.batch_size > n_train:
        out.append(f"batch size {cfg.batch_size} is larger than the training set ({n_train} rows): one optimizer "
                   f"step per epoch" + ("" if cfg.min_steps_per_epoch else "; pass --batch-size or "
                                         "--min-steps-per-epoch so the decoder gets enough updates"))
    elif steps < 10 and cfg.min_steps_per_epoch <= steps:
        out.append(f"only {steps} optimizer steps per epoch ({n_train} training rows at batch {cfg.batch_size}); "
                   "consider --min-steps-per-epoch 20")
    return out


def _augmented(cfg: TrainConfig, sources: list[str]) -> AugmentedSplits | None:
    """The cached copies training samples among (``train_views``), or None to train on the clean features."""
    if not cfg.train_views:
        return None
    views = [v.name for v in parse_views(list(cfg.train_views))]
    return AugmentedSplits.open(cfg.store, cfg.dataset, views, sources, cfg.memory_gb, cfg.seed)


def _train_epoch(active: list[Head], data: CachedSplits | AugmentedSplits, rows: np.ndarray, cfg: TrainConfig,
                 epoch: int) -> dict:
    for h in active:
        h.decoder.train()
    totals = {id(h): 0.0 for h in active}
    n = 0
    for batch in _epoch_batches(data, rows, cfg, epoch, sorted({h.cfg.source for h in active})):
        masks = batch.masks.to(cfg.device, non_blocking=True)
        labels = batch.labels.to(cfg.device, non_blocking=True)
        for h in active:
            feats, cls = batch.features[h.cfg.source]
            x = decoder_input(feats, cfg.device, h.channels_last)
            with autocast(cfg.device, cfg.precision):
                logits = h.forward(x, None if cls is None else cls.to(cfg.device).float())
            loss = _loss(logits.float(), masks, labels, cfg.mode)
            h.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            h.optimizer.step()
            totals[id(h)] += float(loss.detach()) * len(batch.rows)
        n += len(batch.rows)
    return {k: v / max(1, n) for k, v in totals.items()}


def _epoch_batches(data: CachedSplits | AugmentedSplits, rows: np.ndarray, cfg: TrainConfig, epoch: int,
                   sources: list[str]):
    """One pass over the shuffled rows (DeCLIP), repeated with fresh seeded shuffles until ``min_steps_per_epoch``
    optimizer steps ran; the first pass is exactly DeCLIP's epoch, so the option changes nothing on large sets.
    Augmented training reads each row's copy drawn for (seed, epoch, row), the same in every pass of the epoch."""
    extra = {"epoch": epoch} if isinstance(data, AugmentedSplits) else {}
    steps, rep = 0, 0
    while True:
        seed = cfg.seed * 100_003 + epoch + rep * 1_000_003
        for batch in data.batches(rows, cfg.batch_size, shuffle=True, seed=seed, sources=sources, **extra):
            yield batch
            steps += 1
        rep += 1
        if steps >= cfg.min_steps_per_epoch or len(rows) == 0:
            return


def _end_epoch(head: Head, scores: dict, train_loss: float, epoch: int, seconds: float) -> None:
    """Schedule step, best checkpoint, epoch log and the resumable state file, in that order."""
    key = "iou" if head.cfg.mode == "localization" else "ap"
    lr_used = head.optimizer.param_groups[0]["lr"]
    decision = head.schedule.step(scores[key])
    for group in head.optimizer.param_groups:
        group["lr"] = decision.lr
    row = {"epoch": epoch, "lr": lr_used, "train_loss": train_loss, **{f"val_{k}": v for k, v in scores.items()},
           "new_best": decision.new_best, "seconds": round(seconds, 3)}
    head.history.append(row)
    patience = head.cfg.collapse_patience
    if patience and not decision.stop and head.collapsed_streak >= patience:
        head.stop_reason = (f"validation maps collapsed for {patience} epochs in a row "
                            f"({scores.get('collapse_reason', '')}); stopped")
    if decision.new_best:
        save_decoder(head.decoder, head.out / "best", extra=_checkpoint_extra(head, epoch, scores))
    state = {"decoder": head.decoder.state_dict(), "optimizer": head.optimizer.state_dict(),
             "schedule": head.schedule.state_dict(), "history": head.history, "stop_reason": head.stop_reason}
    atomic_torch_save(state, head.out / "state.pt")
    # the log is rewritten from the saved history, after it: a kill in between cannot record an epoch twice
    _write_csv(head.out / "epochs.csv", head.history)


def _checkpoint_extra(head: Head, epoch: int, scores: dict) -> dict:
    cfg = head.cfg
    return {"source": str(cfg.source), "dataset": cfg.dataset, "train_subsets": list(cfg.train_subsets),
            "train_views": list(cfg.train_views),
            "mode": cfg.mode, "epoch": epoch, "val": scores, "seed": cfg.seed, "run_identity": cfg.identity(),
            "feature_layer": cfg.source.layer}


def _write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    _atomic_write(path, buf.getvalue())


def _remove_leftovers(out: Path) -> None:
    """Temporary files of a run killed mid-write (``.NAME.XXXX.tmp``, ``NAME.partial``); the real files are intact."""
    for folder in (out, out / "best"):
        for leftover in [*folder.glob(".*.tmp"), *folder.glob("*.partial")]:
            leftover.unlink(missing_ok=True)


def _finish(head: Head, warnings: list[str] = ()) -> dict:
    s = head.schedule
    collapsed, why = _best_epoch_collapse(head)
    summary = {"out": str(head.out), "decoder": head.cfg.decoder, "source": str(head.cfg.source),
               "train_subsets": list(head.cfg.train_subsets), "best_epoch": s.best_epoch, "best_val": s.best,
               "epochs": s.epoch, "final_lr": s.lr, "mode": head.cfg.mode, "faithful": head.cfg.faithful,
               "collapsed": collapsed, "collapse_reason": why, "stop_reason": head.stop_reason,
               "warnings": list(warnings)}
    _atomic_write(head.out / "summary.json", json.dumps(summary, indent=2))
    return summary


def _best_epoch_collapse(head: Head) -> tuple[bool, str]:
    """Whether the kept checkpoint's validation maps were collapsed (no checkpoint at all counts as collapsed)."""
    if head.schedule.best_epoch < 0 or not head.history:
        return True, "no epoch scored above 0 on validation"
    row = next((r for r in head.history if r["epoch"] == head.schedule.best_epoch), head.history[-1])
    return bool(row.get("val_collapsed", False)), str(row.get("val_collapse_reason", "") or "")


def train(cfg: TrainConfig) -> dict:
    return train_heads([cfg])[0]


def with_out(cfg: TrainConfig, out: str) -> TrainConfig:
    return replace(cfg, out=out)
