"""``declip evaluate``: score a trained (or imported DeCLIP) decoder on cached test sets."""
from __future__ import annotations

import argparse

from pipeline.cli.option_names import names, split_values


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a decoder checkpoint on cached test sets",
                       description="Per-image metrics at native mask resolution (DeCLIP's protocol) plus the "
                       "whole metric registry; writes per_image and summary tables (parquet + CSV).")
    p.add_argument("--store", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument(*names("--ckpt"), dest="ckpt", required=True,
                   help="a run's best/ directory, or the --out of `declip import-checkpoint`")
    p.add_argument(*names("--test-sets"), dest="test_sets", required=True, help="test generator(s), comma-separated")
    p.add_argument("--source", help="BACKBONE/LAYER (default: the one the checkpoint was trained on)")
    p.add_argument("--split", default="test")
    p.add_argument(*names("--out", "evaluate"), dest="out", required=True)
    p.add_argument("--metrics", help="comma-separated metric names (default: all; see `declip evaluate --list`)")
    p.add_argument("--image-score", default="mean_prob", choices=["mean_prob", "mean_logit_sigmoid", "max_prob"])
    p.add_argument(*names("--save-maps"), dest="save_maps", action="store_true",
                   help="write predicted probability maps as PNG at mask resolution")
    p.add_argument("--no-reals", action="store_true", help="leave real images out (no image-level metrics)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-flow", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pipeline.runs.evaluation import EvalConfig

    cfg = EvalConfig(
        store=args.store, checkpoint=args.ckpt, dataset=args.dataset, test_subsets=tuple(split_values(args.test_sets)),
        out=args.out, source=args.source, split=args.split,
        metrics=tuple(args.metrics.split(",")) if args.metrics else None, image_score_rule=args.image_score,
        include_reals=not args.no_reals, save_maps=args.save_maps, device=args.device).to_json()
    if args.no_flow:
        from flows.evaluate import evaluate_task

        rows = evaluate_task.fn(cfg)
    else:
        from flows.runtime import prefect_defaults

        prefect_defaults()
        from flows.evaluate import evaluate_flow

        rows = evaluate_flow(cfg)
    import pandas as pd

    table = pd.DataFrame(rows)
    wide = table.pivot_table(index="test_set", columns="metric", values="value", aggfunc="first")
    cols = [c for c in ("iou", "f1_fixed", "f1_best", "ap", "image_auc") if c in wide.columns]
    if rows and rows[0].get("random_weights"):
        print("NOTE: these features come from a backbone with RANDOM weights")
    print(wide[cols].round(4).to_string())
    print(f"per-image and summary tables in {args.out}")
    return 0
