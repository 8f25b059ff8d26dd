"""AutoSplice layout (``datasets.md`` §1.2).

``Forged_JPEG<q>/<id>_<k>.jpg`` pairs with ``Mask/<id>_mask.png``: strip the extension and cut the stem at the
**last** underscore (DeCLIP's rule; cutting at the first would break ids that contain an underscore). One row per
JPEG variant (``variant`` = ``jpeg<q>``), all pointing at the one shared mask; subset ``autosplice``; masks are white
= fake (``--polarity`` overrides it). ``Authentic/<id>.jpg`` rows are real (subset ``real``) with no mask.
group_id = id, so every variant and the authentic original of one id stay together when someone splits by group.

There is no official split (the authors used 80/20 and later 60/40 by id; DeCLIP tests on all of it), so every row
gets split ``test``.
"""
from __future__ import annotations

from pathlib import Path

from declip.pipeline.data.layouts.common import Candidate, Collected, Problem, ScanOptions, index_by, list_images, rel, subdirs
from declip.pipeline.data.layouts.common import example_pair

NAME = "autosplice"
AUTO_RANK = 20  # `--layout auto` tries layouts by rising rank (specific before generic)
SUMMARY = "Forged_JPEG*/ + Mask/"
POLARITY = "fake_is_white"
SPLIT = "test"
_FORGED_PREFIX = "forged_jpeg"


def _forged_dirs(root: Path) -> list[Path]:
    return [d for d in subdirs(root) if d.name.lower().startswith(_FORGED_PREFIX)]


def missing(root: Path, opts: ScanOptions) -> str | None:
    """``None`` if ROOT has ``Mask/`` and at least one ``Forged_JPEG*/``, else what is missing."""
    lacks = [name for name, ok in (("Mask/", (root / "Mask").is_dir()), ("Forged_JPEG*/", bool(_forged_dirs(root))))
             if not ok]
    return f"no {' and no '.join(lacks)} folder in ROOT" if lacks else None


def sample_id(stem: str) -> str | None:
    """``39406_1`` → ``39406``; ``a_b_2`` → ``a_b`` (last underscore); ``None`` when there is no underscore."""
    head, sep, _ = stem.rpartition("_")
    return head if sep and head else None


def _collect_forged(root: Path, folder: Path, ds: str, pol: str, masks: dict[str, Path], out: Collected) -> None:
    variant = "jpeg" + folder.name[len(_FORGED_PREFIX):]
    for img in list_images(folder):
        sid = sample_id(img.stem)
        mask = masks.get(f"{sid}_mask.png".lower()) if sid else None
        if mask is None:
            why = f"expected Mask/{sid}_mask.png" if sid else "the name has no _<k> suffix to cut off"
            out.problems.append(Problem(rel(root, img), "missing-mask", f"{why}; add the mask or remove the image"))
            continue
        out.candidates.append(Candidate(ds, "autosplice", SPLIT, sid, rel(root, img), rel(root, mask), 1, "partial",
                                        pol, variant))


def collect(root: Path, opts: ScanOptions) -> Collected:
    """Forged rows (one per JPEG variant) and authentic rows."""
    out = Collected()
    ds, pol = opts.dataset or "autosplice", opts.polarity or POLARITY
    masks = index_by(list_images(root / "Mask"), "name")
    for folder in _forged_dirs(root):
        _collect_forged(root, folder, ds, pol, masks, out)
    for img in list_images(root / "Authentic"):
        out.candidates.append(Candidate(ds, "real", SPLIT, img.stem, rel(root, img), "", 0, "real", pol))
    return out


def write_example(root: Path) -> None:
    """One id: its authentic original and one JPEG-75 forgery sharing the white-is-fake mask."""
    example_pair(root / "Authentic" / "7.png", None, seed=1)
    example_pair(root / "Forged_JPEG75" / "7_0.png", root / "Mask" / "7_mask.png", fake_is_white=True)
