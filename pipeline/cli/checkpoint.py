"""`declip import-checkpoint`: turn a released DeCLIP ``.pth`` into our decoder checkpoint directory.

The directory (``decoder.pt`` + ``config.json``) is the same one training writes, so an imported DeCLIP model is
evaluated, compared and exported by exactly the code paths our own models use.
"""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from core.errors import DeclipError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import-checkpoint",
        help="convert a DeCLIP .pth into a decoder checkpoint directory",
        description="Read a released DeCLIP checkpoint (weights_only), keep its decoder (fc.*, att1.*, att2.*), "
        "ignore the embedded CLIP weights, and write DIR/decoder.pt + DIR/config.json.",
    )
    p.add_argument("file", type=Path, metavar="FILE.pth", help="DeCLIP checkpoint")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output checkpoint directory")
    p.add_argument("--family", choices=("vit", "resnet", "fused"), help="backbone family (default: inferred from the weights)")
    p.add_argument("--force", action="store_true", help="overwrite DIR if it already holds a checkpoint")
    p.set_defaults(func=import_checkpoint)


def import_checkpoint(args: argparse.Namespace) -> int:
    from decoders import load_declip_checkpoint, save_decoder

    if (args.out / "decoder.pt").exists() and not args.force:
        raise DeclipError(f"{args.out / 'decoder.pt'} already exists; pass --force to overwrite or pick another --out")
    decoder, info = load_declip_checkpoint(args.file, family=args.family)
    extra = {
        "feature_layer": info["feature_layer"], "source": "declip", "source_file": str(args.file),
        "source_sha256": sha256_file(args.file), "total_steps": info["total_steps"],
    }
    save_decoder(decoder, args.out, extra)
    print(_summary(args.file, args.out, info))
    return 0


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _summary(src: Path, out: Path, info: dict) -> str:
    grid = "x".join(map(str, info["grid"]))
    return "\n".join([
        f"imported {src}",
        f"  decoder        {info['decoder_type']} ({info['num_params']:,} parameters)",
        f"  feature layer  {info['feature_layer']}",
        f"  family         {info['family']} ({info['in_channels']} channels, {grid} grid)",
        f"  total steps    {info['total_steps']}",
        f"  ignored keys   {info['ignored_keys']} (embedded backbone weights; features come from the store)",
        f"wrote {out / 'decoder.pt'} and {out / 'config.json'}",
    ])
