"""P7: adding a view to a trained grid ÷ re-running the grid, through the grid flow, measured side by side.

Adding a view (``test_views = [V]`` on a finished grid) encodes the test split once under V and evaluates every
trained cell on it; nothing is retrained. Re-running the grid (what a cache without views needs for the perturbed
data) extracts every row and trains and evaluates every cell again. Also printed: one encode pass of the test split
alone (the design's expectation for the cost of a view) and, for reference, a re-run that reuses the cached clean
features (train + evaluate only).

The Prefect ephemeral API is started by a warm-up grid first, so neither side pays its start-up.
Usage: python bench/p7_views.py [--images 24] [--epochs 3] [--backbone demo-vit-small@random-0]
"""
from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

from common import report, workdir

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def grid_cfg(args, root: Path, store: Path, out: Path, dataset: str, **kw) -> dict:
    from declip.pipeline.grid.config import GridConfig

    gens = ("telea", "ns")
    return GridConfig.from_dict(dict(
        store=str(store), dataset=dataset, out=str(out), backbones=(args.backbone,), layers=("layer3", "layer7"),
        decoders=("linear", "conv-4"), train_sets=gens, test_sets=gens, manifest=str(root / "m.parquet"), width=0.125,
        max_epochs=args.epochs, patience=args.epochs, batch_size=16, min_steps_per_epoch=0, collapse_patience=0,
        **kw)).to_json()


def timed_grid(cfg: dict) -> tuple[float, dict]:
    from declip.flows.grid import run_grid

    start = time.perf_counter()
    result = run_grid(cfg)
    return time.perf_counter() - start, result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=24, help="fake images per generator")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--backbone", default="demo-vit-small@random-0")
    ap.add_argument("--view", default="jpeg:50")
    args = ap.parse_args()
    os.environ.setdefault("PREFECT_HOME", str(workdir("prefect")))
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "240")
    from declip.flows.runtime import prefect_defaults

    prefect_defaults()
    import torch

    torch.set_num_threads(2)
    from declip.pipeline.grid.demo_data import build_demo_dataset
    from declip.pipeline.data.manifest import scan_dataset, write_manifest
    from declip.pipeline.extract.extraction import ExtractConfig, run_extraction

    root = workdir("p7")
    data = build_demo_dataset(root / "data", seed=0, size=args.images)
    scanned = scan_dataset(data, "dolos", progress=False)
    write_manifest(scanned.manifest, root / "m.parquet", data, "dolos")
    dataset = str(scanned.manifest["dataset"].iloc[0])
    n_test = int((scanned.manifest["split"] == "test").sum())

    timed_grid(grid_cfg(args, root, root / "warm.zarr", root / "warm", dataset, baselines=False))  # Prefect up
    shutil.rmtree(root / "warm.zarr")
    trained, first = timed_grid(grid_cfg(args, root, root / "s.zarr", root / "grid", dataset))
    add, added = timed_grid(grid_cfg(args, root, root / "s.zarr", root / "grid", dataset, test_views=[args.view]))
    assert added["trained"] == 0 and not added["failed"], added
    rerun, again = timed_grid(grid_cfg(args, root, root / "s2.zarr", root / "grid2", dataset))
    reuse, _ = timed_grid(grid_cfg(args, root, root / "s.zarr", root / "grid3", dataset))
    start = time.perf_counter()
    layers = "layer3,layer7"
    run_extraction(ExtractConfig(manifest=str(root / "m.parquet"), store=str(root / "s.zarr"),
                                 backbone=args.backbone, layers=layers, view="noise:0.05", splits=("test",),
                                 progress=False))
    encode = time.perf_counter() - start

    print(f"grid: {first['cells']} cells, {len(scanned.manifest)} images ({n_test} in the test split), "
          f"{args.epochs} epochs, {args.backbone}; view {args.view}")
    print(f"  first run of the grid (extract + train + evaluate)   {trained:8.2f} s")
    print(f"  adding the view: {added['evaluated']} evaluations, {added['trained']} cells trained, encoded "
          + ", ".join(f"{e['dataset']} {e['images_encoded']} img" for e in added["extracted"]))
    report("P7 adding a view to a trained grid ÷ re-running the grid",
           ("add view (encode test split + evaluate all cells)", add),
           ("re-run grid (new store: extract + train + evaluate)", rerun), add / rerun, "≈ one test-split encode")
    print(f"  one encode pass of the test split alone (another view)   {encode:8.2f} s  "
          f"(add view ÷ encode pass {add / encode:.2f})")
    print(f"  re-run reusing cached clean features (train + evaluate) {reuse:8.2f} s  "
          f"(add view ÷ that {add / reuse:.3f}); re-run trained {again['trained']} cells")


if __name__ == "__main__":
    main()
