"""One small named registry, the extension point for feature families, recipes, decoders, metrics and layouts.

Adding an entry is a decorator (or a call) in the entry's own file; callers look entries up by name and get one
clear error listing what exists. Modelled on timm's ``register_model`` / ``list_models`` (fnmatch listing), with
an optional ``loader`` that imports the modules holding the entries the first time the registry is read, so a
new file registers itself without editing an import list.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from declip.core.errors import DeclipError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name → entry, in registration order; names are unique."""

    def __init__(self, kind: str, loader: Callable[[], None] | None = None):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._loader = loader
        self._loading = False

    def _load(self) -> None:
        """Import the entries' modules once (lazily: they may import the module that owns this registry)."""
        if self._loader is not None and not self._loading:
            self._loading = True
            loader, self._loader = self._loader, None
            loader()

    def add(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""
        return lambda entry: self.add(name, entry)

    def get(self, name: str) -> T:
        self._load()
        if name not in self._entries:
            raise DeclipError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self._entries) or 'none'}")
        return self._entries[name]

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching an fnmatch pattern, in registration order."""
        self._load()
        return [n for n in self._entries if fnmatch.fnmatchcase(n, pattern)]

    def items(self) -> list[tuple[str, T]]:
        self._load()
        return list(self._entries.items())

    def values(self) -> list[T]:
        return [entry for _, entry in self.items()]

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())


def import_submodules(package: str, skip: tuple[str, ...] = ()) -> None:
    """Import every module of ``package`` (not sub-packages' children), e.g. so each registers its entries."""
    import importlib
    import pkgutil

    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_") and info.name not in skip:
            importlib.import_module(f"{package}.{info.name}")
