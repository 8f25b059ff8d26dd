"""core.configs: one JSON style for every config (tuples, typed keys, nested options written inline), field facts in
metadata, unknown keys refused with the known ones. Oracles: hand-written dicts of a small config made here."""
from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from declip.core.config_toml import annotated_toml, toml_value
from declip.core.configs import JsonConfig, from_json, leaves, nested, option, table, to_json
from declip.core.errors import DeclipError
from declip.core.keys import SourceKey
from declip.core.validation import choice, whole


@dataclass(frozen=True)
class Inner(JsonConfig):
    WHAT = "inner"

    steps: int = option(3, help="how many steps", rule=whole(1), section="inner part")
    kind: str = option("a", help="which kind", rule=choice("a", "b"), section="inner part")


@dataclass(frozen=True)
class Outer(JsonConfig):
    WHAT = "outer"
    JSON_ORDER = ("steps", "name")

    name: str = option(help="what it is called", example="x")
    sources: tuple[SourceKey, ...] = option((), help="feature sources", section="outer part")
    renamed: tuple[str, ...] = option((), help="was called old_name", json_key="old_name")
    inner: Inner = nested(Inner, help="the inner options")
    limit: float | None = option(None, help="a limit. Unset: none", example=2.5)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(SourceKey.parse(s) for s in self.sources))


def test_to_json_is_flat_plain_and_ordered():
    cfg = Outer(name="n", sources=("b@random-0/layer1",), renamed=("p", "q"), inner=Inner(steps=5))
    out = to_json(cfg)
    assert out == {"steps": 5, "name": "n", "sources": ["b@random-0/layer1"], "old_name": ["p", "q"], "kind": "a",
                   "limit": None}
    assert list(out)[:2] == ["steps", "name"]  # JSON_ORDER first, the rest in field order
    assert json.loads(json.dumps(out)) == out


def test_from_json_reads_flat_nested_and_renamed_forms():
    want = Outer(name="n", sources=("b@random-0/layer1",), renamed=("p",), inner=Inner(steps=5, kind="b"))
    flat = {"name": "n", "sources": ["b@random-0/layer1"], "old_name": ["p"], "steps": 5, "kind": "b"}
    assert from_json(Outer, flat) == want
    new_name = {k: v for k, v in flat.items() if k != "old_name"} | {"renamed": ["p"]}
    assert from_json(Outer, new_name) == want
    as_nested = {"name": "n", "sources": ["b@random-0/layer1"], "old_name": ["p"], "inner": {"steps": 5, "kind": "b"}}
    assert Outer.from_json(as_nested) == want
    assert from_json(Outer, to_json(want)) == want
    assert isinstance(from_json(Outer, flat).sources[0], SourceKey) and from_json(Outer, flat).renamed == ("p",)


def test_unknown_and_missing_keys_are_refused_with_the_known_ones():
    with pytest.raises(DeclipError) as err:
        from_json(Outer, {"name": "n", "stepz": 4})
    text = str(err.value)
    assert "unknown keys ['stepz']" in text and "'steps'" in text and "'kind'" in text
    with pytest.raises(DeclipError, match=r"missing required keys \['name'\]"):
        from_json(Outer, {"steps": 4})
    assert from_json(Outer, {"name": "n", "identity": "x"}, ignore=("identity",)).name == "n"  # a stored extra


def test_every_broken_rule_in_one_message_before_anything_is_built():
    with pytest.raises(DeclipError) as err:
        from_json(Outer, {"name": "n", "steps": 0, "kind": "z"})
    text = str(err.value)
    assert text.startswith("invalid outer settings: ") and "steps (--steps)" in text and "kind (--kind)" in text


def test_leaves_flatten_nested_configs_and_refuse_a_repeated_key():
    assert [leaf.key for leaf in leaves(Outer)] == ["name", "sources", "old_name", "steps", "kind", "limit"]
    assert [leaf.path for leaf in leaves(Outer)][3] == ("inner", "steps")

    @dataclass(frozen=True)
    class Clash:
        steps: int = option(1, help="clashes with the inner one")
        inner: Inner = nested(Inner, help="inner")

    with pytest.raises(TypeError, match="steps"):
        leaves(Clash)


def test_annotated_toml_states_each_key_and_parses():
    import tomllib

    text = annotated_toml(Outer, "A header line.")
    assert text.startswith("# A header line.\n")
    assert "# --- outer part " in text and "# --- inner part " in text
    assert '# what it is called. Required.\nname = "x"' in text
    assert "# how many steps. Default: 3.\nsteps = 3" in text
    assert "# a limit. Unset: none.\n# limit = 2.5" in text
    parsed = tomllib.loads(text)
    assert parsed == {"name": "x", "sources": [], "old_name": [], "steps": 3, "kind": "a"}
    assert from_json(Outer, parsed) == Outer(name="x")
    assert toml_value(1e-06) == "1e-06" and tomllib.loads("v = " + toml_value(1e-06))["v"] == 1e-06


@dataclass(frozen=True)
class Jobs(JsonConfig):
    WHAT = "jobs"

    count: int = option(2, help="how many jobs", rule=whole(1))
    queue: str | None = option(None, help="where they go. Unset: anywhere", example="gpu")


@dataclass(frozen=True)
class WithTable(JsonConfig):
    WHAT = "with a table"

    name: str = option("n", help="what it is called")
    jobs: Jobs = table(Jobs, help="the jobs table", section="jobs: where work runs")


def test_a_table_is_an_object_in_json_and_dotted_keys_everywhere_else():
    cfg = WithTable(jobs=Jobs(count=3, queue="gpu"))
    assert [leaf.key for leaf in leaves(WithTable)] == ["name", "jobs.count", "jobs.queue"]
    assert to_json(cfg) == {"name": "n", "jobs": {"count": 3, "queue": "gpu"}}
    assert from_json(WithTable, {"name": "n", "jobs": {"count": 3, "queue": "gpu"}}) == cfg
    assert from_json(WithTable, {"jobs.count": 3, "jobs.queue": "gpu"}) == cfg  # dotted, as TOML reads them
    # a dotted key (a flag) overrides the file's table; the table's other keys stay
    assert from_json(WithTable, {"jobs": {"count": 5, "queue": "gpu"}, "jobs.count": 3}) == cfg
    assert from_json(WithTable, {}) == WithTable()
    with pytest.raises(DeclipError, match=r"jobs\.count \(--jobs-count\) must be a whole number"):
        from_json(WithTable, {"jobs": {"count": 0}})
    with pytest.raises(DeclipError, match=r"unknown keys \['jobs.size'\]"):
        from_json(WithTable, {"jobs": {"size": 1}})


def test_a_table_is_written_last_as_a_toml_table_that_reads_back():
    import tomllib

    text = annotated_toml(WithTable, "header")
    assert text.index("[jobs]") > text.index('name = "n"')
    assert "# --- jobs: where work runs" in text and "# how many jobs. Default: 2.\ncount = 2\n" in text
    assert "# queue = \"gpu\"" in text  # a suggestion stays commented
    assert WithTable.from_json(tomllib.loads(text)) == WithTable()
    assert WithTable.from_json(tomllib.loads(text.replace("# queue =", "queue ="))).jobs.queue == "gpu"
