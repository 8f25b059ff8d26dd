"""``declip predict``: run a trained or imported decoder with its backbone on images, folders or globs."""
from __future__ import annotations

import argparse

from declip.cli.devices import add_device_flag, resolved
from declip.cli.option_names import names


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predicted manipulation maps, panels and scores for new images",
                       description="Apply a decoder checkpoint (ours, or imported from DeCLIP) plus its frozen "
                       "backbone to images. Unreadable files are reported in scores.csv and skipped.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files, folders (searched recursively) or glob patterns")
    p.add_argument(*names("--ckpt"), dest="ckpt", required=True, metavar="DIR",
                   help="a run's best/ directory or an imported checkpoint directory")
    p.add_argument(*names("--out", "predict"), dest="out", required=True, metavar="DIR",
                   help="output folder: maps/ (probability maps as 8-bit PNG and float32 .npy), overlays/ (original | "
                   "map with a colour bar), scores.csv")
    p.add_argument("--backbone", metavar="KEY", help="override the backbone (needed for imported DeCLIP checkpoints "
                   "whose weights are not ViT-L-14@openai), e.g. ViT-L-14-quickgelu@/path/ViT-L-14.pt")
    add_device_flag(p)
    p.add_argument(*names("--batch-size"), dest="batch_size", type=int, default=16, metavar="N",
                   help="images per forward pass")
    p.add_argument("--threshold", type=float, default=0.5, metavar="P",
                   help="probability above which a pixel counts as manipulated (the panel's outline; fake_fraction "
                   "in scores.csv)")
    p.add_argument("--no-overlays", action="store_true", help="write only maps and scores, no panels")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from declip.pipeline.infer.predict import predict

    table = predict(args.ckpt, args.inputs, args.out, backbone=args.backbone, device=resolved(args.device),
                    batch_size=args.batch_size, threshold=args.threshold, overlays=not args.no_overlays)
    ok = table[table["status"] == "ok"]
    skipped = table[table["status"] != "ok"]
    panels = "" if args.no_overlays else f", original | map panels in {args.out}/overlays"
    print(f"{len(ok)} images → {args.out}/maps (8-bit PNG and float32 .npy){panels}; scores in {args.out}/scores.csv")
    for rec in skipped.itertuples():
        print(f"skipped {rec.path}: {rec.reason} ({rec.detail})")
    if table.attrs.get("random_weights"):
        print(f"NOTE: {table.attrs['source']}: this checkpoint was trained on (or is run with) a backbone with RANDOM "
              "weights, so the maps show the pipeline working, not a trained detector")
    return 0
