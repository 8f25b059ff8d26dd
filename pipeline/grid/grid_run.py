"""One grid run's bookkeeping: what is set up before any work (``grid.json``, the thread count), what the run did
(:class:`GridOutcome`, the value ``declip grid`` prints and the flow returns), and what it leaves behind (the
results table merged with earlier runs', the run index, the IoU summary for the Prefect UI).
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from declip.core.io import atomic_write_text
from declip.core.versions import code_version
from declip.pipeline.grid.config import GridConfig
from declip.pipeline.grid.plan import Cell, cell_finished, check_grid_data, plan_cells
from declip.pipeline.grid.results import collect_results, write_results
from declip.pipeline.grid.run_index import write_index

LOG = logging.getLogger("declip.grid")


def start_grid(g: GridConfig, log: logging.Logger | logging.LoggerAdapter = LOG) -> list[Cell]:
    """Write ``grid.json``, share the CPU among the workers, and return the grid's cells (logging what is left).

    Why the thread count: with the thread runner on CPU, each of ``max_workers`` training threads would otherwise
    start torch's full pool and the 2-core machines would be oversubscribed.
    """
    Path(g.out).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(g.out) / "grid.json", json.dumps(g.to_json(), indent=2))
    if g.task_runner == "threads" and g.options.device == "cpu":
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, g.max_workers)))
    check_grid_data(g)  # before any extraction: a dataset without splits fails now, naming the scan that fixes it
    cells = plan_cells(g)
    todo = sum(not cell_finished(c) for c in cells)
    log.info("grid %s: %d cells (%d to train, %d already done), %d test sets each; run index in %s",
             g.out, len(cells), todo, len(cells) - todo, len(g.test_sets), Path(g.out) / "runs" / "index.csv")
    return cells


@dataclass
class GridOutcome:
    """What one grid run did, accumulated over its layer groups."""

    cells: int
    groups: int
    extracted: list[dict] = field(default_factory=list)
    trained: list[dict] = field(default_factory=list)
    evaluated: list[dict] = field(default_factory=list)
    skipped: int = 0
    training_runs: int = 0
    evicted: list[str] = field(default_factory=list)

    def add_cells(self, trained: list[dict], evaluated: list[dict], skipped: int, runs: int) -> None:
        """The records of one group's training runs and evaluations (:mod:`declip.pipeline.grid.cells`)."""
        self.trained += trained
        self.evaluated += evaluated
        self.skipped += skipped
        self.training_runs += runs

    @property
    def failed(self) -> list[dict]:
        return [t for t in self.trained if t["status"] != "ok"] + [e for e in self.evaluated if e["status"] == "failed"]

    def count(self, records: list[dict]) -> int:
        return sum(r["status"] == "ok" for r in records)

    def done_line(self, results: Path) -> str:
        return (f"grid done: {self.count(self.trained)} trained, {self.count(self.evaluated)} evaluations, "
                f"{len(self.failed)} failed; results in {results}")

    def as_dict(self, results: Path, rows: int) -> dict:
        """The run's summary: counts, failures (run or output, error) and where the results table is."""
        return {
            "cells": self.cells, "trained": self.count(self.trained), "training_runs": self.training_runs,
            "skipped_cells": self.skipped, "evaluated": self.count(self.evaluated),
            "groups": self.groups, "evicted": self.evicted,
            "failed": [{k: f.get(k) for k in ("run", "out", "error")} for f in self.failed],
            "extracted": [{k: e[k] for k in ("backbone", "dataset", "blocks_run", "images_encoded")}
                          for e in self.extracted],
            "results": str(results), "rows": rows, "where": self.placements(),
        }

    def placements(self) -> list[dict]:
        """Where each task of this run ran (host, SLURM job id, process, Dask worker, device): extraction block
        ranges, training runs (one row per cell) and evaluations."""
        rows = [dict(s.get("where", {}), task="extract", what=f"{e['backbone']} blocks {s['blocks'][0]}-"
                     f"{s['blocks'][-1]}" if s.get("blocks") else e["backbone"])
                for e in self.extracted for s in e.get("shards", [])]
        rows += [dict(t.get("where", {}), task="train", what=t.get("run")) for t in self.trained]
        rows += [dict(e.get("where", {}), task="evaluate", what=e.get("out")) for e in self.evaluated]
        return rows


def write_grid_results(g: GridConfig, cells: list[Cell]) -> tuple[Path, pd.DataFrame]:
    """Collect every evaluation on disk into ``results.{parquet,csv}`` (merged with earlier runs' rows in the same
    folder), refresh ``runs/index.csv``; returns the path and the merged table."""
    path = write_results(collect_results(g, cells, code_version()), Path(g.out))
    write_index(g.out, [c.train for c in cells])
    return path, pd.read_parquet(path)


def iou_markdown(table: pd.DataFrame) -> str | None:
    """Mean clean test IoU (%) per decoder × layer (rows) and test set (columns), averaged over train sets, as
    markdown (with the random-weights warning when it applies); None when the table has no such rows."""
    iou = table[(table["metric"] == "iou") & (table["split"] == "test") & (table["view"] == "clean")]
    if iou.empty:
        return None
    pivot = iou.pivot_table(index=["decoder", "layer"], columns="test_set", values="value", aggfunc="mean")
    note = "**backbone weights are random**\n\n" if bool(iou["random_weights"].fillna(False).any()) else ""
    return note + pivot.round(2).to_markdown()
