"""A damaged store never reads as valid: reads fail naming the block, verify marks it, extract redoes it (10.2)."""
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures import TINY_BACKBONE
from declip.core.errors import DeclipError
from declip.pipeline.extract.extraction import ExtractConfig, run_extraction
from declip.store.feature_store import FeatureStore
from declip.store.readers import LayerReader
from declip.store.verify import verify_store

from tests.fixtures import REPO  # noqa: E402
from tests.store.store_fixtures import sample_chunk


@pytest.fixture
def damaged(tiny_store, tmp_path):
    copy = tmp_path / "s.zarr"
    shutil.copytree(tiny_store, copy)
    store = FeatureStore(str(copy))
    dataset = store.datasets()[0]
    return copy, store, dataset


def _layer_dir(path: Path, layer: str, dataset: str) -> Path:
    return path / "features" / TINY_BACKBONE / layer / dataset


def _redo(path: Path, manifest: Path) -> None:
    run_extraction(ExtractConfig(manifest=str(manifest), store=str(path), backbone=TINY_BACKBONE, layers="all",
                                 batch_size=8, progress=False))


def test_deleted_feature_chunk_is_found_marked_and_redone(damaged, tiny_store, tiny_manifest):
    path, store, dataset = damaged
    sample_chunk(_layer_dir(path, "layer2", dataset) / "feats", 9).unlink()  # row 9: block 1
    named = r"s.zarr: features/.*/layer2/.*/feats, block 1 \(rows 8-15\): chunk c\.9\.0\.0\.0 missing.*store verify"
    with pytest.raises(DeclipError, match=named):
        LayerReader(store, TINY_BACKBONE, "layer2", dataset).read_all()
    report = {d.path: d for d in verify_store(store, redo=True)}
    bad = {p: d.blocks for p, d in report.items() if d.blocks}
    assert bad == {f"features/{TINY_BACKBONE}/layer2/{dataset}": [1]}
    assert not store.open_layer(TINY_BACKBONE, "layer2", dataset).complete
    _redo(path, tiny_manifest)
    original = FeatureStore(str(tiny_store), mode="r").open_layer(TINY_BACKBONE, "layer2", dataset)
    redone = LayerReader(FeatureStore(str(path), mode="r"), TINY_BACKBONE, "layer2", dataset).read_all()
    assert redone.feats.tobytes() == original.feats[:].tobytes()
    assert not [d for d in verify_store(FeatureStore(str(path), mode="r")) if d.blocks]


def test_short_chunk_and_deleted_valid_chunk_are_refused(damaged):
    path, store, dataset = damaged
    chunk = sample_chunk(_layer_dir(path, "layer1", dataset) / "feats", 3)
    chunk.write_bytes(chunk.read_bytes()[:100])
    with pytest.raises(DeclipError, match="100 of"):
        LayerReader(store, TINY_BACKBONE, "layer1", dataset).read_all()
    (_layer_dir(path, "layer0", dataset) / "valid" / "c" / "2").unlink()
    with pytest.raises(DeclipError, match=r"blocks \[2\] no longer match"):
        LayerReader(store, TINY_BACKBONE, "layer0", dataset)
    bad = {d.path.split("/")[-2]: d.blocks for d in verify_store(store) if d.blocks}
    assert bad == {"layer1": [0], "layer0": [2]}


@pytest.mark.slow
def test_verify_cli_names_damaged_mask_block_and_extract_redoes_it(damaged, tiny_store, tiny_manifest):
    path, store, dataset = damaged
    (path / "datasets" / dataset / "soft_masks" / "c" / "20" / "0" / "0").unlink()  # a fake's soft mask, block 2
    out = subprocess.run([sys.executable, "-m", "declip.cli", "store", "verify", "--store", str(path)],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stderr
    assert f"datasets/{dataset}: block 2 damaged" in out.stdout and "re-run `declip extract`" in out.stdout
    _redo(path, tiny_manifest)
    a, b = FeatureStore(str(tiny_store), mode="r"), FeatureStore(str(path), mode="r")
    np.testing.assert_array_equal(a.soft_masks(dataset), b.soft_masks(dataset))
    assert not [d for d in verify_store(b) if d.blocks]


def test_deleted_root_zarr_json_is_restored(damaged):
    path, _, dataset = damaged
    (path / "zarr.json").unlink()
    store = FeatureStore(str(path), mode="r")
    assert store.datasets() == [dataset] and (path / "zarr.json").exists()


def test_deleted_array_metadata_is_one_clear_error(damaged):
    path, _, dataset = damaged
    (_layer_dir(path, "layer1", dataset) / "feats" / "zarr.json").unlink()
    with pytest.raises(DeclipError, match=r"layer1/.*feats/zarr\.json is missing.*declip store rm"):
        FeatureStore(str(path), mode="r").open_layer(TINY_BACKBONE, "layer1", dataset)


def test_deleted_dataset_metadata_is_rebuilt_by_extract(damaged, tiny_store, tiny_manifest):
    path, _, dataset = damaged
    (path / "datasets" / dataset / "zarr.json").unlink()
    _redo(path, tiny_manifest)
    a, b = FeatureStore(str(tiny_store), mode="r"), FeatureStore(str(path), mode="r")
    np.testing.assert_array_equal(a.soft_masks(dataset), b.soft_masks(dataset))
    assert b.open_layer(TINY_BACKBONE, "layer3", dataset).complete  # cached features kept
