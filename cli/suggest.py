"""Unknown flags get "did you mean": argparse alone says "unrecognized arguments" (or, worse, that a required flag is
missing when the user typed it misspelt) and names no fix.

Checked before argparse parses: the command path is read from the words that name sub-commands, and every ``--flag``
after it that the command does not know (exactly, or as an unambiguous prefix, as argparse accepts) is reported with
the closest known spellings of that command.
"""
from __future__ import annotations

import argparse
import difflib
from collections.abc import Sequence


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def command_parser(parser: argparse.ArgumentParser, argv: Sequence[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    """The (sub-)parser ``argv`` selects and the words that selected it (``["data", "scan"]``)."""
    path: list[str] = []
    for word in argv:
        sub = _subparsers(parser)
        if sub is None:
            break
        if word in sub.choices:
            parser = sub.choices[word]
            path.append(word)
        elif not word.startswith("-"):
            break
    return parser, path


def known_options(parser: argparse.ArgumentParser) -> dict[str, int]:
    """Every ``--flag`` of ``parser`` -> which of its options it spells (aliases share one)."""
    return {o: id(a) for a in parser._actions for o in a.option_strings if o.startswith("--")}


def unknown_options(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Each ``--flag`` of ``argv`` its command does not accept, with up to three close spellings it does."""
    target, path = command_parser(parser, argv)
    known = {**known_options(parser), **known_options(target)}
    found = []
    for word in argv:
        if word == "--":
            break
        if not word.startswith("--") or len(word) == 2:
            continue
        flag = word.split("=", 1)[0]
        if flag in known or len({a for k, a in known.items() if k.startswith(flag)}) == 1:  # a unique prefix
            continue
        close = difflib.get_close_matches(flag, list(known), n=3, cutoff=0.7)
        close += [k for k in known if k.replace("_", "-") == flag.replace("_", "-") and k not in close]
        found.append((flag, close))
    return found


def check_options(parser: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    """Exit with argparse's usage and one line per unknown flag (with "did you mean") when there is any."""
    unknown = unknown_options(parser, argv)
    if not unknown:
        return
    target, _ = command_parser(parser, argv)
    lines = [f"unknown option {flag}" + (f"; did you mean {' or '.join(close)}?" if close else
                                         f" (`{target.prog} --help` lists them)") for flag, close in unknown]
    target.error("; ".join(lines))
