"""Mutants of issue 19/21's user-experience work (areas ``signals``, ``cli``, ``grid-progress``): realistic slips in
the stop flag, the signal handlers, the one-line infrastructure errors, "did you mean", help pages and the run index.

Same form as interval_mutants.py: ``mutants.py`` appends them to ``MUTANTS`` as ``Mutant(*fields)``.
"""
from __future__ import annotations


def M(*fields: object) -> tuple:  # noqa: N802 - reads like mutants.py's table
    return fields


STOP = ("tests/core/test_stop.py", "tests/cli/test_interrupts.py")
INFRA = ("tests/cli/test_infra_errors.py::test_each_failure_is_one_line_with_its_fix",
         "tests/cli/test_infra_errors.py::test_other_errors_are_left_alone")
SUGGEST = ("tests/cli/test_suggest.py",)
HELP = ("tests/cli/test_cli_help.py::test_help_never_shows_a_python_object_as_a_default",)
INDEX = ("tests/pipeline/grid/test_run_index.py",)

UX_MUTANTS: list[tuple] = [
    M("UX1", "signals", "the stop flag never stops a loop", "core/stop.py",
      "    if _STOP.is_set():\n        raise Interrupted(", "    if False:\n        raise Interrupted(", STOP),
    M("UX2", "signals", "the first signal stops at once (half-written batch)", "cli/interrupts.py",
      "    if stop_requested():  # the second signal: stop now", "    if True:", STOP),
    M("UX3", "signals", "a main thread waiting for its tasks is not woken", "cli/interrupts.py",
      "    if is_waiting():  # the main thread", "    if False:  # the main thread", STOP),
    M("UX4", "signals", "SIGTERM reports Ctrl-C's exit status", "cli/interrupts.py",
      "EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}", "EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 130}",
      STOP),
    M("UX5", "cli", "an unreachable Prefect server left as a traceback", "cli/infra_errors.py",
      'if "Failed to reach API at" in every or', 'if False and', INFRA),
    M("UX6", "cli", "every chained error read as a lost Dask scheduler", "cli/infra_errors.py",
      'or "FutureCancelledError" in t or', 'or True or', INFRA),
    M("UX7", "cli", "the ephemeral-API timeout not recognised", "cli/infra_errors.py",
      'if "attempting to connect to ephemeral Prefect API server" in every:', "if False:", INFRA),
    M("UX8", "cli", "did you mean: no suggestion for a close misspelling", "cli/suggest.py",
      "n=3, cutoff=0.7)", "n=3, cutoff=0.99)", SUGGEST),
    M("UX9", "cli", "a required key's help shows the MISSING sentinel", "cli/config_flags.py",
      "    if default is dataclasses.MISSING:  # a key with no default", "    if False:  # a key with no default", HELP),
    M("UX10", "grid-progress", "a live training mark ignored by the index", "pipeline/grid/run_index.py",
      "    if is_training(run_dir):\n        return \"training\"", "    if False:\n        return \"training\"", INDEX),
    M("UX11", "grid-progress", "a dead process's mark read as training", "pipeline/grid/run_index.py",
      "    except ProcessLookupError:\n        return False", "    except ProcessLookupError:\n        return True", INDEX),
]
