"""The cost plan: store bytes equal to a real store's, times from hand-counted FLOPs, DeCLIP's full ablation from the
committed FLOP table, and CLI dry runs (the SRM control under a disk budget included)."""
import subprocess
import sys
import json
from pathlib import Path

import pytest

from tests.fixtures import TINY_BACKBONE
from declip.pipeline.grid.cost_plan import Rates, declip_full_ablation, estimate, grid_workload
from declip.pipeline.grid.dry_run import dry_run
from declip.core.errors import DeclipError
from declip.pipeline.grid.config import GridConfig
from declip.store.feature_store import FeatureStore
from declip.store.listing import list_entries

from tests.fixtures import REPO  # noqa: E402
RATES = Rates(encode=2e9, train=1e9, eval=4e9, origin="test")


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
    # every cell is evaluated on the valid and the test split (eval_splits) of its one test set
    assert plan["cells"] == 3 * 2 * 2 and plan["evaluations"] == 3 * 2 * 2 * 2
    assert plan["epochs_assumed"] == 3  # never more than max_epochs


def test_time_estimate_is_flops_over_rate(tiny_store, tmp_path):
    cfg = _grid(tiny_store, tmp_path, layers=["layer1"], decoders=["linear"], train_sets=["tint"])
    work = grid_workload(cfg)
    plan = estimate(work, RATES)
    (n_train, n_valid), n_test = work.train_rows["tint"], work.test_rows["tint"]
    # hand counts (tests/pipeline/grid/test_model_flops.py derives them): linear on 64×8×8 and the tiny ViT to layer1
    fwd, step, encode = 2 * 64 * 64, 2 * 2 * 64 * 64, 16_515_584
    expect_train = 3 * (n_train * step / RATES.train + n_valid * fwd / RATES.eval)
    assert plan["seconds"]["train"] == pytest.approx(expect_train)
    assert n_test == 4 + 2  # the tiny tree's test split: 4 tint fakes and 2 reals (tests/fixtures.py)
    n_valid_scored = 4 + 2  # every cell is also evaluated on the valid split: the same counts
    assert plan["seconds"]["evaluate"] == pytest.approx((n_test + n_valid_scored) * fwd / RATES.eval)
    assert plan["seconds"]["encode"] == pytest.approx(work.n_images * encode / 2e9)
    doubled = estimate(grid_workload(cfg), Rates(4e9, 2e9, 8e9, "x"))
    assert doubled["seconds"]["total"] == pytest.approx(plan["seconds"]["total"] / 2)
    # one pass to the deepest layer encodes layer0 and layer3 together: 4 blocks and the patch embedding
    both = estimate(grid_workload(_grid(tiny_store, tmp_path, layers=["layer3", "layer0"])), RATES)
    assert both["encode_passes"] == 1
    assert both["seconds"]["encode"] == pytest.approx(work.n_images * (4 * 7_471_360 + 1_572_864) / 2e9)


def test_seeds_count_in_cells_and_in_train_and_evaluation_hours(tiny_store, tmp_path):
    """Issue 21 item 14: a second seed trains and evaluates every cell again; encoding is shared."""
    one = estimate(grid_workload(_grid(tiny_store, tmp_path, seeds=[0])), RATES)
    two = estimate(grid_workload(_grid(tiny_store, tmp_path, seeds=[0, 1])), RATES)
    assert two["cells"] == 2 * one["cells"] and two["evaluations"] == 2 * one["evaluations"]
    assert two["seconds"]["evaluate"] == pytest.approx(2 * one["seconds"]["evaluate"])
    assert two["seconds"]["train"] == pytest.approx(2 * one["seconds"]["train"])
    assert two["seconds"]["encode"] == pytest.approx(one["seconds"]["encode"])


def test_full_ablation_needs_groups_and_int8_on_a_64_gib_disk(monkeypatch):
    import declip.pipeline.grid.model_flops as model_flops

    def no_counting(*args, **kwargs):
        raise AssertionError(f"counted {args} on the meta device: the committed FLOP table lacks it")

    monkeypatch.setattr(model_flops, "count_encode_flops", no_counting)
    monkeypatch.setattr(model_flops, "count_decoder_flops", no_counting)
    model_flops.encode_flops.cache_clear()
    model_flops._decoder_flops.cache_clear()
    fp16 = estimate(declip_full_ablation("float16", None), RATES)
    assert fp16["cells"] == 28 * 5 * 4 and fp16["evaluations"] == 28 * 5 * 4 * 4
    vit = next(r for r in fp16["layers"] if r["layer"] == "ViT-L-14@openai/layer20")
    assert vit["bytes_per_image"] == 1024 * 16 * 16 * 2 + 1024 * 2 + 1  # features, class token, valid flag: 0.5 MB
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
    # 2 cells × (valid + test split) × 2 test sets
    assert "== this grid: 2 cells, 8 evaluations" in out.stdout and "supplied" in out.stdout
    assert "DeCLIP full ablation" not in out.stdout and "calibrat" not in out.stdout  # opt-in; rates supplied
    assert not store.exists() and not (tmp_path / "g").exists()


SRM_BYTES_PER_IMAGE = 63 * 16 * 16 * 2 + 1  # float16 features + the valid flag; no class token


@pytest.mark.slow  # runs the CLI in a subprocess
def test_cli_dry_run_plans_the_srm_control_under_a_disk_budget(tiny_manifest, tmp_path):
    """Issue 19 item 4: `srm@fixed/layer0` in extra_sources with max_store_gb used to fail as an unknown open_clip
    architecture. A budget of 2 MB holds the tiny ViT layer (0.5 MB) or SRM (1.9 MB), not both: two groups."""
    rates = tmp_path / "rates.json"
    rates.write_text(json.dumps({"encode_flops_per_s": 1e12, "train_flops_per_s": 5e11, "eval_flops_per_s": 1e12}))
    store = tmp_path / "new.zarr"
    config = tmp_path / "grid.toml"
    config.write_text(f"""store = "{store}"
dataset = "dolos-celebahq"
manifest = "{tiny_manifest}"
out = "{tmp_path / 'g'}"
backbones = ["{TINY_BACKBONE}"]
layers = ["layer0"]
extra_sources = ["srm@fixed/layer0"]
decoders = ["linear"]
train_sets = ["tint"]
test_sets = ["tint"]
max_store_gb = {2e6 / 2**30}
""")
    out = subprocess.run([sys.executable, "-m", "declip.cli", "grid", "--config", str(config), "--dry-run",
                          "--project-declip", "--throughputs", str(rates)], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert "== this grid: 2 cells" in out.stdout
    srm = next(line for line in out.stdout.splitlines() if line.strip().startswith("srm@fixed/layer0"))
    assert "63×16×16" in srm and f"{SRM_BYTES_PER_IMAGE:,d}" in srm and "+cls" not in srm
    assert "2 group(s)" in out.stdout and "2 encode pass(es)" in out.stdout
    # DeCLIP's projection cannot fit a 2 MB budget: planned on a 64 GiB disk instead, and said so
    assert "DeCLIP full ablation, Dolos size: 560 cells" in out.stdout and "planned in int8 on 56 GiB" in out.stdout
    assert not store.exists() and not (tmp_path / "g").exists()


def test_a_grid_of_the_srm_control_alone_calibrates_on_its_fixed_weights(tiny_store, tmp_path):
    """No CLIP backbone at all: the calibration times `srm@fixed` itself (its family's offline key)."""
    cfg = _grid(tiny_store, tmp_path, backbones=[], layers=[], extra_sources=["srm@fixed/layer0"],
                decoders=["linear"], train_sets=["tint"])
    text, plan = dry_run(cfg)
    assert "srm@fixed/layer0" in text and "calibrated on cpu (srm to layer0" in text
    assert all(rate > 0 for rate in (plan["grid"]["rates"]["encode"], plan["grid"]["rates"]["train"]))
    assert plan["grid"]["layers"][0]["bytes_per_image"] == SRM_BYTES_PER_IMAGE


def test_evaluations_count_every_split_and_view_and_views_are_encoded(tiny_store, tiny_manifest, tmp_path):
    """Issue 19 item 5: the dry run counted 4 evaluations where the grid runs 32 (eval splits × views × test sets)
    and left the view extraction out of the total."""
    cfg = _grid(tiny_store, tmp_path, tiny_manifest, layers=["layer1"], decoders=["linear"], train_sets=["tint"],
                test_sets=["tint", "bright"], test_views=["jpeg:50", "blur:1"])
    from declip.pipeline.grid.plan import plan_cells

    plan = estimate(grid_workload(cfg), RATES)
    # (valid, test) clean + 2 views on test = 4 evaluations per test set, 2 test sets, 1 cell
    assert plan["evaluations"] == 8 == sum(len(c.evals) for c in plan_cells(cfg))
    plain = estimate(grid_workload(_grid(tiny_store, tmp_path, tiny_manifest, layers=["layer1"], decoders=["linear"],
                                         train_sets=["tint"], test_sets=["tint", "bright"])), RATES)
    # each view re-encodes the test split (4 tint + 4 bright fakes + 2 reals = 10 images): 2 views, 20 images
    assert plan["view_images"] == 20 and plain["view_images"] == 0
    encode = 16_515_584  # the tiny ViT to layer1, hand-counted (tests/pipeline/grid/test_model_flops.py)
    assert plan["seconds"]["encode"] - plain["seconds"]["encode"] == pytest.approx(20 * encode / RATES.encode)
    # the view evaluations score the test split again: twice (valid + test) becomes four times per test set
    assert plan["seconds"]["evaluate"] == pytest.approx(2 * plain["seconds"]["evaluate"])
    assert plan["view_bytes"] == 20 * plan["layers"][0]["bytes_per_image"]


def test_dry_run_names_unknown_sets_before_calibrating(tiny_store, tmp_path, monkeypatch):
    """Issue 21 item 9: an unknown test set passed the dry run silently."""
    import declip.pipeline.grid.dry_run as module

    monkeypatch.setattr(module, "calibrate", lambda cfg: pytest.fail("calibrated before checking the sets"))
    with pytest.raises(DeclipError, match=r"test sets \['nope'\] have no test rows \(known: \['bright', 'tint'\]\)"):
        dry_run(_grid(tiny_store, tmp_path, test_sets=["nope"]))


def test_dry_run_says_when_it_calibrates_and_projects_declip_only_when_asked(tiny_store, tmp_path):
    cfg = _grid(tiny_store, tmp_path, layers=["layer0"], decoders=["linear"], train_sets=["tint"])
    said: list[str] = []
    text, plan = dry_run(cfg, say=said.append)
    assert len(said) == 2 and said[0].startswith("calibrating: ") and "--throughputs" in said[0]
    assert said[1].startswith("calibrated in ") and said[1].endswith(" s")
    assert "DeCLIP" not in text and set(plan) == {"grid"}
    text, plan = dry_run(cfg, RATES, project_declip=True, say=said.append)
    assert len(said) == 2 and "DeCLIP full ablation, Dolos size: 560 cells" in text and "declip_full" in plan


@pytest.mark.parametrize("keys, says", [
    (dict(layers=["layer9"]), "has no layer9; its layers are layer0..layer3"),
    (dict(layers=3), 'layers takes a list such as layers = ["layer12", "layer20"], got 3'),
    (dict(layers="layer0"), "layers takes a list such as"),
    (dict(layers=[]), "but layers is empty"),
    (dict(backbones=[], layers=[]), "the grid has no features to train on"),
])
def test_bad_layers_are_one_line(tiny_store, tmp_path, keys, says):
    """Issue 21 item 9: a 46-line AssertionError, a 24-line TypeError and an 18-line IndexError before."""
    with pytest.raises(DeclipError) as caught:
        dry_run(_grid(tiny_store, tmp_path, **keys), RATES)
    assert says in str(caught.value) and "\n" not in str(caught.value)
