"""What a result depends on beyond its inputs: library versions and the code version, read in one place.

Why here: the store records library versions with every cached layer, views record the versions of the libraries
computing their pixels, and results record the code version; two copies of this had already drifted.
"""
from __future__ import annotations

import functools
import importlib.metadata as md
import subprocess
from collections.abc import Iterable
from pathlib import Path

#: The libraries every cached layer records (``versions`` in its metadata), in the order stores have recorded them.
CORE_LIBRARIES = ("declip", "torch", "open_clip_torch", "zarr", "numpy")


def package_version(name: str) -> str:
    """An installed distribution's version, or ``unknown``."""
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "unknown"


def library_versions(names: Iterable[str] | None = None) -> dict[str, str]:
    """``{name: version}``: with no names, :data:`CORE_LIBRARIES` in that order (a cached layer's ``versions``);
    with names, those in sorted order without repeats (what a view records of the libraries computing it).
    ``libjpeg`` / ``libjpeg_turbo`` are Pillow's JPEG codec (``PIL.features``), ``no`` when Pillow lacks turbo.

    Both orders are what stores written before this module recorded, byte for byte: a view's record is part of its
    dataset's identity, so a reordering would refuse every view cached so far.
    """
    ordered = CORE_LIBRARIES if names is None else sorted(set(names))
    return {name: _version(name) for name in ordered}


@functools.lru_cache(maxsize=None)
def _version(name: str) -> str:
    """Cached for the process: reading a distribution's metadata costs ~1 ms (a parse of its METADATA file), and
    extraction records five versions per layer it creates (40 ms of a 24-layer setup, measured)."""
    if name in ("libjpeg", "libjpeg_turbo"):
        from PIL import features

        if name == "libjpeg":
            return str(features.version("jpg"))
        return str(features.version_feature("libjpeg_turbo")) if features.check_feature("libjpeg_turbo") else "no"
    return package_version(name)


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """declip's version plus the git commit of the checkout it runs from, when there is one (``0.1.0+3a29fbc``)."""
    version = package_version("declip")
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{version}+{sha}" if sha else version
