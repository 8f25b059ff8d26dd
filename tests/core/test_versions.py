"""core.versions: the library versions every cached layer and every view records, byte for byte as before."""
from __future__ import annotations

import importlib.metadata as md
import json

from PIL import features

from declip.core.versions import CORE_LIBRARIES, library_versions
from tests.fixtures import legacy_store_library_versions, legacy_view_library_versions


def _installed(name: str) -> str:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "unknown"


def test_a_layer_records_its_core_libraries_in_their_historic_order():
    got = library_versions()
    assert list(got) == ["declip", "torch", "open_clip_torch", "zarr", "numpy"] == list(CORE_LIBRARIES)
    assert got == {name: _installed(name) for name in CORE_LIBRARIES}


def test_named_libraries_are_sorted_and_the_jpeg_codec_comes_from_pillow():
    got = library_versions(["torchvision", "Pillow", "libjpeg", "libjpeg_turbo", "Pillow", "numpy"])
    assert list(got) == ["Pillow", "libjpeg", "libjpeg_turbo", "numpy", "torchvision"]
    assert got["libjpeg"] == str(features.version("jpg"))
    turbo = features.check_feature("libjpeg_turbo")
    assert got["libjpeg_turbo"] == (str(features.version_feature("libjpeg_turbo")) if turbo else "no")
    assert got["Pillow"] == md.version("Pillow") and library_versions([]) == {}
    assert library_versions(["no-such-distribution"]) == {"no-such-distribution": "unknown"}


def test_records_are_byte_identical_to_the_replaced_copies():
    """What stores on disk hold came from the two copies this module replaced (kept verbatim in tests.fixtures)."""
    assert json.dumps(library_versions()) == json.dumps(legacy_store_library_versions())
    for names in (["Pillow", "libjpeg", "libjpeg_turbo"], ["torchvision", "torch", "Pillow"], ["numpy", "Pillow"],
                  ["torchvision", "torch", "Pillow", "libjpeg", "libjpeg_turbo", "numpy", "Pillow", "numpy"], []):
        assert json.dumps(library_versions(names)) == json.dumps(legacy_view_library_versions(names)), names
