"""Shared test settings: offline, quiet, deterministic; tiny random-weight models only.

The fast lane (``make test-fast``: ``-m "not slow and not flow"``) leaves out every test that starts another process
or a Prefect flow. A guard keeps the markers honest: a test without ``slow`` or ``flow`` that starts a subprocess
(``git`` and ``file`` excepted: library code runs them), a multiprocessing worker or a Dask cluster, or without
``flow`` that runs a Prefect flow, fails and says which marker it needs.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="declip-prefect-"))
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("TQDM_DISABLE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from tests.fixtures import TINY_BACKBONE, write_tiny_dolos  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


# ---------------------------------------------------------------- the fast lane's guard
#: Programs an unmarked test may start: cheap, and started by library code itself (core/versions.py runs git for
#: the code version, ``platform.architecture`` runs file when Prefect builds a deployment).
ALLOWED_PROGRAMS = frozenset({"git", "file"})
_PROCESS_EVENTS = frozenset({"subprocess.Popen", "os.system", "os.spawn", "os.exec"})
#: The running test's ``slow``/``flow`` markers (None between tests: nothing is guarded), and what it was refused.
_guard: dict = {"markers": None, "violations": []}


def _refuse(what: str, marker: str) -> None:
    message = (f"this test {what}: mark it @pytest.mark.{marker} (module-level `pytestmark` where the whole file "
               "does), so that `make test-fast` leaves it out")
    _guard["violations"].append(message)
    raise RuntimeError(message)


def _audit(event: str, args: tuple) -> None:
    """Refuses new processes in a guarded test (an audit hook sees every way Python starts one)."""
    if event not in _PROCESS_EVENTS or _guard["markers"] is None or _guard["markers"]:
        return
    if event == "subprocess.Popen" and Path(str(args[0])).name in ALLOWED_PROGRAMS:
        return
    argv = args[1] if len(args) > 1 else args[0]
    _refuse(f"starts a subprocess ({' '.join(map(str, argv)) if isinstance(argv, (list, tuple)) else argv}"[:160]
            + ")", "slow")


def _guarded(cls: type, method: str, what: str, markers: tuple[str, ...]) -> None:
    """Wrap ``cls.method`` so that a guarded test without one of ``markers`` calling it fails."""
    real = getattr(cls, method)

    def wrapper(self, *args, **kwargs):
        if _guard["markers"] is not None and not _guard["markers"] & set(markers):
            _refuse(what, markers[0])
        return real(self, *args, **kwargs)

    setattr(cls, method, wrapper)


#: module -> (class, method, what it does, markers that allow it); wrapped when the module is first imported.
_WRAPPED = {
    "prefect.flows": ("Flow", "__call__", "runs a Prefect flow", ("flow",)),
    "distributed.deploy.spec": ("SpecCluster", "__init__", "starts a Dask cluster", ("slow", "flow")),
    "multiprocessing.process": ("BaseProcess", "start", "starts a worker process", ("slow", "flow")),
}


class _WrapOnImport(importlib.abc.MetaPathFinder):
    """Wraps the guarded entry points of Prefect and Dask as their modules load (importing them here would cost every
    test run seconds)."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in _WRAPPED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            cls, method, what, markers = _WRAPPED[fullname]
            _guarded(getattr(module, cls), method, what, markers)

        spec.loader.exec_module = exec_module
        return spec


sys.addaudithook(_audit)
for _name, (_cls, _method, _what, _markers) in _WRAPPED.items():
    if _name in sys.modules:  # already imported (a plugin): wrap it now
        _guarded(getattr(sys.modules[_name], _cls), _method, _what, _markers)
sys.meta_path.insert(0, _WrapOnImport())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if call.when == "call":
        item.fast_lane_call_failed = outcome.get_result().failed


@pytest.fixture(autouse=True)
def _fast_lane_guard(request):
    """Guards the test (fixtures of its own scope included); a refusal the test swallowed still fails it."""
    markers = {m.name for m in request.node.iter_markers()} & {"slow", "flow"}
    _guard["markers"], _guard["violations"] = markers, []
    try:
        yield
    finally:
        violations, _guard["markers"] = _guard["violations"], None
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


@pytest.fixture
def fast_lane_guard():
    """The guard's state, for tests of the guard itself (they clear the refusals they provoke on purpose)."""
    return _guard
