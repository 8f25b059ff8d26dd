"""The [cluster] table: declared once (grid TOML table, flags, JSON), mapped onto dask-jobqueue's SLURMCluster, the
job script a dry run prints, the device a SLURM grid plans for, and the path check every worker runs first."""
from __future__ import annotations

import os
import sys

import pytest

from declip.core.errors import DeclipError
from declip.pipeline.grid.cluster import (
    ClusterConfig, check_paths_here, job_script, slurm_adapt_kwargs, slurm_cluster_kwargs,
)
from declip.pipeline.grid.config import GridConfig, worker_paths
from tests.fixtures import TINY_DATASET

GRID = dict(store="/s.zarr", dataset="d", out="/g", backbones=["b@random-0"], layers=["layer1"], train_sets=["a"],
            test_sets=["a"])


def test_every_field_maps_onto_slurmcluster_arguments(tmp_path):
    c = ClusterConfig(partition="gpu", cores=8, memory="64GB", gpus=2, walltime="10:00:00", jobs=3,
                      job_directives=("--account=lab",), prologue=("module load cuda",), python="/venv/bin/python",
                      interface="ib0", log_directory=str(tmp_path / "logs"), job_name="w")
    assert slurm_cluster_kwargs(c, "/ignored") == {
        "cores": 8, "processes": 1, "memory": "64GB", "walltime": "10:00:00", "job_name": "w", "queue": "gpu",
        "job_extra_directives": ["--gres=gpu:2", "--account=lab"], "job_script_prologue": ["module load cuda"],
        "python": "/venv/bin/python", "worker_extra_args": ["--resources", "GPU=2"],
        "log_directory": str(tmp_path / "logs"), "scheduler_options": {"dashboard_address": ":0"}, "interface": "ib0"}
    plain = slurm_cluster_kwargs(ClusterConfig(), str(tmp_path / "grid"))
    assert plain["job_extra_directives"] == [] and plain["worker_extra_args"] == []  # no GPU: no gres, no resource
    assert plain["python"] == sys.executable and plain["log_directory"] == str(tmp_path / "grid" / "slurm")
    assert "interface" not in plain and plain["queue"] is None


@pytest.mark.parametrize("given,expected", [
    ({}, (2, 2)), ({"jobs": 5}, (5, 5)),  # fixed, but adaptive so a lost job is replaced
    ({"min_jobs": 1, "max_jobs": 8}, (1, 8)), ({"max_jobs": 4}, (0, 4)), ({"min_jobs": 3, "jobs": 2}, (3, 3)),
])
def test_jobs_are_kept_by_adaptive_scaling(given, expected):
    assert slurm_adapt_kwargs(ClusterConfig(**given)) == {"minimum_jobs": expected[0], "maximum_jobs": expected[1]}


@pytest.mark.parametrize("given,says", [({"min_jobs": 5, "max_jobs": 2}, "above max_jobs"),
                                        ({"cores": 0}, "cluster.cores"), ({"gpus": -1}, "cluster.gpus")])
def test_bad_cluster_settings_are_one_line(given, says):
    with pytest.raises(DeclipError, match=says):
        GridConfig.from_dict({**GRID, "task_runner": "slurm", "cluster": given})


def test_job_script_is_what_sbatch_gets(tmp_path):
    c = ClusterConfig(partition="gpu", cores=4, memory="16GB", gpus=1, walltime="02:00:00",
                      prologue=("source /shared/venv/bin/activate",), python="/shared/venv/bin/python",
                      log_directory=str(tmp_path), job_name="declip-w")
    lines = job_script(c, "/g").splitlines()
    directives = [line.removeprefix("#SBATCH ") for line in lines if line.startswith("#SBATCH")]
    for expected in ("-J declip-w", "-p gpu", "--cpus-per-task=4", "-t 02:00:00", "--gres=gpu:1"):
        assert expected in directives, (expected, directives)
    assert f"-o {tmp_path}/declip-w-%J.out" in directives
    body = [line for line in lines if line and not line.startswith("#")]
    assert body[0] == "source /shared/venv/bin/activate"
    worker = body[1].split()
    assert worker[:3] == ["/shared/venv/bin/python", "-m", "distributed.cli.dask_worker"]
    assert worker[worker.index("--resources") + 1] == "GPU=1" and worker[worker.index("--nthreads") + 1] == "4"


def test_grid_file_table_flags_and_json_agree(tmp_path):
    from declip.cli.app import build_parser
    from declip.cli.grid import grid_values

    path = tmp_path / "grid.toml"
    path.write_text('store = "/s.zarr"\ndataset = "d"\nout = "/g"\nbackbones = ["b@random-0"]\nlayers = ["layer1"]\n'
                    'train_sets = ["a"]\ntest_sets = ["a"]\ntask_runner = "slurm"\n\n[cluster]\npartition = "gpu"\n'
                    'gpus = 1\njob_directives = ["--account=lab"]\n')
    raw, _ = grid_values(build_parser().parse_args(["grid", "--config", str(path), "--cluster-gpus", "2",
                                                    "--cluster-job-directives=--qos=high"]))
    cfg = GridConfig.from_dict(raw)
    assert (cfg.cluster.partition, cfg.cluster.gpus, cfg.cluster.job_directives) == ("gpu", 2, ("--qos=high",))
    assert cfg.cluster.cores == ClusterConfig().cores  # untouched keys keep their defaults
    data = cfg.to_json()
    assert data["cluster"]["gpus"] == 2 and "cluster.gpus" not in data  # JSON keeps the table as an object
    assert GridConfig.from_json(data) == cfg


@pytest.mark.parametrize("gpus,device,width", [(1, "cuda", 1.0), (0, "cpu", 0.125)])
def test_a_slurm_grid_plans_for_its_workers_devices_not_this_machines(gpus, device, width, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a login node without GPUs
    cfg = GridConfig.from_dict({**GRID, "task_runner": "slurm", "cluster": {"gpus": gpus}})
    assert (cfg.options.device, cfg.options.width) == (device, width)
    threads = GridConfig.from_dict(GRID)
    assert threads.options.device == "cpu"  # other runners: this machine decides


def test_a_missing_mount_is_one_line_naming_it(tmp_path):
    here = tmp_path / "data"
    here.mkdir()
    assert check_paths_here({"store": str(here), "bucket": "s3://b/x.zarr"})["checked"] == ["bucket", "store"]
    with pytest.raises(DeclipError) as err:
        check_paths_here({"store": str(here), "image folder (the manifest's root)": "/nfs/not-mounted/images"})
    text = str(err.value)
    assert "/nfs/not-mounted/images" in text and "image folder" in text and "mount" in text
    assert "\n" not in text and os.uname().nodename in text
    with pytest.raises(DeclipError, match="grid folder"):  # an empty mount point: its parent is there, it is not
        check_paths_here({"grid folder (out)": str(here / "runs")})


def test_worker_paths_name_what_each_worker_touches(tiny_manifest, tmp_path):
    from declip.pipeline.data.manifest import read_manifest

    cfg = GridConfig.from_dict({**GRID, "store": str(tmp_path / "new.zarr"), "out": str(tmp_path / "g"),
                                "manifest": str(tiny_manifest)})
    paths = worker_paths(cfg)
    assert paths == {"grid folder (out)": str(tmp_path / "g"), "feature store's folder": str(tmp_path),
                     "manifest": str(tiny_manifest),
                     "image folder (the manifest's root)": str(read_manifest(tiny_manifest).root)}
    assert "feature store" not in worker_paths(GridConfig.from_dict({**GRID, "store": "s3://b/f.zarr"}))


def test_planning_a_gpu_grid_on_a_login_node_without_cuda_is_one_line(monkeypatch, tiny_manifest):
    import torch

    from declip.pipeline.grid.dry_run import dry_run

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = GridConfig.from_dict({**GRID, "backbones": ["test-vit-tiny@random-0"], "layers": ["layer0"],
                                "manifest": str(tiny_manifest), "dataset": TINY_DATASET, "train_sets": ["tint"],
                                "test_sets": ["tint"], "task_runner": "slurm", "cluster": {"gpus": 1}})
    with pytest.raises(DeclipError, match="no CUDA to time them on.*--throughputs"):
        dry_run(cfg)
