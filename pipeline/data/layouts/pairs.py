"""Folder-pair layout: ``images/`` + ``masks/`` paired by file stem (also IMDLBenCo / IML-ViT ``Tp/`` + ``Gt/``).

Optional split folders: ``images/<split>/`` pairs with ``masks/<split>/``; images directly inside ``images/`` get
split "". The mask may have another extension than its image (``a.jpg`` ↔ ``a.png``). Polarity is
``--polarity`` (default ``fake_is_white``). An image without a mask is a ``missing-mask`` problem, unless
``unmasked_real`` says such images are authentic (then kind real, label 0, subset ``real``); masked images are kind
partial, subset ``fake``. Dataset = ``--dataset`` or ROOT's folder name; group_id = stem.
"""
from __future__ import annotations

from pathlib import Path

from declip.pipeline.data.layouts.common import Candidate, Collected, Problem, ScanOptions, empty_folder, index_by, list_images
from declip.pipeline.data.layouts.common import example_pair, rel, subdirs

NAME = "pairs"
AUTO_RANK = 30  # `--layout auto` tries layouts by rising rank (specific before generic)
SUMMARY = "images/ + masks/ by stem"
DEFAULT_POLARITY = "fake_is_white"
_FOLDER_PAIRS = (("images", "masks"), ("Tp", "Gt"))


def _folders(root: Path) -> tuple[Path, Path] | None:
    for images, masks in _FOLDER_PAIRS:
        if (root / images).is_dir() and (root / masks).is_dir():
            return root / images, root / masks
    return None


def missing(root: Path, opts: ScanOptions) -> str | None:
    """``None`` if ROOT has ``images/`` + ``masks/`` (or ``Tp/`` + ``Gt/``), else what is missing."""
    return None if _folders(root) else "no images/ + masks/ (or Tp/ + Gt/) folder pair in ROOT"


def _groups(root: Path, images: Path, masks: Path, out: Collected) -> list[tuple[str, list[Path], Path]]:
    """(split, image files, mask folder): the top folder's own files, then one group per split folder."""
    groups = [("", list_images(images), masks)]
    for split_dir in subdirs(images):
        files = list_images(split_dir)
        if not files:
            out.problems.append(empty_folder(root, split_dir, "split"))
        groups.append((split_dir.name, files, masks / split_dir.name))
    return [g for g in groups if g[1]]


def _row(root: Path, opts: ScanOptions, split: str, img: Path, mask: Path | None) -> Candidate | Problem:
    ds = opts.dataset or root.name
    polarity = opts.polarity or DEFAULT_POLARITY
    if mask is not None:
        return Candidate(ds, "fake", split, img.stem, rel(root, img), rel(root, mask), 1, "partial", polarity)
    if opts.unmasked_real:
        return Candidate(ds, "real", split, img.stem, rel(root, img), "", 0, "real", polarity)
    return Problem(rel(root, img), "missing-mask", "no mask with this stem in the masks folder; add it, or pass "
                   "--unmasked-real if images without a mask are authentic")


def collect(root: Path, opts: ScanOptions) -> Collected:
    """One row per image, paired with the mask of the same stem."""
    out = Collected()
    found = _folders(root)
    assert found is not None, "call missing() first"
    for split, files, mask_dir in _groups(root, *found, out):
        masks = list_images(mask_dir)
        by_stem = index_by(masks, "stem")
        clashes: dict[str, list[Path]] = {}
        for m in masks:
            clashes.setdefault(m.stem.lower(), []).append(m)
        for img in files:
            same = clashes.get(img.stem.lower(), [])
            if len(same) > 1:
                names = ", ".join(rel(root, m) for m in same)
                out.problems.append(Problem(rel(root, img), "ambiguous-mask", f"several masks share its stem ({names}); "
                                            "keep exactly one"))
                continue
            item = _row(root, opts, split, img, by_stem.get(img.stem.lower()))
            (out.candidates if isinstance(item, Candidate) else out.problems).append(item)
    return out


def write_example(root: Path) -> None:
    """Two masked images in ``images/`` + ``masks/`` (pairs has no real images unless ``unmasked_real``)."""
    for i in range(2):
        example_pair(root / "images" / f"a{i}.png", root / "masks" / f"a{i}.png", fake_is_white=True, seed=i)
