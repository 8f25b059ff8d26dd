"""Training on cached features: beats feature-free baselines, faithful subset, refusals, native-mask evaluation.

The recipe itself (loss, optimizer, schedule, best epoch, resume, multi-head, streaming, detection) is checked
against independent oracles in ``test_training_recipe.py``.
"""
from functools import partial
import json

import numpy as np
import pandas as pd
import pytest
import torch

from tests.fixtures import TINY_BACKBONE, TINY_SIZE, train_config
from declip.pipeline.evaluate.baselines import baseline_rows
from declip.core.errors import DeclipError
from declip.pipeline.evaluate.evaluation import EvalConfig, evaluate
from declip.pipeline.train.training import train


_cfg = partial(train_config, batch_size=8, max_epochs=4, patience=2)


def test_training_beats_all_zero_and_mask_prior_baselines(tiny_store, tmp_path):
    cfg = _cfg(tiny_store, tmp_path / "run", decoder="attention", max_epochs=12, patience=6, train_sets=("tint",))
    summary = train(cfg)
    assert (tmp_path / "run" / "best" / "decoder.pt").exists() and (tmp_path / "run" / "epochs.csv").exists()
    base = baseline_rows(str(tiny_store), "dolos-celebahq", ["tint"], ["tint"], metrics=["iou"], split="valid")
    iou = base[base["metric"] == "iou"].set_index("decoder")["value"]
    assert iou["baseline:all-zero"] == pytest.approx(0.0, abs=1e-6)
    assert summary["best_val"] > max(iou["baseline:mask-prior"], iou["baseline:all-zero"]) + 5, (summary, iou)


def test_faithful_attention_trains_declip_subset_only(tiny_store, tmp_path):
    cfg = _cfg(tiny_store, tmp_path / "att", decoder="attention", faithful=True, max_epochs=1, patience=10)
    from declip.decoders import build_decoder

    init = build_decoder("attention", in_channels=64, grid=(8, 8), family="vit", layer="layer1", faithful=True,
                         seed=0).state_dict()
    train(cfg)
    state = torch.load(tmp_path / "att" / "state.pt", weights_only=True)["decoder"]
    assert torch.equal(state["att1.attn.in_proj_weight"], init["att1.attn.in_proj_weight"])
    assert torch.equal(state["att1.ln_1.weight"], init["att1.ln_1.weight"])
    assert not torch.equal(state["att1.mlp.c_fc.weight"], init["att1.mlp.c_fc.weight"])


def test_other_config_in_same_dir_is_refused(tiny_store, tmp_path):
    train(_cfg(tiny_store, tmp_path / "r", max_epochs=1))
    with pytest.raises(DeclipError, match="different config"):
        train(_cfg(tiny_store, tmp_path / "r", max_epochs=1, lr=0.5))


def test_unknown_subset_is_a_clear_error(tiny_store, tmp_path):
    with pytest.raises(DeclipError, match="no localization rows"):
        train(_cfg(tiny_store, tmp_path / "x", train_sets=("nope",)))


def test_evaluate_scores_native_masks(tiny_store, tmp_path):
    train(_cfg(tiny_store, tmp_path / "run", max_epochs=2))
    cfg = EvalConfig(store=str(tiny_store), checkpoint=str(tmp_path / "run" / "best"), dataset="dolos-celebahq",
                     test_subsets=("tint", "bright"), out=str(tmp_path / "ev"), save_maps=True)
    table = evaluate(cfg)
    for subset in ("tint", "bright"):  # each subset records which evaluation wrote it (grids re-use it by that)
        record = json.loads((tmp_path / "ev" / subset / "eval.json").read_text())
        assert record["identity"] == cfg.subset_identity(subset) != cfg.identity()
    assert set(table["test_set"]) == {"tint", "bright"}
    assert {"iou", "f1_fixed", "f1_best", "ap", "image_auc"} <= set(table["metric"])
    assert bool(table["random_weights"].all())
    per_image = pd.read_parquet(tmp_path / "ev" / "tint" / "per_image.parquet")
    from PIL import Image

    from declip.store.feature_store import FeatureStore

    store = FeatureStore(str(tiny_store), mode="r")
    samples = store.samples("dolos-celebahq")
    fake = per_image[per_image["label"] == 1].iloc[0]
    row = int(np.flatnonzero(samples["image_path"].to_numpy() == fake["image_id"])[0])
    gt = store.native_mask("dolos-celebahq", row, TINY_SIZE)
    assert (samples["height"].iloc[row], samples["width"].iloc[row]) == TINY_SIZE
    prob = np.asarray(Image.open(tmp_path / "ev" / "tint" / "maps" / (fake["image_id"].rsplit("/", 1)[1]))) / 255.0
    pred = prob > 0.5
    union = (pred | gt).sum()
    expected = 100.0 * ((pred & gt).sum() + 1e-8) / (union + 1e-8)
    assert fake["iou"] == pytest.approx(expected, abs=2.0)  # maps are stored as 8-bit PNGs
    iou_mean = table[(table["metric"] == "iou") & (table["test_set"] == "tint")]["value"].iloc[0]
    assert iou_mean == pytest.approx(per_image.loc[per_image["label"] == 1, "iou"].mean())


def test_kill_while_saving_state_leaves_no_tmp_and_no_repeated_epoch(tiny_store, tmp_path, monkeypatch):
    from declip.pipeline.train import run_dir

    real_save = run_dir.atomic_torch_save
    calls = {"n": 0}

    def killed_mid_write(obj, path):
        if path.name == "state.pt":
            calls["n"] += 1
            if calls["n"] == 3:  # epoch 2's state: the write is cut short, as by kill -9
                (path.parent / ".state.pt.abc123.tmp").write_bytes(b"half")
                raise KeyboardInterrupt
        return real_save(obj, path)

    monkeypatch.setattr(run_dir, "atomic_torch_save", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tiny_store, tmp_path / "cut", max_epochs=5, patience=10))
    monkeypatch.setattr(run_dir, "atomic_torch_save", real_save)
    train(_cfg(tiny_store, tmp_path / "cut", max_epochs=5, patience=10))
    assert pd.read_csv(tmp_path / "cut" / "epochs.csv")["epoch"].tolist() == [0, 1, 2, 3, 4]
    assert not [p.name for p in (tmp_path / "cut").rglob("*") if p.name.endswith((".tmp", ".partial"))]
