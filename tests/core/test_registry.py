"""core.registry: names, clear lookup errors, fnmatch listing, lazy loading of the modules that register."""
import pytest

from declip.core.errors import DeclipError
from declip.core.registry import Registry


def test_register_get_names_and_filter():
    reg: Registry[int] = Registry("widget")
    reg.add("conv-4", 4)

    @reg.register("conv-20")
    def twenty():
        return 20

    assert reg.get("conv-4") == 4 and reg["conv-20"] is twenty
    assert reg.names() == ["conv-4", "conv-20"] and reg.names("conv-2*") == ["conv-20"]
    assert "conv-4" in reg and "linear" not in reg and len(reg) == 2
    assert reg.values() == [4, twenty]


def test_unknown_name_lists_the_known_ones():
    reg: Registry[int] = Registry("widget")
    reg.add("a", 1)
    reg.add("b", 2)
    with pytest.raises(DeclipError, match=r"unknown widget 'c'; choose one of a, b"):
        reg.get("c")


def test_duplicate_names_are_refused():
    reg: Registry[int] = Registry("widget")
    reg.add("a", 1)
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("a", 2)


def test_loader_runs_once_on_first_read():
    calls = []

    def load():
        calls.append(1)
        reg.add("late", 3)

    reg: Registry[int] = Registry("widget", loader=load)
    reg.add("early", 1)
    assert calls == []
    assert reg.names() == ["early", "late"] and reg.get("late") == 3
    assert calls == [1]
