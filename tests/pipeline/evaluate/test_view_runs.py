"""Views in runs: evaluation on a view cached for the test split only, and augmentation from cached copies."""
from functools import partial

import numpy as np
import pandas as pd
import pytest
import torch

from tests.fixtures import TINY_BACKBONE, TINY_DATASET, train_config
from declip.core.errors import DeclipError
from declip.pipeline.train import training
from declip.pipeline.data.augmentation import ViewSampler
from declip.pipeline.evaluate.evaluation import EvalConfig, evaluate
from declip.pipeline.extract.extraction import ExtractConfig, run_extraction
from declip.pipeline.train.training import train

DATASET = TINY_DATASET
COPIES = ("augment:all+copy:0", "augment:all+copy:1")


@pytest.fixture(scope="module")
def store(tiny_manifest, tmp_path_factory):
    """layer1 clean; jpeg:40 for the test split only; two augmented copies for the train split only."""
    path = tmp_path_factory.mktemp("view-runs") / "declip.features.zarr"

    def extract(view="clean", splits=()):
        return run_extraction(ExtractConfig(manifest=str(tiny_manifest), store=str(path), backbone=TINY_BACKBONE,
                                            layers="layer1", batch_size=4, progress=False, view=view, splits=splits))

    extract()
    stats = {"jpeg:40": extract("jpeg:40", ("test",))}
    for view in COPIES:
        stats[view] = extract(view, ("train",))
    return path, stats


_cfg = partial(train_config, batch_size=8, max_epochs=4, patience=10)


def _state(path):
    return torch.load(path / "best" / "decoder.pt", weights_only=True)["state_dict"]


def test_view_for_one_split_encodes_only_its_blocks(store):
    _, stats = store
    jpeg = stats["jpeg:40"]
    assert 0 < jpeg.blocks_run < jpeg.blocks_total  # the train/valid-only blocks were not encoded


def test_sampler_is_seeded_per_epoch_and_row_and_independent_of_batching():
    sampler = ViewSampler(3, 100, seed=7)
    rows = np.arange(100)
    a = sampler.assign(4, rows)
    assert np.array_equal(a, ViewSampler(3, 100, seed=7).assign(4, rows))  # same seed, same epoch: same copies
    assert not np.array_equal(a, sampler.assign(5, rows))  # a new draw each epoch
    assert not np.array_equal(a, ViewSampler(3, 100, seed=8).assign(4, rows))
    shuffled = np.random.default_rng(0).permutation(rows)[:17]
    assert np.array_equal(sampler.assign(4, shuffled), a[shuffled])  # a row's copy ignores its batch and order
    assert set(np.unique(a)) == {0, 1, 2}


def test_augmented_training_resumes_exactly_and_differs_from_clean(store, tmp_path, monkeypatch):
    path, _ = store
    full = train(_cfg(path, tmp_path / "full", train_views=COPIES))
    real_end = training._end_epoch

    def crash_after_epoch_1(head, scores, loss, epoch, seconds):
        real_end(head, scores, loss, epoch, seconds)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "_end_epoch", crash_after_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(path, tmp_path / "cut", train_views=COPIES))
    monkeypatch.setattr(training, "_end_epoch", real_end)
    resumed = train(_cfg(path, tmp_path / "cut", train_views=COPIES))
    assert resumed["epochs"] == full["epochs"] == 4
    for k, v in _state(tmp_path / "full").items():
        torch.testing.assert_close(_state(tmp_path / "cut")[k], v, rtol=0, atol=0)
    train(_cfg(path, tmp_path / "clean"))
    clean = _state(tmp_path / "clean")
    assert any(not torch.equal(clean[k], v) for k, v in _state(tmp_path / "full").items())


def test_augmented_run_has_its_own_identity_and_clean_runs_keep_theirs(store, tmp_path):
    path, _ = store
    clean = _cfg(path, tmp_path / "a")
    assert _cfg(path, tmp_path / "a", train_views=COPIES).identity() != clean.identity()
    import hashlib
    import json

    # options added after the first runs (views, small-data budgets) enter the hash only when set
    legacy = {k: v for k, v in clean.to_json().items() if k not in ("out", "progress", "memory_gb", "device",
                                                                    "train_views", "min_steps_per_epoch",
                                                                    "collapse_patience", "precision",
                                                                    "channels_last", "compile", "device_memory_gb")}
    assert clean.identity() == hashlib.sha256(json.dumps(legacy, sort_keys=True).encode()).hexdigest()[:16]


def test_training_on_a_view_without_its_train_split_is_refused(store, tmp_path):
    path, _ = store
    with pytest.raises(DeclipError, match="--view jpeg:40 --split train"):
        train(_cfg(path, tmp_path / "x", train_views=("jpeg:40",)))


def test_evaluate_on_a_view_adds_a_view_column_and_needs_its_split(store, tmp_path):
    path, _ = store
    train(_cfg(path, tmp_path / "run", max_epochs=2))
    ckpt = str(tmp_path / "run" / "best")
    clean = evaluate(EvalConfig(store=str(path), checkpoint=ckpt, dataset=DATASET, test_subsets=("tint",),
                                out=str(tmp_path / "ev-clean")))
    jpeg = evaluate(EvalConfig(store=str(path), checkpoint=ckpt, dataset=DATASET, test_subsets=("tint",),
                               out=str(tmp_path / "ev-jpeg"), view="jpeg:40.0"))
    assert set(clean["view"]) == {"clean"} and set(jpeg["view"]) == {"jpeg:40"}
    iou = lambda t: float(t.loc[t["metric"] == "iou", "value"].iloc[0])  # noqa: E731
    per_clean = pd.read_parquet(tmp_path / "ev-clean" / "tint" / "per_image.parquet")
    per_jpeg = pd.read_parquet(tmp_path / "ev-jpeg" / "tint" / "per_image.parquet")
    assert per_clean["image_id"].tolist() == per_jpeg["image_id"].tolist()  # same images, other pixels
    assert not np.allclose(per_clean["iou"], per_jpeg["iou"]) or iou(clean) != iou(jpeg)
    with pytest.raises(DeclipError, match="--view jpeg:40 --split valid"):
        evaluate(EvalConfig(store=str(path), checkpoint=ckpt, dataset=DATASET, test_subsets=("tint",),
                            out=str(tmp_path / "ev-x"), view="jpeg:40", split="valid"))


def test_a_source_key_with_a_view_reads_that_views_copy(store, tmp_path):
    from declip.store.feature_store import FeatureStore
    from declip.store.readers import FeatureSource

    path, _ = store
    fs = FeatureStore(str(path), mode="r")
    rows = np.array([0, 1])
    via_key = FeatureSource(fs, f"{TINY_BACKBONE}/layer1[augment:all+copy:1]", DATASET, partial=True).get(rows)[0]
    via_dataset = FeatureSource(fs, f"{TINY_BACKBONE}/layer1", f"{DATASET}@augment:all+copy:1", partial=True)
    assert torch.equal(via_key, via_dataset.get(rows)[0])
    train(_cfg(path, tmp_path / "run", max_epochs=1))
    a = evaluate(EvalConfig(store=str(path), checkpoint=str(tmp_path / "run" / "best"), dataset=DATASET,
                            test_subsets=("tint",), out=str(tmp_path / "a"), view="jpeg:40"))
    b = evaluate(EvalConfig(store=str(path), checkpoint=str(tmp_path / "run" / "best"), dataset=DATASET,
                            test_subsets=("tint",), out=str(tmp_path / "b"),
                            source=f"{TINY_BACKBONE}/layer1[jpeg:40]"))
    assert set(b["view"]) == {"jpeg:40"}
    pd.testing.assert_series_equal(a["value"], b["value"])
