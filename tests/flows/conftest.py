"""Fixtures of the flow tests."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect API (its own database and server) for every flow of the session; yields its URL.

    Starting it costs seconds, and a flow run outside it would start Prefect's ephemeral server on its own. It is
    active in this process only (Prefect's settings context): a CLI subprocess reaches it through
    ``PREFECT_API_URL=<url>`` in its environment, and an in-process client reads from it from the first use on.
    """
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()
