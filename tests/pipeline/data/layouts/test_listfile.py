"""List layout (issue 21.11): a symlink out of ROOT is refused unless --allow-outside-root, CSV quoting takes file
names with commas, and an unquoted comma gives a missing-file problem that says to quote."""
import os

import numpy as np
import pytest
from PIL import Image

from declip.core.errors import DeclipError
from declip.pipeline.data.manifest import scan_dataset


def _image(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (16, 24, 3), dtype=np.uint8)).save(path)


def _mask(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.zeros((16, 24), np.uint8)
    mask[4:10, 5:15] = 255
    Image.fromarray(mask).save(path)


def test_a_symlink_out_of_root_is_refused_unless_allowed(tmp_path):
    root = tmp_path / "ds"
    _image(root / "img" / "in.png")
    _image(tmp_path / "elsewhere" / "out.png", seed=1)
    _mask(tmp_path / "elsewhere" / "out_mask.png")
    os.symlink(tmp_path / "elsewhere", root / "linked")  # a folder link inside ROOT that leads out of it
    (root / "list.txt").write_text("img/in.png,Negative\nlinked/out.png,linked/out_mask.png\n")
    with pytest.raises(DeclipError, match=r"line 2: .*a symlink to .*elsewhere/out\.png, outside ROOT") as err:
        scan_dataset(root, "list", progress=False)
    assert "--allow-outside-root" in str(err.value)
    res = scan_dataset(root, "list", allow_outside_root=True, progress=False)
    assert sorted(res.manifest["image_path"]) == ["img/in.png", "linked/out.png"]


def test_a_symlink_inside_root_is_fine(tmp_path):
    root = tmp_path / "ds"
    _image(root / "img" / "a.png")
    os.symlink(root / "img" / "a.png", root / "alias.png")
    (root / "list.txt").write_text("alias.png,Negative\n")
    assert scan_dataset(root, "list", progress=False).manifest["image_path"].tolist() == ["alias.png"]


def test_quoted_file_names_with_commas(tmp_path):
    root = tmp_path / "ds"
    _image(root / "img" / "a,b.png")
    _mask(root / "gt" / "a,b.png")
    _image(root / "img" / "c.png", seed=2)
    (root / "list.txt").write_text('image,mask\n"img/a,b.png","gt/a,b.png"\n"img/c.png", Negative\n')
    res = scan_dataset(root, "list", progress=False)
    assert res.problems.empty, res.problems
    df = res.manifest.set_index("image_path")
    assert df.loc["img/a,b.png", "mask_path"] == "gt/a,b.png" and df.loc["img/a,b.png", "label"] == 1
    assert df.loc["img/c.png", "label"] == 0


@pytest.mark.parametrize("line", ["img/a,b.png,gt/a,b.png", "img/a,b.png"])
def test_an_unquoted_comma_says_to_quote(tmp_path, line):
    root = tmp_path / "ds"
    _image(root / "img" / "a,b.png")
    _mask(root / "gt" / "a,b.png")
    (root / "list.txt").write_text(line + "\n")
    res = scan_dataset(root, "list", progress=False)
    assert res.manifest.empty
    (problem,) = res.problems.itertuples(index=False)
    assert problem.reason == "missing-file" and "quote a file name that holds a comma" in problem.detail


def test_a_broken_quote_is_one_clear_error(tmp_path):
    root = tmp_path / "ds"
    _image(root / "img" / "a.png")
    (root / "list.txt").write_text('"img/a.png,Negative\n')
    with pytest.raises(DeclipError, match="list.txt line 1: not a CSV line"):
        scan_dataset(root, "list", progress=False)
