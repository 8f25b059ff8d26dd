"""ROOT that is not a folder: one clear line each (issue 10.5)."""
import os

import pytest

from declip.core.errors import DeclipError
from declip.pipeline.data.manifest import scan_dataset


def test_root_symlink_loop(tmp_path):
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    with pytest.raises(DeclipError, match="a symlink loop"):
        scan_dataset(tmp_path / "loop", "dolos", progress=False)


def test_root_is_a_file(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(DeclipError, match="a file, not a folder"):
        scan_dataset(tmp_path / "f.txt", "auto", progress=False)
