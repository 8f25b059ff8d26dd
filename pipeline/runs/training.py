"""Decoder training on cached features: DeCLIP's recipe, no images and no backbone in the loop.

Localization (DeCLIP's ``--fully_supervised``): fake images only, BCE-with-logits against the 256×256 soft masks,
AdamW lr 1e-3 (no weight decay), batch 64, the plateau schedule of :mod:`pipeline.runs.schedule`, the best epoch on
validation IoU kept. Detection (DeCLIP's broken mode, made to work): real + fake images, image logit = mean of the
pixel logits, selection on validation AP.

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
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from decoders import Decoder, build_decoder, save_decoder
from decoders.checkpoint_io import atomic_torch_save
from core.errors import DeclipError
from core.keys import SourceKey
from core.validation import check_config, choice, number, whole
from pipeline.runs.schedule import PlateauSchedule
from pipeline.runs.cached_splits import CachedSplits, memory_note, select_rows
from pipeline.runs.device_speed import (PRECISIONS, autocast, decoder_input, device_budget_bytes,
                                        prepare_decoder, use_channels_last)
from pipeline.runs.evaluation import validate_many

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
    lr: float = 1e-3
    batch_size: int = 64
    max_epochs: int = 400
    patience: int = 5
    min_lr: float = 1e-6
    seed: int = 0
    train_split: str = "train"
    valid_split: str = "valid"
    device: str = "cpu"
    memory_gb: float | None = None
    progress: bool = True
    precision: str = "fp32"  # "bf16": autocast for the decoder (changes results slightly: part of the identity)
    channels_last: bool | None = None  # None: on for conv decoders on CUDA
    compile: bool = False  # torch.compile the decoder
    device_memory_gb: float | None = None  # features kept on the device when they fit (None: 60 % free CUDA, 0 CPU)

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", SourceKey.parse(self.source))
        check_config(self, TRAIN_RULES, "training")

    def to_json(self) -> dict:
        """JSON-safe fields (the source as its string, so stored run configs and identities stay unchanged)."""
        raw = {f.name: getattr(self, f.name) for f in fields(self)}
        return json.loads(json.dumps(dict(raw, source=str(self.source))))

    @classmethod
    def from_json(cls, d: dict) -> "TrainConfig":
        return cls(**dict(d, train_subsets=tuple(d["train_subsets"])))

    def identity(self) -> str:
        """Hash of everything that changes the result (not where it is written or how it is shown).

        Settings added later are left out at their default, so existing run directories keep their names."""
        keep = {k: v for k, v in self.to_json().items() if k not in _NOT_IDENTITY}
        if keep.get("precision") == "fp32":
            del keep["precision"]
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


_NOT_IDENTITY = ("out", "progress", "memory_gb", "device", "channels_last", "compile", "device_memory_gb")


@dataclass
class Head:
    cfg: TrainConfig
    decoder: Decoder
    optimizer: torch.optim.Optimizer
    schedule: PlateauSchedule
    out: Path
    history: list[dict] = field(default_factory=list)
    forward: Callable | None = None  # the decoder as run (compiled and/or channels_last)
    channels_last: bool = False

    @property
    def active(self) -> bool:
        return not self.schedule.stopped


def _check_compatible(cfgs: list[TrainConfig]) -> None:
    shared = ("store", "dataset", "train_subsets", "mode", "batch_size", "seed", "train_split", "valid_split",
              "device", "precision", "device_memory_gb")
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
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.999), weight_decay=0.0)
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
    data = CachedSplits.open(base.store, base.dataset, sorted({c.source for c in cfgs}), base.memory_gb)
    train_rows = select_rows(data.samples, data.valid, base.train_subsets, base.train_split, base.mode)
    valid_rows = select_rows(data.samples, data.valid, base.train_subsets, base.valid_split, base.mode)
    if len(train_rows) == 0 or len(valid_rows) == 0:
        raise DeclipError(
            f"no {base.mode} rows for subsets {list(base.train_subsets)} in dataset {base.dataset!r} "
            f"(train {len(train_rows)}, valid {len(valid_rows)}); the dataset's subsets are "
            f"{sorted(data.samples['subset'].unique())} (`declip store ls --store {base.store}` lists them by split)"
        )
    heads = [_build_head(c, data) for c in cfgs]
    starts = {_prepare_dir(h) for h in heads}
    if len(starts) > 1:
        raise DeclipError("heads trained together were interrupted at different epochs; resume them separately")
    start = starts.pop()
    data.warm(np.concatenate([train_rows, valid_rows]), base.device,
              device_budget_bytes(base.device, base.device_memory_gb))
    log.info(memory_note(data))
    epoch = start
    bar = tqdm(total=base.max_epochs, initial=start, desc=f"train {len(heads)} head(s)", unit="epoch",
               disable=not base.progress)
    while any(h.active for h in heads):
        t0 = time.perf_counter()
        active = [h for h in heads if h.active]
        losses = _train_epoch(active, data, train_rows, base, epoch)
        with autocast(base.device, base.precision):
            scores = validate_many([(h.decoder, h.cfg.source) for h in active], data, valid_rows, base.mode,
                                   base.device, base.batch_size)
        for h, score in zip(active, scores):
            _end_epoch(h, score, losses[id(h)], epoch, time.perf_counter() - t0)
        epoch += 1
        bar.update(1)
        bar.set_postfix({"val": f"{max(h.schedule.best for h in heads):.2f}"})
    bar.close()
    return [_finish(h) for h in heads]


def _train_epoch(active: list[Head], data: CachedSplits, rows: np.ndarray, cfg: TrainConfig, epoch: int) -> dict:
    for h in active:
        h.decoder.train()
    totals = {id(h): 0.0 for h in active}
    n = 0
    for batch in data.batches(rows, cfg.batch_size, shuffle=True, seed=cfg.seed * 100_003 + epoch,
                              sources=sorted({h.cfg.source for h in active})):
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


def _end_epoch(head: Head, scores: dict, train_loss: float, epoch: int, seconds: float) -> None:
    """Schedule step, best checkpoint, epoch log and the resumable state file, in that order."""
    key = "iou" if head.cfg.mode == "localization" else "ap"
    lr_used = head.optimizer.param_groups[0]["lr"]
    decision = head.schedule.step(scores[key])
    for group in head.optimizer.param_groups:
        group["lr"] = decision.lr
    row = {"epoch": epoch, "lr": lr_used, "train_loss": train_loss, **{f"val_{k}": v for k, v in scores.items()}, "new_best": decision.new_best,
           "seconds": round(seconds, 3)}
    head.history.append(row)
    if decision.new_best:
        save_decoder(head.decoder, head.out / "best", extra=_checkpoint_extra(head, epoch, scores))
    state = {"decoder": head.decoder.state_dict(), "optimizer": head.optimizer.state_dict(),
             "schedule": head.schedule.state_dict(), "history": head.history}
    atomic_torch_save(state, head.out / "state.pt")
    # the log is rewritten from the saved history, after it: a kill in between cannot record an epoch twice
    _write_csv(head.out / "epochs.csv", head.history)


def _checkpoint_extra(head: Head, epoch: int, scores: dict) -> dict:
    cfg = head.cfg
    return {"source": str(cfg.source), "dataset": cfg.dataset, "train_subsets": list(cfg.train_subsets),
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


def _finish(head: Head) -> dict:
    s = head.schedule
    summary = {"out": str(head.out), "decoder": head.cfg.decoder, "source": str(head.cfg.source),
               "train_subsets": list(head.cfg.train_subsets), "best_epoch": s.best_epoch, "best_val": s.best,
               "epochs": s.epoch, "final_lr": s.lr, "mode": head.cfg.mode, "faithful": head.cfg.faithful}
    _atomic_write(head.out / "summary.json", json.dumps(summary, indent=2))
    return summary


def train(cfg: TrainConfig) -> dict:
    return train_heads([cfg])[0]


def with_out(cfg: TrainConfig, out: str) -> TrainConfig:
    return replace(cfg, out=out)
