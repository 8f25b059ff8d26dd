"""``declip grid``: a cached ablation grid (layer × decoder × train set × test set × seed) as one Prefect flow."""
from __future__ import annotations

import argparse

from declip.cli.config_flags import add_config_flags, given_values


def register(sub: argparse._SubParsersAction) -> None:
    from declip.pipeline.grid.config import GridConfig

    p = sub.add_parser("grid", help="run or resume an ablation grid on cached features",
                       description="Extract missing layers once per backbone, train every cell on a bounded pool, "
                       "evaluate each on every test set, write results.parquet/csv. Re-running skips finished "
                       "cells; a failing cell is recorded and the others go on. Every key of the grid file is also a "
                       "flag (the training options are `declip train`'s), and a flag overrides the file.")
    p.add_argument("--example-config", action=PrintExampleConfig,
                   help="print an annotated grid.toml (every key, its meaning and default) and exit")
    p.add_argument("--config", metavar="TOML",
                   help="grid file (`declip grid --example-config` prints an annotated one); flags override it")
    p.add_argument("--dry-run", action="store_true", help="print the cost plan (cells, evaluations, store bytes per "
                   "layer and view, encode/train/evaluate time) and, with task_runner = \"slurm\", the batch script "
                   "of the worker jobs; run nothing, submit nothing")
    p.add_argument("--project-declip", action="store_true", help="with --dry-run: also plan DeCLIP's full ablation "
                   "(24 ViT-L/14 + 4 RN50 layers × 5 decoders × 4 generators at Dolos size) on this grid's rates")
    p.add_argument("--throughputs", metavar="JSON", help="with --dry-run: achieved FLOP/s (bench/gpu.py --json "
                   "writes them) instead of a short calibration on --device")
    p.add_argument("--epochs-estimate", type=int, default=None, metavar="N",
                   help="with --dry-run: epochs assumed per cell (default 25)")
    p.add_argument("--report", action="store_true", help="write the report (figures + index.html) after the grid")
    add_config_flags(p, GridConfig, "grid", title="grid keys (each also a key of the --config file)")
    p.set_defaults(func=run)


class PrintExampleConfig(argparse.Action):
    """``--example-config``: print the annotated grid TOML and exit, like ``--help``."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        from declip.pipeline.grid.config import example_config

        print(example_config(), end="")
        parser.exit()


def grid_values(args: argparse.Namespace) -> tuple[dict, str]:
    """The grid's keys: the --config file's, overridden by the flags typed; and where they came from."""
    from declip.core.configs import walk
    from declip.pipeline.grid.config import GridConfig, read_grid_file

    raw = read_grid_file(args.config) if args.config else {}
    raw.update(given_values(args, list(walk(GridConfig))))
    return raw, args.config or "flags"


def print_summary(results: str) -> None:
    """The per-feature ID/OOD lines with intervals beside the baselines, the headline (chosen model and its margin
    over the best baseline, test-set sizes, the positive control's verdict, a random-weight layer check) and a
    warning for every kind of problem."""
    from declip.pipeline.report.summary import closing_lines

    for line in closing_lines(results):
        print(line)


def command_line() -> str:
    """The command as typed, for the report's provenance."""
    import shlex
    import sys

    return shlex.join(["declip", *sys.argv[1:]])


def slurm_plan(cfg) -> str:
    """What ``task_runner = "slurm"`` would submit: the job count and the batch script of each worker job."""
    from declip.pipeline.grid.cluster import job_script

    low, high = cfg.cluster.job_range
    jobs = f"{low}" if low == high else f"{low} to {high} (adaptive)"
    return (f"\nSLURM: {jobs} worker job(s), each submitted with this script (the scheduler's address is known once "
            f"the grid starts):\n\n{job_script(cfg.cluster, cfg.out)}")


def run(args: argparse.Namespace) -> int:
    from declip.pipeline.grid.config import GridConfig
    from declip.pipeline.train.options import TrainOptions, device_note

    from declip.pipeline.grid.plan import check_grid_data

    raw, source = grid_values(args)
    cfg = GridConfig.from_dict(raw, source)
    check_grid_data(cfg)  # a dataset without splits (or a misspelt generator) fails here, before a dry run or a flow
    note = device_note(TrainOptions.from_keys(raw))
    if note:  # before anything runs: an unset width on the CPU is a DeCLIP deviation
        print(f"NOTE: {note}", flush=True)
    if args.dry_run:
        from declip.pipeline.grid.cost_plan import DEFAULT_EPOCHS, Rates
        from declip.pipeline.grid.dry_run import dry_run

        rates = Rates.from_json(args.throughputs) if args.throughputs else None
        if cfg.task_runner == "slurm":  # first: it needs no calibration, which a login node may not manage
            print(slurm_plan(cfg).lstrip("\n") + "\n")
        text, _ = dry_run(cfg, rates, args.epochs_estimate or DEFAULT_EPOCHS, project_declip=args.project_declip,
                          say=lambda line: print(line, flush=True))
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

        print(f"report: {write_report(result['results'], command=command_line())}")
    return 1 if result["failed"] else 0
