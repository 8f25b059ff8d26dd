"""``runs/index.csv`` and ``by-name/`` links: readable names for a grid's hash-named run directories.

The hash (``runs/<TrainConfig.identity()>``) stays the identity, so resuming and deduplication are unchanged; the
index says which directory is which cell (source, decoder, train set, seed, status) and ``by-name/<name>`` links
point at them. The index is merged, not overwritten: a grid re-run with other settings in the same folder adds its
rows and updates the status of the ones it touched.

Status is read from the run directory: ``trained`` (summary.json), ``training`` (a live ``training.json``, written
while the cell's training run runs), ``failed`` (failed.json), ``interrupted`` (state.pt of unfinished epochs: a
re-run resumes from it) or ``pending``. The training run itself refreshes the index when it starts and ends
(:func:`training_marks`), so the file tells which cells train now; writers merge under a lock.
"""
from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from declip.core.io import atomic_path, atomic_write_text
from declip.pipeline.grid.run_names import cell_name, source_parts
from declip.store.locks import StoreLock

INDEX_COLUMNS = ["name", "run_id", "status", "backbone", "layer", "source", "decoder", "train_set", "seed", "path"]

#: In a cell's run directory while its training run runs: host, pid, start time.
TRAINING_MARKER = "training.json"


def is_training(run_dir: Path) -> bool:
    """A training marker whose process still runs (on another host it is trusted: no pid can be checked there)."""
    try:
        mark = json.loads((run_dir / TRAINING_MARKER).read_text())
    except (OSError, ValueError):
        return False
    if mark.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(mark["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, TypeError, ValueError):
        return True
    return True


def cell_status(run_dir: Path) -> str:
    """``trained``, ``training``, ``failed``, ``interrupted`` or ``pending`` (the module docstring says from what)."""
    if (run_dir / "summary.json").exists():
        return "trained"
    if is_training(run_dir):
        return "training"
    if (run_dir / "failed.json").exists():
        return "failed"
    return "interrupted" if (run_dir / "state.pt").exists() else "pending"


@contextmanager
def training_marks(cfgs):
    """Mark the run directories of ``cfgs`` (TrainConfigs of one training run in a grid's ``runs/``) as training
    and refresh the grid's index, for as long as the block runs; the marks go and the index is refreshed after,
    whatever happened (a killed process leaves a mark that :func:`is_training` sees is dead)."""
    mark = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()})
    dirs = [Path(c.out) for c in cfgs]
    for run_dir in dirs:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / TRAINING_MARKER, mark)
    grid_out = dirs[0].parent.parent if dirs and dirs[0].parent.name == "runs" else None
    try:
        if grid_out is not None:
            write_index(grid_out, cfgs)
        yield
    finally:
        for run_dir in dirs:
            (run_dir / TRAINING_MARKER).unlink(missing_ok=True)
        if grid_out is not None:
            write_index(grid_out, cfgs)


def index_rows(trains) -> pd.DataFrame:
    """One row per grid cell (``trains``: the cells' TrainConfigs), with its current status on disk."""
    rows = []
    for t in trains:
        parts = source_parts(t.source)
        run_id = t.identity()
        rows.append({
            "name": cell_name(t.source, t.decoder, t.train_sets, t.seed, run_id), "run_id": run_id,
            "status": cell_status(Path(t.out)), "backbone": "+".join(b for b, _ in parts),
            "layer": "+".join(layer for _, layer in parts), "source": t.source, "decoder": t.decoder,
            "train_set": ",".join(t.train_sets), "seed": t.seed, "path": f"runs/{run_id}",
        })
    return pd.DataFrame(rows, columns=INDEX_COLUMNS)


def write_index(grid_out: str | Path, trains) -> Path:
    """Merge the cells of ``trains`` (TrainConfigs) into ``<grid_out>/runs/index.csv`` and refresh the
    ``<grid_out>/by-name/`` links; several writers (training runs on a pool or cluster) merge one at a time."""
    grid_out = Path(grid_out)
    path = grid_out / "runs" / "index.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with StoreLock(path.parent / ".index.lock", timeout=600):
        table = index_rows(trains)
        if path.exists():
            old = pd.read_csv(path, dtype={"run_id": str})
            table = pd.concat([old[~old["run_id"].isin(table["run_id"])], table], ignore_index=True)
        with atomic_path(path) as tmp:
            table.to_csv(tmp, index=False)
    _link_names(grid_out, table)
    return path


def _link_names(grid_out: Path, table: pd.DataFrame) -> None:
    """``by-name/<name>`` -> ``../runs/<run_id>``; skipped where the file system has no symlinks."""
    links = grid_out / "by-name"
    links.mkdir(exist_ok=True)
    for row in table.itertuples(index=False):
        link = links / row.name
        if link.is_symlink() or link.exists():
            continue
        try:
            os.symlink(Path("..") / "runs" / row.run_id, link, target_is_directory=True)
        except OSError:  # e.g. Windows without developer mode: the index alone names the runs
            return
