"""``declip report``: figures and an HTML/markdown page from a grid's results table."""
from __future__ import annotations

import argparse

from declip.cli.option_names import names


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write figures and an HTML page from a results table",
                       description="IoU by layer × decoder, the train × test generator matrix (ID/OOD averages), "
                       "per-image IoU distributions and predicted-mask overlays, linked from index.html.")
    p.add_argument("results", metavar="RESULTS", help="results.parquet written by `declip grid`, or the grid's folder")
    p.add_argument(*names("--out", "report"), dest="out", metavar="DIR",
                   help="output folder (default: report/ next to the results)")
    p.add_argument("--max-overlays", type=int, default=4, metavar="N",
                   help="test images in the overlay panel (saved maps, or recomputed from the checkpoint)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from declip.cli.grid import command_line, print_summary
    from declip.pipeline.report.report import write_report

    page = write_report(args.results, args.out, max_overlays=args.max_overlays, command=command_line())
    print_summary(args.results)
    print(f"report: {page}")
    return 0
