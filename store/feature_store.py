"""The zarr (v3) feature store: cached layer features keyed by backbone/layer, per dataset.

Layout (design §3.3)::

    <store>/datasets/<dataset>/...                   rows and masks: store.datasets
    <store>/features/<backbone>/<layer>/<dataset>/   features, class tokens, flags, checksums: store.layers

A view (a perturbation applied before encoding, ``features.views``) is cached as the dataset ``<dataset>@<view>``
(``core.keys.DatasetKey``): the same rows in the same order, its own features, and its own masks only when the view
is geometric (a photometric view's ``masks_of`` attribute points at the clean dataset). Clean data keeps its old keys.

:class:`FeatureStore` is one object with the methods of both parts; the parts live in their own files so each
stays readable (:mod:`store.base` holds what they share: the hierarchy, small files, locks).
"""
from __future__ import annotations

from declip.core.keys import VIEW_SEP, split_view_key, view_dataset_key
from declip.store.base import SCHEMA_VERSION, dies_with_process, local_path
from declip.store.checksums import block_sums, crc32, dataset_checksum
from declip.store.datasets import MASK_SIZE, StoreDatasets
from declip.store.layers import IDENTITY_FIELDS, LEGACY_VALUES, LayerArrays, StoreLayers

__all__ = [
    "FeatureStore", "LayerArrays", "IDENTITY_FIELDS", "LEGACY_VALUES", "MASK_SIZE", "SCHEMA_VERSION", "VIEW_SEP",
    "block_sums", "crc32", "dataset_checksum", "dies_with_process", "local_path", "split_view_key",
    "view_dataset_key",
]


class FeatureStore(StoreDatasets, StoreLayers):
    """A zarr hierarchy at a local path or fsspec URL (``s3://…`` needs s3fs): datasets and their feature layers."""
