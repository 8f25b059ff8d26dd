"""Run an ablation grid on a schedule from a long-running process (Prefect's ``serve``), e.g. every night at 02:00.

    prefect server start                                    # the API and UI, http://127.0.0.1:4200
    export PREFECT_API_URL=http://127.0.0.1:4200/api
    declip grid --example-config > grid.toml                # edit it
    python examples/serve_grid.py grid.toml --cron "0 2 * * *"
    prefect deployment run 'grid-from-config/ablation-nightly'    # or start one now from the UI

The deployment runs ``flows.grid.grid_from_config``, which re-reads the TOML at every run: add a layer or a test set
to the file and the next run trains only the new cells. ``prefect.yaml`` at the repository root is the same
deployment for ``prefect deploy`` with a work pool.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from declip.flows.grid import grid_from_config  # noqa: E402
from declip.pipeline.grid.config import GridConfig  # noqa: E402
from declip.pipeline.grid.run_names import grid_tags  # noqa: E402


def build_deployment(config: str | Path, name: str = "ablation-nightly", cron: str | None = "0 2 * * *"):
    """A :class:`prefect.deployments.runner.RunnerDeployment` of the grid in ``config`` (checked now, not at 02:00)."""
    config = str(Path(config).resolve())
    cfg = GridConfig.from_toml(config).to_json()
    return grid_from_config.to_deployment(name=name, cron=cron, parameters={"config": config}, tags=grid_tags(cfg),
                                          description=f"declip grid from {config}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="grid TOML (`declip grid --example-config` prints an annotated one)")
    p.add_argument("--name", default="ablation-nightly", help="deployment name")
    p.add_argument("--cron", default="0 2 * * *", help="schedule (cron syntax); '' for run-on-demand only")
    args = p.parse_args(argv)
    from prefect import serve

    serve(build_deployment(args.config, args.name, args.cron or None))


if __name__ == "__main__":
    main()
