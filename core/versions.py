"""What a result depends on beyond its inputs: library versions and the code version, read in one place.

Why here: the store records library versions with every cached layer, views record the versions of the libraries
computing their pixels, and results record the code version; two copies of this had already drifted.
"""
from __future__ import annotations

import functools
import importlib.metadata as md
import subprocess
from pathlib import Path

#: The libraries whose versions every cached layer records.
CORE_LIBRARIES = ("declip", "torch", "open_clip_torch", "zarr", "numpy")


def package_version(name: str) -> str:
    """An installed distribution's version, or ``unknown``."""
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "unknown"


def library_versions(names: tuple[str, ...] | list[str] = CORE_LIBRARIES) -> dict[str, str]:
    """``{name: version}`` for distributions, plus ``libjpeg`` / ``libjpeg_turbo`` (Pillow's codecs) when named."""
    out: dict[str, str] = {}
    for name in sorted(set(names)) if names is not CORE_LIBRARIES else names:
        if name == "libjpeg":
            from PIL import features

            out[name] = str(features.version("jpg"))
        elif name == "libjpeg_turbo":
            from PIL import features

            out[name] = (str(features.version_feature("libjpeg_turbo"))
                         if features.check_feature("libjpeg_turbo") else "no")
        else:
            out[name] = package_version(name)
    return out


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
