"""Decoder training on cached features: DeCLIP's recipe, no images and no backbone in the loop.

Localization (DeCLIP's ``--fully_supervised``): fake images only, BCE-with-logits against the 256×256 soft masks,
AdamW lr 1e-3 (no weight decay), batch 64, the plateau schedule of :mod:`declip.pipeline.train.schedule`, the best
epoch on validation IoU kept. Detection (DeCLIP's broken mode, made to work): real + fake images, image logit = mean
of the pixel logits, selection on validation AP. What a run is (and its options) lives in
:mod:`declip.pipeline.train.config` and :mod:`declip.pipeline.train.options`; its directory in
:mod:`declip.pipeline.train.run_dir`; what it reports in :mod:`declip.pipeline.train.summaries`.

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

import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from declip.core.errors import DeclipError
from declip.core.stop import check_stop
from declip.decoders import Decoder, build_decoder, save_decoder
from declip.features.views import parse_views
from declip.pipeline.data.augmentation import AugmentedSplits
from declip.pipeline.data.cached_splits import CachedSplits, memory_note, select_rows
from declip.pipeline.data.splits import require_split
from declip.pipeline.evaluate.evaluation import validate_many
from declip.pipeline.train.config import TrainConfig
from declip.pipeline.train.fused_loss import fused_steps
from declip.pipeline.train.options import TrainOptions  # noqa: F401 - re-exported beside TrainConfig
from declip.pipeline.train.precision import (autocast, decoder_input, device_budget_bytes, prepare_decoder,
                                             use_channels_last)
from declip.pipeline.train.recipe import DECLIP_TRAINING
from declip.pipeline.train.run_dir import open_run_dir, save_epoch, write_summary
from declip.pipeline.train.schedule import PlateauSchedule
from declip.pipeline.train.summaries import checkpoint_extra, run_summary, small_data_warnings

log = logging.getLogger(__name__)


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
    """Heads of one run read the same batches on the same device: everything that decides those must agree."""
    shared = ("store", "dataset", "train_subsets", "mode", "batch_size", "seed", "train_split", "valid_split",
              "device", "min_steps_per_epoch", "precision", "device_memory_gb", "train_views")
    flat = [c.to_json() for c in cfgs]
    for key in shared:
        values = {json.dumps(f[key]) for f in flat}
        if len(values) > 1:
            raise DeclipError(f"heads trained together must share {key} (got {sorted(values)})")


def _build_head(cfg: TrainConfig, data: CachedSplits) -> Head:
    o = cfg.options
    src = data.sources[cfg.source]
    decoder = build_decoder(cfg.decoder, in_channels=src.channels, grid=src.grid, family=src.family,
                            layer=cfg.source.layer, width=o.width, faithful=o.faithful, seed=cfg.seed).to(o.device)
    params = decoder.trainable_parameters()
    optimizer = torch.optim.AdamW(params, lr=o.lr, betas=DECLIP_TRAINING.betas,
                                  weight_decay=DECLIP_TRAINING.weight_decay)
    schedule = PlateauSchedule(lr=o.lr, patience=o.patience, min_lr=o.min_lr, max_epochs=o.max_epochs)
    channels_last = use_channels_last(o.device, cfg.decoder, o.channels_last)
    forward = prepare_decoder(decoder, channels_last, o.compile)
    return Head(cfg, decoder, optimizer, schedule, Path(cfg.out), forward=forward, channels_last=channels_last)


def _prepare_dir(head: Head) -> int:
    """config.json written or checked; the epoch to start from (the head resumed from state.pt when present)."""
    state = open_run_dir(head.out, head.cfg)
    if state is None:
        return 0
    head.decoder.load_state_dict(state["decoder"])
    head.optimizer.load_state_dict(state["optimizer"])
    head.schedule = PlateauSchedule.from_state(state["schedule"])
    head.history = list(state["history"])
    head.stop_reason = state.get("stop_reason", "")
    return int(head.schedule.epoch)


def _loss(logits: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "detection":
        return F.binary_cross_entropy_with_logits(logits.mean(dim=(1, 2, 3)), labels.float())
    return F.binary_cross_entropy_with_logits(logits[:, 0], masks)


def train_heads(cfgs: list[TrainConfig], log: logging.Logger | logging.LoggerAdapter = log) -> list[dict]:
    """Train one or more decoders together; returns one summary per head (also written as summary.json).

    ``log`` gets one line per epoch (a flow passes its run logger, so the lines reach the Prefect run log). The loop
    checks :mod:`declip.core.stop` at every batch boundary and raises ``Interrupted``: the run directories keep
    their last finished epoch, from which the same call resumes."""
    _check_compatible(cfgs)
    base = cfgs[0]
    o = base.options
    torch.manual_seed(base.seed)
    sources = sorted({c.source for c in cfgs})
    data = CachedSplits.open(base.store, base.dataset, sources, o.memory_gb)
    require_split(data.samples, o.train_split, base.dataset, "to train on")
    require_split(data.samples, o.valid_split, base.dataset, "to choose the best epoch on")
    train_data = _augmented(base, sources)
    train_rows = select_rows(data.samples, data.valid, base.train_sets, o.train_split, o.mode)
    if train_data is not None:
        train_data.require_written(train_rows, o.train_split)
        train_rows = train_rows[train_data.valid[train_rows]]
    valid_rows = select_rows(data.samples, data.valid, base.train_sets, o.valid_split, o.mode)
    if len(train_rows) == 0 or len(valid_rows) == 0:
        raise DeclipError(
            f"no {o.mode} rows for train sets {list(base.train_sets)} in dataset {base.dataset!r} "
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
    budget = device_budget_bytes(o.device, o.device_memory_gb)
    if train_data is None:
        data.warm(np.concatenate([train_rows, valid_rows]), o.device, budget)
    else:  # clean validation rows and the training copies share the device budget
        data.warm(valid_rows, o.device, budget // 2)
        train_data.warm(train_rows, o.device, budget // 2)
    log.info(memory_note(data))
    epoch = start
    bar = tqdm(total=_epochs_bound(heads, epoch), initial=start, desc=f"train {len(heads)} head(s)", unit="epoch",
               disable=not o.progress)
    while any(h.active for h in heads):
        t0 = time.perf_counter()
        active = [h for h in heads if h.active]
        losses = _train_epoch(active, train_data or data, train_rows, base, epoch)
        with autocast(o.device, o.precision):
            scores = validate_many([(h.decoder, h.cfg.source) for h in active], data, valid_rows, o.mode,
                                   o.device, o.batch_size)
        for h, score in zip(active, scores):
            _end_epoch(h, score, losses[id(h)], epoch, time.perf_counter() - t0)
        epoch += 1
        bar.total = _epochs_bound(heads, epoch)
        bar.update(1)
        best = max(heads, key=lambda h: h.schedule.best)
        bar.set_postfix({"val": f"{best.schedule.best:.2f}", "lr": f"{best.schedule.lr:g}"})
        log.info("%s", epoch_line(heads, epoch, time.perf_counter() - t0))
    bar.close()
    return [write_summary(h.out, run_summary(h.cfg, str(h.out), h.schedule, h.history, h.stop_reason, warnings))
            for h in heads]


def epoch_line(heads: list[Head], epoch: int, seconds: float) -> str:
    """One line per finished epoch (``epoch`` of them so far): the heads still training, the best validation so far
    and the group's ETA (the epochs left if nothing improves, at this epoch's pace -- an upper bound, like the bar's).
    """
    active = [h for h in heads if h.active]
    best = max(heads, key=lambda h: h.schedule.best)
    left = _epochs_bound(heads, epoch) - epoch
    return (f"epoch {epoch}/≤{epoch + left} done: {len(active)}/{len(heads)} head(s) still training, {seconds:.1f} s; "
            f"best validation {best.schedule.best:.3f} ({best.cfg.decoder} on {best.cfg.source}); "
            f"ETA ≤ {left} epoch(s), ~{left * seconds / 60:.1f} min")


def _epochs_bound(heads: list[Head], epoch: int) -> int:
    """The last epoch any head can reach if nothing improves from now on (early stopping, not max_epochs): what the
    progress bar counts to, so its ETA is an honest upper bound that shrinks only when a head stops."""
    left = [h.schedule.epochs_left_if_flat() for h in heads if h.active]
    return epoch + max(left, default=0)


def _augmented(cfg: TrainConfig, sources: list[str]) -> AugmentedSplits | None:
    """The cached copies training samples among (``train_views``), or None to train on the clean features."""
    o = cfg.options
    if not o.train_views:
        return None
    views = [v.name for v in parse_views(list(o.train_views))]
    return AugmentedSplits.open(cfg.store, cfg.dataset, views, sources, o.memory_gb, cfg.seed)


def _train_epoch(active: list[Head], data: CachedSplits | AugmentedSplits, rows: np.ndarray, cfg: TrainConfig,
                 epoch: int) -> dict:
    o = cfg.options
    for h in active:
        h.decoder.train()
    totals = {id(h): 0.0 for h in active}
    fused = _fused_by_grid([h for h in active if _fusable(h, o.mode)])
    alone = [h for h in active if not _fusable(h, o.mode)]
    n = 0
    for batch in _epoch_batches(data, rows, cfg, epoch, sorted({h.cfg.source for h in active})):
        check_stop(f"epoch {epoch}")  # Ctrl-C / SIGTERM: end here; the last finished epoch's state.pt is what resumes
        masks, labels = _batch_targets(batch, o.device)  # the soft targets, once per batch for every head
        inputs = {id(h): _head_input(h, batch, o.device) for h in active}
        for heads in fused:  # linear/attention heads: one upsampling call, one backward (pipeline/train/fused_loss)
            losses = fused_steps([(h.decoder, *inputs[id(h)], h.optimizer) for h in heads], masks,
                                 lambda: autocast(o.device, o.precision))
            for h, loss in zip(heads, losses.tolist()):
                totals[id(h)] += loss * len(batch.rows)
        for h in alone:
            with autocast(o.device, o.precision):
                logits = h.forward(*inputs[id(h)])
            loss = _loss(logits.float(), masks, labels, o.mode)
            h.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            h.optimizer.step()
            totals[id(h)] += float(loss.detach()) * len(batch.rows)
        n += len(batch.rows)
    return {k: v / max(1, n) for k, v in totals.items()}


def _batch_targets(batch, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's soft 256² masks and image labels on the device, shared by every head."""
    return batch.masks.to(device, non_blocking=True), batch.labels.to(device, non_blocking=True)


def _head_input(h: Head, batch, device: str) -> tuple:
    feats, cls = batch.features[h.cfg.source]
    return decoder_input(feats, device, h.channels_last), None if cls is None else cls.to(device).float()


def _fusable(h: Head, mode: str) -> bool:
    """Localization heads whose decoder upsamples its token scores, run as built (not compiled)."""
    return mode == "localization" and h.decoder.scores_then_upsample and h.forward is h.decoder


def _fused_by_grid(heads: list[Head]) -> list[list[Head]]:
    by_grid: dict[tuple, list[Head]] = {}
    for h in heads:
        by_grid.setdefault(tuple(h.decoder.config["grid"]), []).append(h)
    return list(by_grid.values())


def _epoch_batches(data: CachedSplits | AugmentedSplits, rows: np.ndarray, cfg: TrainConfig, epoch: int,
                   sources: list[str]):
    """One pass over the shuffled rows (DeCLIP), repeated with fresh seeded shuffles until ``min_steps_per_epoch``
    optimizer steps ran; the first pass is exactly DeCLIP's epoch, so the option changes nothing on large sets.
    Augmented training reads each row's copy drawn for (seed, epoch, row), the same in every pass of the epoch."""
    extra = {"epoch": epoch} if isinstance(data, AugmentedSplits) else {}
    steps, rep = 0, 0
    while True:
        seed = cfg.seed * 100_003 + epoch + rep * 1_000_003
        for batch in data.batches(rows, cfg.options.batch_size, shuffle=True, seed=seed, sources=sources, **extra):
            yield batch
            steps += 1
        rep += 1
        if steps >= cfg.options.min_steps_per_epoch or len(rows) == 0:
            return


def _end_epoch(head: Head, scores: dict, train_loss: float, epoch: int, seconds: float) -> None:
    """Schedule step, best checkpoint, then the resumable state file and the epoch log, in that order."""
    key = "iou" if head.cfg.options.mode == "localization" else "ap"
    lr_used = head.optimizer.param_groups[0]["lr"]
    decision = head.schedule.step(scores[key])
    for group in head.optimizer.param_groups:
        group["lr"] = decision.lr
    row = {"epoch": epoch, "lr": lr_used, "train_loss": train_loss, **{f"val_{k}": v for k, v in scores.items()},
           "new_best": decision.new_best, "seconds": round(seconds, 3)}
    head.history.append(row)
    patience = head.cfg.options.collapse_patience
    if patience and not decision.stop and head.collapsed_streak >= patience:
        head.stop_reason = (f"validation maps collapsed for {patience} epochs in a row "
                            f"({scores.get('collapse_reason', '')}); stopped")
    if decision.new_best:
        save_decoder(head.decoder, head.out / "best", extra=checkpoint_extra(head.cfg, epoch, scores))
    state = {"decoder": head.decoder.state_dict(), "optimizer": head.optimizer.state_dict(),
             "schedule": head.schedule.state_dict(), "history": head.history, "stop_reason": head.stop_reason}
    save_epoch(head.out, state, head.history)


def train(cfg: TrainConfig, log: logging.Logger | logging.LoggerAdapter = log) -> dict:
    return train_heads([cfg], log)[0]


def with_out(cfg: TrainConfig, out: str) -> TrainConfig:
    return replace(cfg, out=out)
