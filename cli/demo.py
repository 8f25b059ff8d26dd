"""``declip demo``: the whole pipeline on the embedded demo dataset (the README's main command)."""
from __future__ import annotations

import argparse
import time

from declip.cli.config_flags import add_config_flags, given_values
from declip.cli.option_names import names, split_values


def register(sub: argparse._SubParsersAction) -> None:
    from declip.pipeline.grid.config import TASK_RUNNERS
    from declip.pipeline.grid.demo import DemoConfig
    from declip.pipeline.train.options import TrainOptions

    d = DemoConfig()
    p = sub.add_parser("demo", help="build the embedded demo data, extract once, run a grid, write the report",
                       description="Runs offline in minutes on 2 CPU cores with a RANDOM-weight ViT. With network "
                       "access, --backbone ViT-L-14@openai runs the real DeCLIP backbone.")
    p.add_argument(*names("--out", "demo"), dest="out", default=d.out, metavar="DIR",
                   help="everything goes here: data/, manifest, store, grid/ and grid/report/index.html")
    p.add_argument("--backbone", default=d.backbone, metavar="KEY",
                   help="backbone key; the default is a small random-weight ViT (offline)")
    p.add_argument("--size", type=int, default=d.size, metavar="N", help="fake images per generator")
    p.add_argument("--seed", type=int, default=d.seed, metavar="N", help="seeds the data, the models and the batches")
    p.add_argument(*names("--layers"), dest="layers", default=",".join(d.layers), metavar="LAYERS",
                   help="comma-separated layers (a deeper --backbone gets an early/middle/late spread)")
    p.add_argument(*names("--decoders"), dest="decoders", default=",".join(d.decoders), metavar="DECODERS",
                   help="comma-separated decoders")
    p.add_argument("--controls", default=",".join(d.controls), metavar="SOURCES",
                   help="positive-control sources trained beside the backbone's layers ('' for none)")
    p.add_argument("--max-workers", type=int, default=d.max_workers, metavar="N", help="grid cells trained at once")
    p.add_argument("--task-runner", choices=TASK_RUNNERS, default=d.task_runner,
                   help="threads: a bounded pool here; dask: a local dask.distributed cluster")
    add_config_flags(p, TrainOptions, "demo", defaults=d.options,
                     title="training options (`declip train`'s flags, with the demo's budget as defaults)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from declip.core.configs import walk
    from declip.flows.runtime import prefect_defaults
    from declip.pipeline.grid.demo import DemoConfig
    from declip.pipeline.train.options import TrainOptions, device_note

    cfg = DemoConfig.from_json(dict(
        out=args.out, backbone=args.backbone, size=args.size, seed=args.seed, layers=split_values(args.layers),
        decoders=split_values(args.decoders), controls=[c for c in args.controls.split(",") if c],
        max_workers=args.max_workers, task_runner=args.task_runner,
        **given_values(args, list(walk(TrainOptions)))))
    note = device_note(cfg.options)
    if note:
        print(f"NOTE: {note}", flush=True)
    prefect_defaults(announce=True)
    from declip.flows.demo import run_demo

    start = time.perf_counter()
    result = run_demo(cfg.to_json())
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
