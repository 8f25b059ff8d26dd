"""Disk-budgeted grids: the group plan, layer sizes from configs, and a budgeted grid that evicts, is interrupted,
resumes, and ends with the same results as an unbudgeted run."""
import pandas as pd
import pytest

from tests.fixtures import TINY_BACKBONE, grid_json
from declip.core.errors import DeclipError
from declip.core.keys import LayerKey
from declip.pipeline.grid.config import GridConfig
from declip.pipeline.grid.budget import layer_nbytes, plan_groups
from declip.store.feature_store import FeatureStore

DATASET = "dolos-celebahq"


B, R = "b@random-0", "r@random-0"
L0, L1, L2, R3 = (LayerKey.parse(k) for k in (f"{B}/layer0", f"{B}/layer1", f"{B}/layer2", f"{R}/layer3"))
S0, S1, S2, FUSED = f"{B}/layer0", f"{B}/layer1", f"{B}/layer2", f"{B}/layer0+{R}/layer3"


def test_groups_fit_the_budget_and_evict_what_no_later_group_needs():
    nbytes = {L0: 10, L1: 10, L2: 10, R3: 5}
    groups = plan_groups([S0, S1, S2], nbytes, 25)
    assert [g.sources for g in groups] == [[S0, S1], [S2]]
    assert [g.evict_after for g in groups] == [[L0, L1], [L2]]
    # a fused source reading layer0 again keeps layer0 on disk until its group has run, and that counts
    groups = plan_groups([S0, S1, FUSED], nbytes, 20)
    assert [g.sources for g in groups] == [[S0, S1], [FUSED]]
    assert groups[0].evict_after == [L1]
    assert groups[1].held_bytes == 15 and groups[1].evict_after == [L0, R3]
    groups = plan_groups([S0, S1, S2, FUSED], nbytes, 20)
    assert [g.sources for g in groups] == [[S0, S1], [S2], [FUSED]]
    assert [g.held_bytes for g in groups] == [20, 20, 15]  # layer0 is carried through group 2 and counted
    assert len(plan_groups([S0, S1], nbytes, None)) == 1
    with pytest.raises(DeclipError, match="cannot hold"):
        plan_groups([S0], nbytes, 9)


def test_budget_needs_a_manifest(tmp_path):
    with pytest.raises(DeclipError, match="manifest"):
        GridConfig.from_dict(dict(store="s", dataset="d", out=str(tmp_path), backbones=["b@random-0"],
                                  layers=["layer0"], train_sets=["a"], test_sets=["a"], max_store_gb=1.0))


def _cfg(tmp, name, manifest, **kw):
    return grid_json(tmp / f"{name}.zarr", tmp / name, **{"layers": ["layer0", "layer1", "layer2"],
                                                          "test_sets": ["tint", "bright"], "manifest": str(manifest),
                                                          **kw})

def _values(out):
    t = pd.read_parquet(out / "results.parquet")
    t = t[t["decoder"] == "linear"].sort_values(["layer", "test_set", "metric"]).reset_index(drop=True)
    return t[["layer", "test_set", "metric", "value", "n_images"]]


@pytest.mark.flow
def test_budgeted_grid_evicts_resumes_and_matches_unbudgeted(tiny_manifest, tmp_path, prefect_harness,
                                                             monkeypatch):
    import declip.flows.grid as grid_flow_module
    from declip.flows.grid import run_grid

    full = run_grid(_cfg(tmp_path, "full", tiny_manifest))
    assert full["failed"] == [] and full["groups"] == 1
    one_layer = layer_nbytes(LayerKey.parse(f"{TINY_BACKBONE}/layer0"), 60, "float16")
    budget_gb = 1.5 * one_layer / 2**30  # room for one layer at a time: three groups
    cfg = _cfg(tmp_path, "budget", tiny_manifest, max_store_gb=budget_gb)

    real_run_cells, calls = grid_flow_module._run_cells, []

    def stop_in_second_group(cells, *args):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("killed")
        return real_run_cells(cells, *args)

    monkeypatch.setattr(grid_flow_module, "_run_cells", stop_in_second_group)
    with pytest.raises(RuntimeError, match="killed"):
        run_grid(cfg)
    store = FeatureStore(cfg["store"], mode="r")
    # group 1 ran and was evicted; group 2 was extracted when the run died
    assert [layer for _, layer, _ in store.iter_layers()] == ["layer1"]
    monkeypatch.setattr(grid_flow_module, "_run_cells", real_run_cells)

    resumed = run_grid(cfg)
    assert resumed["groups"] == 3 and resumed["failed"] == []
    assert resumed["trained"] == 2 and resumed["skipped_cells"] == 1  # layer0's cell is not retrained
    assert sorted(resumed["evicted"]) == [f"{TINY_BACKBONE}/layer1", f"{TINY_BACKBONE}/layer2"]
    assert list(FeatureStore(cfg["store"], mode="r").iter_layers()) == []
    pd.testing.assert_frame_equal(_values(tmp_path / "budget"), _values(tmp_path / "full"))

    again = run_grid(cfg)  # everything finished: no extraction, no training
    assert (again["trained"], again["extracted"], again["evicted"]) == (0, [], [])

    kept = run_grid(_cfg(tmp_path, "kept", tiny_manifest, max_store_gb=budget_gb, keep_features=True))
    assert kept["evicted"] == [] and len(list(FeatureStore(str(tmp_path / "kept.zarr"), mode="r").iter_layers())) == 3


@pytest.mark.flow
def test_budgeted_grid_never_evicts_a_layer_that_was_in_the_store_before(tiny_manifest, tmp_path,
                                                                         prefect_harness):
    from declip.flows.grid import run_grid
    from declip.pipeline.extract.extraction import ExtractConfig, run_extraction

    cfg = _cfg(tmp_path, "pre", tiny_manifest, layers=("layer0", "layer1"),
               max_store_gb=1.5 * layer_nbytes(LayerKey.parse(f"{TINY_BACKBONE}/layer0"), 60, "float16") / 2**30)
    run_extraction(ExtractConfig(manifest=cfg["manifest"], store=cfg["store"], backbone=TINY_BACKBONE,
                                 dataset=DATASET, layers="layer1", batch_size=8, progress=False))
    before = FeatureStore(cfg["store"], mode="r").open_layer(TINY_BACKBONE, "layer1", DATASET).meta["created"]

    result = run_grid(cfg)
    assert result["failed"] == [] and result["groups"] == 2 and result["trained"] == 2
    assert result["evicted"] == [f"{TINY_BACKBONE}/layer0"]  # the grid's own layer goes; the user's layer1 stays
    store = FeatureStore(cfg["store"], mode="r")
    assert [layer for _, layer, _ in store.iter_layers()] == ["layer1"]
    kept = store.open_layer(TINY_BACKBONE, "layer1", DATASET)
    assert kept.complete and kept.meta["created"] == before  # not re-extracted either
