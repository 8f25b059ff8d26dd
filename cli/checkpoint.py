"""`declip import-checkpoint`: turn a released DeCLIP ``.pth`` into our decoder checkpoint directory.

The directory (``decoder.pt`` + ``config.json``) is the same one training writes, so an imported DeCLIP model is
evaluated, compared and exported by exactly the code paths our own models use.
"""
from __future__ import annotations

import argparse

from declip.cli.option_names import names
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import-checkpoint",
        help="convert a DeCLIP .pth into a decoder checkpoint directory",
        description="Read a released DeCLIP checkpoint (weights_only), keep its decoder (fc.*, att1.*, att2.*), "
        "check it against its backbone (layer exists, channels and grid match, no NaN), and write DIR/decoder.pt + "
        "DIR/config.json naming its feature source, so `declip predict/evaluate --ckpt DIR` need no other flag.",
    )
    p.add_argument("file", type=Path, metavar="FILE.pth", help="DeCLIP checkpoint")
    p.add_argument(*names("--out", "import-checkpoint"), dest="out", type=Path, required=True, metavar="DIR", help="output checkpoint directory")
    p.add_argument("--family", choices=("vit", "resnet", "fused"), help="backbone family (default: inferred from the weights)")
    p.add_argument("--backbone", help="the backbone it was trained on (default DeCLIP's: ViT-L-14@openai, "
                   "RN50@openai, or both for ViT+RN50); VIT_KEY,RESNET_KEY for a fused checkpoint; CLIP: names work")
    p.add_argument("--use-embedded-backbone", action="store_true",
                   help="RN50-only checkpoints: use the RN50 saved inside the checkpoint (its BatchNorm statistics "
                   "drifted during DeCLIP's training) instead of the stock OpenAI RN50")
    p.add_argument("--force", action="store_true", help="overwrite DIR if it already holds a checkpoint")
    p.set_defaults(func=import_checkpoint)


def import_checkpoint(args: argparse.Namespace) -> int:
    from declip.pipeline.infer.checkpoint_import import import_declip_checkpoint

    info = import_declip_checkpoint(args.file, args.out, backbone=args.backbone, family=args.family,
                                    use_embedded_backbone=args.use_embedded_backbone, force=args.force)
    print(_summary(args.file, args.out, info))
    return 0


def _summary(src: Path, out: Path, info: dict) -> str:
    grid = "x".join(map(str, info["grid"]))
    return "\n".join([
        f"imported {src}",
        f"  decoder        {info['decoder_type']} ({info['num_params']:,} parameters)",
        f"  feature layer  {info['feature_layer']}",
        f"  family         {info['family']} ({info['in_channels']} channels, {grid} grid)",
        f"  total steps    {info['total_steps']}",
        f"  source         {info['source']}",
        f"  ignored keys   {info['ignored_keys']} (embedded backbone weights"
        + ("; the RN50 among them is used, written to the checkpoint directory)" if "weights_files" in info
           and any(v == "embedded-backbone.pt" for v in info["weights_files"].values()) else ")"),
        f"wrote {out / 'decoder.pt'} and {out / 'config.json'}",
    ])
