"""What ``declip predict`` draws per image: the original (with the p > threshold area outlined) beside the
probability map in a colour scale with its colour bar, titled with the image's scores.

Why not a red tint over the image: a tint in proportion to p made a real photo at p ≈ 0.3 everywhere look flagged;
a map on a fixed 0-1 colour scale beside the untouched original reads the way forensic tools (TruFor, MMFusion)
show their maps.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

#: Colour scale of the probability map (perceptually uniform, readable in grey).
CMAP = "magma"


def _edges(mask: np.ndarray) -> np.ndarray:
    pad = np.pad(mask, 1, mode="edge")
    inner = pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
    return mask & ~inner


def outlined(image: Image.Image, prob: np.ndarray, threshold: float) -> np.ndarray:
    """The image as RGB with the border of the p > ``threshold`` area drawn in yellow (the pixels untouched else)."""
    base = np.asarray(image.convert("RGB")).copy()
    base[_edges(prob > threshold)] = (255, 255, 0)
    return base


def save_panel(image: Image.Image, prob: np.ndarray, path: Path, threshold: float = 0.5, title: str = "") -> Path:
    """original | probability map (0-1, colour bar) side by side, as one PNG at about the image's resolution."""
    height, width = prob.shape
    scale = 4.0 / max(height, width)  # about 4 inches per panel, whatever the aspect
    fig, (left, right) = plt.subplots(1, 2, figsize=(2 * width * scale + 1.2, height * scale + 0.7),
                                      gridspec_kw={"wspace": 0.05})
    left.imshow(outlined(image, prob, threshold))
    left.set_title(f"image (outline: p > {threshold:g})", fontsize=8)
    shown = right.imshow(prob, cmap=CMAP, vmin=0.0, vmax=1.0, interpolation="nearest")
    right.set_title("P(manipulated)", fontsize=8)
    for ax in (left, right):
        ax.set_xticks([])
        ax.set_yticks([])
    bar = fig.colorbar(shown, ax=right, fraction=0.046, pad=0.02)
    bar.ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=8)
    dpi = max(72, min(200, int(max(height, width) / 4.0)))
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path
