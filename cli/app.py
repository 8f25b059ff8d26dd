"""The ``declip`` console script: one argparse tree, one module per command family.

Each module in :mod:`declip.cli` exposes ``register(subparsers)``, adds its sub-commands and sets
``func`` on them. Heavy imports (torch, prefect, open_clip) happen inside the handlers so ``declip --help``
stays fast.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys
from typing import Sequence

from declip.core.errors import DeclipError
from declip.cli import help_format
from declip.cli.examples import EXAMPLES
from declip.cli.infra_errors import infrastructure_line
from declip.cli.interrupts import INTERRUPTED_LINE, exit_code, stop_on_signals
from declip.cli.suggest import check_options
from declip.core.stop import stop_requested

COMMAND_MODULES = (
    "data", "extract", "store", "train", "evaluate", "grid", "report", "compare", "predict", "checkpoint", "demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="declip",
        description="DeCLIP deepfake localization on cached frozen-CLIP features "
        "(extract once into a zarr store; train, evaluate and run ablation grids on the cache).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging and full tracebacks")
    parser.add_argument("--version", action="version", version=version_line(),
                        help="print the versions of declip and of the libraries results depend on, and exit")
    parser.add_argument("--debug", action="store_true", help="full tracebacks, including Prefect's task and flow logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"declip.cli.{name}").register(sub)
    help_format.apply(parser, EXAMPLES)
    return parser


def version_line() -> str:
    """declip's version and the libraries that change results, read from package metadata (no heavy imports)."""
    from importlib.metadata import PackageNotFoundError, version

    def get(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    libs = ", ".join(f"{name} {get(dist)}" for name, dist in (
        ("torch", "torch"), ("open_clip", "open_clip_torch"), ("zarr", "zarr"), ("prefect", "prefect")))
    return f"declip {get('declip')} (python {sys.version.split()[0]}; {libs})"


def _quiet_defaults() -> None:
    """No analytics; Prefect's run logs at INFO (the UI) but only warnings on the console; the user's settings win."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")


def _no_prefect_failure_logs(record: logging.LogRecord) -> bool:
    """Prefect logs a failed task and flow with full tracebacks (75-98 lines); the CLI prints the one line that
    matters itself, so those records are dropped unless ``--debug`` or ``-v``."""
    return not (record.name.startswith("prefect") and record.levelno >= logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    _quiet_defaults()
    parser = build_parser()
    check_options(parser, sys.argv[1:] if argv is None else list(argv))
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(message)s")
    for handler in logging.getLogger().handlers:  # Prefect's INFO run logs go to the UI, not the terminal
        handler.setLevel(level)
    debug = args.verbose or args.debug
    if debug:
        os.environ["DECLIP_DEBUG"] = "1"  # flows.runtime keeps Prefect's failure logs on the console
    else:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_no_prefect_failure_logs)
    try:
        with stop_on_signals():
            return _run(args, debug)
    except BaseException as exc:
        if not stop_requested() or isinstance(exc, SystemExit) or debug:
            raise
        print(INTERRUPTED_LINE, file=sys.stderr)  # whatever the stop surfaced as (Prefect may wrap it)
        return exit_code()


def _run(args: argparse.Namespace, debug: bool) -> int:
    """The command, its one-line errors (user input and infrastructure) and a plain Ctrl-C."""
    try:
        return int(args.func(args) or 0)
    except DeclipError as exc:
        if debug or stop_requested():
            raise
        print(f"declip {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if debug or stop_requested() or exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = f" writing {exc.filename}" if exc.filename else ""
        print(f"declip {args.command}: error: no space left on the device{where}; free space and re-run (finished "
              "work is kept)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(INTERRUPTED_LINE, file=sys.stderr)
        return exit_code()
    except Exception as exc:  # Prefect, its database or a Dask scheduler failing: one line and the fix
        line = None if debug or stop_requested() else infrastructure_line(exc)
        if line is None:
            raise
        print(f"declip {args.command}: error: {line}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
