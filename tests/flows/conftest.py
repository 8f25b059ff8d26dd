"""Fixtures of the flow tests."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect API (its own database and server) for every in-process flow of the session: starting it
    costs seconds, and a flow run outside it would start Prefect's ephemeral server on its own."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
