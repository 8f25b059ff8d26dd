"""Config checks run when a config is built, so a bad number fails at once with one message, not epochs later.

Each config's ``__post_init__`` lists its rules; every broken rule goes into a single :class:`DeclipError` that names
the field, the matching command-line flag, what is allowed and what was given.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

from declip.core.errors import DeclipError


@dataclass(frozen=True)
class Rule:
    """What one field accepts; ``test`` sees a value already known to be of the right type."""

    kind: str  # "int" | "number" | "choice"
    test: Callable[[Any], bool]
    says: str  # "≥ 1", "> 0", "one of …"
    optional: bool = False
    each: bool = False  # the field is a non-empty tuple whose every item follows the rule


def each(rule: Rule) -> Rule:
    return Rule(rule.kind, rule.test, f"a non-empty list of {rule.says.removeprefix('a ')}s", rule.optional, True)


def whole(at_least: int, optional: bool = False) -> Rule:
    return Rule("int", lambda v: v >= at_least, f"a whole number ≥ {at_least}", optional)


def number(above: float | None = None, at_least: float | None = None, optional: bool = False) -> Rule:
    if above is not None:
        return Rule("number", lambda v: v > above, f"a number > {above:g}", optional)
    return Rule("number", lambda v: v >= at_least, f"a number ≥ {at_least:g}", optional)


def choice(*options: str) -> Rule:
    return Rule("choice", lambda v: v in options, f"one of {', '.join(options)}")


def _typed(rule: Rule, value: Any) -> bool:
    if rule.kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if rule.kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, str)


def broken(rule: Rule, value: Any) -> bool:
    if value is None:
        return not rule.optional
    return not (_typed(rule, value) and rule.test(value))


def problems(values: Mapping[str, Any], rules: dict[str, Rule], flags: Mapping[str, str] | None = None) -> list[str]:
    """One line per value of ``values`` that breaks its rule (the field, its flag, what is allowed, what was given)."""
    found = []
    for name, rule in rules.items():
        value = values[name]
        if rule.each:
            bad = not isinstance(value, (tuple, list)) or not value or any(broken(rule, v) for v in value)
        else:
            bad = broken(rule, value)
        if bad:
            flag = (flags or {}).get(name) or f"--{name.replace('_', '-').replace('.', '-')}"
            found.append(f"{name} ({flag}) must be {rule.says}, got {value!r}")
    return found


def check_config(cfg: Any, rules: dict[str, Rule], what: str, flags: Mapping[str, str] | None = None) -> None:
    """Raise one :class:`DeclipError` listing every field of ``cfg`` that breaks its rule."""
    found = problems({name: getattr(cfg, name) for name in rules}, rules, flags)
    if found:
        raise DeclipError(f"invalid {what} settings: " + "; ".join(found))
