"""How every ``declip ... --help`` page looks: defaults shown after each flag, examples kept as written.

Applied to the whole parser tree by :func:`declip.cli.app.build_parser`, so a command module only writes its
flags' help text; it cannot forget the defaults or the formatting.
"""
from __future__ import annotations

import argparse


class DeclipHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's defaults formatter, minus the noise (``default: None``/``False``), plus verbatim examples."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        noise = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if noise or "%(default)" in text or "(default" in text:  # 0 and 0.0 are real defaults; None/False are not
            return text
        if not action.option_strings and action.nargs not in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return text
        return f"{text} (default: %(default)s)"

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:  # an examples block: keep its lines and indentation as written
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def apply(parser: argparse.ArgumentParser, examples: dict[str, str], path: tuple[str, ...] = ()) -> None:
    """Give ``parser`` and every sub-command our formatter and their ``examples`` entry as the epilog."""
    parser.formatter_class = DeclipHelpFormatter
    text = examples.get(" ".join(path))
    if text:
        parser.epilog = "examples:\n" + "\n".join(f"  {line}" for line in text.strip("\n").splitlines()) + "\n"
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                apply(sub, examples, path + (name,))
