"""Shared test settings: offline, quiet, deterministic; tiny random-weight models only.

The fast lane (``make test-fast``: ``-m "not slow and not flow"``) leaves out every test that starts another process
or a Prefect flow; tests/fast_lane_guard.py, installed here around every test, fails a test whose markers say
otherwise.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
if "PREFECT_HOME" not in os.environ:  # (`make test` sets one) a private one, removed when the session ends
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="declip-prefect-")
    atexit.register(shutil.rmtree, os.environ["PREFECT_HOME"], ignore_errors=True)
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("TQDM_DISABLE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from tests.fast_lane_guard import GUARD, install  # noqa: E402
from tests.fixtures import TINY_BACKBONE, write_tiny_dolos  # noqa: E402

torch.set_num_threads(2)
install()


def pytest_collection_modifyitems(config, items):
    """Modules that start processes or flows first (slow and flow, then either), the rest after, each group in
    collection order.

    Why: ``make test`` hands whole files to two processes in this order (``--dist loadfile --no-loadscope-reorder``;
    xdist's default order, most tests first, sent the one-test demo file last, and one process ran it alone for
    85 s while the other idled). Longest first is the classic way to finish two queues together."""
    weight: dict[str, int] = {}
    for item in items:
        marks = {m.name for m in item.iter_markers()}
        module = item.nodeid.split("::", 1)[0]
        weight[module] = max(weight.get(module, 0), len(marks & {"slow", "flow"}))
    items.sort(key=lambda item: -weight[item.nodeid.split("::", 1)[0]])  # stable: collection order within a group


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if call.when == "call":
        item.fast_lane_call_failed = outcome.get_result().failed


@pytest.fixture(autouse=True)
def _fast_lane_guard(request):
    """Guards the test (fixtures of its own scope included); a refusal the test swallowed still fails it."""
    markers = {m.name for m in request.node.iter_markers()} & {"slow", "flow"}
    GUARD["markers"], GUARD["violations"] = markers, []
    try:
        yield
    finally:
        violations, GUARD["markers"] = GUARD["violations"], None
    if violations and not getattr(request.node, "fast_lane_call_failed", False):
        pytest.fail(violations[0], pytrace=False)


#: The mutation check (tests/mutation/run.py) sets this to build the tiny fixtures once with unmutated code and reuse
#: them for every mutant that cannot change them; a normal test run never sets it.
_CACHE = os.environ.get("DECLIP_TEST_CACHE")


def _cached(name: str, tmp_path_factory, build):
    """``build(dir)`` into a fresh temp dir, or (with DECLIP_TEST_CACHE) once into the cache, renamed when complete."""
    from pathlib import Path

    if not _CACHE:
        path = tmp_path_factory.mktemp(name)
        build(path)
        return path
    final = Path(_CACHE) / name
    if not final.exists():
        partial = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=_CACHE))
        build(partial)
        partial.rename(final)
    return final


@pytest.fixture(scope="session")
def tiny_dolos(tmp_path_factory):
    return _cached("tiny-dolos", tmp_path_factory, write_tiny_dolos)


@pytest.fixture(scope="session")
def tiny_manifest(tiny_dolos, tmp_path_factory):
    from declip.pipeline.data.manifest import scan_dataset, write_manifest

    def build(path):
        result = scan_dataset(tiny_dolos, "dolos", progress=False)
        assert result.problems.empty, result.problems
        write_manifest(result.manifest, path / "manifest.parquet", tiny_dolos, "dolos")

    return _cached("manifest", tmp_path_factory, build) / "manifest.parquet"


@pytest.fixture(scope="session")
def tiny_store(tiny_manifest, tmp_path_factory):
    """The tiny dataset extracted once with a random-weight tiny ViT, every layer."""
    from declip.pipeline.extract.extraction import ExtractConfig, run_extraction

    def build(path):
        run_extraction(ExtractConfig(manifest=str(tiny_manifest), store=str(path / "declip.features.zarr"),
                                     backbone=TINY_BACKBONE, layers="all", batch_size=8, progress=False))

    return _cached("store", tmp_path_factory, build) / "declip.features.zarr"


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect API (its own database and server) for every flow of the session; yields its URL.

    Starting it costs seconds, and a flow run outside it would start Prefect's ephemeral server on its own. It is
    active in this process only (Prefect's settings context): a CLI subprocess reaches it through
    ``PREFECT_API_URL=<url>`` in its environment, and an in-process client reads from it from the first use on.
    Shared by the flow tests and the acceptance suite (tests/acceptance/).
    """
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()


@pytest.fixture
def fast_lane_guard():
    """The guard's state, for tests of the guard itself (they clear the refusals they provoke on purpose)."""
    return GUARD
