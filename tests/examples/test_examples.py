"""The examples/ scripts and prefect.yaml: the Python API walk-through runs end to end on tiny data; the scheduled
grid deployment builds offline from the annotated grid file."""
import runpy
from pathlib import Path

import pytest
import yaml

from tests.fixtures import TINY_BACKBONE

from tests.fixtures import REPO  # noqa: E402


@pytest.mark.slow
def test_api_quickstart_runs_scan_extract_train_evaluate(tiny_dolos, tmp_path, capsys):
    main = runpy.run_path(str(REPO / "examples" / "api_quickstart.py"))["main"]
    result = main([str(tmp_path / "work"), "--data", str(tiny_dolos), "--layout", "dolos", "--backbone", TINY_BACKBONE,
                   "--layer", "layer1", "--decoder", "linear", "--epochs", "2"])
    out = capsys.readouterr().out
    assert result["dataset"] == "dolos-celebahq" and result["train_set"] == "bright"
    assert set(result["iou"]) == {"bright", "tint"} and all(0 <= v <= 100 for v in result["iou"].values())
    assert (tmp_path / "work" / "run" / "best" / "decoder.pt").exists()
    assert "test IoU (%) by generator" in out and "random backbone weights" in out
    assert set(result["collapsed"]) == {"bright", "tint"}  # the collapse flags are read and returned
    flagged = [name for name, c in result["collapsed"].items() if c]
    assert all(f"COLLAPSED on {name}:" in out for name in flagged)
    assert ("COLLAPSED everywhere" in out) == (len(flagged) == 2)


def _grid_toml(tmp_path: Path) -> Path:
    from declip.pipeline.grid.config import example_config

    path = tmp_path / "grid.toml"
    path.write_text(example_config())
    return path


def test_serve_example_builds_the_scheduled_deployment(tmp_path):
    build = runpy.run_path(str(REPO / "examples" / "serve_grid.py"))["build_deployment"]
    deployment = build(_grid_toml(tmp_path), cron="0 2 * * *")
    assert deployment.name == "ablation-nightly" and deployment.entrypoint.endswith("flows/grid.py:grid_from_config")
    assert deployment.parameters == {"config": str((tmp_path / "grid.toml").resolve())}
    assert deployment.schedules[0].schedule.cron == "0 2 * * *"
    assert "layer:layer20" in deployment.tags and "dataset:dolos-celebahq" in deployment.tags


def test_prefect_yaml_entrypoint_imports_and_accepts_its_parameters():
    import importlib

    from prefect import Flow
    from prefect.client.schemas.schedules import CronSchedule

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    for dep in spec["deployments"]:
        module, func = dep["entrypoint"].split(":")
        flow = getattr(importlib.import_module(module.removesuffix(".py").replace("/", ".")), func)
        assert isinstance(flow, Flow)
        assert flow.validate_parameters(dep["parameters"])["config"] == dep["parameters"]["config"]
        for schedule in dep["schedules"]:
            CronSchedule(cron=schedule["cron"], timezone=schedule.get("timezone"))
