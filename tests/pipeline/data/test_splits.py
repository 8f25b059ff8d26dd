"""Splits for data that has none (issue 19.3): grouped, seeded, stratified ratios; one split for a test-only list;
the rule recorded in the manifest; a warning at scan time and a refusal naming the fix in train, evaluate and grid."""
import numpy as np
import pytest
from PIL import Image

from declip.core.errors import DeclipError
from declip.pipeline.data.manifest import read_manifest, scan_dataset, write_manifest
from declip.pipeline.data.perceptual import MAX_DISTANCE
from declip.pipeline.data.splits import FIX, assign_splits, no_split_warning, parse_ratios, require_split


def _rows(n, subset="fake", dataset="d"):
    return [dict(dataset=dataset, subset=subset, group_id=f"{subset}{i}", image_path=f"{subset}{i}.png", split="")
            for i in range(n)]


def _far_hashes(rows):
    """Seeded random 64-bit hashes, checked more than MAX_DISTANCE bits apart: no two rows are near-duplicates."""
    values = [int(v) for v in np.random.default_rng(7).integers(0, 2**63, len(rows), dtype=np.int64)]
    assert all(bin(a ^ b).count("1") > MAX_DISTANCE for k, a in enumerate(values) for b in values[k + 1:])
    return {r["image_path"]: v for r, v in zip(rows, values)}


def test_ratios_give_exact_counts_per_subset_and_depend_only_on_the_seed():
    rows = _rows(10) + _rows(5, "real")
    hashes = {r["image_path"]: None for r in rows}
    splits = assign_splits(rows, hashes, (0.6, 0.2, 0.2), seed=0)
    counts = {(r["subset"], s): 0 for r in rows for s in ("train", "valid", "test")}
    for r, s in zip(rows, splits):
        counts[(r["subset"], s)] += 1
    assert [counts[("fake", s)] for s in ("train", "valid", "test")] == [6, 2, 2]
    assert [counts[("real", s)] for s in ("train", "valid", "test")] == [3, 1, 1]
    assert assign_splits(rows, hashes, (0.6, 0.2, 0.2), seed=0) == splits  # deterministic
    others = [assign_splits(rows, hashes, (0.6, 0.2, 0.2), seed=s) for s in range(1, 6)]
    assert any(o != splits for o in others) and all(sorted(o) == sorted(splits) for o in others)


def test_a_zero_share_gets_no_rows():
    rows = _rows(10)
    assert set(assign_splits(rows, {}, (0.8, 0.2, 0.0), seed=3)) == {"train", "valid"}


@pytest.mark.parametrize("seed", range(8))
def test_groups_stay_whole(seed):
    rows = _rows(12)
    for i in (1, 2, 3):  # one group id: a real source and its variants
        rows[i]["group_id"] = "photo-a"
    hashes = _far_hashes(rows)
    hashes[rows[7]["image_path"]] = hashes[rows[8]["image_path"]] ^ 0b1011  # 3 bits apart: a re-saved copy
    rows[10]["image_path"], rows[11]["image_path"] = "beach_crop0.png", "beach_crop1.png"
    hashes["beach_crop0.png"], hashes["beach_crop1.png"] = 0xAAAA_0000_0000_0001, 0x0000_5555_FFFF_0000
    splits = assign_splits(rows, hashes, (0.6, 0.2, 0.2), seed=seed, group_regex=r"^(.*)_crop\d+$")
    assert len({splits[i] for i in (1, 2, 3)}) == 1
    assert splits[7] == splits[8]
    assert splits[10] == splits[11]


@pytest.mark.parametrize("seed", range(3))
def test_crops_matched_by_the_regex_group_stay_together(seed):
    rows = _rows(15)
    for i, row in enumerate(rows):
        row["image_path"] = row["group_id"] = f"photo{i // 3}_crop{i % 3}"
    splits = assign_splits(rows, _far_hashes(rows), (0.6, 0.2, 0.2), seed=seed, group_regex=r"^(photo\d+)_crop\d+$")
    assert all(len({splits[3 * p + k] for k in range(3)}) == 1 for p in range(5)), splits
    assert sorted(splits).count("train") == 9  # five photos of three crops: 3 to train, 1 to valid, 1 to test


def test_near_duplicates_split_apart_without_grouping_by_hash_would_leak():
    """The hash relation is what keeps the copy together: with hashes unknown the seeds do separate them."""
    rows = _rows(10)
    copy = {r["image_path"]: None for r in rows}
    apart = [s for s in range(20) if len(set(np.array(assign_splits(rows, copy, (0.6, 0.2, 0.2), s))[[3, 4]])) == 2]
    assert apart
    hashes = _far_hashes(rows)
    hashes[rows[4]["image_path"]] = hashes[rows[3]["image_path"]] ^ 1
    for s in apart:
        chosen = assign_splits(rows, hashes, (0.6, 0.2, 0.2), s)
        assert chosen[3] == chosen[4]


@pytest.mark.parametrize("text", ["0.6,0.2", "0.5,0.2,0.2", "a,b,c", "0,0.5,0.5", "-0.2,0.6,0.6", "nan,0.5,0.5"])
def test_bad_ratios_are_refused(text):
    with pytest.raises(DeclipError, match="--split-ratios"):
        parse_ratios(text)


def _pairs(root, n=10, copy_of=None):
    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (24, 40, 3), dtype=np.uint8)).resize((80, 48)).save(
            root / "images" / f"p{i}.png")
        mask = np.zeros((48, 80), np.uint8)
        mask[10:30, 20:50] = 255
        Image.fromarray(mask).save(root / "masks" / f"p{i}.png")
    if copy_of is not None:  # a re-saved JPEG copy with its own mask: a near-duplicate under another stem
        Image.open(root / "images" / f"p{copy_of}.png").save(root / "images" / "copy.jpg", quality=80)
        Image.open(root / "masks" / f"p{copy_of}.png").save(root / "masks" / "copy.png")


def test_scan_assigns_grouped_splits_and_records_the_rule(tmp_path):
    _pairs(tmp_path / "set", copy_of=2)
    result = scan_dataset(tmp_path / "set", "pairs", split_ratios="0.6,0.2,0.2", seed=0, progress=False)
    df = result.manifest.set_index("image_path")
    assert df.loc["images/copy.jpg", "split"] == df.loc["images/p2.png", "split"]
    assert sorted(df["split"].value_counts().to_dict().items()) == [("test", 2), ("train", 7), ("valid", 2)]
    assert "near-duplicate-across-splits" not in set(result.problems["reason"])
    write_manifest(result.manifest, tmp_path / "m.parquet", tmp_path / "set", "pairs", result.record)
    rule = read_manifest(tmp_path / "m.parquet").record.split_rule
    assert (rule.rule, rule.ratios, rule.seed) == ("ratios", (0.6, 0.2, 0.2), 0)
    assert "perceptual hash" in rule.describe()


def test_a_test_only_list_goes_into_one_split(tmp_path):
    root = tmp_path / "glide"
    _pairs(root, n=3)
    (root / "list.txt").write_text("images/p0.png,masks/p0.png\nimages/p1.png,Negative\nimages/p2.png,masks/p2.png\n")
    plain = scan_dataset(root, "list", progress=False)
    assert set(plain.manifest["split"]) == {""} and plain.record.split_rule.rule == "none"
    assert "--split-ratios 0.6,0.2,0.2" in no_split_warning(plain.manifest)
    result = scan_dataset(root, "list", split="test", progress=False)
    assert set(result.manifest["split"]) == {"test"} and len(result.manifest) == 3
    assert result.record.split_rule.describe() == "every row in split 'test' (--split test)"
    assert no_split_warning(result.manifest) is None


def test_data_with_its_own_splits_is_not_resplit(tmp_path):
    for split in ("train", "test"):
        _pairs(tmp_path / "tmp" / split, n=2)
        for sub in ("images", "masks"):
            (tmp_path / "set" / sub).mkdir(parents=True, exist_ok=True)
            (tmp_path / "tmp" / split / sub).rename(tmp_path / "set" / sub / split)
    with pytest.raises(DeclipError, match="already has the splits test, train"):
        scan_dataset(tmp_path / "set", "pairs", split_ratios="0.6,0.2,0.2", progress=False)
    with pytest.raises(DeclipError, match="exclude each other"):
        scan_dataset(tmp_path / "set", "pairs", split_ratios="0.6,0.2,0.2", split="test", progress=False)


def test_require_split_names_the_fix():
    import pandas as pd

    none = pd.DataFrame({"split": ["", ""]})
    with pytest.raises(DeclipError, match="has no split") as err:
        require_split(none, "train", "flat", "to train on")
    assert FIX in str(err.value)
    with pytest.raises(DeclipError, match="is test-only.*--split-ratios"):
        require_split(pd.DataFrame({"split": ["test"]}), "valid", "glide", "to choose the best epoch on")
    require_split(pd.DataFrame({"split": ["train", "valid"]}), "train", "ok", "to train on")
    require_split(pd.DataFrame({"split": ["train", "valid"]}), "test", "ok", "to evaluate")  # other rules: later
