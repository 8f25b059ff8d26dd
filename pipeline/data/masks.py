"""Mask polarity and the two mask targets DeCLIP uses (soft 256² for training, binary native for evaluation).

Datasets disagree on which colour means "fake": Dolos masks are black (0) = fake, AutoSplice masks are white = fake.
Every manifest row records its ``mask_polarity``; :func:`fake_is_white` normalises to 255 = fake before anything
else touches the mask.

Peer code uses three different binarisation rules (``datasets.md`` §1.1), which disagree on anti-aliased edges:

1. Dolos evaluation: a pixel is real only if it is exactly white (255); any grey counts as fake.
2. Dolos Patches training: greyscale, nearest resize, value/255 < 0.5 means fake.
3. DeCLIP: greyscale, inverted to fake = white; for training resized bilinearly to 256×256 and used as soft BCE
   targets; for evaluation kept at native resolution and binarised at value/255 > 0.5 (original < 128 = fake).

We implement rule 3 (DeCLIP's), so our numbers are comparable with the DeCLIP paper: :func:`soft_target_256` and
:func:`binary_native`. Record ``BINARISATION_RULE`` with every evaluation result.
"""
from __future__ import annotations

from typing import Literal, get_args

import numpy as np
from PIL import Image

MaskPolarity = Literal["fake_is_white", "fake_is_black"]
POLARITIES: tuple[str, ...] = get_args(MaskPolarity)

#: How :func:`binary_native` decides; stored beside metrics so a reader knows which of the three rules was used.
BINARISATION_RULE = "declip: fake_is_white value/255 > 0.5 at native resolution"
TARGET_SIZE = 256


def check_polarity(polarity: str) -> MaskPolarity:
    """Return ``polarity`` if it is one of :data:`POLARITIES`, else raise ``ValueError`` naming the valid ones."""
    if polarity not in POLARITIES:
        raise ValueError(f"unknown mask polarity {polarity!r}; expected one of {', '.join(POLARITIES)}")
    return polarity  # type: ignore[return-value]


def fake_is_white(mask_u8: np.ndarray, polarity: str) -> np.ndarray:
    """Greyscale uint8 (H, W) mask with 255 = fake, whatever the file's polarity (why: one convention downstream)."""
    mask = np.asarray(mask_u8)
    if mask.dtype != np.uint8 or mask.ndim != 2:
        raise ValueError(f"expected a uint8 (H, W) mask, got {mask.dtype} {mask.shape}")
    if check_polarity(polarity) == "fake_is_black":
        return 255 - mask
    return mask


def soft_target_256(mask_fake_white_u8: np.ndarray) -> np.ndarray:
    """DeCLIP's training target: PIL bilinear (antialiased) resize to 256×256, soft edge values kept, uint8."""
    im = Image.fromarray(np.ascontiguousarray(mask_fake_white_u8), "L")
    if im.size == (TARGET_SIZE, TARGET_SIZE):
        return np.array(im)
    return np.array(im.resize((TARGET_SIZE, TARGET_SIZE), Image.Resampling.BILINEAR))


def binary_native(mask_fake_white_u8: np.ndarray) -> np.ndarray:
    """DeCLIP's evaluation mask: bool (H, W) at native size, value/255 > 0.5 (i.e. value >= 128)."""
    return np.asarray(mask_fake_white_u8) > 127


def empty_mask(h: int, w: int) -> np.ndarray:
    """All-real uint8 (H, W) mask (zeros in fake_is_white), used for real images, which have no mask file."""
    return np.zeros((int(h), int(w)), dtype=np.uint8)
