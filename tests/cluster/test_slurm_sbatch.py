"""The single-node cluster runs batch jobs: sbatch a tiny script, read what it wrote, see a failing job fail."""
from __future__ import annotations

import subprocess

import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def _sbatch_wait(script, out, job_name: str) -> subprocess.CompletedProcess:
    # --wait: sbatch returns when the job ends, with the job's exit status; --parsable: stdout is the job id.
    return subprocess.run(["sbatch", "--wait", "--parsable", "-J", job_name, "-o", str(out), "-n", "1", "-c", "1",
                           "-t", "00:05:00", str(script)], capture_output=True, text=True, timeout=600)


def test_sbatch_job_runs_and_its_output_is_read_back(slurm, slurm_job_name, tmp_path):
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\necho \"job=$SLURM_JOB_ID partition=$SLURM_JOB_PARTITION\"\necho $((6 * 7))\n")
    proc = _sbatch_wait(script, tmp_path / "job-%j.out", slurm_job_name)
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip().split(";")[0]
    assert job_id.isdigit()
    lines = (tmp_path / f"job-{job_id}.out").read_text().splitlines()
    assert lines == [f"job={job_id} partition={slurm.partition}", "42"]


def test_failing_sbatch_job_reports_its_exit_status(slurm, slurm_job_name, tmp_path):
    script = tmp_path / "fail.sh"
    script.write_text("#!/bin/bash\necho before\nexit 3\n")
    proc = _sbatch_wait(script, tmp_path / "fail.out", slurm_job_name)
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert (tmp_path / "fail.out").read_text().strip() == "before"
