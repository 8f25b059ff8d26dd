"""How a grid's fixed cost grows with its number of cells (issue 22, item 6), on threads and on the local SLURM.

A grid of N cells (linear heads, one epoch, the tiny random-weight ViT's features cached once, cells made by seeds
× layers, one test set) is run through the grid flow at two sizes. Measured in the flow's own process:
  * planning: ``start_grid`` (grid.json, the cells, which are finished) + ``training_groups``;
  * index: ``write_index`` (runs/index.csv); merge: ``write_grid_results`` (results collected and merged);
  * work: the time spent inside the training and evaluation tasks' bodies, which includes each cell's run
    directory, checkpoint and metrics files. On SLURM the bodies run in the worker job's process, out of reach of
    this one: the same cells' work measured on threads in this run stands in for it (same CPUs: the single-node
    cluster is this machine); without a threads run, the SLURM fixed cost is an upper bound (wall / N);
  * fixed cost per cell = (flow wall - work) / N: Prefect task submission and result hand-back, progress, the
    index and merge, planning; on SLURM the wall includes the worker jobs' start.
One task at a time (max_workers = 1) so wall - work is the orchestration and nothing overlaps it. Target: ≤ 0.3 s
per cell; a merge that grows linearly (merge per cell at N_large ÷ at N_small ≈ 1, quadratic would be N_large/N_small).

Usage: python bench/grid_cost.py [--cells 100,500] [--runners threads,slurm]
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from common import report, workdir

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LAYERS = ("layer0", "layer1")


class Clock:
    """Seconds accumulated per label by wrapping module functions; restored on exit.

    The wrappers capture only the function, its label and a plain dict: Dask pickles a Prefect task's function by
    value, with the module globals it uses, so a wrapper holding a lock or a module could not travel to a worker."""

    def __init__(self):
        self.totals: dict[str, float] = {}
        self._undo: list = []

    def wrap(self, module, name: str, label: str) -> None:
        real, totals = getattr(module, name), self.totals

        def timed(*a, **kw):
            t0 = time.perf_counter()
            try:
                return real(*a, **kw)
            finally:  # one dict update per call; the GIL keeps it whole across the runner's threads
                totals[label] = totals.get(label, 0.0) + time.perf_counter() - t0

        setattr(module, name, timed)
        self._undo.append((module, name, real))

    def restore(self) -> None:
        for module, name, real in reversed(self._undo):
            setattr(module, name, real)


def build_store(root: Path) -> tuple[Path, Path]:
    from declip.pipeline.data.manifest import scan_dataset, write_manifest
    from declip.pipeline.extract.extraction import run_extraction
    from tests.fixtures import extract_config, write_tiny_dolos

    write_tiny_dolos(root / "data")
    result = scan_dataset(root / "data", "dolos", progress=False)
    manifest = root / "manifest.parquet"
    write_manifest(result.manifest, manifest, root / "data", "dolos")
    store = root / "feats.zarr"
    run_extraction(extract_config(manifest, store, layers=",".join(LAYERS)))
    return manifest, store


def run_once(store: Path, out: Path, n_cells: int, task_runner: str, cluster: dict | None) -> dict:
    from declip.flows import grid as flows_grid
    from declip.pipeline.grid import cells as grid_cells
    from tests.fixtures import grid_json

    seeds = list(range((n_cells + len(LAYERS) - 1) // len(LAYERS)))
    kw = dict(layers=LAYERS, decoders=("linear",), seeds=seeds, max_workers=1, baselines=False,
              task_runner=task_runner)
    if cluster:
        kw["cluster"] = cluster
    cfg = grid_json(store, out, **kw)
    clock = Clock()
    clock.wrap(flows_grid, "start_grid", "planning")
    clock.wrap(flows_grid, "training_groups", "planning")
    clock.wrap(flows_grid, "write_index", "index")
    clock.wrap(flows_grid, "write_grid_results", "merge")
    clock.wrap(grid_cells, "train_cells", "work")
    clock.wrap(grid_cells, "evaluate_cell", "work")
    try:
        t0 = time.perf_counter()
        result = flows_grid.run_grid(cfg)
        wall = time.perf_counter() - t0
    finally:
        clock.restore()
    assert not result["failed"], result["failed"][:3]
    cells = len(seeds) * len(LAYERS)
    t = clock.totals
    return {"cells": cells, "wall": wall, **{k: t.get(k, 0.0) for k in ("planning", "index", "merge", "work")}}


def show(label: str, r: dict) -> None:
    n = r["cells"]
    fixed = (r["wall"] - r["work"]) / n
    print(f"{label:>8s} N={n:4d}: wall {r['wall']:7.1f} s = {r['wall'] / n:.3f} s/cell; in-task work "
          f"{r['work'] / n:.3f} s/cell; fixed {fixed:.3f} s/cell (planning {r['planning']:.2f} s, index "
          f"{r['index']:.2f} s, merge {r['merge']:.2f} s = {1e3 * r['merge'] / n:.2f} ms/cell)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", default="100,500", help="two grid sizes, small,large")
    ap.add_argument("--runners", default="threads", help="threads and/or slurm (the local SLURM cluster of "
                    "tests/cluster/slurm.sh), comma-separated")
    args = ap.parse_args()
    small, large = (int(x) for x in args.cells.split(","))
    root = workdir("grid-cost")
    logging.getLogger("declip").setLevel(logging.ERROR)  # one "few steps per epoch" warning per cell otherwise
    os.environ.setdefault("PREFECT_HOME", str(root / "prefect"))
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from declip.flows.runtime import prefect_defaults

    prefect_defaults()
    from prefect.testing.utilities import prefect_test_harness

    _, store = build_store(root)
    wanted = args.runners.split(",")
    runners: list[tuple[str, dict | None]] = [("threads", None)] if "threads" in wanted else []
    if "slurm" in wanted:
        from tests.cluster.services import ServiceUnavailable, slurm_cluster_table, start_slurm

        try:
            node = start_slurm()
            runners.append(("slurm", slurm_cluster_table(node, root / "slurm-logs", "declip-bench-cost", jobs=1)))
        except ServiceUnavailable as err:
            print(f"no SLURM here: {err}")
    with prefect_test_harness(server_startup_timeout=120):
        work_on_threads: dict[int, float] = {}
        for runner, cluster in runners:
            rs = [run_once(store, root / f"{runner}-{n}", n, runner, cluster) for n in (small, large)]
            for r in rs:
                if runner == "threads":
                    work_on_threads[r["cells"]] = r["work"]
                elif not r["work"]:  # measured in the workers' processes, not here
                    r["work"] = work_on_threads.get(r["cells"], 0.0)
            for r in rs:
                show(runner, r)
            a, b = rs
            fixed = [(r["wall"] - r["work"]) / r["cells"] for r in rs]
            report(f"{runner}: fixed cost per cell (s), N={b['cells']} vs N={a['cells']}",
                   (f"N={b['cells']}", fixed[1]), (f"N={a['cells']}", fixed[0]), fixed[1] / fixed[0],
                   "≤ 0.3 s per cell; ratio ≈ 1 (flat)")
            report(f"{runner}: results merge per cell (ms), N={b['cells']} vs N={a['cells']}",
                   (f"N={b['cells']}", 1e3 * b["merge"] / b["cells"]), (f"N={a['cells']}", 1e3 * a["merge"] / a["cells"]),
                   (b["merge"] / b["cells"]) / (a["merge"] / a["cells"]),
                   f"≈ 1 linear; {b['cells'] / a['cells']:.0f} would be quadratic")


if __name__ == "__main__":
    main()
