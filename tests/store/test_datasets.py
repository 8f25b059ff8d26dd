"""The dataset part of the feature store (store/datasets.py): its sample table and how it is listed."""
from __future__ import annotations

import pandas as pd
import pytest

from declip.core.errors import DeclipError
from declip.store.feature_store import FeatureStore
from tests.store.store_fixtures import DS, new_store


def test_listing_an_unknown_dataset_is_one_clear_error(tmp_path):
    from declip.store.listing import dataset_subsets

    store, _ = new_store(tmp_path / "s.zarr", n=4, block_rows=2)
    assert dataset_subsets(store, DS)["total"].sum() == 4
    with pytest.raises(DeclipError, match="dataset 'nope' is not in store .*datasets: ds"):
        dataset_subsets(store, "nope")


def test_samples_are_replaced_atomically_and_repaired_from_the_manifest(tmp_path):
    store, samples = new_store(tmp_path / "s.zarr", n=5, block_rows=2)
    folder = tmp_path / "s.zarr" / "datasets" / DS
    (folder / "samples.parquet").write_bytes(b"PAR1 truncated")
    with pytest.raises(DeclipError, match="damaged or missing"):
        FeatureStore(str(tmp_path / "s.zarr")).samples(DS)
    store.create_dataset(DS, samples, "/data", "list", block_rows=2)  # same rows: rewrites the damaged file
    pd.testing.assert_frame_equal(FeatureStore(str(tmp_path / "s.zarr")).samples(DS), samples)
    assert not [p.name for p in folder.iterdir() if p.name.endswith((".tmp", ".partial"))]


def test_new_splits_for_the_same_files_replace_the_registered_ones(tmp_path):
    """A re-scan with --split-ratios gives the same files new splits: the store takes them (issue 19.3)."""
    store, samples = new_store(tmp_path / "s.zarr", n=6, block_rows=2)
    resplit = samples.assign(split=["train", "train", "valid", "test", "train", "test"])
    store.create_dataset(DS, resplit, "/data", "list", block_rows=2)
    pd.testing.assert_frame_equal(FeatureStore(str(tmp_path / "s.zarr")).samples(DS), resplit)


def test_a_change_the_cached_masks_depend_on_is_refused(tmp_path):
    store, samples = new_store(tmp_path / "s.zarr", n=4, block_rows=2)
    turned = samples.assign(width=samples["height"], height=samples["width"])
    with pytest.raises(DeclipError, match="registered with other width, height for the same files"):
        store.create_dataset(DS, turned, "/data", "list", block_rows=2)
    pd.testing.assert_frame_equal(FeatureStore(str(tmp_path / "s.zarr")).samples(DS), samples)
