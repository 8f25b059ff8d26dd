"""``declip compare`` on a hand-built grid: the difference per (train set, test set) from the per-image tables,
Wilcoxon's p from scipy, seeds pooled, baselines by name, and clear errors."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from declip.core.errors import DeclipError
from declip.core.keys import split_model_ref
from declip.pipeline.report.compare_models import compare_models

from tests.pipeline.report.grid_builder import write_grid

L2, L5 = "vit@random-0/layer2", "vit@random-0/layer5"


def _fakes(path):
    frame = pd.read_parquet(path)
    return frame[frame["label"] == 1].sort_values("image_id")["iou"].to_numpy(dtype=float)


def test_model_refs_are_split_at_the_last_colon_outside_brackets():
    assert split_model_ref("ViT-L-14@openai/layer20:conv-20") == ("ViT-L-14@openai/layer20", "conv-20")
    assert split_model_ref("ViT-L-14@openai/layer20[jpeg:75]:linear") == ("ViT-L-14@openai/layer20[jpeg:75]", "linear")
    assert split_model_ref("baseline:all-fake") == ("baseline", "baseline:all-fake")
    with pytest.raises(DeclipError, match="SOURCE:DECODER"):
        split_model_ref("layer20")


def test_per_cell_difference_interval_and_p_pool_seeds(tmp_path):
    results = write_grid(tmp_path, {(L2, "linear"): 30.0, (L5, "linear"): 32.0}, seeds=(0, 1), n_fake=25)
    grid = results.parent
    cmp = compare_models(grid, "layer5:linear", "vit@random-0/layer2:linear")
    lines = cmp.lines
    assert len(lines) == 4 + 2  # every (train, test) cell, then in-domain and out-of-domain
    cell = lines[(lines["train_set"] == "a") & (lines["test_set"] == "b")].iloc[0]
    a = np.mean([_fakes(grid / "runs" / f"run-1-a-s{s}" / "eval" / "b" / "per_image.parquet") for s in (0, 1)], 0)
    b = np.mean([_fakes(grid / "runs" / f"run-0-a-s{s}" / "eval" / "b" / "per_image.parquet") for s in (0, 1)], 0)
    assert cell["difference"] == pytest.approx(np.mean(a - b))
    assert cell["p_value"] == pytest.approx(stats.wilcoxon(a - b).pvalue)
    assert cell["ci_low"] < cell["difference"] < cell["ci_high"]
    assert (cell["n_images"], cell["seeds_a"], cell["seeds_b"]) == (25, 2, 2)
    assert (lines["p_holm"] >= lines["p_value"] - 1e-15).all()
    text = cmp.text()
    assert "A = linear @ vit/layer5, B = linear @ vit/layer2" in text and "train a → test b" in text
    assert "in-domain (2 test sets)" in text and "p = " in text


def test_a_model_against_a_baseline_and_against_itself(tmp_path):
    results = write_grid(tmp_path, {(L2, "linear"): 40.0}, n_fake=20)
    vs_base = compare_models(results, "layer2:linear", "baseline:all-fake").lines
    ind = vs_base[(vs_base["train_set"] == vs_base["test_set"]) & (vs_base["train_set"] != "")]
    assert len(ind) == 2 and (ind["difference"] > 20).all() and (ind["p_value"] < 1e-4).all()
    assert vs_base["comparison"].tolist()[-2:] == ["in-domain (2 test sets)", "out-of-domain (2 test sets)"]
    same = compare_models(results, "layer2:linear", "layer2:linear").lines
    assert (same["difference"] == 0).all() and (same["p_value"] == 1).all()


def test_unknown_models_and_dataset_level_metrics_are_clear_errors(tmp_path):
    results = write_grid(tmp_path, {(L2, "linear"): 40.0}, n_fake=8)
    with pytest.raises(DeclipError, match="not in the results; pass one of: .*vit@random-0/layer2:linear"):
        compare_models(results, "layer9:linear", "layer2:linear")
    with pytest.raises(DeclipError, match="no baseline 'baseline:nope'"):
        compare_models(results, "baseline:nope", "layer2:linear")
    with pytest.raises(DeclipError, match="image_auc.*per-image metric"):
        compare_models(results, "layer2:linear", "baseline:all-fake", metric="image_auc")
    with pytest.raises(DeclipError, match="results.parquet"):
        compare_models(tmp_path / "nowhere", "layer2:linear", "baseline:all-fake")
