"""The cost plan: FLOP counts pinned to the design's figures, store bytes equal to a real store's, CLI dry run."""
import subprocess
import sys
import json
from pathlib import Path

import pytest

from tests.fixtures import TINY_BACKBONE
from declip.pipeline.grid.cost_plan import Rates, declip_full_ablation, dry_run, estimate, grid_workload
from declip.pipeline.grid.config import GridConfig
from declip.pipeline.grid.model_flops import decoder_flops, encode_flops
from declip.store.feature_store import FeatureStore
from declip.store.listing import list_entries

from tests.fixtures import REPO  # noqa: E402
RATES = Rates(encode=2e9, train=1e9, eval=4e9, origin="test")


def test_flops_match_the_published_sizes():
    assert encode_flops("ViT-L-14", "layer23") == pytest.approx(162e9, rel=0.01)
    assert encode_flops("ViT-L-14", "layer20") == pytest.approx(142e9, rel=0.01)
    fwd, step = decoder_flops("conv-20", 1024, (16, 16), "vit", "layer20")
    assert fwd == pytest.approx(81e9, rel=0.01) and 2.5 * fwd < step < 3.5 * fwd
    assert encode_flops("RN50", "layer1") < encode_flops("RN50", "layer4")


def _grid(store, tmp_path, manifest=None, **kw):
    base = dict(store=str(store), dataset="dolos-celebahq", out=str(tmp_path / "g"), backbones=[TINY_BACKBONE],
                layers=["layer0", "layer2", "layer3"], decoders=["linear", "conv-4"], train_sets=["tint", "bright"],
                test_sets=["tint"], max_epochs=3, width=0.125)
    if manifest:
        base["manifest"] = str(manifest)
    base.update(kw)
    return GridConfig.from_dict(base)


def test_dry_run_bytes_match_the_store(tiny_store, tmp_path):
    plan = estimate(grid_workload(_grid(tiny_store, tmp_path)), RATES)
    actual = {e["key"].rsplit("/", 1)[0]: e["bytes"] for _, e in list_entries(FeatureStore(str(tiny_store), "r")).iterrows()}
    assert len(plan["layers"]) == 3
    for row in plan["layers"]:
        # the store adds only zarr metadata and compressed flags to the array bytes the plan counts
        assert row["bytes"] == pytest.approx(actual[row["layer"]], rel=0.03), row
    assert plan["cells"] == 3 * 2 * 2 and plan["evaluations"] == 12
    assert plan["epochs_assumed"] == 3  # never more than max_epochs


def test_time_estimate_is_flops_over_rate(tiny_store, tmp_path):
    cfg = _grid(tiny_store, tmp_path, layers=["layer1"], decoders=["linear"], train_sets=["tint"])
    work = grid_workload(cfg)
    plan = estimate(work, RATES)
    (n_train, n_valid), n_test = work.train_rows["tint"], work.test_rows["tint"]
    fwd, step = decoder_flops("linear", 64, (8, 8), "vit", "layer1")
    expect_train = 3 * (n_train * step / RATES.train + n_valid * fwd / RATES.eval)
    assert plan["seconds"]["train"] == pytest.approx(expect_train)
    assert plan["seconds"]["evaluate"] == pytest.approx(n_test * fwd / RATES.eval)
    assert plan["seconds"]["encode"] == pytest.approx(work.n_images * encode_flops("test-vit-tiny", "layer1") / 2e9)
    doubled = estimate(grid_workload(cfg), Rates(4e9, 2e9, 8e9, "x"))
    assert doubled["seconds"]["total"] == pytest.approx(plan["seconds"]["total"] / 2)


@pytest.mark.slow  # plans all 560 cells: ~15 s of FLOP counting on 2 cores
def test_full_ablation_needs_groups_and_int8_on_a_64_gib_disk():
    fp16 = estimate(declip_full_ablation("float16", None), RATES)
    assert fp16["cells"] == 28 * 5 * 4 and fp16["evaluations"] == 28 * 5 * 4 * 4
    vit = next(r for r in fp16["layers"] if r["layer"] == "ViT-L-14@openai/layer20")
    assert vit["bytes_per_image"] == pytest.approx(1024 * 257 * 2, rel=0.01)  # 0.5 MB per layer per image
    budgeted = estimate(declip_full_ablation("int8", 56 * 2**30), RATES)
    assert len(budgeted["groups"]) > 1 and max(g["held_bytes"] for g in budgeted["groups"]) <= 56 * 2**30
    assert len(budgeted["groups"]) <= budgeted["encode_passes"] <= len(budgeted["groups"]) + 1


@pytest.mark.slow
def test_cli_dry_run_prints_the_plan_and_runs_nothing(tiny_store, tiny_manifest, tmp_path):
    rates = tmp_path / "rates.json"
    rates.write_text(json.dumps({"encode_flops_per_s": 1e12, "train_flops_per_s": 5e11, "eval_flops_per_s": 1e12}))
    store = tmp_path / "new.zarr"
    out = subprocess.run([sys.executable, "-m", "declip.cli", "grid", "--dry-run", "--throughputs", str(rates),
                          "--store", str(store), "--dataset", "dolos-celebahq", "--manifest", str(tiny_manifest),
                          "--out", str(tmp_path / "g"), "--backbones", TINY_BACKBONE, "--layers", "layer0,layer3",
                          "--decoders", "linear", "--train-sets", "tint", "--test-sets", "tint,bright"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "== this grid: 2 cells, 4 evaluations" in out.stdout
    assert "DeCLIP full ablation, Dolos size: 560 cells" in out.stdout and "supplied" in out.stdout
    assert not store.exists() and not (tmp_path / "g").exists()
