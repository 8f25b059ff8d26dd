"""Near-duplicate images across splits (a re-encoded or resized copy leaks a test image into training).

Exact copies are caught by sha256; a re-saved JPEG or a resized copy is not. A 64-bit difference hash (dHash: the
sign of horizontal brightness steps on a 9×8 greyscale thumbnail) survives re-encoding and resizing; two images
whose hashes differ in at most :data:`MAX_DISTANCE` bits are reported. Pairs are found without comparing every pair:
split into ``MAX_DISTANCE + 1`` bands, two hashes that close agree exactly on at least one band (pigeonhole).
Reported, not removed: an inpainted fake and its own real source also hash close, which can be intended.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
from PIL import Image

from declip.pipeline.data.layouts.common import Problem

MAX_DISTANCE = 4
_BANDS = [(lo, min(lo + 13, 64)) for lo in range(0, 64, 13)]  # 5 bands: 13,13,13,13,12 bits


def dhash(image: Image.Image) -> int:
    """64-bit difference hash of an image."""
    small = np.asarray(image.convert("L").resize((9, 8), Image.BILINEAR), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return int(np.packbits(bits).view(">u8")[0])


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def near_pairs(hashes: list[int | None]) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, of hashes at most :data:`MAX_DISTANCE` bits apart (``None`` skipped)."""
    buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, h in enumerate(hashes):
        if h is not None:
            for band, (lo, hi) in enumerate(_BANDS):
                buckets[(band, (h >> lo) & ((1 << (hi - lo)) - 1))].append(i)
    found: set[tuple[int, int]] = set()
    for members in buckets.values():
        for a in range(len(members)):
            for b in range(a + 1, len(members)):
                pair = (members[a], members[b])
                if pair not in found and hamming(hashes[pair[0]], hashes[pair[1]]) <= MAX_DISTANCE:
                    found.add(pair)
    return sorted(found)


def near_duplicates_across_splits(rows: list[dict], hashes: dict[str, int | None]) -> list[Problem]:
    """``near-duplicate-across-splits`` for each row with a near-identical image in another split."""
    partners: dict[int, set[int]] = defaultdict(set)
    for i, j in near_pairs([hashes.get(r["image_path"]) for r in rows]):
        if rows[i]["split"] != rows[j]["split"]:
            partners[i].add(j)
            partners[j].add(i)
    problems = []
    for i in sorted(k for k, v in partners.items() if v):
        others = "; ".join(f"{rows[j]['image_path']} ({rows[j]['split'] or 'no split'})" for j in sorted(partners[i]))
        problems.append(Problem(rows[i]["image_path"], "near-duplicate-across-splits",
                                f"looks like {others[:400]} (perceptual hash within {MAX_DISTANCE} bits); kept in the "
                                "manifest: remove one copy if this is leakage"))
    return problems
