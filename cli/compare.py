"""``declip compare``: model A against model B on the same test images of a grid (paired, seeds pooled)."""
from __future__ import annotations

import argparse

from declip.cli.option_names import names, split_values


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="is model A different from model B on the same test images? (paired)",
                       description="For every (train set, test set) both models were evaluated on: the mean per-image "
                       "difference A − B with its 95 % paired bootstrap interval and Wilcoxon's signed-rank p-value "
                       "(Holm-adjusted over the lines printed), seeds pooled; then in-domain and out-of-domain over "
                       "all those cells, each test image counted once.")
    p.add_argument("grid", metavar="GRID_OUT", help="a grid's folder (or its results.parquet)")
    p.add_argument("--a", required=True, metavar="SOURCE:DECODER",
                   help="model A: a feature source and decoder of the grid, e.g. ViT-L-14@openai/layer20:conv-20, "
                   "demo-vit-small/layer4:linear, layer4:linear (one backbone), or a baseline, baseline:all-fake")
    p.add_argument("--b", required=True, metavar="SOURCE:DECODER", help="model B, named like --a")
    p.add_argument("--metric", default="iou", metavar="NAME",
                   help="a per-image metric (`declip evaluate --list-metrics`, level image-pixel); default iou")
    p.add_argument("--split", default="test", metavar="SPLIT", help="the evaluations' split (default test)")
    p.add_argument(*names("--test-sets"), dest="test_sets", default=None, metavar="SUBSETS", action="append",
                   help="test sets, comma-separated or repeated (default: all)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from declip.pipeline.report.compare_models import compare_models

    test_sets = split_values(args.test_sets) or None
    print(compare_models(args.grid, args.a, args.b, args.metric, args.split, test_sets).text())
    return 0
