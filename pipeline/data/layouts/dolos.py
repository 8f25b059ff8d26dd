"""Dolos layout (``datasets.md`` §1.1): ``<tree>/real/<split>``, ``<tree>/fake/<method>/...``.

ROOT may hold several trees (``celebahq/``, ``ffhq/``, or any other top-level folder that contains both ``real/``
and ``fake/``), or ROOT may itself be one tree (``.../celebahq``). Inside a tree:

- ``real/<split>/<name>``: kind real, label 0, no mask, subset ``real``.
- ``fake/<method>/<split>/<name>`` (a method folder without ``images/``, e.g. ``p2``): fully generated, kind full,
  label 1, no mask.
- ``fake/<method>/{images,masks}/<split>/<name>``: inpainted, kind partial; the mask has the same file name, or
  DeCLIP's ``.jpg`` → ``.png`` rule (same stem, ``.png``). Masks are black = fake (``fake_is_black``;
  ``--polarity`` overrides it).

The dataset is ``dolos-<tree>`` unless ``--dataset`` is given; with several trees a given name becomes
``<name>-<tree>`` so the trees stay apart. subset = method, group_id = file stem.
"""
from __future__ import annotations

from pathlib import Path

from declip.pipeline.data.layouts.common import Candidate, Collected, ScanOptions, empty_folder, index_by, list_images, rel
from declip.pipeline.data.layouts.common import Problem, example_pair, subdirs

NAME = "dolos"
AUTO_RANK = 10  # `--layout auto` tries layouts by rising rank (specific before generic)
SUMMARY = "<tree>/real|fake"
POLARITY = "fake_is_black"


def _is_tree(folder: Path) -> bool:
    return (folder / "real").is_dir() and (folder / "fake").is_dir()


def trees(root: Path) -> list[Path]:
    """The Dolos trees under ROOT, or ROOT itself when it is one."""
    return [root] if _is_tree(root) else [d for d in subdirs(root) if _is_tree(d)]


def _half_trees(root: Path) -> list[Path]:
    """Top-level folders with ``real/`` or ``fake/`` but not both: skipped trees, to be reported."""
    return [d for d in subdirs(root) if (d / "real").is_dir() != (d / "fake").is_dir()]


def missing(root: Path, opts: ScanOptions) -> str | None:
    """``None`` if ROOT holds a Dolos tree, else what is missing."""
    if trees(root):
        return None
    return "no folder with both real/ and fake/ (e.g. celebahq/real + celebahq/fake), neither in ROOT nor ROOT itself"


def _dataset_name(tree: Path, opts: ScanOptions, several: bool) -> str:
    if opts.dataset:
        return f"{opts.dataset}-{tree.name}" if several else opts.dataset
    return f"dolos-{tree.name}"


def _split_folders(root: Path, folder: Path, what: str, out: Collected) -> list[tuple[str, list[Path]]]:
    """(split, images) per split folder; empty ones become problems."""
    found = []
    splits = subdirs(folder)
    if not splits:
        out.problems.append(empty_folder(root, folder, what))
    for split_dir in splits:
        images = list_images(split_dir)
        if images:
            found.append((split_dir.name, images))
        else:
            out.problems.append(empty_folder(root, split_dir, what))
    return found


def _collect_unmasked(root: Path, folder: Path, ds: str, subset: str, pol: str, out: Collected) -> None:
    real = subset == "real"
    for split, images in _split_folders(root, folder, subset, out):
        for img in images:
            out.candidates.append(Candidate(ds, subset, split, img.stem, rel(root, img), "", 0 if real else 1,
                                            "real" if real else "full", pol))


def _find_mask(img: Path, by_name: dict[str, Path]) -> Path | None:
    return by_name.get(img.name.lower()) or by_name.get(img.stem.lower() + ".png")


def _collect_partial(root: Path, method: Path, ds: str, pol: str, out: Collected) -> None:
    for split, images in _split_folders(root, method / "images", method.name, out):
        mask_dir = method / "masks" / split
        by_name = index_by(list_images(mask_dir), "name")
        for img in images:
            mask = _find_mask(img, by_name)
            if mask is None:
                out.problems.append(Problem(rel(root, img), "missing-mask", f"no {rel(root, mask_dir / img.name)} "
                                            f"(nor {img.stem}.png); add the mask or remove the image"))
                continue
            out.candidates.append(Candidate(ds, method.name, split, img.stem, rel(root, img), rel(root, mask), 1,
                                            "partial", pol))


def collect(root: Path, opts: ScanOptions) -> Collected:
    """Candidate rows for every tree under ROOT."""
    out = Collected()
    found, pol = trees(root), opts.polarity or POLARITY
    if found != [root]:
        for half in _half_trees(root):
            has, lacks = ("real", "fake") if (half / "real").is_dir() else ("fake", "real")
            out.problems.append(Problem(rel(root, half), "incomplete-tree", f"{half.name}/ has {has}/ but no {lacks}/, "
                                        f"so none of its images were scanned; add {half.name}/{lacks}/ or move it out"))
    for tree in found:
        ds = _dataset_name(tree, opts, len(found) > 1)
        _collect_unmasked(root, tree / "real", ds, "real", pol, out)
        for method in subdirs(tree / "fake"):
            if (method / "images").is_dir():
                _collect_partial(root, method, ds, pol, out)
            else:
                _collect_unmasked(root, method, ds, method.name, pol, out)
    return out


def write_example(root: Path) -> None:
    """One tree: a real test image and one inpainted ``lama`` fake with its black-is-fake mask."""
    example_pair(root / "celebahq" / "real" / "test" / "r0.png", None, seed=1)
    example_pair(root / "celebahq" / "fake" / "lama" / "images" / "test" / "f0.png",
                 root / "celebahq" / "fake" / "lama" / "masks" / "test" / "f0.png", fake_is_white=False)
