"""runs/index.csv tells the truth while a grid runs: a cell whose training run runs now is ``training`` (it used to
stay ``pending``: the index looked for a ``last/`` folder no run writes), an interrupted one ``interrupted``, and the
grid's bar names the cells training now. Statuses are set up by hand in run directories."""
import json
import os
import socket
from pathlib import Path

import pandas as pd

from declip.pipeline.grid import cells as grid_cells
from declip.pipeline.grid.config import GridConfig
from declip.pipeline.grid.plan import plan_cells
from declip.pipeline.grid.progress import CellProgress
from declip.pipeline.grid.run_index import TRAINING_MARKER, cell_status, training_marks, write_index

GRID = {"dataset": "dolos-demo", "backbones": ["demo-vit-small@random-0"], "layers": ["layer1", "layer4"],
        "decoders": ["linear", "conv-4"], "train_sets": ["telea"], "test_sets": ["telea"]}
NO_SUCH_PID = 2**22 + 7  # above Linux's largest pid_max


def _cells(tmp_path):
    return plan_cells(GridConfig.from_dict({**GRID, "store": str(tmp_path / "s"), "out": str(tmp_path / "g")}))


def _mark(run_dir: Path, host: str, pid: int) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / TRAINING_MARKER).write_text(json.dumps({"host": host, "pid": pid, "started": 0}))


def test_status_is_read_from_the_run_directory(tmp_path):
    runs = {name: tmp_path / name for name in ("trained", "live", "elsewhere", "dead", "failed", "state", "empty")}
    for run_dir in runs.values():
        run_dir.mkdir()
    (runs["trained"] / "summary.json").write_text("{}")
    _mark(runs["trained"], socket.gethostname(), os.getpid())  # a finished run is trained, marked or not
    _mark(runs["live"], socket.gethostname(), os.getpid())
    _mark(runs["elsewhere"], "another-host", NO_SUCH_PID)  # no pid can be checked on another machine
    _mark(runs["dead"], socket.gethostname(), NO_SUCH_PID)  # killed while training: resumable, not training
    (runs["dead"] / "state.pt").write_bytes(b"")
    (runs["failed"] / "failed.json").write_text("{}")
    (runs["failed"] / "state.pt").write_bytes(b"")
    (runs["state"] / "state.pt").write_bytes(b"")
    assert {name: cell_status(d) for name, d in runs.items()} == {
        "trained": "trained", "live": "training", "elsewhere": "training", "dead": "interrupted", "failed": "failed",
        "state": "interrupted", "empty": "pending"}


def test_the_index_says_training_while_a_grid_trains_the_cell(tmp_path, monkeypatch):
    cells = _cells(tmp_path)
    out = Path(cells[0].train.out).parents[1]
    index = out / "runs" / "index.csv"
    write_index(out, [c.train for c in cells])
    seen = {}

    def fake_train(cfg, log=None):  # what the index says while the cell trains
        seen[cfg.identity()] = pd.read_csv(index, dtype={"run_id": str}).set_index("run_id")["status"].to_dict()
        return {"best_val": 1.0, "best_epoch": 0, "epochs": 1}

    monkeypatch.setattr(grid_cells, "train", fake_train)
    records = grid_cells.train_cells([cells[1].train])
    assert [r["status"] for r in records] == ["ok"]
    during = seen[cells[1].run_id]
    assert during[cells[1].run_id] == "training"
    assert {during[c.run_id] for c in cells if c is not cells[1]} == {"pending"}
    after = pd.read_csv(index, dtype={"run_id": str}).set_index("run_id")["status"]
    assert after[cells[1].run_id] == "pending"  # the fake wrote no summary; the mark is gone
    assert not (Path(cells[1].train.out) / TRAINING_MARKER).exists()


def test_marks_go_when_the_training_run_fails(tmp_path):
    cells = _cells(tmp_path)
    try:
        with training_marks([c.train for c in cells[:2]]):
            assert {cell_status(Path(c.train.out)) for c in cells[:2]} == {"training"}
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert {cell_status(Path(c.train.out)) for c in cells[:2]} == {"pending"}


def test_the_bar_names_the_cells_training_now(tmp_path):
    cells = _cells(tmp_path)
    progress = CellProgress(cells, [cells[:2], cells[2:]], [], show=False)
    assert progress.refresh() == [] and "training" not in progress._postfix()
    with training_marks([c.train for c in cells[2:]]):
        names = progress.refresh()
        assert len(names) == 2 and names[0].startswith("demo-vit-small_layer4_")
        assert progress._postfix()["training"] == f"{names[0]} +1"
    assert progress.refresh() == []
    progress.close()
