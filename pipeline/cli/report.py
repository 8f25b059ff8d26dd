"""``declip report``: figures and an HTML/markdown page from a grid's results table."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write figures and an HTML page from a results table",
                       description="IoU by layer × decoder, the train × test generator matrix (ID/OOD averages), "
                       "per-image IoU distributions and predicted-mask overlays, linked from index.html.")
    p.add_argument("results", metavar="RESULTS", help="results.parquet written by `declip grid`")
    p.add_argument("--out", metavar="DIR", help="output folder (default: report/ next to the results)")
    p.add_argument("--max-overlays", type=int, default=6, metavar="N",
                   help="predicted-mask overlays shown per model (needs save_maps in the grid)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from pipeline.runs.report import best_model, domain_averages, write_report

    page = write_report(args.results, args.out, max_overlays=args.max_overlays)
    table = pd.read_parquet(args.results)
    iou = table[table["metric"] == "iou"]
    decoder, layer = best_model(iou)
    id_avg, ood_avg = domain_averages(iou[(iou["decoder"] == decoder) & (iou["layer"] == layer)])
    if bool(iou["random_weights"].fillna(False).astype(bool).any()):
        print("NOTE: backbone weights are RANDOM")
    print(f"best {decoder} @ {layer}: in-domain IoU {id_avg:.2f}, out-of-domain IoU {ood_avg:.2f}")
    print(f"report: {page}")
    return 0
