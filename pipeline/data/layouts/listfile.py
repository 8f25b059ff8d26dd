"""List-file layout: ``image,mask`` lines (TruFor, CocoGlide, IMDLBenCo style), paths relative to ROOT.

The list is ``--list-file`` (relative to the working directory, else to ROOT) or ``ROOT/list.txt``. Lines are CSV:
a file name holding a comma is quoted (``"a,b.png",gt/a.png``); an unquoted one splits into extra fields, and the
``missing-file`` problem of such a line says to quote it. Blank lines and ``#`` comments are skipped, as is a header
line ``image,mask``. An empty mask field, a missing one, or ``Negative`` (any case) marks an authentic image (kind
real, label 0, subset ``real``); otherwise kind partial, subset ``fake``. Paths that leave ROOT (``..``, absolute
elsewhere, or through a symlink whose target is outside ROOT) are refused unless ``allow_outside_root``: a manifest
whose paths reach outside its root would not move with it. Polarity is ``--polarity`` (default ``fake_is_white``); there
is no split column, so split is "". Dataset = ``--dataset`` or ROOT's folder name; group_id = image stem.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

from declip.core.errors import DeclipError
from declip.pipeline.data.layouts.common import Candidate, Collected, Problem, ScanOptions, example_pair, rel

NAME = "list"
AUTO_RANK = 40  # `--layout auto` tries layouts by rising rank (specific before generic)
SUMMARY = "image,mask lines"
DEFAULT_POLARITY = "fake_is_white"
DEFAULT_LIST = "list.txt"
_AUTHENTIC = {"", "negative"}


def list_path(root: Path, opts: ScanOptions) -> Path:
    """Where the list file is: ``--list-file`` as given (or under ROOT), else ``ROOT/list.txt``."""
    if not opts.list_file:
        return root / DEFAULT_LIST
    given = Path(opts.list_file)
    return given if given.is_absolute() or given.exists() else root / given


def missing(root: Path, opts: ScanOptions) -> str | None:
    """``None`` if the list file exists, else its expected path."""
    path = list_path(root, opts)
    return None if path.is_file() else f"no list file {path} (pass --list-file)"


def _inside(root: Path, path: str) -> bool:
    return os.path.commonpath([str(root), path]) == str(root)


def _resolve(root: Path, text: str) -> tuple[str, str]:
    """(path relative to ROOT, "" if it stays inside ROOT else why not): ``..``, absolute, or a symlink out of ROOT."""
    full = os.path.normpath(text if os.path.isabs(text) else root / text)
    if not _inside(root, full):
        return rel(root, full), "outside ROOT"
    real = os.path.realpath(full)  # ROOT itself is already resolved (manifest.dataset_root)
    if not _inside(root, real):
        return rel(root, full), f"a symlink to {real}, outside ROOT"
    return rel(root, full), ""


def _parse(path: Path) -> list[tuple[int, list[str], str]]:
    """(line number, CSV fields, raw line) for each data line."""
    rows = []
    for number, raw in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            parts = [p.strip() for p in next(csv.reader([line], skipinitialspace=True, strict=True))]
        except csv.Error as exc:
            raise DeclipError(f"{path} line {number}: not a CSV line ({exc}): {line}; quote a file name that "
                              "holds a comma or a quote, e.g. \"img/a,b.png\",gt/a.png") from None
        if number == 1 and [p.lower() for p in parts[:2]] == ["image", "mask"]:
            continue
        rows.append((number, parts or [""], line))
    return rows


def _unquoted_comma(root: Path, parts: list[str], line: str, number: int, list_name: str) -> Problem | None:
    """A ``missing-file`` problem that says to quote, for a line whose file names were split at a comma: its image or
    mask does not exist and it has extra fields, or its first fields joined by a comma name an existing file."""
    image, mask = parts[0], parts[1] if len(parts) > 1 else ""
    gone = [p for p in (image, mask) if p and p.lower() not in _AUTHENTIC and not (root / p).exists()]
    if not gone:
        return None
    joined = [",".join(parts[:k]) for k in range(2, len(parts) + 1)]
    if len(parts) <= 2 and not any((root / j).is_file() for j in joined):
        return None
    return Problem(rel(root, os.path.normpath(root / image)), "missing-file",
                   f"{list_name} line {number} splits into {len(parts)} comma-separated fields ({line}) and {gone[0]} "
                   "does not exist: quote a file name that holds a comma, e.g. \"img/a,b.png\",\"gt/a,b.png\"")


def collect(root: Path, opts: ScanOptions) -> Collected:
    """One row per listed image; refuses paths outside ROOT unless allowed."""
    out, outside, seen = Collected(), [], set()
    path = list_path(root, opts)
    ds, polarity = opts.dataset or root.name, opts.polarity or DEFAULT_POLARITY
    for number, parts, line in _parse(path):
        comma = _unquoted_comma(root, parts, line, number, path.name)
        if comma is not None:
            out.problems.append(comma)
            continue
        image, mask = parts[0], parts[1] if len(parts) > 1 else ""
        img_rel, img_out = _resolve(root, image)
        authentic = mask.lower() in _AUTHENTIC
        mask_rel, mask_out = ("", "") if authentic else _resolve(root, mask)
        if (img_out or mask_out) and not opts.allow_outside_root:
            outside.append(f"  line {number}: {line} ({img_out or mask_out})")
            continue
        if img_rel in seen:
            out.problems.append(Problem(img_rel, "duplicate-entry", f"{path.name} line {number} lists it again"))
            continue
        seen.add(img_rel)
        stem = Path(img_rel).stem
        out.candidates.append(Candidate(ds, "real", "", stem, img_rel, "", 0, "real", polarity) if authentic else
                              Candidate(ds, "fake", "", stem, img_rel, mask_rel, 1, "partial", polarity))
    if outside:
        raise DeclipError(f"{path}: {len(outside)} line(s) point outside ROOT {root}:\n" + "\n".join(outside[:5]) +
                          "\nmove the files under ROOT, or pass --allow-outside-root if that is intended")
    return out


def write_example(root: Path) -> None:
    """``list.txt`` with one masked image and one authentic (``Negative``) image."""
    example_pair(root / "img" / "f0.png", root / "gt" / "f0.png", fake_is_white=True)
    example_pair(root / "img" / "r0.png", None, seed=1)
    (root / DEFAULT_LIST).write_text("img/f0.png,gt/f0.png\nimg/r0.png,Negative\n")
