"""The grid's progress over cells, fed one finished task at a time, whatever runs the tasks.

A cell counts as done once its training run finished (or, when it had trained before, once every evaluation it
still needed finished), so the bar's ETA follows training, the long part. The postfix counts trained / evaluated /
skipped / failed: ``skipped`` are cells that needed no training now, ``failed`` failed trainings and evaluations;
and ``training`` says which cells train right now, read every few seconds from their run directories' training
marks (:mod:`declip.pipeline.grid.run_index`), so a bar that waits for a long multi-head run still says what runs.
"""
from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

from tqdm.auto import tqdm

from declip.pipeline.grid.plan import Cell
from declip.pipeline.grid.run_index import is_training
from declip.pipeline.grid.run_names import cell_name

#: Seconds between two looks at the training marks.
POLL_S = 2.0


class CellProgress:
    """Counts for one batch of cells: ``groups`` are its training runs, ``eval_runs`` the cell (run id) of each
    evaluation submitted, in any order. ``show``: draw a tqdm bar (the counts are kept either way) and refresh the
    ``training`` note every ``poll_s`` seconds."""

    def __init__(self, cells: list[Cell], groups: list[list[Cell]], eval_runs: list[str], show: bool = True,
                 poll_s: float = POLL_S):
        training = {c.run_id for group in groups for c in group}
        #: evaluations still to finish per cell that trains no more (its last one completes the cell)
        self.waiting = Counter(run for run in eval_runs if run not in training)
        self.total = len(cells)
        self.done = len(cells) - len(training) - len(self.waiting)
        self.counts = {"trained": 0, "evaluated": 0, "skipped": len(cells) - len(training), "failed": 0}
        self.to_train = [c for group in groups for c in group]
        self.training: list[str] = []
        self.bar = tqdm(total=self.total, initial=self.done, desc="grid cells", unit="cell", disable=not show)
        self.bar.set_postfix(self.counts)
        self._stop = threading.Event()
        self._watch = None
        if show and poll_s > 0 and self.to_train:
            self._watch = threading.Thread(target=self._poll, args=(poll_s,), name="grid-progress", daemon=True)
            self._watch.start()

    def refresh(self) -> list[str]:
        """Read which of the cells to train are training now; the bar's postfix names them. Returns their names."""
        now = [cell_name(c.train.source, c.train.decoder, c.train.train_sets, c.train.seed, c.run_id)
               for c in self.to_train if is_training(Path(c.train.out))]
        if now != self.training:
            self.training = now
            self.bar.set_postfix(self._postfix())
        return now

    def _postfix(self) -> dict:
        if not self.training:
            return self.counts
        more = f" +{len(self.training) - 1}" if len(self.training) > 1 else ""
        return {**self.counts, "training": f"{self.training[0]}{more}"}

    def _poll(self, every: float) -> None:
        while not self._stop.wait(every):
            self.refresh()

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
        self.bar.set_postfix(self._postfix())

    def close(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.join()
        self.bar.close()
