"""The wheel installs one ``declip`` namespace: every package folder is listed in pyproject.toml, and nothing
installs a generic top-level name (``core``, ``pipeline``, ``features``, ...)."""
from __future__ import annotations

import tomllib

from tests.fixtures import REPO

TOPS = ("core", "features", "store", "decoders", "pipeline", "flows", "cli")


def test_every_package_folder_is_listed_under_declip():
    setup = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setup["package-dir"] == {"declip": "."}
    folders = {"declip"} | {"declip." + ".".join(init.parent.relative_to(REPO).parts)
                            for top in TOPS for init in (REPO / top).rglob("__init__.py")}
    assert set(setup["packages"]) == folders


def test_the_console_script_and_the_module_entry_point_are_the_namespaced_cli():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["scripts"] == {"declip": "declip.cli.app:main"}
    assert isinstance(project["license"], str)  # SPDX string: no setuptools deprecation warning on install
