"""The fast lane's guard: a test not marked ``slow``/``flow`` may not start processes, Prefect flows or Dask clusters.

``make test-fast`` (``-m "not slow and not flow"``) stays fast only while the markers are honest, so a guarded test
that starts a subprocess (from test code, or a Python interpreter, shell or CLI from anywhere; libraries asking
``git`` or ``uname`` for metadata are fine), a multiprocessing worker or a Dask cluster without ``slow`` or
``flow``, or runs a Prefect flow without ``flow``, fails and says which marker it needs. ``tests/conftest.py``
installs it and sets :data:`GUARD` around every test.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import re
import sys
import sysconfig
from pathlib import Path

#: Programs refused whoever starts them: each costs seconds (an interpreter importing torch, a CLI, a cluster daemon).
HEAVY_PROGRAMS = re.compile(r"(python[\d.]*|sh|bash|dash|declip|prefect|dask.*|uvicorn|srun|sbatch|salloc|slurm\w*"
                            r"|munged)")
_PROCESS_EVENTS = frozenset({"subprocess.Popen", "os.system", "os.spawn", "os.exec"})
_TESTS_DIR = str(Path(__file__).resolve().parent) + os.sep
_STDLIB_DIRS = tuple({str(path) + os.sep for path in (Path(sysconfig.get_paths()["stdlib"]),
                                                      Path(sysconfig.get_paths()["stdlib"]).resolve())})
#: The running test's ``slow``/``flow`` markers (None between tests: nothing is guarded), and what it was refused.
GUARD: dict = {"markers": None, "violations": [], "installed": False}


def _refuse(what: str, marker: str) -> None:
    message = (f"this test {what}: mark it @pytest.mark.{marker} (module-level `pytestmark` where the whole file "
               "does), so that `make test-fast` leaves it out")
    GUARD["violations"].append(message)
    raise RuntimeError(message)


def _started_by_test_code() -> bool:
    """Whether the nearest caller outside the standard library (and this file) is test code, not a library."""
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        stdlib = name.startswith(_STDLIB_DIRS) and "-packages" not in name
        if name != __file__ and not stdlib and not name.startswith("<"):
            return name.startswith(_TESTS_DIR)
        frame = frame.f_back
    return False


def _audit(event: str, args: tuple) -> None:
    """Refuses new processes in a guarded test (an audit hook sees every way Python starts one)."""
    if event not in _PROCESS_EVENTS or GUARD["markers"] is None or GUARD["markers"]:
        return
    command = args[1] if event == "subprocess.Popen" else args[0]  # os.system: a string; os.exec/spawn: a path
    program = Path(str(args[0]).split()[0] if event == "os.system" else str(args[0])).name
    if HEAVY_PROGRAMS.fullmatch(program) or _started_by_test_code():
        text = " ".join(map(str, command)) if isinstance(command, (list, tuple)) else str(command)
        _refuse(f"starts a subprocess ({text[:120]})", "slow")


def _guarded(cls: type, method: str, what: str, markers: tuple[str, ...]) -> None:
    """Wrap ``cls.method`` so that a guarded test without one of ``markers`` calling it fails."""
    real = getattr(cls, method)

    def wrapper(self, *args, **kwargs):
        if GUARD["markers"] is not None and not GUARD["markers"] & set(markers):
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


def install() -> None:
    """Install the guard once per process (an audit hook cannot be removed; it does nothing between tests)."""
    if GUARD["installed"]:
        return
    GUARD["installed"] = True
    sys.addaudithook(_audit)
    for name, (cls, method, what, markers) in _WRAPPED.items():
        if name in sys.modules:  # already imported: wrap it now
            _guarded(getattr(sys.modules[name], cls), method, what, markers)
    sys.meta_path.insert(0, _WrapOnImport())
