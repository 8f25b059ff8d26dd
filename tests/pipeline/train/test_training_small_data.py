"""Training on tiny data: budgets in optimizer steps, warnings, collapse stop, honest progress bound."""
from functools import partial
import hashlib
import json

import numpy as np
import pytest

from tests.fixtures import TINY_BACKBONE, train_config
from declip.pipeline.train import training
from declip.pipeline.data.cached_splits import CachedSplits, select_rows
from declip.pipeline.train.schedule import PlateauSchedule
from declip.pipeline.train.training import small_data_warnings, train


_cfg = partial(train_config, batch_size=8, max_epochs=3, patience=2)


def test_min_steps_per_epoch_repeats_shuffled_passes(tiny_store, tmp_path):
    data = CachedSplits.open(str(tiny_store), "dolos-celebahq", [f"{TINY_BACKBONE}/layer1"], None)
    rows = select_rows(data.samples, data.valid, ("tint",), "train", "localization")
    assert len(rows) == 16
    source = _cfg(tiny_store, "").source
    one_pass = list(training._epoch_batches(data, rows, _cfg(tiny_store, ""), 0, [source]))
    assert len(one_pass) == 2  # DeCLIP: one pass
    cfg = _cfg(tiny_store, "", min_steps_per_epoch=5)
    batches = list(training._epoch_batches(data, rows, cfg, 0, [source]))
    assert len(batches) == 6  # three whole passes: the first ≥ 5 steps ending a pass
    seen = [np.sort(np.concatenate([b.rows for b in batches[i:i + 2]])) for i in (0, 2, 4)]
    for s in seen:
        np.testing.assert_array_equal(s, np.sort(rows))
    assert not np.array_equal(batches[0].rows, batches[2].rows)  # fresh shuffle each pass
    np.testing.assert_array_equal(batches[0].rows, one_pass[0].rows)  # first pass = DeCLIP's epoch


def test_defaults_keep_the_identity_of_runs_made_before_the_options_existed(tmp_path):
    cfg = _cfg("s", tmp_path)
    keep = {k: v for k, v in cfg.to_json().items()
            if k not in ("out", "progress", "memory_gb", "device", "min_steps_per_epoch", "collapse_patience",
                         "precision", "channels_last", "compile", "device_memory_gb", "train_views")}
    old = hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]
    assert cfg.identity() == old
    assert _cfg("s", tmp_path, min_steps_per_epoch=20).identity() != old


def test_small_data_warnings():
    big_batch = small_data_warnings(_cfg("s", "", batch_size=64), 24)
    assert len(big_batch) == 1 and "larger than the training set (24 rows)" in big_batch[0]
    assert "few" not in small_data_warnings(_cfg("s", "", batch_size=8), 24)[0]
    assert small_data_warnings(_cfg("s", "", batch_size=8, min_steps_per_epoch=20), 24) == []
    assert small_data_warnings(_cfg("s", "", batch_size=64), 6400) == []


def test_collapsed_validation_stops_the_run_and_is_reported(tiny_store, tmp_path, monkeypatch):
    real = training.validate_many

    def always_collapsed(*args, **kwargs):
        return [dict(s, collapsed=True, collapse_reason="test") for s in real(*args, **kwargs)]

    monkeypatch.setattr(training, "validate_many", always_collapsed)
    summary = train(_cfg(tiny_store, tmp_path / "run", max_epochs=50, patience=20, collapse_patience=3,
                         batch_size=64))
    assert summary["epochs"] == 3 and "collapsed for 3 epochs" in summary["stop_reason"]
    assert summary["collapsed"] and summary["collapse_reason"] == "test"
    assert any("larger than the training set" in w for w in summary["warnings"])
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["collapsed"] is True


def test_a_learning_run_is_not_collapsed(tiny_store, tmp_path):
    summary = train(_cfg(tiny_store, tmp_path / "run", max_epochs=4, min_steps_per_epoch=6, collapse_patience=2))
    assert not summary["collapsed"] and summary["stop_reason"] == "" and summary["best_val"] > 0


def test_progress_bound_follows_early_stopping_not_max_epochs():
    s = PlateauSchedule(patience=5, max_epochs=400)
    assert s.epochs_left_if_flat() == 24  # 4 plateaus (reference + 5 epochs) at lr 1e-3, 1e-4, 1e-5, 1e-6
    epochs = 0
    while not s.stopped:
        bound = s.epochs_left_if_flat()
        s.step(10.0)  # never improves
        epochs += 1
        assert s.epochs_left_if_flat() == (bound - 1 if not s.stopped else 0)
    assert epochs == 24
    assert PlateauSchedule(max_epochs=3).epochs_left_if_flat() == 3
