"""``runs/index.csv`` and ``by-name/`` links: readable names for a grid's hash-named run directories.

The hash (``runs/<TrainConfig.identity()>``) stays the identity, so resuming and deduplication are unchanged; the
index says which directory is which cell (source, decoder, train set, seed, status) and ``by-name/<name>`` links
point at them. The index is merged, not overwritten: a grid re-run with other settings in the same folder adds its
rows and updates the status of the ones it touched.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from declip.core.io import atomic_path
from declip.pipeline.grid.run_names import cell_name, source_parts

INDEX_COLUMNS = ["name", "run_id", "status", "backbone", "layer", "source", "decoder", "train_set", "seed", "path"]


def cell_status(run_dir: Path) -> str:
    """``trained`` (summary.json), ``failed`` (failed.json), ``running`` (a resumable last/) or ``pending``."""
    if (run_dir / "summary.json").exists():
        return "trained"
    if (run_dir / "failed.json").exists():
        return "failed"
    return "running" if (run_dir / "last").exists() else "pending"


def index_rows(cells) -> pd.DataFrame:
    """One row per grid cell (``cells``: :class:`declip.pipeline.grid.plan.Cell`), with its current status on disk."""
    rows = []
    for cell in cells:
        t = cell.train
        parts = source_parts(t.source)
        rows.append({
            "name": cell_name(t.source, t.decoder, t.train_sets, t.seed, cell.run_id), "run_id": cell.run_id,
            "status": cell_status(Path(t.out)), "backbone": "+".join(b for b, _ in parts),
            "layer": "+".join(layer for _, layer in parts), "source": t.source, "decoder": t.decoder,
            "train_set": ",".join(t.train_sets), "seed": t.seed, "path": f"runs/{cell.run_id}",
        })
    return pd.DataFrame(rows, columns=INDEX_COLUMNS)


def write_index(grid_out: str | Path, cells) -> Path:
    """Merge ``cells`` into ``<grid_out>/runs/index.csv`` and refresh the ``<grid_out>/by-name/`` links."""
    grid_out = Path(grid_out)
    path = grid_out / "runs" / "index.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    table = index_rows(cells)
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
