"""The grid's progress over cells, fed one finished task at a time, whatever runs the tasks.

A cell counts as done once its training run finished (or, when it had trained before, once every evaluation it
still needed finished), so the bar's ETA follows training, the long part. The postfix counts trained / evaluated /
skipped / failed: ``skipped`` are cells that needed no training now, ``failed`` failed trainings and evaluations.
"""
from __future__ import annotations

from collections import Counter

from tqdm.auto import tqdm

from declip.pipeline.grid.plan import Cell


class CellProgress:
    """Counts for one batch of cells: ``groups`` are its training runs, ``eval_runs`` the cell (run id) of each
    evaluation submitted, in any order. ``show``: draw a tqdm bar (the counts are kept either way)."""

    def __init__(self, cells: list[Cell], groups: list[list[Cell]], eval_runs: list[str], show: bool = True):
        training = {c.run_id for group in groups for c in group}
        #: evaluations still to finish per cell that trains no more (its last one completes the cell)
        self.waiting = Counter(run for run in eval_runs if run not in training)
        self.total = len(cells)
        self.done = len(cells) - len(training) - len(self.waiting)
        self.counts = {"trained": 0, "evaluated": 0, "skipped": len(cells) - len(training), "failed": 0}
        self.bar = tqdm(total=self.total, initial=self.done, desc="grid cells", unit="cell", disable=not show)
        self.bar.set_postfix(self.counts)

    def trained(self, records: list[dict]) -> None:
        """One training run finished; ``records`` has one entry per cell of it."""
        for record in records:
            self.counts["trained" if record.get("status") == "ok" else "failed"] += 1
        self._advance(len(records))

    def evaluated(self, run: str, record: dict) -> None:
        """One evaluation of cell ``run`` finished (``ok``, ``failed`` or ``skipped`` after a failed training)."""
        if record.get("status") == "ok":
            self.counts["evaluated"] += 1
        elif record.get("status") == "failed":
            self.counts["failed"] += 1
        if self.waiting.get(run):
            self.waiting[run] -= 1
            self._advance(1 if self.waiting[run] == 0 else 0)
        else:
            self._advance(0)

    def _advance(self, cells: int) -> None:
        self.done += cells
        self.bar.update(cells)
        self.bar.set_postfix(self.counts)

    def close(self) -> None:
        self.bar.close()
