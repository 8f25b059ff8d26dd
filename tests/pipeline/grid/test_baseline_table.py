"""The grid's baselines file, without Prefect: computed once per (train set, test set, split), kept across re-runs,
extended for a new test set only, and a half-written combination replaced rather than duplicated. The baselines
themselves are stubbed (their values are tested in tests/pipeline/evaluate); the calls made are checked by hand."""
import numpy as np
import pandas as pd
import pytest

from declip.pipeline.metrics.registry import MetricAccumulator

from declip.pipeline.grid import baseline_table
from declip.pipeline.grid.baseline_table import BASELINES_FILE, update_baselines
from declip.pipeline.grid.config import GridConfig

NAMES = ("baseline:all-zero", "baseline:all-fake", "baseline:mask-prior")


@pytest.fixture()
def calls(monkeypatch):
    made = []

    def fake_rows(store, dataset, train_sets, test_sets, metrics=None, split="test", keep=None):
        made.append((split, tuple(train_sets), tuple(test_sets)))
        for tr in train_sets:
            for te in test_sets:
                for name in NAMES:
                    acc = MetricAccumulator(["iou"])
                    acc.add(np.ones((4, 4), np.float32), np.eye(4, dtype=bool), 1, f"{te}/x.png")
                    keep(name.removeprefix("baseline:"), tr, te, acc)
        return pd.DataFrame([dict(train_set=tr, test_set=te, split=split, decoder=name, metric="iou", value=1.0)
                             for tr in train_sets for te in test_sets for name in NAMES])

    monkeypatch.setattr(baseline_table, "baseline_rows", fake_rows)
    return made


def _grid(tmp_path, test_sets=("a", "b")):
    return GridConfig.from_dict(dict(store=str(tmp_path / "s.zarr"), dataset="d", out=str(tmp_path / "g"),
                                     backbones=["b@random-0"], layers=["layer0"], train_sets=["a", "b"],
                                     test_sets=list(test_sets), eval_splits=["valid", "test"]))


def test_each_combination_is_computed_once_and_kept(tmp_path, calls):
    path = update_baselines(_grid(tmp_path))
    assert path == tmp_path / "g" / BASELINES_FILE
    assert calls == [("valid", ("a",), ("a", "b")), ("valid", ("b",), ("a", "b")),
                     ("test", ("a",), ("a", "b")), ("test", ("b",), ("a", "b"))]
    first = pd.read_parquet(path)
    assert len(first) == 2 * 2 * 2 * len(NAMES)
    mtime = path.stat().st_mtime_ns
    calls.clear()
    update_baselines(_grid(tmp_path))
    assert calls == [] and path.stat().st_mtime_ns == mtime  # nothing new: not even rewritten

    update_baselines(_grid(tmp_path, test_sets=("a", "b", "c")))  # a new test set: only its rows
    assert calls == [("valid", ("a",), ("c",)), ("valid", ("b",), ("c",)),
                     ("test", ("a",), ("c",)), ("test", ("b",), ("c",))]
    grown = pd.read_parquet(path)
    assert len(grown) == 2 * 3 * 2 * len(NAMES) and not grown.duplicated(["train_set", "test_set", "split",
                                                                            "decoder"]).any()


def test_half_written_combinations_are_replaced_not_duplicated(tmp_path, calls):
    path = update_baselines(_grid(tmp_path))
    table = pd.read_parquet(path)
    half = (table["test_set"] == "b") & (table["split"] == "test") & (table["decoder"] == "baseline:all-fake")
    table[~half].to_parquet(path)  # both train sets lost their all-fake row on (b, test)
    calls.clear()
    update_baselines(_grid(tmp_path))
    assert calls == [("test", ("a",), ("b",)), ("test", ("b",), ("b",))]
    again = pd.read_parquet(path)
    assert len(again) == len(table) and not again.duplicated(["train_set", "test_set", "split", "decoder"]).any()


def test_baselines_keep_per_image_tables_and_older_ones_without_them_are_recomputed(tmp_path, calls):
    g = _grid(tmp_path)
    update_baselines(g)
    kept = tmp_path / "g" / "baselines" / "test" / "a" / "b" / "mask-prior" / "per_image.parquet"
    assert pd.read_parquet(kept)["iou"].tolist() == pytest.approx([25.0])  # what the sink received: 4 of 16
    calls.clear()
    kept.unlink()  # as a grid written before per-image baselines existed
    update_baselines(g)
    assert calls == [("test", ("a",), ("b",))] and kept.exists()
