"""Sizes of the DeCLIP differences a frozen cache cannot remove, measured on shared random weights (README table).

1. fp16 storage: conv-20 logits from fp32 layer-20 features vs the same features stored as float16.
2. GELU vs QuickGELU: layer-20 features of one ViT-L/14 weight set built with each activation (what the ``openai``
   tag built before QuickGELU was enforced).

The decoder is DeCLIP's conv-20 with its N(0, 0.02) init; its BatchNorm statistics are set from the batch itself so
that logits have the spread of a working model (an untrained eval-mode decoder outputs near-constant logits).
No trained weights exist offline, so these are random-weight figures; the README says so.

Usage: python bench/fidelity_gaps.py [--images 6] [--arch ViT-L-14] [--layer layer20]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch


def photos(n: int, size: int = 320) -> list:
    """Real photos shipped with scikit-image (the demo's sources), so features are not noise-driven."""
    from PIL import Image
    from skimage import data

    names = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina", "cat", "hubble_deep_field"]
    out = []
    for name in names[:n]:
        arr = getattr(data, name)()
        out.append(Image.fromarray(np.asarray(arr)[..., :3]).convert("RGB").resize((size, size)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--arch", default="ViT-L-14")
    ap.add_argument("--layer", default="layer20")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    from declip.decoders import build_decoder
    from declip.features.backbones import load_backbone
    from declip.features.preprocess import to_tensor
    from declip.features.taps import forward_layers

    quick = load_backbone(f"{args.arch}-quickgelu@random-0")
    images = photos(args.images)
    x = torch.stack([to_tensor(quick.recipe(), im) for im in images])
    f32, cls = forward_layers(quick, x, [args.layer])[args.layer]
    del quick
    gelu = load_backbone(f"{args.arch}@random-0")  # same seed, same weights, exact GELU
    g32, _ = forward_layers(gelu, x, [args.layer])[args.layer]
    del gelu
    rel = float((g32 - f32).norm() / f32.norm())
    print(f"GELU vs QuickGELU, {args.arch} {args.layer}, {args.images} images: relative L2 difference {rel:.4%}, "
          f"max |diff| {float((g32 - f32).abs().max()):.4f} (feature std {float(f32.std()):.4f})")

    dec = build_decoder("conv-20", in_channels=f32.shape[1], grid=tuple(f32.shape[-2:]), family="vit",
                        layer=args.layer, seed=0)
    for m in dec.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative: one pass sets the statistics of this batch
    with torch.no_grad():
        dec.train()(f32, cls)
        dec.eval()
        l32 = dec(f32, cls)[:, 0]
        l16 = dec(f32.half().float(), cls.half().float())[:, 0]
    diff = (l16 - l32).abs()
    flips = ((l16 > 0) != (l32 > 0)).float().mean()
    print(f"fp16 storage, conv-20 on {args.arch} {args.layer}: |logit diff| mean {float(diff.mean()):.5f}, "
          f"max {float(diff.max()):.5f} (logit std {float(l32.std()):.3f}); pixels flipping at p=0.5: "
          f"{float(flips):.4%} of {l32.numel()}")


if __name__ == "__main__":
    main()
