"""What makes cached features reusable, pinned by hand (not by iterating over the store's own field list)."""
from __future__ import annotations

import pytest

from declip.core.errors import DeclipError
from declip.store.feature_store import FeatureStore
from tests.store.store_fixtures import BB_A, DS, full_layer, make_samples, new_store

# Every one of these, changed, must be refused: other weights, another preprocessing recipe, another layer meaning,
# another geometry or dtype, or other rows all give features that must never mix with the cached ones.
MUST_MATCH = {
    "backbone": "bbZ@random-0", "weights_checksum": "x" * 16, "recipe": {"size": 336}, "layer": "layer2",
    "semantics": "something else", "channels": 4, "grid": [2, 2], "dtype": "float32", "n_rows": 7,
    "block_rows": 2, "dataset_checksum": "0" * 64, "schema_version": 99,
}


@pytest.mark.parametrize("field", sorted(MUST_MATCH))
def test_each_identity_field_is_refused_when_it_differs(tmp_path, field):
    store, samples, arrays = full_layer(tmp_path / "s.zarr", n=6, block_rows=4)
    meta = dict(arrays.meta, **{field: MUST_MATCH[field]})
    with pytest.raises(DeclipError, match=f"{field}:"):
        FeatureStore(str(tmp_path / "s.zarr")).open_layer(BB_A, "layer1", DS, meta)


def test_same_paths_with_changed_file_contents_are_other_rows(tmp_path):
    store, samples = new_store(tmp_path / "s.zarr", n=6, block_rows=4)
    edited = samples.copy()
    edited.loc[3, "sha256"] = "f" * 64  # the same file name, re-generated with other pixels
    with pytest.raises(DeclipError, match="different files"):
        store.create_dataset(DS, edited, "/data", "list", block_rows=4)
    assert make_samples(6)["image_path"].tolist() == edited["image_path"].tolist()
