"""The grid's results table and run index are replaced atomically: a write killed midway keeps the previous file."""
from __future__ import annotations

import pandas as pd
import pytest

from declip.pipeline.grid.results import RESULT_COLUMNS, write_results


def _table(value: float) -> pd.DataFrame:
    row = {c: "" for c in RESULT_COLUMNS} | {"run_id": "r1", "train_set": "lama", "test_set": "lama", "split": "test",
                                            "view": "clean", "metric": "iou", "value": value}
    return pd.DataFrame([row])


def test_results_killed_mid_write_keep_the_previous_table(tmp_path, monkeypatch):
    write_results(_table(0.5), tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def killed(self, path, *args, **kwargs):
        open(path, "w").write("run_id,va")  # half a CSV, then the process is interrupted
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_csv", killed)
    with pytest.raises(KeyboardInterrupt):
        write_results(_table(0.7), tmp_path)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv", "results.parquet"]  # no temp file
    assert (tmp_path / "results.csv").read_bytes() == before["results.csv"]
    assert pd.read_parquet(tmp_path / "results.parquet")["value"].tolist() == [0.7]  # written before the kill
