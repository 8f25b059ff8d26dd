"""The eviction ledger of a budgeted grid, without Prefect: the grid records the layers it had to extract (before
extracting them), and evicts those only; a layer someone else put in the store stays. Expected records by hand."""
import json
import logging
from pathlib import Path

import pytest

from tests.fixtures import TINY_BACKBONE
from declip.core.keys import LayerKey
from declip.pipeline.extract.extraction import ExtractConfig, run_extraction
from declip.pipeline.grid.config import GridConfig
from declip.pipeline.grid.ledger import CREATED_LAYERS, created_layers, evict_group, record_created_layers
from declip.store.feature_store import FeatureStore

DATASET = "dolos-celebahq"
B = TINY_BACKBONE


def _grid(tmp_path, manifest, store=None):
    return GridConfig.from_dict(dict(store=str(store or tmp_path / "s.zarr"), dataset=DATASET, out=str(tmp_path / "g"),
                                     backbones=[B], layers=["layer0", "layer1"], train_sets=["tint"],
                                     test_sets=["tint"], manifest=str(manifest)))


def _extract(g, layers):
    run_extraction(ExtractConfig(manifest=g.manifest, store=g.store, backbone=B, dataset=DATASET, layers=layers,
                                 batch_size=16, progress=False))


def _layers(g):
    return sorted(layer for _, layer, _ in FeatureStore(g.store, mode="r").iter_layers())


@pytest.fixture()
def grid(tiny_manifest, tmp_path):
    g = _grid(tmp_path, tiny_manifest)
    _extract(g, "layer1")  # the user's own layer, in the store before the grid needs it
    return g


def test_only_layers_missing_when_first_needed_are_recorded(grid):
    assert created_layers(grid) == set()
    assert record_created_layers(grid, {B: ["layer0", "layer1"]}) == {(B, "layer0")}
    entries = json.loads((Path(grid.out) / CREATED_LAYERS).read_text())["layers"]
    assert entries == [{"store": grid.store, "dataset": DATASET, "backbone": B, "layer": "layer0"}]
    _extract(grid, "layer0")  # the grid extracts it; a resumed run must still know it is the grid's
    assert record_created_layers(grid, {B: ["layer0", "layer1"]}) == {(B, "layer0")}
    assert len(json.loads((Path(grid.out) / CREATED_LAYERS).read_text())["layers"]) == 1


def test_a_ledger_entry_of_another_store_or_dataset_is_not_ours(grid, tiny_manifest, tmp_path):
    record_created_layers(grid, {B: ["layer0"]})
    other = _grid(tmp_path, tiny_manifest, store=tmp_path / "other.zarr")  # same out folder, another store
    assert created_layers(grid) == {(B, "layer0")} and created_layers(other) == set()


def test_without_a_manifest_nothing_is_recorded(grid, tmp_path):
    bare = GridConfig.from_dict(dict(grid.to_json(), manifest=None))
    assert record_created_layers(bare, {B: ["layer0"]}) == set()
    assert not (tmp_path / "g" / CREATED_LAYERS).exists()


def test_eviction_deletes_the_grids_layers_and_keeps_the_users(grid, caplog):
    record_created_layers(grid, {B: ["layer0", "layer1"]})
    _extract(grid, "layer0")
    assert _layers(grid) == ["layer0", "layer1"]
    with caplog.at_level(logging.INFO, logger="declip.grid"):
        gone = evict_group(grid, [LayerKey.parse(f"{B}/layer0"), LayerKey.parse(f"{B}/layer1")])
    assert gone == [f"{B}/layer0"] and _layers(grid) == ["layer1"]
    assert f"keeping {B}/layer1" in caplog.text
    assert evict_group(grid, [LayerKey.parse(f"{B}/layer0")]) == []  # already gone: nothing to delete, no error
