"""``declip demo``: the whole pipeline on the embedded demo dataset (the README's main command)."""
from __future__ import annotations

import argparse

from declip.cli.option_names import names, split_values
import time


def register(sub: argparse._SubParsersAction) -> None:
    from declip.pipeline.grid.demo import DemoConfig

    d = DemoConfig()
    p = sub.add_parser("demo", help="build the embedded demo data, extract once, run a grid, write the report",
                       description="Runs offline in minutes on 2 CPU cores with a RANDOM-weight ViT. With network "
                       "access, --backbone ViT-L-14@openai runs the real DeCLIP backbone.")
    p.add_argument("--out", default=d.out, metavar="DIR",
                   help="everything goes here: data/, manifest, store, grid/ and grid/report/index.html")
    p.add_argument("--backbone", default=d.backbone, metavar="KEY",
                   help="backbone key; the default is a small random-weight ViT (offline)")
    p.add_argument("--size", type=int, default=d.size, metavar="N", help="fake images per generator")
    p.add_argument("--seed", type=int, default=d.seed, metavar="N", help="seeds the data, the models and the batches")
    p.add_argument(*names("--layers"), dest="layers", default=",".join(d.layers), metavar="LAYERS",
                   help="comma-separated layers (a deeper --backbone gets an early/middle/late spread)")
    p.add_argument(*names("--decoders"), dest="decoders", default=",".join(d.decoders), metavar="DECODERS",
                   help="comma-separated decoders")
    p.add_argument("--width", type=float, default=d.width, metavar="X",
                   help="decoder channel multiplier (DeCLIP = 1.0; smaller for CPU)")
    p.add_argument(*names("--max-epochs"), dest="max_epochs", type=int, default=d.max_epochs, metavar="N",
                   help="epochs per grid cell at most")
    p.add_argument("--min-steps-per-epoch", type=int, default=d.min_steps_per_epoch, metavar="N",
                   help="optimizer steps per epoch at least (the demo's training sets are 24 images per generator)")
    p.add_argument("--controls", default=",".join(d.controls), metavar="SOURCES",
                   help="positive-control sources trained beside the backbone's layers ('' for none)")
    p.add_argument("--max-workers", type=int, default=d.max_workers, metavar="N", help="grid cells trained at once")
    p.add_argument("--task-runner", choices=["threads", "dask"], default=d.task_runner,
                   help="threads: a bounded pool here; dask: a local dask.distributed cluster")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from declip.flows.runtime import prefect_defaults
    from declip.pipeline.grid.demo import DemoConfig

    prefect_defaults(announce=True)
    from declip.flows.demo import run_demo

    cfg = DemoConfig(out=args.out, backbone=args.backbone, size=args.size, seed=args.seed,
                     layers=tuple(split_values(args.layers)), decoders=tuple(split_values(args.decoders)),
                     width=args.width, max_epochs=args.max_epochs, max_workers=args.max_workers,
                     task_runner=args.task_runner, min_steps_per_epoch=args.min_steps_per_epoch,
                     controls=tuple(c for c in args.controls.split(",") if c))
    start = time.perf_counter()
    result = run_demo(asdict(cfg))
    grid = result["grid"]
    print(f"demo finished in {time.perf_counter() - start:.0f} s: {result['scan']['rows']} images, "
          f"generators {', '.join(result['scan']['generators'])}; {grid['cells']} grid cells "
          f"({grid['trained']} trained now, {grid['skipped_cells']} already done), {len(grid['failed'])} failed")
    from declip.cli.grid import print_summary

    print_summary(grid["results"])
    if "random" in args.backbone:
        print("NOTE: the backbone weights are RANDOM (offline demo): the numbers show the pipeline, not CLIP. "
              "srm@fixed is the classical positive control: it should beat every baseline clearly.")
    print(f"results table: {grid['results']}")
    print(f"report: {result['report']}")
    return 1 if grid["failed"] else 0
