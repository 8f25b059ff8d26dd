"""The Dolos layout with two generators and with one: every command as a user types it
(tests/acceptance/user_session.py)."""
from __future__ import annotations

import pytest

from tests.acceptance.shapes import write_dolos
from tests.acceptance.user_session import run_pipeline

pytestmark = [pytest.mark.slow, pytest.mark.flow]  # CLI subprocesses that run Prefect flows


def test_dolos_with_several_generators(user, tmp_path):
    write_dolos(tmp_path / "dolos", ("tint", "fill"))
    run_pipeline(user, tmp_path / "dolos", ["--layout", "dolos"], "dolos-celebahq", ["tint", "fill"], ["tint", "fill"])


def test_dolos_with_one_generator(user, tmp_path):
    write_dolos(tmp_path / "dolos", ("tint",))
    run_pipeline(user, tmp_path / "dolos", ["--layout", "dolos"], "dolos-celebahq", ["tint"], ["tint"])
