"""`declip data scan` for data without splits (issue 19.3): a warning naming the fix, --split-ratios / --split, the
rows each mask rule removed, and the README walk-through's sample output is what the pairs layout really prints."""
import re

import pytest

from declip.cli.app import main
from tests.acceptance.shapes import write_list, write_pairs
from tests.fixtures import REPO, TINY_BACKBONE


def _code_blocks_after(text: str, marker: str, count: int) -> list[str]:
    start = text.index(marker)
    return re.findall(r"```[a-z]*\n(.*?)```", text[start:], re.S)[:count]


@pytest.fixture
def my_set(tmp_path, monkeypatch):
    root = tmp_path / "data" / "my-set"
    write_pairs(root, None, n=20, sizes=((48, 80), (80, 48)))
    monkeypatch.chdir(tmp_path)
    return root


def _scan(capsys, *args) -> list[str]:
    assert main(["data", "scan", *args]) == 0
    return [line.rstrip() for line in capsys.readouterr().out.splitlines()]


def test_the_readme_walkthrough_shows_what_the_pairs_layout_prints(my_set, capsys):
    readme = (REPO / "README.md").read_text()
    command, plain, _, resplit = _code_blocks_after(readme, "**1. Scan your dataset into a manifest.**", 4)
    assert command.strip() == "declip data scan --layout pairs /data/my-set --out my-set.parquet"
    printed = _scan(capsys, "--layout", "pairs", str(my_set), "--out", "my-set.parquet", "--no-progress")
    printed = [line.replace(str(my_set), "/data/my-set") for line in printed]
    assert printed == [line.rstrip() for line in plain.strip().splitlines()]
    again = _scan(capsys, "--layout", "pairs", str(my_set), "--out", "my-set.parquet", "--split-ratios", "0.6,0.2,0.2",
                  "--seed", "0", "--no-progress")
    shown = [line.rstrip() for line in resplit.strip().splitlines() if line != "..."]
    assert shown and all(line in again for line in shown), (shown, again)


def test_a_split_less_scan_warns_and_a_grid_refuses_before_anything_runs(my_set, tmp_path, capsys):
    printed = _scan(capsys, str(my_set), "--out", "m.parquet", "--no-progress")
    assert any(line.startswith("WARNING: no split: none of the 20 rows") for line in printed)
    code = main(["grid", "--store", "s.zarr", "--dataset", "my-set", "--manifest", "m.parquet", "--out", "g",
                 "--backbones", TINY_BACKBONE, "--layers", "layer0", "--decoders", "linear", "--train-sets", "fake",
                 "--test-sets", "fake", "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and "has no split" in err and "--split-ratios 0.6,0.2,0.2 --seed 0" in err
    assert not (tmp_path / "s.zarr").exists() and not (tmp_path / "g").exists()


def test_a_test_only_list_and_declips_mask_rules(tmp_path, capsys):
    root = tmp_path / "cocoglide"
    write_list(root, fakes=4, reals=1, name="list.txt")
    printed = _scan(capsys, "--layout", "list", str(root), "--split", "test", "--out", str(tmp_path / "c.parquet"))
    assert "dataset: cocoglide   (pass --dataset cocoglide to evaluate: a test-only set)" in printed
    assert "splits: every row in split 'test' (--split test)" in printed
    from PIL import Image

    with Image.open(root / "gt" / "glide00_mask.png") as mask:
        mask.resize((32, 40), Image.NEAREST).save(root / "gt" / "glide00_mask.png")  # half the image's size
    strict = _scan(capsys, "--layout", "list", str(root), "--split", "test", "--out", str(tmp_path / "c.parquet"))
    assert "problems: 1 file(s) left out of the manifest" in strict
    assert "rows left out by rule: mask-size-mismatch 1 (mask checks: strict)" in strict
    kept = _scan(capsys, "--layout", "list", str(root), "--split", "test", "--mask-checks", "declip",
                 "--out", str(tmp_path / "c.parquet"))
    assert "problems: 0 file(s) left out of the manifest, 1 kept and reported" in kept
    assert "rows left out by rule: none (mask checks: declip); kept as DeCLIP keeps them: mask-size-mismatch 1" in kept
