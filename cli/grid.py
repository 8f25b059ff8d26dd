"""``declip grid``: a cached ablation grid (layer × decoder × train set × test set × seed) as one Prefect flow."""
from __future__ import annotations

import argparse

from declip.cli.option_names import names, split_values


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("grid", help="run or resume an ablation grid on cached features",
                       description="Extract missing layers once per backbone, train every cell on a bounded pool, "
                       "evaluate each on every test set, write results.parquet/csv. Re-running skips finished "
                       "cells; a failing cell is recorded and the others go on.")
    p.add_argument("--example-config", action=PrintExampleConfig,
                   help="print an annotated grid.toml (every key, its meaning and default) and exit")
    p.add_argument("--config", metavar="TOML",
                   help="grid file (`declip grid --example-config` prints an annotated one); flags override it")
    p.add_argument("--store", metavar="PATH|URL", help="feature store (TOML key: store)")
    p.add_argument("--dataset", metavar="NAME",
                   help="cached dataset name, as `declip data scan` and `declip store ls` print it (TOML: dataset)")
    p.add_argument("--manifest", metavar="PARQUET",
                   help="extract layers missing from the store from this manifest first (TOML: manifest)")
    p.add_argument("--out", metavar="DIR",
                   help="grid folder: runs/, runs/index.csv, results.parquet/csv, report/ (TOML: out)")
    p.add_argument("--backbones", action="append", metavar="KEYS",
                   help="backbone keys, comma-separated or repeated (TOML: backbones)")
    p.add_argument(*names("--layers"), dest="layers", action="append", metavar="LAYERS",
                   help="layer names, comma-separated or repeated (TOML: layers)")
    p.add_argument(*names("--decoders"), dest="decoders", action="append", metavar="DECODERS",
                   help="decoder names, comma-separated or repeated (TOML: decoders)")
    p.add_argument(*names("--train-sets"), dest="train_sets", action="append", metavar="SUBSETS",
                   help="training generators, comma-separated or repeated (TOML: train_sets)")
    p.add_argument(*names("--test-sets"), dest="test_sets", action="append", metavar="SUBSETS",
                   help="test generators, comma-separated or repeated (TOML: test_sets)")
    p.add_argument("--seeds", action="append", metavar="SEEDS",
                   help="training seeds, comma-separated or repeated (TOML: seeds)")
    p.add_argument("--width", type=float, metavar="X", help="decoder channel multiplier (TOML: width)")
    p.add_argument(*names("--max-epochs"), dest="max_epochs", type=int, metavar="N",
                   help="upper bound on epochs per cell (TOML: max_epochs)")
    p.add_argument(*names("--patience"), dest="patience", type=int, metavar="N",
                   help="plateau patience in epochs (TOML: patience)")
    p.add_argument(*names("--batch-size"), dest="batch_size", type=int, metavar="N",
                   help="training batch size (TOML: batch_size)")
    p.add_argument("--task-runner", choices=["threads", "dask"],
                   help="threads: a bounded pool here; dask: a dask.distributed cluster (TOML: task_runner)")
    p.add_argument("--max-workers", type=int, metavar="N",
                   help="cells trained at once, or LocalCluster workers (TOML: max_workers)")
    p.add_argument("--dask-address", metavar="ADDRESS",
                   help="scheduler of an existing dask.distributed cluster, e.g. tcp://scheduler:8786; implies "
                   "--task-runner dask (TOML: dask_address)")
    p.add_argument("--test-view", action="append", default=None, metavar="VIEW",
                   help="also evaluate every trained cell on this cached view, repeatable (e.g. jpeg:75, resize:0.5; "
                   "extracted for the test split first when a manifest is given) (TOML: test_views)")
    p.add_argument("--train-view", action="append", default=None, metavar="VIEW",
                   help="augmentation: training rows sample among these cached views each epoch, repeatable "
                   "(TOML: train_views)")
    p.add_argument("--augment-copies", type=int, metavar="K",
                   help="augmentation from K cached copies augment:KIND+copy:k (TOML: augment_copies, augment)")
    p.add_argument("--device", help="cpu or cuda[:N] (TOML: device)")
    p.add_argument("--storage-dtype", choices=["float16", "float32", "int8", "float8_e4m3"],
                   help="how extracted features are stored (TOML: storage_dtype)")
    p.add_argument("--max-store-gb", type=float, metavar="GB", help="disk budget for the grid's features: layers "
                   "run in groups that fit, each evicted after its cells; needs a manifest (TOML: max_store_gb)")
    p.add_argument("--keep-features", action="store_true",
                   help="with --max-store-gb: keep each group's features (TOML: keep_features)")
    p.add_argument("--precision", choices=["fp32", "bf16"], help="decoder training precision (TOML: precision)")
    p.add_argument("--dry-run", action="store_true", help="print the cost plan (cells, store bytes per layer and "
                   "view, encode/train/evaluate time, and DeCLIP's full ablation at Dolos size); run nothing")
    p.add_argument("--throughputs", metavar="JSON", help="with --dry-run: achieved FLOP/s (bench/gpu.py --json "
                   "writes them) instead of a short calibration on --device")
    p.add_argument("--epochs-estimate", type=int, default=None, metavar="N",
                   help="with --dry-run: epochs assumed per cell (default 25)")
    p.add_argument("--report", action="store_true", help="write the report (figures + index.html) after the grid")
    p.set_defaults(func=run)


class PrintExampleConfig(argparse.Action):
    """``--example-config``: print the annotated grid TOML and exit, like ``--help``."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        from declip.pipeline.grid.config import example_config

        print(example_config(), end="")
        parser.exit()


def _overrides(args: argparse.Namespace) -> dict:
    lists = {"backbones": args.backbones, "layers": args.layers, "decoders": args.decoders,
             "train_sets": args.train_sets, "test_sets": args.test_sets}
    out = {k: split_values(v) for k, v in lists.items() if v}
    views = {"test_views": args.test_view, "train_views": args.train_view}  # not comma-split: jitter:B,C,S,H
    out.update({k: v for k, v in views.items() if v})
    if args.seeds:
        out["seeds"] = [int(s) for s in split_values(args.seeds)]
    scalars = {"store": args.store, "dataset": args.dataset, "manifest": args.manifest, "out": args.out,
               "width": args.width, "max_epochs": args.max_epochs, "patience": args.patience,
               "batch_size": args.batch_size, "task_runner": args.task_runner, "max_workers": args.max_workers,
               "dask_address": args.dask_address, "device": args.device, "storage_dtype": args.storage_dtype,
               "max_store_gb": args.max_store_gb, "precision": args.precision,
               "keep_features": True if args.keep_features else None,
               "augment_copies": args.augment_copies}
    out.update({k: v for k, v in scalars.items() if v is not None})
    return out


def print_summary(results: str) -> None:
    """The per-feature ID/OOD lines beside the baselines, and a warning for every collapsed evaluation."""
    from pathlib import Path

    import pandas as pd

    from declip.pipeline.report.selection import format_summary, summary_table

    if not Path(results).exists():
        return
    table = pd.read_parquet(results)
    if table.empty or "iou" not in set(table["metric"]):
        return
    print(format_summary(summary_table(table)))
    decoders = table[(table["metric"] == "iou") & ~table["decoder"].astype(str).str.startswith("baseline")]
    collapsed = decoders[decoders["collapsed"].fillna(False).astype(bool)]
    if len(collapsed):
        print(f"WARNING: {len(collapsed)} of {len(decoders)} decoder evaluations COLLAPSED (near-constant maps); "
              "they are marked in the results table and the report and never chosen as best")
    if bool(table["random_weights"].fillna(False).astype(bool).any()):
        print("NOTE: some features come from a backbone with RANDOM weights")


def run(args: argparse.Namespace) -> int:
    from declip.pipeline.grid.config import GridConfig

    overrides = _overrides(args)
    cfg = GridConfig.from_toml(args.config, **overrides) if args.config else GridConfig.from_dict(overrides, "flags")
    if args.dry_run:
        from declip.pipeline.grid.cost_plan import DEFAULT_EPOCHS, Rates, dry_run

        rates = Rates.from_json(args.throughputs) if args.throughputs else None
        text, _ = dry_run(cfg, rates, args.epochs_estimate or DEFAULT_EPOCHS)
        print(text)
        return 0
    from declip.flows.runtime import prefect_defaults

    prefect_defaults(announce=True)
    from declip.flows.grid import run_grid

    result = run_grid(cfg.to_json())
    print(f"grid: {result['cells']} cells ({result['trained']} trained now, {result['skipped_cells']} already done), "
          f"{result['evaluated']} evaluations run; results in {result['results']}")
    for failure in result["failed"]:
        print(f"FAILED {failure.get('run') or failure.get('out')}: {failure.get('error')}")
    print_summary(result["results"])
    if args.report:
        from declip.pipeline.report.report import write_report

        print(f"report: {write_report(result['results'])}")
    return 1 if result["failed"] else 0
