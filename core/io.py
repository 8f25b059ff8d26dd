"""File plumbing every floor shares: content hashes (and, as they move here, atomic writes and format sniffing).

Why one module: the same helper written several times drifts (two hashers, three temp-then-replace styles); here
each exists once and is tested once.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import tempfile
import uuid
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=16)
def file_sha256(path: str) -> str:
    """sha256 of a file's bytes (read in 4 MiB blocks); cached per path for the life of the process."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` (``os.replace``), on failure it is
    removed. Readers never see half a file, and a killed writer leaves only a ``.NAME.*.tmp`` leftover.

    The temp name is unique per writer (``mkstemp``), so concurrent writers of one file never share a temp file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_put(fs, path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` on an fsspec filesystem ``fs`` so that readers never see half a file.

    A local filesystem goes through :func:`atomic_path`. Elsewhere (object stores, other remote filesystems) the
    bytes go to a unique ``.NAME.<hex>.tmp`` beside ``path`` and are then moved over it, so a filesystem whose
    writes are not atomic never shows half a ``path`` either; a failed write removes its temp file.
    """
    if "file" in _protocols(fs) or "local" in _protocols(fs):
        atomic_write_bytes(path, data)
        return
    parent, name = posixpath.split(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = posixpath.join(parent, f".{name}.{uuid.uuid4().hex}.tmp")
    try:
        fs.pipe_file(tmp, data)
        fs.mv(tmp, path)
    except BaseException:
        with contextlib.suppress(Exception):
            fs.rm(tmp)
        raise


def _protocols(fs) -> tuple[str, ...]:
    protocol = getattr(fs, "protocol", ())
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def remove_leftovers(folder: str | os.PathLike) -> list[Path]:
    """Delete the temp files of writers killed mid-write (``.NAME.*.tmp`` and the older ``NAME.partial``)."""
    folder = Path(folder)
    gone = [*folder.glob(".*.tmp"), *folder.glob("*.partial")]
    for leftover in gone:
        leftover.unlink(missing_ok=True)
    return gone


def is_torchscript(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a TorchScript archive (``torch.jit.save``, OpenAI's CLIP ``.pt``), not a ``torch.save`` file.

    PyTorch's own test (``torch.serialization._is_torchscript_zip``) is a ``constants.pkl`` record at the archive's
    root: both kinds are zips with every entry under one top folder and a ``data.pkl`` there, and only TorchScript adds
    ``constants.pkl`` (and ``code/``). Matching names anywhere in the zip, as the two copies this replaces did, takes
    any zip with a ``code/`` folder or a nested ``constants.pkl`` for an archive.
    """
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
    tops = {name.partition("/")[0] for name in names}
    if len(tops) != 1:
        return False
    top = tops.pop()
    return f"{top}/constants.pkl" in names and f"{top}/data.pkl" in names
