"""`declip train` and `declip evaluate` run as a user runs them (Prefect flows, DeCLIP option names), reporting to
the session's Prefect API (a command with none starts a temporary one: tests/cli/test_flow_cli_hygiene.py)."""
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.fixtures import TINY_BACKBONE

from tests.fixtures import REPO  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.flow]  # CLI subprocesses that run Prefect flows


def test_train_then_evaluate_cli(tiny_store, tmp_path, prefect_harness):
    run = tmp_path / "run"
    env = dict(os.environ, PREFECT_API_URL=prefect_harness)
    train = subprocess.run(
        [sys.executable, "-m", "declip.cli", "train", "--store", str(tiny_store), "--dataset", "dolos-celebahq",
         "--backbone", TINY_BACKBONE, "--feature_layer", "layer1", "--decoder_type", "linear", "--train_dataset",
         "tint", "--fully_supervised", "--niter", "2", "--batch_size", "8", "--out", str(run)],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert train.returncode == 0, train.stderr
    assert "best val IoU %" in train.stdout and (run / "best" / "decoder.pt").exists()
    ev = subprocess.run(
        [sys.executable, "-m", "declip.cli", "evaluate", "--store", str(tiny_store), "--dataset", "dolos-celebahq",
         "--ckpt", str(run / "best"), "--test", "tint,bright", "--result_folder", str(tmp_path / "ev")],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert ev.returncode == 0, ev.stderr
    assert "RANDOM" in ev.stdout and "bright" in ev.stdout
    summary = pd.read_parquet(tmp_path / "ev" / "summary.parquet")
    assert set(summary["test_set"]) == {"tint", "bright"} and "iou" in set(summary["metric"])
    bad = subprocess.run([sys.executable, "-m", "declip.cli", "train", "--store", str(tiny_store), "--dataset",
                          "nope", "--source", f"{TINY_BACKBONE}/layer1", "--train", "tint", "--out",
                          str(tmp_path / "x"), "--no-flow"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "nope" in bad.stderr
