"""Command-line flags generated from config fields: one flag per key, never written by hand.

Each field of a config (``TrainOptions``, ``GridConfig``; see :mod:`declip.core.configs`) becomes
``--kebab-name`` (or the field's ``flag``) plus the other spellings :mod:`declip.cli.option_names` lists for it, with
the field's help text, metavar, choices and default. Booleans get ``--x/--no-x``; lists are repeatable and, unless
the field says otherwise, comma-separated. Every flag defaults to "not given", so the config's own default (or a
grid file's value) applies and a flag overrides it only when typed.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

from declip.cli.option_names import CONST_FLAGS, names, split_values
from declip.core.config_toml import toml_value
from declip.core.configs import Leaf, walk
from declip.core.errors import DeclipError


def flag_of(leaf: Leaf) -> str:
    """The canonical command-line name of a config key."""
    return leaf.meta.flag or "--" + leaf.key.replace("_", "-").replace(".", "-")


def _plain_hint(hint: Any) -> Any:
    """``X | None`` → ``X``."""
    if typing.get_origin(hint) not in (typing.Union, types.UnionType):
        return hint
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if len(args) == 1 else hint


def _item_type(hint: Any) -> type | None:
    """The element type of a list option (``tuple[int, ...]`` → int), or None for a scalar option."""
    hint = _plain_hint(hint)
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        return item if item in (int, float) else str
    return None


def _default_words(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value) or "none"
    return value if isinstance(value, str) else toml_value(value)


def _help(leaf: Leaf, default: Any) -> str:
    if default is dataclasses.MISSING:  # a key with no default: the file or the flag must give it
        return (leaf.meta.help + " (required)").replace("%", "%%")
    words = _default_words(default)
    text = leaf.meta.help + (f" (default: {words})" if words else "")
    return text.replace("%", "%%")


def _value_at(obj: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        obj = getattr(obj, name)
    return obj


def add_config_flags(parser: argparse.ArgumentParser, cls: type, command: str, *, defaults: Any = None,
                     skip: tuple[str, ...] = (), title: str | None = None) -> list[Leaf]:
    """Add one flag per key of ``cls`` (nested configs included) to ``parser``; returns the keys added.

    ``defaults``: an instance of ``cls`` whose values the help states (e.g. the demo's own options), else the fields'.
    """
    group = parser.add_argument_group(title) if title else parser
    added = []
    for leaf in walk(cls):
        if leaf.key in skip:
            continue
        m = leaf.meta
        default = leaf.default if defaults is None else _value_at(defaults, leaf.path)
        kwargs: dict[str, Any] = {"dest": leaf.key, "default": None, "help": _help(leaf, default)}
        item = _item_type(leaf.hint)
        if _plain_hint(leaf.hint) is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif item is not None:
            kwargs.update(action="append", metavar=m.metavar or "VALUES")
        else:
            kwargs.update(type=_plain_hint(leaf.hint), choices=m.choices)
            if m.choices is None or m.metavar:  # a metavar hides the choices: the help lists them
                kwargs["metavar"] = m.metavar or leaf.key.upper()
                if m.choices:
                    kwargs["help"] = kwargs["help"].replace(m.help, f"{m.help} (one of {', '.join(m.choices)})", 1)
        group.add_argument(*names(flag_of(leaf), command), **kwargs)
        for const_flag, (key, value, text) in CONST_FLAGS.items():
            if key == leaf.key:
                group.add_argument(*names(const_flag, command), dest=leaf.key, action="store_const", const=value,
                                   help=text)
        added.append(leaf)
    return added


def given_values(args: argparse.Namespace, leaves: list[Leaf]) -> dict[str, Any]:
    """The keys the user typed a flag for, as config values (lists split and typed)."""
    out = {}
    for leaf in leaves:
        value = getattr(args, leaf.key, None)
        if value is None:
            continue
        item = _item_type(leaf.hint)
        if item is not None:
            items = split_values(value) if leaf.meta.split else list(value)
            try:
                value = [item(v) for v in items]
            except ValueError:
                raise DeclipError(f"{flag_of(leaf)} takes {item.__name__} values, got {items}") from None
        out[leaf.key] = value
    return out
