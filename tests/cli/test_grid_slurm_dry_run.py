"""``declip grid --dry-run`` with ``task_runner = "slurm"`` prints the worker jobs' batch script and submits nothing."""
from __future__ import annotations

import json

from declip.cli.app import main
from tests.fixtures import TINY_BACKBONE


def test_dry_run_prints_the_sbatch_script_and_submits_nothing(tiny_store, tmp_path, capsys):
    rates = tmp_path / "rates.json"
    rates.write_text(json.dumps({"encode_flops_per_s": 1e12, "train_flops_per_s": 5e11, "eval_flops_per_s": 1e12}))
    grid = tmp_path / "grid.toml"
    grid.write_text(f'store = "{tiny_store}"\ndataset = "dolos-celebahq"\nout = "{tmp_path / "g"}"\n'
                    f'backbones = ["{TINY_BACKBONE}"]\nlayers = ["layer0"]\ndecoders = ["linear"]\n'
                    'train_sets = ["tint"]\ntest_sets = ["tint"]\ntask_runner = "slurm"\n\n'
                    '[cluster]\npartition = "gpu"\ngpus = 2\nmin_jobs = 0\nmax_jobs = 6\n'
                    'prologue = ["module load cuda"]\n')
    assert main(["grid", "--config", str(grid), "--dry-run", "--throughputs", str(rates)]) == 0
    out = capsys.readouterr().out
    assert "== this grid: 1 cells" in out
    assert "SLURM: 0 to 6 (adaptive) worker job(s)" in out
    script = out[out.index("#!/usr/bin/env bash"):]
    assert "#SBATCH -p gpu" in script and "#SBATCH --gres=gpu:2" in script and "module load cuda" in script
    assert "--resources GPU=2" in script and "tcp://SCHEDULER:8786" in script
    assert not (tmp_path / "g").exists()  # not even the job log folder
