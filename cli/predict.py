"""``declip predict``: run a trained or imported decoder with its backbone on images, folders or globs."""
from __future__ import annotations

import argparse

from declip.cli.option_names import names


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predicted manipulation maps, overlays and scores for new images",
                       description="Apply a decoder checkpoint (ours, or imported from DeCLIP) plus its frozen "
                       "backbone to images. Unreadable files are reported in scores.csv and skipped.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (searched recursively) or glob patterns")
    p.add_argument(*names("--ckpt"), dest="ckpt", required=True, metavar="DIR", help="a run's best/ directory or an imported checkpoint directory")
    p.add_argument(*names("--out", "predict"), dest="out", required=True, metavar="DIR",
                   help="output folder: maps/ (probability PNGs), overlays/, scores.csv")
    p.add_argument("--backbone", metavar="KEY", help="override the backbone (needed for imported DeCLIP checkpoints whose "
                   "weights are not ViT-L-14@openai), e.g. ViT-L-14@/path/ViT-L-14.pt")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument(*names("--batch-size"), dest="batch_size", type=int, default=16, metavar="N", help="images per forward pass")
    p.add_argument("--threshold", type=float, default=0.5, metavar="P",
                   help="probability above which a pixel counts as manipulated (overlay outline; fake_fraction in scores.csv)")
    p.add_argument("--no-overlays", action="store_true", help="write only maps and scores, no overlay images")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from declip.pipeline.infer.predict import predict

    table = predict(args.ckpt, args.inputs, args.out, backbone=args.backbone, device=args.device,
                    batch_size=args.batch_size, threshold=args.threshold, overlays=not args.no_overlays)
    ok = table[table["status"] == "ok"]
    skipped = table[table["status"] != "ok"]
    print(f"{len(ok)} images → {args.out}/maps (and overlays), scores in {args.out}/scores.csv")
    for rec in skipped.itertuples():
        print(f"skipped {rec.path}: {rec.reason} ({rec.detail})")
    return 0
