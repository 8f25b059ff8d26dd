"""core.io: the one file hasher and the one atomic-write helper every floor uses."""
from __future__ import annotations

import posixpath

import pytest

from declip.core.io import atomic_path, atomic_put, atomic_write_text, file_sha256, remove_leftovers


def test_sha256_of_abc_is_the_published_fips_180_value(tmp_path):
    path = tmp_path / "abc"
    path.write_bytes(b"abc")
    assert file_sha256(str(path)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "config.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_leftovers_of_killed_writers_are_removed(tmp_path):
    (tmp_path / ".state.pt.abc123.tmp").write_text("x")
    (tmp_path / "results.parquet.partial").write_text("x")
    (tmp_path / "state.pt").write_text("keep")
    assert len(remove_leftovers(tmp_path)) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]


def test_torchscript_is_told_from_a_state_dict_by_the_archive_root(tmp_path):
    """A real ``torch.jit.save`` archive is TorchScript; ``torch.save`` files (zip or legacy pickle), other zips and a
    zip holding TorchScript-like names below its root are not (both former copies took the last for an archive)."""
    import warnings
    import zipfile

    import torch

    from declip.core.io import is_torchscript

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated upstream; OpenAI's archives are not
        archive = tmp_path / "ViT-tiny.pt"
        torch.jit.save(torch.jit.script(torch.nn.Linear(3, 2)), str(archive))
    state_zip, legacy = tmp_path / "state.pt", tmp_path / "legacy.pt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), state_zip)
    torch.save(torch.nn.Linear(3, 2).state_dict(), legacy, _use_new_zipfile_serialization=False)
    release = tmp_path / "release.zip"  # e.g. a code release: a code/ folder and a nested constants.pkl
    with zipfile.ZipFile(release, "w") as zf:
        zf.writestr("release/code/train.py", "print(1)")
        zf.writestr("release/model/constants.pkl", b"x")
        zf.writestr("release/model/data.pkl", b"x")
    two_roots = tmp_path / "two-roots.zip"
    with zipfile.ZipFile(two_roots, "w") as zf:
        zf.writestr("a/constants.pkl", b"x")
        zf.writestr("b/data.pkl", b"x")
    assert is_torchscript(archive)
    assert not is_torchscript(state_zip) and not is_torchscript(legacy)
    assert not is_torchscript(release) and not is_torchscript(two_roots)
    assert not is_torchscript(tmp_path / "missing.pt")


def test_atomic_put_through_fsspec_leaves_the_new_bytes_and_no_temp(tmp_path):
    import fsspec

    for fs, root in ((fsspec.filesystem("file"), str(tmp_path)), (fsspec.filesystem("memory"), "/atomic-put-test")):
        target = f"{root}/deep/dir/samples.parquet"
        atomic_put(fs, target, b"old")
        atomic_put(fs, target, b"new")
        assert fs.cat_file(target) == b"new"
        assert [posixpath.basename(p) for p in fs.ls(f"{root}/deep/dir", detail=False)] == ["samples.parquet"]


class _MoveFails:
    """A remote-like filesystem (not local) whose final move dies, as a killed writer's would."""

    protocol = ("memory-test",)

    def __init__(self):
        import fsspec

        self.inner = fsspec.filesystem("memory")

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def mv(self, src, dst):
        raise OSError("connection lost")


def test_a_failed_remote_put_keeps_the_old_file_and_removes_its_temp():
    fs = _MoveFails()
    fs.inner.pipe_file("/move-fails/x.json", b"old")
    with pytest.raises(OSError, match="connection lost"):
        atomic_put(fs, "/move-fails/x.json", b"new")
    assert fs.inner.cat_file("/move-fails/x.json") == b"old"
    assert [posixpath.basename(p) for p in fs.inner.ls("/move-fails", detail=False)] == ["x.json"]
