"""What every layout adapter shares: the row and problem records, scan options, and folder-walking helpers.

An adapter is a module with ``NAME``, ``AUTO_RANK``, ``SUMMARY``, ``missing(root, opts) -> str | None`` (``None``
when ROOT has this layout, otherwise what was not found, for the "no layout matched" message),
``collect(root, opts) -> Collected`` and ``write_example(root)`` (a minimal tree of this layout with one inpainted
fake and one real image; the contract tests scan it).
Adapters only pair files by name; reading, hashing and checking the files is done once, in :mod:`pipeline.data.manifest`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

#: Image extensions we accept, compared case-insensitively (DeCLIP's walk is case-sensitive and skips ``.PNG``).
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"})


@dataclass(frozen=True)
class Candidate:
    """One manifest row before its files are read (no width, height or sha256 yet)."""

    dataset: str
    subset: str
    split: str
    group_id: str
    image_path: str
    mask_path: str
    label: int
    kind: str
    mask_polarity: str
    variant: str = ""


@dataclass(frozen=True)
class Problem:
    """A file that is kept out of the manifest, with a reason slug and a human detail."""

    path: str
    reason: str
    detail: str


@dataclass(frozen=True)
class ScanOptions:
    """User choices that adapters may honour; ``None`` means the layout's own default."""

    dataset: str | None = None
    polarity: str | None = None
    list_file: str | None = None
    allow_outside_root: bool = False
    unmasked_real: bool = False


@dataclass
class Collected:
    """What an adapter found: candidate rows plus structural problems (missing masks, empty folders)."""

    candidates: list[Candidate] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def is_image_name(name: str) -> bool:
    """True for a visible file name with an accepted image extension, in any letter case."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder`` (not recursive, like Dolos's listdir), sorted by name."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_file() and is_image_name(p.name)), key=lambda p: p.name)


def subdirs(folder: Path) -> list[Path]:
    """Visible sub-folders of ``folder``, sorted by name."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def rel(root: Path, path: Path | str) -> str:
    """``path`` relative to ``root`` with POSIX separators (``..`` allowed for list files that opt in)."""
    return Path(os.path.relpath(os.path.normpath(path), root)).as_posix()


def index_by(files: list[Path], key: str) -> dict[str, Path]:
    """Map lower-cased ``name`` or ``stem`` to the file; the first in sorted order wins on a clash."""
    out: dict[str, Path] = {}
    for p in files:
        out.setdefault(getattr(p, key).lower(), p)
    return out


def empty_folder(root: Path, folder: Path, what: str) -> Problem:
    """The ``empty-split-folder`` problem for a split folder that holds no image."""
    return Problem(rel(root, folder), "empty-split-folder", f"no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) "
                   f"in this {what} folder; remove it or add the images")


def example_pair(image: Path, mask: Path | None, fake_is_white: bool = True, seed: int = 0) -> None:
    """A 32×32 noise image and (when ``mask`` is given) its box mask, for a layout's ``write_example``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    image.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(image)
    if mask is not None:
        fake = np.zeros((32, 32), dtype=bool)
        fake[8:20, 10:24] = True
        mask.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(((fake if fake_is_white else ~fake) * 255).astype(np.uint8)).save(mask)
