"""Layout adapters (``design.md`` §3.1): each turns one on-disk dataset convention into candidate manifest rows.

A layout is one module in this package with ``NAME``, ``AUTO_RANK``, ``SUMMARY``, ``POLARITY`` (its default mask
polarity, if it has one), ``missing(root, opts) -> str | None`` and ``collect(root, opts) -> Collected`` and ``write_example(root)`` (see :mod:`.common`); every such
module is registered automatically, so adding a layout is one new file. ``auto`` tries them by rising
``AUTO_RANK`` (specific layouts before generic ones) and takes the first that matches.
"""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from types import ModuleType

from declip.core.errors import DeclipError
from declip.core.registry import Registry
from declip.pipeline.data.layouts.common import Candidate, Collected, Problem, ScanOptions


def _register_layout_modules() -> None:
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "NAME") and hasattr(module, "collect"):
            LAYOUTS.add(module.NAME, module)


LAYOUTS: Registry[ModuleType] = Registry("layout", loader=_register_layout_modules)

__all__ = ["LAYOUTS", "Candidate", "Collected", "Problem", "ScanOptions", "auto_order", "choose_layout",
           "layout_choices"]


def auto_order() -> tuple[str, ...]:
    return tuple(sorted(LAYOUTS.names(), key=lambda name: LAYOUTS.get(name).AUTO_RANK))


def layout_choices() -> tuple[str, ...]:
    return (*auto_order(), "auto")


def choose_layout(root: Path, layout: str, opts: ScanOptions) -> tuple[str, list[str]]:
    """(layout name, layouts tried); raises :class:`DeclipError` saying what each tried layout was missing."""
    if layout not in layout_choices():
        raise DeclipError(f"unknown layout {layout!r}; choose one of {', '.join(layout_choices())}")
    names = auto_order() if layout == "auto" else (layout,)
    tried, reasons = [], []
    for name in names:
        tried.append(name)
        why = LAYOUTS.get(name).missing(root, opts)
        if why is None:
            return name, tried
        reasons.append(f"  {name}: {why}")
    head = f"{root} matches no layout (tried {', '.join(tried)})" if layout == "auto" else \
        f"{root} does not look like the {layout} layout"
    raise DeclipError(head + ":\n" + "\n".join(reasons) + "\npoint ROOT at the dataset folder, pick --layout, or write "
                      "an image,mask list file and use --layout list --list-file FILE")
