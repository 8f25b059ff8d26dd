"""Every config declared once, and written one way.

A config is a frozen dataclass whose fields carry their facts in metadata (:class:`Meta`, via :func:`option`): help
text, the validation rule, choices, the command-line metavar and name, how the field enters a run's identity, and
the value an annotated TOML shows. Flags (``cli/config_flags.py``), TOML keys, identities and the example grid file
are derived from those fields, so adding an option is one field.

One serialisation style for every config, used at every process and Prefect boundary: :func:`to_json` (tuples →
lists, typed keys such as ``SourceKey`` → their text, nested configs marked ``flatten`` written inline as flat keys)
and :func:`from_json` (the inverse; reads the flat form and the nested one, refuses unknown keys with the list of
known ones). :class:`JsonConfig` gives a config ``cfg.to_json()`` / ``Cls.from_json(data)`` for these.

A nested config marked ``table`` (:func:`table`) is the other kind: its keys are a TOML table of their own
(``[cluster]``) and a JSON object under the field's name. Its flat keys are dotted, as TOML's own dotted keys are
(``cluster.partition``), so flags (``--cluster-partition``), rules and the annotated file treat them like any key.
"""
from __future__ import annotations

import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, is_dataclass, replace
from typing import Any

from declip.core.errors import DeclipError
from declip.core.validation import Rule, problems

_KEY = "declip"


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


#: A fact left unset (``None`` is a real value for some of them).
UNSET = _Unset()


@dataclass(frozen=True)
class Meta:
    """What one config field means, beyond its type and default."""

    help: str
    rule: Rule | None = None  # checked when the config is built (core.validation)
    choices: tuple[str, ...] | None = None  # the command line offers exactly these (taken from their owner)
    metavar: str | None = None
    flag: str | None = None  # the command-line name when it is not --field-name (e.g. --train-view, repeated)
    split: bool = True  # list values on the command line may be comma-separated (False for views: jitter:B,C,S,H)
    identity: str | None = None  # how the field enters a run's identity (pipeline.train.options says the kinds)
    neutral: Any = UNSET  # identity "later": the value that leaves identities as they were before the option
    section: str = ""  # the heading it is listed under in an annotated TOML
    example: Any = UNSET  # the value an annotated TOML shows (default: the default itself)
    json_key: str | None = None  # the stored key when the field was renamed (written runs keep their config.json)
    flatten: bool = False  # a nested config whose fields are written inline, as flat keys
    table: bool = False  # a nested config kept as its own TOML table / JSON object (keys dotted: cluster.partition)


def option(default: Any = MISSING, *, help: str, **facts: Any) -> Any:
    """A config field with its facts: ``lr: float = option(1e-3, help="...", rule=number(above=0))``."""
    return field(default=default, metadata={_KEY: Meta(help=help, **facts)})


def nested(cls: type, *, help: str, factory: Any = None) -> Any:
    """A nested config written inline (its fields are flat keys of the outer one's JSON and TOML)."""
    return field(default_factory=factory or cls, metadata={_KEY: Meta(help=help, flatten=True)})


def table(cls: type, *, help: str, section: str = "") -> Any:
    """A nested config kept as a table of its own: ``[cluster]`` in TOML, ``{"cluster": {...}}`` in JSON."""
    return field(default_factory=cls, metadata={_KEY: Meta(help=help, table=True, section=section)})


def meta(f: Field) -> Meta | None:
    return f.metadata.get(_KEY)


def key_of(f: Field) -> str:
    m = meta(f)
    return m.json_key if m is not None and m.json_key else f.name


def _hints(cls: type) -> dict[str, Any]:
    import sys

    return typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))


@dataclass(frozen=True)
class Leaf:
    """One flat key of a config: where it lives (``path`` of attribute names), its field and its type."""

    path: tuple[str, ...]
    field: Field
    hint: Any
    owner: type
    table: str = ""  # the table it lives in ("" = top level); its key is then dotted, "table.name"

    @property
    def name(self) -> str:
        return self.field.name

    @property
    def key(self) -> str:
        return f"{self.table}.{key_of(self.field)}" if self.table else key_of(self.field)

    @property
    def short_key(self) -> str:
        """The key inside its table (the same as :attr:`key` at top level)."""
        return key_of(self.field)

    @property
    def meta(self) -> Meta | None:
        return meta(self.field)

    @property
    def default(self) -> Any:
        f = self.field
        return f.default_factory() if f.default_factory is not MISSING else f.default


def leaves(cls: type) -> list[Leaf]:
    """The flat keys of ``cls`` in order, nested configs marked ``flatten`` expanded in place."""
    out: list[Leaf] = []
    hints = _hints(cls)
    for f in fields(cls):
        m = meta(f)
        if m is not None and m.flatten:
            out += [Leaf((f.name, *leaf.path), leaf.field, leaf.hint, leaf.owner, leaf.table)
                    for leaf in leaves(hints[f.name])]
        elif m is not None and m.table:
            out += [Leaf((f.name, *leaf.path), leaf.field, leaf.hint, leaf.owner, key_of(f))
                    for leaf in leaves(hints[f.name])]
        else:
            out.append(Leaf((f.name,), f, hints[f.name], cls))
    keys = [leaf.key for leaf in out]
    if len(keys) != len(set(keys)):
        twice = sorted({k for k in keys if keys.count(k) > 1})
        raise TypeError(f"{cls.__name__}: a nested config repeats the keys {twice}")
    return out


def plain(value: Any) -> Any:
    """A JSON-safe copy: tuples → lists, nested configs → their JSON, typed keys (SourceKey, ...) → their text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if is_dataclass(value) and hasattr(type(value), "__dataclass_fields__") and any(meta(f) for f in fields(value)):
        return to_json(value)
    return str(value)


def to_json(cfg: Any) -> dict:
    """The config as flat JSON-safe keys (``JSON_ORDER`` on the class, when present, fixes the order of those keys:
    stored run configs keep their bytes)."""
    out = {}
    for f in fields(cfg):
        m = meta(f)
        value = getattr(cfg, f.name)
        if m is not None and m.flatten:
            out.update(to_json(value))
        elif m is not None and m.table:
            out[key_of(f)] = to_json(value)
        else:
            out[key_of(f)] = plain(value)
    order = getattr(type(cfg), "JSON_ORDER", ())
    if order:
        out = {**{k: out[k] for k in order if k in out}, **{k: v for k, v in out.items() if k not in order}}
    return out


def _is_tuple(hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is tuple:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_is_tuple(a) for a in typing.get_args(hint))
    return False


def _typed(hint: Any, value: Any) -> Any:
    return tuple(value) if isinstance(value, list) and _is_tuple(hint) else value


def from_json(cls: type, data: Mapping, *, ignore: tuple[str, ...] = ()) -> Any:
    """Build ``cls`` from its JSON (flat keys; a nested config may also come as a dict under its field name, and a
    renamed field by its new name).

    Unknown keys are refused with the list of known ones; every rule broken by the given values is reported in one
    :class:`DeclipError` (``WHAT`` on the class names the settings), before anything is built.
    """
    if not isinstance(data, Mapping):
        raise DeclipError(f"a {cls.__name__} is read from a mapping of keys, got {type(data).__name__}")
    flat = dict(data)
    for f in fields(cls):  # the nested form: {"options": {...}} beside flat keys
        m = meta(f)
        if m is not None and m.flatten and isinstance(flat.get(f.name), Mapping):
            flat.update(flat.pop(f.name))
        elif m is not None and m.table and isinstance(flat.get(key_of(f)), Mapping):  # dotted keys (flags) win
            for k, v in flat.pop(key_of(f)).items():
                flat.setdefault(f"{key_of(f)}.{k}", v)
    all_leaves = leaves(cls)
    for leaf in all_leaves:  # a renamed field: its new name is read like its stored key
        if leaf.key != leaf.name and leaf.name in flat and leaf.key not in flat:
            flat[leaf.key] = flat.pop(leaf.name)
    known = [leaf.key for leaf in all_leaves]
    unknown = sorted(set(flat) - set(known) - set(ignore))
    if unknown:
        raise DeclipError(f"unknown keys {unknown}; known keys are {sorted(known)}")
    missing = [leaf.key for leaf in all_leaves if len(leaf.path) == 1 and leaf.key not in flat
               and leaf.field.default is MISSING and leaf.field.default_factory is MISSING]
    if missing:
        raise DeclipError(f"missing required keys {missing}")
    values = {leaf.key: _typed(leaf.hint, flat[leaf.key]) for leaf in all_leaves if leaf.key in flat}
    rules = {leaf.key: leaf.meta.rule for leaf in all_leaves if leaf.meta is not None and leaf.meta.rule is not None}
    not_lists = _not_lists(values, all_leaves)
    found = list(not_lists.values()) + problems(
        values, {k: r for k, r in rules.items() if k in values and k not in not_lists}, _flags(all_leaves))
    if found:
        raise DeclipError(f"invalid {getattr(cls, 'WHAT', 'config')} settings: " + "; ".join(found))
    return _build(cls, values)


def _not_lists(values: dict, all_leaves: list[Leaf]) -> dict[str, str]:
    """A list key given one value (``layers = 3``, ``layers = "layer0"``): key -> one line, before a string is split
    into characters or a number fails deep inside with "'int' object is not iterable"."""
    found = {}
    for leaf in all_leaves:
        value = values.get(leaf.key)
        if leaf.key in values and value is not None and _is_tuple(leaf.hint) and not isinstance(value, (tuple, list)):
            example = leaf.meta.example if leaf.meta is not None and leaf.meta.example is not UNSET else ("...",)
            shown = "[" + ", ".join(f'"{v}"' if isinstance(v, str) else str(v) for v in example) + "]"
            found[leaf.key] = f"{leaf.key} takes a list such as {leaf.key} = {shown}, got {value!r}"
    return found


def _build(cls: type, values: dict) -> Any:
    kwargs = {}
    for f in fields(cls):
        m = meta(f)
        if m is not None and m.flatten:
            kwargs[f.name] = _replaced(f.default_factory(), values)
        elif m is not None and m.table:
            kwargs[f.name] = _replaced(f.default_factory(), _in_table(values, key_of(f)))
        elif key_of(f) in values:
            kwargs[f.name] = values[key_of(f)]
    return cls(**kwargs)


def _replaced(cfg: Any, values: dict) -> Any:
    """A nested config's default (the outer field's, e.g. the demo's own training options) with the given keys."""
    changes = {}
    for f in fields(cfg):
        m = meta(f)
        if m is not None and m.flatten:
            changes[f.name] = _replaced(getattr(cfg, f.name), values)
        elif m is not None and m.table:
            changes[f.name] = _replaced(getattr(cfg, f.name), _in_table(values, key_of(f)))
        elif key_of(f) in values:
            changes[f.name] = values[key_of(f)]
    return replace(cfg, **changes) if changes else cfg


def _in_table(values: dict, name: str) -> dict:
    """The values of table ``name``'s dotted keys, by their key inside the table."""
    return {k[len(name) + 1:]: v for k, v in values.items() if k.startswith(f"{name}.")}


def _flags(all_leaves: list[Leaf]) -> dict[str, str]:
    return {leaf.key: leaf.meta.flag for leaf in all_leaves if leaf.meta is not None and leaf.meta.flag}


def rules_of(cls: type) -> dict[str, Rule]:
    """The validation rules of ``cls``'s own (not nested) fields, for its ``__post_init__``."""
    return {f.name: meta(f).rule for f in fields(cls) if meta(f) is not None and meta(f).rule is not None}


def flags_of(cls: type) -> dict[str, str]:
    return {f.name: meta(f).flag for f in fields(cls) if meta(f) is not None and meta(f).flag}


class JsonConfig:
    """``cfg.to_json()`` and ``Cls.from_json(data)``: the one serialisation style (see the module docstring)."""

    def to_json(self) -> dict:
        return to_json(self)

    @classmethod
    def from_json(cls, data: Mapping) -> Any:
        return from_json(cls, data)


def walk(cls: type) -> Iterator[Leaf]:
    """Every flat key of ``cls`` that carries metadata (what flags and annotated TOML files are made from)."""
    return (leaf for leaf in leaves(cls) if leaf.meta is not None)
