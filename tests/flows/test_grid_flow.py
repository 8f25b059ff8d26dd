"""The grid flow: resume, an added axis runs only new cells, a failing cell is isolated, the Dask runner path."""
import os

import pandas as pd
import pytest

from tests.fixtures import grid_json
from declip.core.errors import DeclipError
from declip.pipeline.grid.config import GridConfig
from declip.pipeline.grid.plan import plan_cells




def test_plan_is_deterministic_and_toml_checked(tmp_path):
    a = [c.run_id for c in plan_cells(GridConfig.from_dict(grid_json("s", tmp_path)))]
    assert a == [c.run_id for c in plan_cells(GridConfig.from_dict(grid_json("s", tmp_path)))]
    assert a != [c.run_id for c in plan_cells(GridConfig.from_dict(grid_json("s", tmp_path, max_epochs=2)))]
    toml = tmp_path / "g.toml"
    toml.write_text('store = "s"\ndataset = "d"\nout = "o"\nbackbones = ["b"]\nlayers = ["layer0"]\n'
                    'train_sets = ["a"]\ntest_sets = ["a"]\nbogus = 1\n')
    with pytest.raises(DeclipError, match="bogus"):
        GridConfig.from_toml(str(toml))


@pytest.mark.flow
def test_grid_resume_axis_failure_and_dask(tiny_store, tmp_path, prefect_harness, capfd):
    from declip.flows.grid import run_grid

    out = tmp_path / "grid"
    first = run_grid(grid_json(tiny_store, out))
    assert (first["cells"], first["trained"], first["failed"]) == (1, 1, [])
    table = pd.read_parquet(out / "results.parquet")
    iou = table[table["metric"] == "iou"]
    assert {"linear", "baseline:all-zero", "baseline:all-fake", "baseline:mask-prior"} <= set(iou["decoder"])
    assert set(iou["split"]) == {"valid", "test"}  # valid rows: the report chooses its best cell there
    assert iou.loc[iou["decoder"].str.startswith("baseline"), "collapsed"].all()  # constant maps by construction
    ckpt = next(out.glob("runs/*/best/decoder.pt"))
    mtime = ckpt.stat().st_mtime_ns

    again = run_grid(grid_json(tiny_store, out))
    assert (again["trained"], again["skipped_cells"], again["evaluated"]) == (0, 1, 0)
    assert ckpt.stat().st_mtime_ns == mtime
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), table)

    grown = run_grid(grid_json(tiny_store, out, layers=("layer0", "layer1"), test_sets=("tint", "bright"),
                          decoders=("linear", "conv-7")))
    assert grown["trained"] == 1 and grown["skipped_cells"] == 1  # only the new linear cell; conv-7 fails
    assert grown["training_runs"] == 1  # the 3 new cells share the backbone: one multi-head run (then one by one)
    assert len(grown["failed"]) == 2 and all("conv-7" in f["error"] or "conv" in f["error"] for f in grown["failed"])
    assert len(list(out.glob("runs/*/failed.json"))) == 2
    iou = pd.read_parquet(out / "results.parquet").query("metric == 'iou' and decoder == 'linear'")
    assert set(iou["layer"]) == {"layer0", "layer1"} and set(iou["test_set"]) == {"tint", "bright"}
    index = pd.read_csv(out / "runs" / "index.csv", dtype={"run_id": str})
    assert sorted(index["status"]) == ["failed", "failed", "trained", "trained"]
    assert all((out / "by-name" / name).resolve() == (out / "runs" / rid).resolve()
               for name, rid in zip(index["name"], index["run_id"]))

    grown_rows = len(pd.read_parquet(out / "results.parquet"))

    narrow = run_grid(grid_json(tiny_store, out))  # the first, narrower config again: results never shrink
    assert narrow["trained"] == 0 and narrow["rows"] == grown_rows
    kept = pd.read_parquet(out / "results.parquet").query("metric == 'iou' and decoder == 'linear'")
    assert set(kept["layer"]) == {"layer0", "layer1"} and set(kept["test_set"]) == {"tint", "bright"}
    assert not kept.duplicated(["run_id", "train_set", "test_set", "split"]).any()

    capfd.readouterr()

    dask = run_grid(grid_json(tiny_store, tmp_path / "dask", task_runner="dask", max_workers=2, baselines=False))
    assert dask["trained"] == 1 and dask["failed"] == []
    noise = [line for line in capfd.readouterr().err.splitlines() if "INFO" in line]
    assert noise == [], noise  # dask.distributed's start-up chatter (24 lines per grid) stays out of the terminal
    a = pd.read_parquet(out / "results.parquet").query("metric == 'iou' and decoder == 'linear' and layer == 'layer0' "
                                                       "and test_set == 'tint'")["value"].iloc[0]
    b = pd.read_parquet(tmp_path / "dask" / "results.parquet").query("metric == 'iou'")["value"].iloc[0]
    assert a == pytest.approx(b, abs=1e-6)


def test_missing_test_set_is_found_before_any_training(tiny_store, tmp_path):
    from declip.flows.grid import grid_flow
    from declip.pipeline.grid.plan import check_subsets

    check_subsets(GridConfig.from_dict(grid_json(tiny_store, tmp_path / "ok")))  # tint exists in train and test
    cfg = grid_json(tiny_store, tmp_path / "g", test_sets=("tint", "lama"))
    with pytest.raises(DeclipError, match=r"test sets \['lama'\] have no test rows.*Nothing was trained"):
        grid_flow.fn(cfg)
    assert not (tmp_path / "g" / "runs").exists()
