"""``declip grid``: a cached ablation grid (layer × decoder × train set × test set × seed) as one Prefect flow."""
from __future__ import annotations

import argparse

from pipeline.cli.option_names import names, split_values


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("grid", help="run or resume an ablation grid on cached features",
                       description="Extract missing layers once per backbone, train every cell on a bounded pool, "
                       "evaluate each on every test set, write results.parquet/csv. Re-running skips finished "
                       "cells; a failing cell is recorded and the others go on.")
    p.add_argument("--config", help="grid TOML (keys: see GridConfig in pipeline/grid.py); flags override it")
    p.add_argument("--store")
    p.add_argument("--dataset")
    p.add_argument("--manifest", help="extract missing layers from this manifest first")
    p.add_argument("--out")
    p.add_argument("--backbones", action="append", help="backbone keys, comma-separated or repeated")
    p.add_argument(*names("--layers"), dest="layers", action="append", help="layer names, comma-separated or repeated")
    p.add_argument(*names("--decoders"), dest="decoders", action="append", help="decoder names, comma-separated or repeated")
    p.add_argument(*names("--train-sets"), dest="train_sets", action="append", help="training generators, comma-separated or repeated")
    p.add_argument(*names("--test-sets"), dest="test_sets", action="append", help="test generators, comma-separated or repeated")
    p.add_argument("--seeds", action="append", help="seeds, comma-separated or repeated")
    p.add_argument("--width", type=float)
    p.add_argument(*names("--max-epochs"), dest="max_epochs", type=int)
    p.add_argument(*names("--patience"), dest="patience", type=int)
    p.add_argument(*names("--batch-size"), dest="batch_size", type=int)
    p.add_argument("--task-runner", choices=["threads", "dask"])
    p.add_argument("--max-workers", type=int)
    p.add_argument("--dask-address", help="scheduler address of an existing dask.distributed cluster")
    p.add_argument("--report", action="store_true", help="write the report after the grid")
    p.set_defaults(func=run)


def _overrides(args: argparse.Namespace) -> dict:
    lists = {"backbones": args.backbones, "layers": args.layers, "decoders": args.decoders,
             "train_sets": args.train_sets, "test_sets": args.test_sets}
    out = {k: split_values(v) for k, v in lists.items() if v}
    if args.seeds:
        out["seeds"] = [int(s) for s in split_values(args.seeds)]
    scalars = {"store": args.store, "dataset": args.dataset, "manifest": args.manifest, "out": args.out,
               "width": args.width, "max_epochs": args.max_epochs, "patience": args.patience,
               "batch_size": args.batch_size, "task_runner": args.task_runner, "max_workers": args.max_workers,
               "dask_address": args.dask_address}
    out.update({k: v for k, v in scalars.items() if v is not None})
    return out


def run(args: argparse.Namespace) -> int:
    from pipeline.runs.grid import GridConfig

    overrides = _overrides(args)
    cfg = GridConfig.from_toml(args.config, **overrides) if args.config else GridConfig.from_dict(overrides, "flags")
    from flows.runtime import prefect_defaults

    prefect_defaults()
    from flows.grid import run_grid

    result = run_grid(cfg.to_json())
    print(f"grid: {result['cells']} cells ({result['trained']} trained now, {result['skipped_cells']} already done), "
          f"{result['evaluated']} evaluations run; results in {result['results']}")
    for failure in result["failed"]:
        print(f"FAILED {failure.get('run') or failure.get('out')}: {failure.get('error')}")
    if args.report:
        from pipeline.runs.report import write_report

        print(f"report: {write_report(result['results'])}")
    return 1 if result["failed"] else 0
