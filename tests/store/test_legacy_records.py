"""Stores written before core.versions replaced the two ``library_versions`` copies still open: what those copies
recorded (kept verbatim in ``tests.fixtures``) is what a view's identity and a layer's record hold today."""
from __future__ import annotations

import json

import pytest

from declip.core.errors import DeclipError
from declip.features.views import View
from declip.store.feature_store import FeatureStore
from tests.fixtures import legacy_store_library_versions, legacy_view_library_versions
from tests.store.store_fixtures import BB_A, DS, make_meta, new_store


def test_a_view_registered_by_the_replaced_versions_code_still_opens(tmp_path):
    """A view's record (library versions included) is its dataset's identity: one written before core.versions
    must equal today's, or every cached view would be refused. Another JPEG codec still is."""
    view = View.parse("jpeg:75+noise:0.05")
    libs = [lib for op in view.ops for lib in op.spec.libraries]
    written_before = dict(view.record(), libraries=legacy_view_library_versions(libs))
    store, samples = new_store(tmp_path / "s.zarr", n=6, block_rows=4)
    key = f"{DS}@{view.name}"
    store.create_dataset(key, samples, "/data", "list", block_rows=4, view=written_before, masks_of=DS)
    again = FeatureStore(str(tmp_path / "s.zarr"))
    again.create_dataset(key, samples, "/data", "list", block_rows=4, view=view.record(), masks_of=DS)  # no refusal
    assert json.dumps(again.dataset_attrs(key)["view"]) == json.dumps(view.record())
    other_codec = dict(view.record(), libraries=dict(view.record()["libraries"], libjpeg="0.0"))
    with pytest.raises(DeclipError, match="made differently"):
        again.create_dataset(key, samples, "/data", "list", block_rows=4, view=other_codec, masks_of=DS)


def test_a_layer_records_the_versions_the_replaced_code_recorded(tmp_path):
    store, samples = new_store(tmp_path / "s.zarr", n=6, block_rows=4)
    store.open_layer(BB_A, "layer1", DS, make_meta(samples))
    on_disk = json.loads((tmp_path / "s.zarr" / "features" / BB_A / "layer1" / DS / "zarr.json").read_text())
    assert json.dumps(on_disk["attributes"]["meta"]["versions"]) == json.dumps(legacy_store_library_versions())
