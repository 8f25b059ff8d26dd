"""The README's main command, at a reduced size, run as a user runs it."""
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.fixtures import REPO  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.flow]  # the whole demo in a CLI subprocess, its flows included


def test_demo_command_end_to_end(tmp_path, prefect_harness):
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "declip.cli", "demo", "--out", str(out), "--size", "6", "--max-epochs", "1",
           "--layers", "layer0,layer2", "--decoders", "linear,conv-4", "--backbone", "test-vit-tiny@random-0"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "RANDOM" in proc.stdout and "report:" in proc.stdout
    results = pd.read_parquet(out / "grid" / "results.parquet")
    iou = results[results["metric"] == "iou"]
    generators = {"telea", "ns", "biharmonic", "splice"} & set(iou["test_set"])
    assert len(generators) >= 3 and set(iou["train_set"]) >= generators
    assert {"linear", "conv-4", "baseline:all-zero", "baseline:mask-prior"} <= set(iou["decoder"])
    assert {"layer0", "layer2"} <= set(iou["layer"])
    assert "srm@fixed/layer0" in set(iou["source"])  # the positive control runs beside the backbone's layers
    assert "best decoder per feature chosen on validation" in proc.stdout and "all-fake" in proc.stdout
    # the closing summary: the control against the best baseline and one random-weight layer comparison, with
    # intervals (at this size one test fake per generator: the control cannot be judged, and says so)
    control = next(line for line in proc.stdout.splitlines() if line.startswith("positive control"))
    assert "@ srm/layer0 vs best baseline" in control and ("PASSED" in control or "JUDGED" in control
                                                          or "FAILED" in control)
    layers = next(line for line in proc.stdout.splitlines() if line.startswith("random-weight layers"))
    assert "@ test-vit-tiny/layer0 − " in layers and "@ test-vit-tiny/layer2" in layers and "p = " in layers
    assert iou.loc[iou["backbone"] == "test-vit-tiny@random-0", "random_weights"].all()
    assert not iou.loc[iou["source"] == "srm@fixed/layer0", "random_weights"].any()  # SRM has fixed kernels
    page = out / "grid" / "report" / "index.html"
    assert page.exists() and "RANDOM" in page.read_text()
    # a second run re-encodes nothing and retrains nothing (reporting to the session's API: the first run already
    # showed the temporary one starting and stopping, and a second start would add ~10 s)
    env = dict(os.environ, PREFECT_API_URL=prefect_harness)
    proc2 = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert proc2.returncode == 0, proc2.stderr
    assert "0 trained now" in proc2.stdout or "already done" in proc2.stdout
