"""``declip grid --dry-run``: the grid's own cost plan, and (only when asked: ``--project-declip``) the same for
DeCLIP's full ablation at Dolos size on the rates measured for this grid.

Why the projection is opt-in: it is 28 lines about a study the user did not configure, on CPU rates it reads as
"1.74e+07 h", and it used to be appended to every dry run.
"""
from __future__ import annotations

import math
import time
from typing import Callable

from declip.core.errors import DeclipError
from declip.pipeline.grid.config import GridConfig
from declip.pipeline.grid.cost_plan import DEFAULT_EPOCHS, Rates, calibrate, declip_full_ablation, estimate, \
    grid_workload, render
from declip.pipeline.grid.plan import plan_cells

FULL_ABLATION_DISK_GB = 56.0  # a 64 GiB disk, less masks (2.6 GB at Dolos size), runs and slack


def dry_run(cfg: GridConfig, rates: Rates | None = None, epochs: int = DEFAULT_EPOCHS,
            project_declip: bool = False, say: Callable[[str], None] = lambda line: None) -> tuple[str, dict]:
    """The text and the figures of ``declip grid --dry-run``: this grid, then (``project_declip``) DeCLIP's full
    ablation. The grid's rows are read (and its train/test sets checked) before any calibration runs; ``say`` gets
    a line before the calibration starts and one with its duration (it takes from seconds on a tiny model to
    minutes for ViT-L/14 on a CPU, silent until now)."""
    work = grid_workload(cfg, epochs)
    if rates is None:
        say(f"calibrating: timing a few batches of the grid's backbone and decoders on {cfg.options.device} with "
            "random weights (--throughputs FILE skips this; bench/gpu.py --json writes one)")
        start = time.perf_counter()
        rates = calibrate(cfg)
        say(f"calibrated in {time.perf_counter() - start:.1f} s")
    own = estimate(work, rates)
    cells = [f"{c.train.source} {c.train.decoder} train={','.join(c.train.train_sets)} seed={c.train.seed} "
             f"-> runs/{c.run_id}" for c in plan_cells(cfg)]
    text, figures = render(own, cells), {"grid": own}
    if project_declip:
        try:
            full = full_ablation_plan(cfg, rates, epochs)
        except DeclipError as exc:  # the grid's own plan above always prints
            return text + f"\n\nDeCLIP's full ablation could not be planned: {exc}", figures
        text += "\n\n" + render(full)
        if math.isfinite(full["seconds"]["total"]):
            text += "\n   (the full ablation's rates are this device's, measured on the grid's models above)"
        figures["declip_full"] = full
    return text, figures


def full_ablation_plan(cfg: GridConfig, rates: Rates, epochs: int) -> dict:
    """DeCLIP's full ablation on the grid's disk budget (else a 64 GiB disk) in the grid's storage dtype. What does
    not fit is planned in int8 (RN50 layer1 in float16 is 60 GiB at Dolos size), then on a 64 GiB disk (a budget
    sized for a small grid cannot hold one ViT-L/14 layer of Dolos), each step said in a note: the projection never
    stops the grid's own plan from printing."""
    budget = int((cfg.max_store_gb if cfg.max_store_gb is not None else FULL_ABLATION_DISK_GB) * 2**30)
    disk = int(FULL_ABLATION_DISK_GB * 2**30)
    notes: list[str] = []
    for storage_dtype, limit in dict.fromkeys([(cfg.storage_dtype, budget), ("int8", budget), ("int8", disk)]):
        try:
            plan = estimate(declip_full_ablation(storage_dtype, limit, epochs), rates)
        except DeclipError as exc:
            notes.append(f"{storage_dtype} does not fit {limit / 2**30:.3g} GiB ({exc})")
            continue
        if notes:
            plan["notes"] += notes + [f"planned in {storage_dtype} on {limit / 2**30:.3g} GiB"]
        return plan
    raise DeclipError("; ".join(notes))
