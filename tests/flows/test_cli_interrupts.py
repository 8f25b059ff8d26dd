"""Ctrl-C and SIGTERM to real `declip train` / `declip grid` processes: the command ends at the next batch boundary
with one line, keeps what was finished, and a re-run resumes from it.

The timing is forced, not slept for: the child's training loop waits at a batch boundary (after a marker file says
where it is) until the stop flag is set, so the signal always lands while training threads run.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.fixtures import REPO, TINY_BACKBONE

pytestmark = [pytest.mark.slow, pytest.mark.flow]  # CLI subprocesses running Prefect flows

#: Runs the CLI with the training loop's stop check gated: once ``ready()`` holds, it writes the marker and waits
#: (bounded) for the stop request, then checks as usual.
CHILD = r"""
import sys, time
from pathlib import Path
import declip.pipeline.train.training as training
from declip.core import stop

marker, out, when = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
real = training.check_stop

def ready():
    return when == "first-batch" or any(out.rglob("state.pt"))

def gated(*args):
    if not marker.exists() and ready():
        marker.write_text("at a batch boundary")
        deadline = time.monotonic() + 120
        while not stop.stop_requested() and time.monotonic() < deadline:
            time.sleep(0.02)
    real(*args)

training.check_stop = gated
from declip.cli.app import main
sys.exit(main(sys.argv[4:]))
"""


def _interrupt(argv, out: Path, marker: Path, sig, when: str, env) -> subprocess.CompletedProcess:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(marker), str(out), when, *argv], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), proc.communicate()
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _env(prefect_harness):
    env = dict(os.environ)
    env["PREFECT_API_URL"] = prefect_harness
    return env


def test_sigterm_to_train_stops_at_a_batch_keeps_the_epoch_and_resumes(tiny_store, tmp_path, prefect_harness):
    run = tmp_path / "run"
    argv = ["train", "--store", str(tiny_store), "--dataset", "dolos-celebahq", "--source", f"{TINY_BACKBONE}/layer1",
            "--decoders", "linear", "--train-sets", "tint", "--max-epochs", "3", "--patience", "10", "--batch-size",
            "8", "--collapse-patience", "0", "--min-steps-per-epoch", "0", "--out", str(run), "--no-progress"]
    done = _interrupt(argv, run, tmp_path / "marker", signal.SIGTERM, "after-an-epoch", _env(prefect_harness))
    assert done.returncode == 143, done.stderr
    assert "interrupted; finished work is kept and a re-run resumes from it" in done.stderr
    assert "Traceback" not in done.stderr and "SIGTERM received" in done.stderr
    states = list(run.rglob("state.pt"))
    assert len(states) == 1 and len(pd.read_csv(states[0].with_name("epochs.csv"))) == 1  # epoch 1 kept, 2 not
    again = subprocess.run([sys.executable, "-m", "declip.cli", *argv, "--no-flow"], cwd=REPO, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert len(pd.read_csv(states[0].with_name("epochs.csv"))) == 3  # resumed: epochs 2 and 3 added to the first


def test_ctrl_c_to_grid_ends_the_wait_and_the_training_threads(tiny_store, tmp_path, prefect_harness):
    out = tmp_path / "grid"
    argv = ["grid", "--store", str(tiny_store), "--dataset", "dolos-celebahq", "--out", str(out), "--backbones",
            TINY_BACKBONE, "--layers", "layer0,layer1", "--decoders", "linear", "--train-sets", "tint", "--test-sets",
            "tint", "--max-epochs", "2", "--batch-size", "8", "--device", "cpu", "--no-progress", "--no-baselines"]
    done = _interrupt(argv, out, tmp_path / "marker", signal.SIGINT, "first-batch", _env(prefect_harness))
    assert done.returncode == 130, done.stderr
    assert "interrupted; finished work is kept and a re-run resumes from it" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (out / "results.parquet").exists()
