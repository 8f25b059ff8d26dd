"""A split-less dataset downstream (issue 19.3): train and evaluate refuse it with the scan that fixes it (not "no
localization rows (train 0, valid 0)"), a grid refuses before extracting anything, and a re-scan with
--split-ratios reaches the store on the next `extract` without re-encoding a block."""
import numpy as np
import pytest
from PIL import Image

from declip.core.errors import DeclipError
from declip.pipeline.data.manifest import scan_dataset, write_manifest
from declip.pipeline.extract.extraction import run_extraction
from declip.pipeline.grid.config import GridConfig
from declip.pipeline.grid.plan import check_grid_data
from declip.pipeline.train.training import train_heads
from declip.store.feature_store import FeatureStore
from tests.fixtures import PINNED_OPTIONS, TINY_BACKBONE, extract_config, train_config


def _flat_pairs(root, n=10):
    rng = np.random.default_rng(1)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (48, 80, 3), dtype=np.uint8)).save(root / "images" / f"f{i}.png")
        mask = np.zeros((48, 80), np.uint8)
        mask[5:25, 10:40] = 255
        Image.fromarray(mask).save(root / "masks" / f"f{i}.png")


@pytest.fixture
def flat(tmp_path):
    root = tmp_path / "flat"
    _flat_pairs(root)
    result = scan_dataset(root, "pairs", progress=False)
    write_manifest(result.manifest, tmp_path / "m.parquet", root, "pairs", result.record)
    return root, tmp_path / "m.parquet"


def test_a_grid_on_a_split_less_manifest_fails_before_extracting(flat, tmp_path):
    _, manifest = flat
    cfg = GridConfig.from_dict(dict(store=str(tmp_path / "s.zarr"), dataset="flat", manifest=str(manifest),
                                    out=str(tmp_path / "g"), backbones=[TINY_BACKBONE], layers=["layer0"],
                                    decoders=["linear"], train_sets=["fake"], test_sets=["fake"]))
    with pytest.raises(DeclipError, match="has no split.*--split-ratios 0.6,0.2,0.2 --seed 0"):
        check_grid_data(cfg)
    assert not (tmp_path / "s.zarr").exists()


def test_train_and_evaluate_refuse_then_a_rescan_reaches_the_store_without_reencoding(flat, tmp_path):
    from declip.pipeline.evaluate.evaluation import EvalConfig, evaluate

    root, manifest = flat
    store = tmp_path / "s.zarr"
    run_extraction(extract_config(manifest, store))
    cfg = train_config(store, tmp_path / "run", dataset="flat", source=f"{TINY_BACKBONE}/layer0", train_sets=("fake",),
                       max_epochs=1)
    with pytest.raises(DeclipError, match="has no split.*--split-ratios") as err:
        train_heads([cfg])
    assert "no localization rows" not in str(err.value)

    result = scan_dataset(root, "pairs", split_ratios="0.6,0.2,0.2", seed=0, progress=False)
    write_manifest(result.manifest, manifest, root, "pairs", result.record)
    stats = run_extraction(extract_config(manifest, store))
    assert stats.blocks_run == 0 and stats.images_encoded == 0
    samples = FeatureStore(str(store), mode="r").samples("flat")
    assert samples["split"].value_counts().to_dict() == {"train": 6, "valid": 2, "test": 2}
    summary = train_heads([cfg])[0]
    assert summary["epochs"] == 1

    table = evaluate(EvalConfig(store=str(store), checkpoint=str(tmp_path / "run" / "best"), dataset="flat",
                                test_subsets=("fake",), out=str(tmp_path / "e"), device="cpu"))
    assert int(table["n_images"].iloc[0]) == 2  # the two test rows of the new split


def test_evaluate_refuses_a_split_less_dataset(flat, tmp_path, tiny_store):
    from declip.pipeline.evaluate.evaluation import EvalConfig, evaluate

    _, manifest = flat
    store = tmp_path / "s.zarr"
    run_extraction(extract_config(manifest, store))
    # any checkpoint of the same source will do: train one on the tiny Dolos store
    train_heads([train_config(tiny_store, tmp_path / "run", source=f"{TINY_BACKBONE}/layer0", max_epochs=1)])
    with pytest.raises(DeclipError, match="has no split.*--split test"):
        evaluate(EvalConfig(store=str(store), checkpoint=str(tmp_path / "run" / "best"), dataset="flat",
                            test_subsets=("fake",), out=str(tmp_path / "e"), device=PINNED_OPTIONS["device"]))
