"""``declip compare`` through the console script: lines per cell with p-values, and a one-line error."""
import subprocess
import sys

import pytest

from tests.fixtures import REPO
from tests.pipeline.report.grid_builder import write_grid

pytestmark = pytest.mark.slow


def test_compare_prints_a_line_per_cell_and_refuses_unknown_models(tmp_path):
    results = write_grid(tmp_path, {("vit@random-0/layer2", "linear"): 40.0, ("srm@fixed/layer0", "conv-4"): 60.0},
                         n_fake=12)
    run = [sys.executable, "-m", "declip.cli", "compare", str(results.parent)]
    proc = subprocess.run(run + ["--a", "srm@fixed/layer0:conv-4", "--b", "baseline:all-fake"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("A = conv-4 @ srm/layer0, B = baseline:all-fake: test iou")
    assert sum("→ test" in line for line in lines) == 4 and all("p = " in line for line in lines[1:])
    bad = subprocess.run(run + ["--a", "layer7:linear", "--b", "baseline:all-fake"], cwd=REPO, capture_output=True,
                         text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "pass one of:" in bad.stderr
