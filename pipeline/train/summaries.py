"""What a training run says about itself: warnings before it starts, and its summary when it ends (best epoch, why
it stopped, whether the kept epoch's validation maps were collapsed)."""
from __future__ import annotations

import math

from declip.pipeline.train.config import TrainConfig
from declip.pipeline.train.schedule import PlateauSchedule


def small_data_warnings(cfg: TrainConfig, n_train: int) -> list[str]:
    """What makes a run on few images unlikely to learn, said before it starts (the optimizer steps an epoch really
    runs count, ``min_steps_per_epoch`` included)."""
    o = cfg.options
    steps = max(math.ceil(n_train / o.batch_size), o.min_steps_per_epoch)
    if steps >= 10:
        return []
    per_epoch = f"{steps} optimizer step{'s' if steps != 1 else ''} per epoch"
    if o.batch_size > n_train:
        return [f"batch size {o.batch_size} is larger than the training set ({n_train} rows): {per_epoch}; pass "
                "--min-steps-per-epoch 20 (or a smaller --batch-size) so the decoder gets enough updates"]
    return [f"only {per_epoch} ({n_train} training rows at batch {o.batch_size}); consider --min-steps-per-epoch 20"]


def run_summary(cfg: TrainConfig, out: str, schedule: PlateauSchedule, history: list[dict], stop_reason: str,
                warnings: list[str]) -> dict:
    collapsed, why = best_epoch_collapse(schedule, history)
    return {"out": out, "decoder": cfg.decoder, "source": str(cfg.source), "train_subsets": list(cfg.train_sets),
            "best_epoch": schedule.best_epoch, "best_val": schedule.best, "epochs": schedule.epoch,
            "final_lr": schedule.lr, "mode": cfg.options.mode, "faithful": cfg.options.faithful,
            "collapsed": collapsed, "collapse_reason": why, "stop_reason": stop_reason, "warnings": list(warnings)}


def best_epoch_collapse(schedule: PlateauSchedule, history: list[dict]) -> tuple[bool, str]:
    """Whether the kept checkpoint's validation maps were collapsed (no checkpoint at all counts as collapsed)."""
    if schedule.best_epoch < 0 or not history:
        return True, "no epoch scored above 0 on validation"
    row = next((r for r in history if r["epoch"] == schedule.best_epoch), history[-1])
    return bool(row.get("val_collapsed", False)), str(row.get("val_collapse_reason", "") or "")


def checkpoint_extra(cfg: TrainConfig, epoch: int, scores: dict) -> dict:
    """What the best checkpoint's config.json records beside the decoder's own config."""
    return {"source": str(cfg.source), "dataset": cfg.dataset, "train_subsets": list(cfg.train_sets),
            "train_views": list(cfg.options.train_views), "mode": cfg.options.mode, "epoch": epoch, "val": scores,
            "seed": cfg.seed, "run_identity": cfg.identity(), "feature_layer": cfg.source.layer}
