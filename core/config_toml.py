"""An annotated TOML file made from a config's field metadata: every key with its meaning and default.

Why generated: a hand-kept example file drifts from the dataclass it documents (a key added to the config and
forgotten in the file, a default changed in one place). Here the file is the fields: each key's comment is its help
text plus ``Default: ...`` or ``Required.`` (an unset default is explained by the help's ``Unset: ...``), grouped
under its section heading; suggestions and keys whose default is unset show a commented-out example value. A nested
config kept as a table (``core.configs.table``) comes last, as a ``[name]`` table with the same comments.
"""
from __future__ import annotations

import json
import textwrap
from dataclasses import MISSING
from typing import Any

from declip.core.configs import UNSET, Leaf, walk

WIDTH = 120


def toml_value(value: Any) -> str:
    """One TOML value (strings, numbers, booleans and lists of them; typed keys as their text)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def _required(leaf: Leaf, cls: type) -> bool:
    """No default, or listed in ``REQUIRED_KEYS`` (a default kept for the dataclass, refused when read)."""
    no_default = leaf.field.default is MISSING and leaf.field.default_factory is MISSING
    return (len(leaf.path) == 1 and no_default) or leaf.key in getattr(cls, "REQUIRED_KEYS", ())


def _comment(leaf: Leaf, cls: type, defaults: Any) -> str:
    text = leaf.meta.help.rstrip(".")
    if _required(leaf, cls):
        return f"{text}. Required."
    default = _default(leaf, defaults)
    if default is None:  # the help says what unset means ("Unset: half the machine's RAM")
        return text + ("." if "Unset:" in text else ". Default: unset.")
    return f"{text}. Default: {toml_value(default)}."


def _default(leaf: Leaf, defaults: Any) -> Any:
    return leaf.default if defaults is None else _value_at(defaults, leaf.path)


def _value_at(obj: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        obj = getattr(obj, name)
    return obj


def _entry(leaf: Leaf, cls: type, defaults: Any) -> str:
    example, key = leaf.meta.example, leaf.short_key  # inside a [table] its keys are written undotted
    if _required(leaf, cls):
        if example is UNSET:
            raise TypeError(f"{leaf.key}: a required key needs an example value for the annotated TOML")
        return f"{key} = {toml_value(example)}"
    default = _default(leaf, defaults)
    if example is not UNSET:  # a suggestion, left commented: deleting the '#' is a choice, not a default
        return f"# {key} = {toml_value(example)}"
    if default is None:
        raise TypeError(f"{leaf.key}: an unset default needs an example value for the annotated TOML")
    return f"{key} = {toml_value(default)}"


def annotated_toml(cls: type, header: str, defaults: Any = None) -> str:
    """Every key of ``cls`` (nested configs flattened) under its section, with its comment and value line.

    ``defaults``: an instance whose values are the stated defaults (default: the fields' own defaults).
    """
    sections: dict[str, list[Leaf]] = {}
    tables: dict[str, list[Leaf]] = {}  # after every top-level key: a [table] header opens a scope in TOML
    for leaf in walk(cls):
        if leaf.table:
            tables.setdefault(leaf.table, []).append(leaf)
        else:
            sections.setdefault(leaf.meta.section or "other settings", []).append(leaf)
    lines = [f"# {line}".rstrip() for line in header.strip("\n").splitlines()]
    blocks = [(title, leaves, None) for title, leaves in sections.items()]
    blocks += [(_table_title(cls, name), leaves, name) for name, leaves in tables.items()]
    for title, leaves, name in blocks:
        lines += ["", f"# --- {title} " + "-" * max(3, WIDTH - len(title) - 7)]
        if name:
            lines.append(f"[{name}]")
        for leaf in leaves:
            lines += textwrap.wrap(_comment(leaf, cls, defaults), WIDTH, initial_indent="# ", subsequent_indent="# ",
                                   break_on_hyphens=False)
            lines.append(_entry(leaf, cls, defaults))
    return "\n".join(lines) + "\n"


def _table_title(cls: type, name: str) -> str:
    from dataclasses import fields

    from declip.core.configs import key_of, meta

    f = next(f for f in fields(cls) if key_of(f) == name)
    return meta(f).section or meta(f).help
