"""``declip evaluate``: score a trained (or imported DeCLIP) decoder on cached test sets."""
from __future__ import annotations

import argparse

from declip.cli.devices import add_device_flag, resolved
from declip.cli.option_names import names, split_values


def register(sub: argparse._SubParsersAction) -> None:
    from declip.features.view_ops import view_syntax

    p = sub.add_parser("evaluate", help="evaluate a decoder checkpoint on cached test sets",
                       description="Per-image metrics at native mask resolution (DeCLIP's protocol) plus the "
                       "whole metric registry; writes per_image and summary tables (parquet + CSV).")
    p.add_argument("--list-metrics", action=ListMetrics,
                   help="list every metric --metrics accepts, with its threshold and aggregation rules, and exit")
    p.add_argument("--store", required=True, metavar="PATH|URL", help="feature store holding the test features")
    p.add_argument("--dataset", required=True, metavar="NAME",
                   help="cached dataset name, as `declip data scan` and `declip store ls` print it")
    p.add_argument(*names("--ckpt"), dest="ckpt", required=True, metavar="DIR",
                   help="a run's best/ directory, or the --out of `declip import-checkpoint`")
    p.add_argument(*names("--test-sets"), dest="test_sets", required=True, metavar="SUBSETS",
                   help="test generator(s) (subsets of the dataset), comma-separated")
    p.add_argument("--source", metavar="BACKBONE/LAYER",
                   help="features to evaluate on (default: the ones the checkpoint was trained on)")
    p.add_argument("--split", default="test", help="manifest split to evaluate")
    p.add_argument(*names("--out", "evaluate"), dest="out", required=True, metavar="DIR",
                   help="results folder: per_image and summary tables (parquet + CSV); added to, never wiped")
    p.add_argument("--metrics", metavar="NAMES",
                   help="comma-separated metric names (default: all; `declip evaluate --list-metrics` lists them)")
    p.add_argument("--image-score", default="mean_prob", choices=["mean_prob", "mean_logit_sigmoid", "max_prob"],
                   help="how a probability map becomes one image score for the image-level metrics")
    p.add_argument(*names("--save-maps"), dest="save_maps", action="store_true",
                   help="write predicted probability maps as PNG at mask resolution (to OUT/<test set>/maps/)")
    p.add_argument(*names("--save-maps-to", "evaluate"), dest="maps_dir", metavar="DIR",
                   help="write the maps to DIR/<test set>/ instead (implies --save-maps)")
    p.add_argument("--no-reals", action="store_true", help="leave real images out (no image-level metrics)")
    p.add_argument("--view", action="append", default=None, metavar="VIEW",
                   help=f"evaluate on a cached view ({view_syntax()}, composed with +; see `declip extract --view`), "
                   "repeatable; `clean` is the unperturbed data; with several views each one's tables go to "
                   "OUT/<view>/")
    add_device_flag(p)
    p.add_argument("--no-flow", action="store_true", help="run in-process without Prefect (debugging)")
    p.set_defaults(func=run)


class ListMetrics(argparse.Action):
    """``--list-metrics``: print the metric registry and exit, like ``--help`` (no other flag needed)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(metrics_listing())
        parser.exit()


def metrics_listing(width: int = 100) -> str:
    """One entry per registered metric: name, level, scale, threshold and aggregation rule, description."""
    import textwrap

    from declip.pipeline.metrics.registry import describe_metrics

    lines = ["metrics (pass a comma-separated subset to --metrics; default: all)", ""]
    for m in describe_metrics().itertuples(index=False):
        lines.append(f"{m.metric}  [{m.level}; {m.scale}; threshold {m.threshold_rule}; {m.aggregation}]")
        lines.extend(textwrap.wrap(m.description, width, initial_indent="    ", subsequent_indent="    "))
    return "\n".join(lines)


#: The headline metrics ``declip evaluate`` prints (the tables hold every metric).
SHOWN = ("iou", "f1_fixed", "f1_best", "ap", "image_auc")


def percent_table(wide) -> str:
    """The headline metrics (columns of ``wide``) on one scale, percent, and a line saying so: the tables store IoU
    in percent (DeCLIP's headline) but F1, AP and AUC on 0-1, and printed side by side they read as one scale."""
    from declip.pipeline.metrics.registry import describe_metrics

    unit = set(describe_metrics().query("scale == 'unit'")["metric"])
    cols = [c for c in SHOWN if c in wide.columns]
    shown = wide[cols].copy()
    for c in cols:
        if c in unit:
            shown[c] = shown[c] * 100.0
    return ("metrics in % (IoU per image at p > 0.5, as DeCLIP reports it; F1, AP and AUC × 100 here, stored on 0-1 "
            "in the summary tables)\n" + shown.round(2).to_string())


def run(args: argparse.Namespace) -> int:
    from declip.features.views import parse_views
    from declip.pipeline.evaluate.evaluation import EvalConfig

    views = [v.name for v in parse_views(args.view)] or ["clean"]
    base = EvalConfig(
        store=args.store, checkpoint=args.ckpt, dataset=args.dataset, test_subsets=tuple(split_values(args.test_sets)),
        out=args.out, source=args.source, split=args.split,
        metrics=tuple(args.metrics.split(",")) if args.metrics else None, image_score_rule=args.image_score,
        include_reals=not args.no_reals, save_maps=args.save_maps or bool(args.maps_dir), maps_dir=args.maps_dir,
        device=resolved(args.device)).to_json()
    several = views != ["clean"]
    cfgs = [dict(base, view=v, out=f"{args.out}/{v}" if several else args.out,
                 maps_dir=f"{args.maps_dir}/{v}" if several and args.maps_dir else args.maps_dir) for v in views]
    if args.no_flow:
        from declip.flows.evaluate import evaluate_task

        rows = [r for cfg in cfgs for r in evaluate_task.fn(EvalConfig.from_json(cfg))]
    else:
        from declip.flows.runtime import prefect_defaults

        prefect_defaults(announce=True)
        from declip.flows.evaluate import run_evaluate

        rows = [r for cfg in cfgs for r in run_evaluate(cfg)]
    import pandas as pd

    table = pd.DataFrame(rows)
    index = ["view", "test_set"] if len(views) > 1 else "test_set"
    wide = table.pivot_table(index=index, columns="metric", values="value", aggfunc="first")
    if rows and rows[0].get("random_weights"):
        print("NOTE: these features come from a backbone with RANDOM weights")
    print(percent_table(wide))
    collapsed = table[table["collapsed"].fillna(False).astype(bool)].drop_duplicates("test_set") \
        if "collapsed" in table else table.iloc[:0]
    for rec in collapsed.itertuples():
        print(f"WARNING: predictions on {rec.test_set} COLLAPSED ({rec.collapse_reason}): the maps are near-constant, "
              "so these scores do not measure localization")
    print(f"per-image and summary tables in {args.out}")
    return 0
