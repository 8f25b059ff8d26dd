"""Progress inside the training loop (issue 19 item 5): one line per epoch to the logger a flow passes in, with the
group's ETA; and the cooperative stop flag of :mod:`declip.core.stop`, checked at every batch boundary."""
import logging
from dataclasses import replace
from functools import partial

import pandas as pd
import pytest
import torch

from tests.fixtures import train_config
from declip.core import stop
from declip.pipeline.grid.cells import train_cells
from declip.pipeline.train import training
from declip.pipeline.train.training import train, train_heads

_cfg = partial(train_config, max_epochs=3, patience=50, batch_size=5)


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def _logger(name):
    logger = logging.getLogger(f"test-progress-{name}")
    logger.propagate = False
    handler = Lines()
    logger.handlers = [handler]
    logger.setLevel(logging.INFO)
    return logger, handler.lines


@pytest.fixture(autouse=True)
def _no_stop_left_over():
    stop.clear_stop()
    yield
    stop.clear_stop()


def test_every_epoch_of_a_group_is_one_line_in_the_passed_logger_with_an_eta(tiny_store, tmp_path):
    logger, lines = _logger("group")
    cfgs = [_cfg(tiny_store, tmp_path / d, decoder=d) for d in ("linear", "attention")]
    train_heads(cfgs, logger)
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 3, lines
    assert all("2/2 head(s) still training" in line and "ETA ≤" in line for line in epochs[:-1]), epochs
    assert epochs[0].startswith("epoch 1/≤3 done") and epochs[-1].startswith("epoch 3/≤3 done"), epochs
    assert "ETA ≤ 0 epoch(s)" in epochs[-1]


def test_grid_cells_pass_their_logger_to_the_training_loop(tiny_store, tmp_path):
    logger, lines = _logger("cells")
    cfgs = [_cfg(tiny_store, tmp_path / d, decoder=d, max_epochs=2) for d in ("linear", "attention")]
    records = train_cells(cfgs, logger)
    assert [r["status"] for r in records] == ["ok", "ok"]
    assert sum(line.startswith("epoch ") for line in lines) == 2, lines


def test_a_stop_request_ends_training_at_a_batch_boundary_and_the_run_resumes(tiny_store, tmp_path, monkeypatch):
    cfg = _cfg(tiny_store, tmp_path / "run")
    real_targets, seen = training._batch_targets, []

    def stop_in_epoch_two(batch, device):
        seen.append(1)
        if (tmp_path / "run" / "epochs.csv").exists() and len(pd.read_csv(tmp_path / "run" / "epochs.csv")) == 1:
            stop.request_stop()  # the next batch boundary stops
        return real_targets(batch, device)

    monkeypatch.setattr(training, "_batch_targets", stop_in_epoch_two)
    with pytest.raises(stop.Interrupted, match="epoch 1"):
        train(cfg)
    assert len(pd.read_csv(tmp_path / "run" / "epochs.csv")) == 1  # the interrupted epoch left nothing behind
    monkeypatch.setattr(training, "_batch_targets", real_targets)
    stop.clear_stop()
    resumed = train(cfg)
    alone = train(replace(cfg, out=str(tmp_path / "alone")))
    assert resumed["epochs"] == alone["epochs"] == 3 and resumed["best_val"] == alone["best_val"]
    a = torch.load(tmp_path / "run" / "best" / "decoder.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "alone" / "best" / "decoder.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_stop_in_a_grid_group_is_not_recorded_as_failed_cells(tiny_store, tmp_path):
    stop.request_stop()
    cfgs = [_cfg(tiny_store, tmp_path / d, decoder=d) for d in ("linear", "attention")]
    with pytest.raises(stop.Interrupted):
        train_cells(cfgs)
    assert not list(tmp_path.rglob("failed.json"))
