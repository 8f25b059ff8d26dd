"""Layout adapters (``design.md`` §3.1): each turns one on-disk dataset convention into candidate manifest rows.

``auto`` tries them in :data:`AUTO_ORDER` (specific layouts before generic ones) and takes the first that matches.
"""
from __future__ import annotations

from pathlib import Path
from types import ModuleType

from core.errors import DeclipError
from pipeline.data.layouts import autosplice, dolos, listfile, pairs
from pipeline.data.layouts.common import Candidate, Collected, Problem, ScanOptions

ADAPTERS: dict[str, ModuleType] = {m.NAME: m for m in (dolos, autosplice, pairs, listfile)}
AUTO_ORDER: tuple[str, ...] = ("dolos", "autosplice", "pairs", "list")
LAYOUT_CHOICES: tuple[str, ...] = (*AUTO_ORDER, "auto")

__all__ = ["ADAPTERS", "AUTO_ORDER", "LAYOUT_CHOICES", "Candidate", "Collected", "Problem", "ScanOptions",
           "choose_layout"]


def choose_layout(root: Path, layout: str, opts: ScanOptions) -> tuple[str, list[str]]:
    """(layout name, layouts tried); raises :class:`DeclipError` saying what each tried layout was missing."""
    if layout not in LAYOUT_CHOICES:
        raise DeclipError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUT_CHOICES)}")
    names = AUTO_ORDER if layout == "auto" else (layout,)
    tried, reasons = [], []
    for name in names:
        tried.append(name)
        why = ADAPTERS[name].missing(root, opts)
        if why is None:
            return name, tried
        reasons.append(f"  {name}: {why}")
    head = f"{root} matches no layout (tried {', '.join(tried)})" if layout == "auto" else \
        f"{root} does not look like the {layout} layout"
    raise DeclipError(head + ":\n" + "\n".join(reasons) + "\npoint ROOT at the dataset folder, pick --layout, or write "
                      "an image,mask list file and use --layout list --list-file FILE")
