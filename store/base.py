"""What both parts of the feature store stand on: the zarr hierarchy at a URL, small files beside its arrays, locks.

:class:`store.feature_store.FeatureStore` is this plus its dataset part (:mod:`store.datasets`: registered rows and
masks) and its layer part (:mod:`store.layers`: cached features). Why a base class and not a helper object: callers
have always used one ``FeatureStore`` with one set of methods; the parts only split the file by what they own.
"""
from __future__ import annotations

import json
import logging
import posixpath
from pathlib import Path
from typing import Any, Callable

import fsspec
import zarr
from zarr.errors import ContainsGroupError

from declip.core.errors import DeclipError
from declip.core.io import atomic_put, atomic_write_text
from declip.store.locks import store_lock

log = logging.getLogger(__name__)
SCHEMA_VERSION = 1

#: Called with the store's URL right before this process creates a new store's root group. Tests put a barrier here
#: so that several processes create the same fresh store at once: the race must be survived, not merely unlikely.
BEFORE_ROOT_CREATION: Callable[[str], None] | None = None


def local_path(url: str) -> str:
    """``file:///x/y.zarr`` → ``/x/y.zarr``: zarr's fsspec route cannot create a new local store, its local one can."""
    if url.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return unquote(urlparse(url).path)
    return url


def dies_with_process(url: str) -> bool:
    """A store that exists only in this process's memory (``memory://``): nothing written there outlives the run."""
    return str(url).startswith("memory://")


def as_stored(value: Any) -> Any:
    """``value`` as zarr's JSON attributes give it back (tuples become lists): what a stored record compares to."""
    return json.loads(json.dumps(value))


def _restore_root_metadata(url: str) -> None:
    """A local store whose root ``zarr.json`` was deleted gets it back (it holds nothing but the node type)."""
    if "://" in url:
        return
    root = Path(url)
    if root.is_dir() and not (root / "zarr.json").exists() and ((root / "datasets").is_dir()
                                                                 or (root / "features").is_dir()):
        log.warning("%s/zarr.json was missing; restored it", url)
        atomic_write_text(root / "zarr.json", json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}))


def open_root(url: str, mode: str, storage_options: dict | None) -> zarr.Group:
    """The store's root group; with ``mode="a"`` created when missing, idempotently under a race.

    Several extractions started together into one fresh store all find no root and all create it; zarr's own
    ``mode="a"`` then fails in whichever process looks a moment after another wrote it (``ContainsGroupError``). The
    root holds nothing but the node type, so losing that race is harmless: open the group the winner made.
    """
    opts = storage_options or None
    if mode != "a":
        return zarr.open_group(url, mode=mode, storage_options=opts)
    try:
        return zarr.open_group(url, mode="r+", storage_options=opts)
    except FileNotFoundError:  # zarr's GroupNotFoundError is one: a new store
        pass
    if BEFORE_ROOT_CREATION is not None:
        BEFORE_ROOT_CREATION(url)
    try:
        return zarr.open_group(url, mode="w-", storage_options=opts)
    except (ContainsGroupError, FileExistsError):  # another process created it since we looked
        return zarr.open_group(url, mode="a", storage_options=opts)


class StoreBase:
    """A zarr hierarchy at a local path or fsspec URL (``s3://…`` needs s3fs)."""

    def __init__(self, url: str, mode: str = "a", storage_options: dict | None = None):
        self.url = local_path(str(url)).rstrip("/")
        self.storage_options = storage_options or {}
        _restore_root_metadata(self.url)
        try:
            self.root = open_root(self.url, mode, self.storage_options)
        except FileNotFoundError as exc:
            raise DeclipError(f"no feature store at {self.url}; run `declip extract` to create one") from exc
        self.fs, self._fs_root = fsspec.core.url_to_fs(self.url, **self.storage_options)

    def lock(self, name: str):
        """A lock shared by every process (on any host) writing this store; see :mod:`store.locks`."""
        return store_lock(self.url, name, self.fs, self._fs_root)

    # ---- small files next to the arrays (sample tables, problem records) ----
    def _full(self, rel: str) -> str:
        return posixpath.join(self._fs_root, rel)

    def _put_file(self, rel: str, data: bytes) -> None:
        """Write atomically: a concurrent or later reader sees the old file or the new one, never half of one."""
        atomic_put(self.fs, self._full(rel), data)

    def _get_file(self, rel: str) -> bytes:
        return self.fs.cat_file(self._full(rel))

    def _exists(self, rel: str) -> bool:
        return self.fs.exists(self._full(rel))

    def _list_files(self, rel: str) -> list[str]:
        """Full paths of the files in folder ``rel``, sorted; none when it does not exist."""
        return sorted(self.fs.ls(self._full(rel), detail=False)) if self._exists(rel) else []

    def nbytes(self, rel: str) -> int:
        """Bytes on disk under ``rel`` (0 when nothing is there)."""
        try:
            return int(self.fs.du(self._full(rel), total=True))
        except FileNotFoundError:
            return 0
