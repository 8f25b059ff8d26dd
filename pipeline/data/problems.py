"""Per-file checks of a scan: read each file once, hash it, decode it, and turn anything wrong into a problem row.

Problem reasons (slugs): the image ones from :mod:`features.images` (``zero-byte``, ``missing-file``,
``not-an-image``, ``truncated``, ``decompression-bomb``, ``unreadable``), plus ``missing-mask``,
``mask-size-mismatch``, ``mask-not-binary``, ``empty-mask`` (a partial fake whose mask marks nothing fake),
``duplicate-across-splits``, ``near-duplicate-across-splits`` (reported, rows kept), ``empty-split-folder``,
``incomplete-tree`` (Dolos), ``ambiguous-mask`` (pairs) and ``duplicate-entry`` (list files). Rows with a problem are kept out of the manifest.

Mask tolerance (:func:`mask_binary_issue`): a pixel counts as black or white when it is within
:data:`EDGE_TOLERANCE` of 0 or 255 (JPEG noise); up to :data:`MAX_INTERMEDIATE_FRACTION` of the pixels may lie in
between (anti-aliased edges). More than that means the file is not a binary mask (a soft map, a label image), and
so does a mask whose only values are 0 and 1 (a 0/1 label map that every rule would read as all-real).
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from declip.features.images import ImageProblem, decode_mask_gray, decode_rgb, read_file_bytes
from declip.pipeline.data.layouts.common import Problem
from declip.pipeline.data.orientation import exif_orientation
from declip.pipeline.data.perceptual import dhash

PROBLEM_COLUMNS = ["path", "reason", "detail"]
EDGE_TOLERANCE = 32
MAX_INTERMEDIATE_FRACTION = 0.10


@dataclass(frozen=True)
class FileInfo:
    """What a scan keeps from reading one file."""

    width: int
    height: int
    sha256: str
    mask_issue: str | None = None
    white_fraction: float | None = None  # masks: share of pixels > 127 (the fake share under fake_is_white)
    dhash: int | None = None  # images: 64-bit difference hash, for near-duplicates
    orientation: int = 1  # images: EXIF orientation; width and height are as stored (pipeline.data.orientation)


def _values_text(values: np.ndarray) -> str:
    shown = [str(v) for v in values] if len(values) <= 12 else \
        [*map(str, values[:6]), "...", *map(str, values[-3:])]
    return f"{len(values)} distinct values: {', '.join(shown)}"


def mask_binary_issue(mask_u8: np.ndarray) -> str | None:
    """Why this greyscale mask is not binary-ish (see the module docstring), or ``None`` if it is."""
    counts = np.bincount(np.asarray(mask_u8, dtype=np.uint8).ravel(), minlength=256)
    values = np.flatnonzero(counts)
    if len(values) == 2 and values[0] == 0 and values[1] == 1:
        return f"{_values_text(values)}: a 0/1 label map, expected 0/255; re-save it with 255 for the marked pixels"
    middle = counts[EDGE_TOLERANCE + 1:255 - EDGE_TOLERANCE].sum() / max(int(counts.sum()), 1)
    if middle <= MAX_INTERMEDIATE_FRACTION:
        return None
    return (f"{_values_text(values)}; {middle:.1%} of pixels lie between {EDGE_TOLERANCE} and {255 - EDGE_TOLERANCE} "
            f"(at most {MAX_INTERMEDIATE_FRACTION:.0%} allowed for anti-aliased edges)")


def measure(path: Path, is_mask: bool) -> FileInfo | Problem:
    """Read ``path`` once: sha256 of its bytes, size as stored after decoding, and for masks the binary check.

    Pixels are read as stored (no EXIF rotation, for masks neither): masks are matched to their image's stored pixels
    (:mod:`declip.pipeline.data.orientation`); an image's EXIF orientation is recorded beside its size.
    """
    try:
        data = read_file_bytes(path)
        digest = hashlib.sha256(data).hexdigest()
        if is_mask:
            mask = decode_mask_gray(data, path, exif=False)
            return FileInfo(mask.shape[1], mask.shape[0], digest, mask_binary_issue(mask), float((mask > 127).mean()))
        image = decode_rgb(data, path, exif=False)
        return FileInfo(image.width, image.height, digest, dhash=dhash(image), orientation=exif_orientation(data))
    except ImageProblem as exc:
        return Problem(str(path), exc.reason, exc.detail)
    except Exception as exc:  # noqa: BLE001 - a decoder bug on one file must not stop the scan
        return Problem(str(path), "unreadable", f"{type(exc).__name__}: {exc}")


def duplicates_across_splits(rows: list[dict]) -> list[Problem]:
    """Rows whose image bytes (sha256) also appear in another split: train/test leakage; flags every row involved."""
    by_hash: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_hash[row["sha256"]].append(row)
    problems = []
    for group in by_hash.values():
        if len({r["split"] for r in group}) < 2:
            continue
        for row in group:
            others = [f"{r['image_path']} ({r['split'] or 'no split'})" for r in group if r is not row]
            problems.append(Problem(row["image_path"], "duplicate-across-splits",
                                    f"same bytes in split {row['split']!r} and " + "; ".join(others[:5])))
    return problems
