"""How a grid runs its cells: train them in groups, evaluate each trained one, and keep every failure with its cell.

* Cells sharing a backbone, train set and seed train as one multi-head run (each batch read once for all of them).
  If that run fails, each cell trains alone, resuming from its last finished epoch, so a failure stays with the
  cell that caused it.
* A failed cell gets ``failed.json`` in its run directory (:func:`failure_record`: status, run, error, traceback,
  config) and a record in the grid's return value; it never stops the other cells. A later success removes it.
* An evaluation of a cell whose training failed is skipped; a failing evaluation is recorded, not raised.

The records returned here (``{"status": "ok" | "failed" | "skipped", ...}``) are what the grid's progress bar counts
(:mod:`declip.pipeline.grid.progress`) and what ``declip grid`` prints.
"""
from __future__ import annotations

import json
import logging
import traceback
from dataclasses import replace
from pathlib import Path

from declip.core.io import atomic_write_text
from declip.pipeline.evaluate.evaluation import EvalConfig, evaluate
from declip.pipeline.grid.plan import Cell, cell_finished, eval_finished
from declip.pipeline.grid.run_index import training_marks
from declip.pipeline.train.training import TrainConfig, train, train_heads

#: Beside a failed cell's checkpoints: why it failed (removed when the cell trains).
FAILED_RECORD = "failed.json"

LOG = logging.getLogger("declip.grid")


def failure_record(cfg: TrainConfig, exc: BaseException) -> dict:
    """What ``failed.json`` holds and the grid returns for a cell whose training raised ``exc``."""
    return {"status": "failed", "run": Path(cfg.out).name, "error": f"{type(exc).__name__}: {exc}",
            "traceback": "".join(traceback.format_exception(exc)), "config": cfg.to_json()}


def _trained(cfg: TrainConfig, summary: dict) -> dict:
    (Path(cfg.out) / FAILED_RECORD).unlink(missing_ok=True)
    return {"status": "ok", "run": Path(cfg.out).name, **summary}


def train_cell(cfg: TrainConfig, log: logging.Logger | logging.LoggerAdapter = LOG) -> dict:
    """Train one cell; a failure is recorded in its directory (``failed.json``) and returned, never raised."""
    out = Path(cfg.out)
    try:
        summary = train(cfg, log)
    except Exception as exc:  # noqa: BLE001 - one broken cell must not stop the grid
        log.warning("cell %s (%s %s) failed: %s: %s", out.name, cfg.decoder, cfg.source, type(exc).__name__, exc)
        record = failure_record(cfg, exc)
        atomic_write_text(out / FAILED_RECORD, json.dumps(record, indent=2, default=str))
        return record
    log.info("trained %s: best validation %.3f at epoch %s (runs/%s)", cfg.decoder, summary["best_val"],
             summary["best_epoch"], out.name)
    return _trained(cfg, summary)


def train_cells(cfgs: list[TrainConfig], log: logging.Logger | logging.LoggerAdapter = LOG) -> list[dict]:
    """Train cells sharing a backbone, train set and seed as one multi-head run; if that fails, each alone. While
    they train, their run directories say so (``runs/index.csv`` status ``training``)."""
    with training_marks(cfgs):
        return _train_cells(cfgs, log)


def _train_cells(cfgs: list[TrainConfig], log: logging.Logger | logging.LoggerAdapter) -> list[dict]:
    if len(cfgs) > 1:
        try:
            summaries = train_heads(cfgs, log)
        except Exception as exc:  # noqa: BLE001 - retried cell by cell below
            log.warning("multi-head run of %d cells failed (%s: %s); training them one by one", len(cfgs),
                        type(exc).__name__, exc)
        else:
            for cfg, summary in zip(cfgs, summaries):
                log.info("trained %s on %s: best validation %.3f at epoch %s (runs/%s)", cfg.decoder, cfg.source,
                         summary["best_val"], summary["best_epoch"], Path(cfg.out).name)
            return [_trained(cfg, summary) for cfg, summary in zip(cfgs, summaries)]
    return [train_cell(cfg, log) for cfg in cfgs]


def on_device(cfgs: list[TrainConfig], device: str) -> list[TrainConfig]:
    """The cells with the device their task got (``device`` never changes a run's identity or directory)."""
    return [cfg if cfg.options.device == device else replace(cfg, options=replace(cfg.options, device=device))
            for cfg in cfgs]


def evaluate_cell(cfg: EvalConfig, trained: list[dict] | None, run: str, label: str | None = None,
                  log: logging.Logger | logging.LoggerAdapter = LOG) -> dict:
    """Evaluate cell ``run`` as ``cfg`` says; ``trained`` is its training group's records when it trained in this
    run (None when it had trained before). Skipped when its training failed; a failure is returned, never raised."""
    mine = next((t for t in trained or [] if t.get("run") == run), None)
    if trained is not None and (mine is None or mine.get("status") != "ok"):
        return {"status": "skipped", "out": cfg.out, "reason": "training failed"}
    try:
        table = evaluate(cfg)
    except Exception as exc:  # noqa: BLE001 - one broken evaluation must not stop the grid
        log.warning("evaluation %s failed: %s: %s", cfg.out, type(exc).__name__, exc)
        return {"status": "failed", "out": cfg.out, "error": f"{type(exc).__name__}: {exc}"}
    iou = table.loc[table["metric"] == "iou", "value"]
    if len(iou):
        log.info("evaluated %s: IoU %.2f", label or Path(cfg.out).parent.name, float(iou.iloc[0]))
    return {"status": "ok", "out": cfg.out}


def evaluate_cells(work: list[tuple[str, list[EvalConfig]]], trained: list[dict] | None, label: str | None = None,
                   log: logging.Logger | logging.LoggerAdapter = LOG) -> list[dict]:
    """Every evaluation still needed by some cells (``work``: (cell run id, its evaluations)), one after another:
    one record each, as :func:`evaluate_cell` gives it plus ``run``, so a failing evaluation stays with itself and
    the others still run.

    Why several at once: the grid submits one evaluation task per training run, not per evaluation; each Prefect
    task costs ~0.1-0.3 s of orchestration on a Dask worker (state, tag concurrency slots, context; measured by
    bench/grid_cost.py), more than a small evaluation."""
    return [dict(evaluate_cell(cfg, trained, run, label, log), run=run) for run, cfgs in work for cfg in cfgs]


def all_finished(cells: list[Cell]) -> bool:
    """Every cell trained and every one of its evaluations done: a budgeted group that needs no features."""
    return all(cell_finished(c) and all(eval_finished(ev) for ev in c.evals) for c in cells)
