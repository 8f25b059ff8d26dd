import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from declip.core.errors import DeclipError
from declip.pipeline.data.manifest import COLUMNS, counts_table, read_manifest, scan_dataset, write_manifest


def put_image(path: Path, size=(24, 32), data=None):
    """A random RGB image whose content depends on its path (no accidental duplicate bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(str(path).encode()))
    arr = data if data is not None else rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, format="JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG")
    return path


def put_mask(path: Path, size=(24, 32), fake_white=True, values=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros(size, np.uint8)
    m[4:12, 6:20] = 255
    if values is not None:
        m = values
    Image.fromarray(m if fake_white else 255 - m).save(path)
    return path


def dolos_tree(tree: Path):
    for split in ("train", "test"):
        put_image(tree / "real" / split / f"r_{split}.png")
        put_image(tree / "fake" / "p2" / split / f"p_{split}.png")
        put_image(tree / "fake" / "lama" / "images" / split / f"l_{split}.png")
        put_mask(tree / "fake" / "lama" / "masks" / split / f"l_{split}.png", fake_white=False)
    put_image(tree / "fake" / "lama" / "images" / "train" / "j.jpg")  # DeCLIP's .jpg -> .png rule
    put_mask(tree / "fake" / "lama" / "masks" / "train" / "j.png", fake_white=False)
    return tree


def rows(df, **eq):
    sel = df
    for k, v in eq.items():
        sel = sel[sel[k] == v]
    return sel


def test_dolos_two_trees(tmp_path):
    dolos_tree(tmp_path / "celebahq")
    dolos_tree(tmp_path / "ffhq")
    (tmp_path / "celebahq" / "real" / "train" / "notes.txt").write_text("ignored")
    res = scan_dataset(tmp_path, "dolos", progress=False)
    df = res.manifest
    assert list(df.columns) == COLUMNS and res.problems.empty
    assert set(df.dataset) == {"dolos-celebahq", "dolos-ffhq"} and len(df) == 2 * 7
    c = rows(df, dataset="dolos-celebahq")
    real = rows(c, subset="real")
    assert set(real.kind) == {"real"} and set(real.label) == {0} and set(real.mask_path) == {""}
    p2 = rows(c, subset="p2")
    assert set(p2.kind) == {"full"} and set(p2.label) == {1} and set(p2.mask_path) == {""}
    lama = rows(c, subset="lama")
    assert set(lama.kind) == {"partial"} and set(lama.mask_polarity) == {"fake_is_black"}
    j = rows(lama, group_id="j").iloc[0]
    assert j.image_path == "celebahq/fake/lama/images/train/j.jpg"
    assert j.mask_path == "celebahq/fake/lama/masks/train/j.png"
    assert set(c.split) == {"train", "test"} and set(c.variant) == {""}
    assert (df.width == 32).all() and (df.height == 24).all() and df.sha256.str.len().eq(64).all()
    assert df.equals(df.sort_values(["dataset", "subset", "split", "variant", "image_path"]).reset_index(drop=True))


def test_dolos_root_is_one_tree_and_other_tree_names(tmp_path):
    dolos_tree(tmp_path / "celebahq")
    df = scan_dataset(tmp_path / "celebahq", "dolos", progress=False).manifest
    assert set(df.dataset) == {"dolos-celebahq"} and df.image_path.str.match(r"^(real|fake)/").all()
    dolos_tree(tmp_path / "mine")
    df = scan_dataset(tmp_path, "dolos", dataset="x", progress=False).manifest
    assert set(df.dataset) == {"x-celebahq", "x-mine"}
    df = scan_dataset(tmp_path / "mine", "dolos", dataset="x", progress=False).manifest
    assert set(df.dataset) == {"x"}


def test_case_insensitive_extensions(tmp_path):
    tree = dolos_tree(tmp_path / "celebahq")
    put_image(tree / "real" / "train" / "UP.PNG")
    df = scan_dataset(tmp_path, "dolos", progress=False).manifest
    assert "celebahq/real/train/UP.PNG" in set(df.image_path)


def autosplice_tree(root: Path):
    for q in (100, 90, 75):
        for name in ("39406_0.jpg", "39406_1.jpg", "a_b_0.jpg"):
            put_image(root / f"Forged_JPEG{q}" / name)
    put_mask(root / "Mask" / "39406_mask.png")
    put_mask(root / "Mask" / "a_b_mask.png")
    put_image(root / "Authentic" / "39406.jpg")
    return root


def test_autosplice(tmp_path):
    root = autosplice_tree(tmp_path / "AutoSplice")
    res = scan_dataset(root, "auto", progress=False)
    assert res.layout == "autosplice" and res.layouts_tried == ["dolos", "autosplice"] and res.problems.empty
    df = res.manifest
    forged = rows(df, subset="autosplice")
    assert len(forged) == 9 and set(forged.variant) == {"jpeg100", "jpeg90", "jpeg75"}
    assert set(forged.kind) == {"partial"} and set(forged.mask_polarity) == {"fake_is_white"}
    ab = rows(forged, group_id="a_b")
    assert len(ab) == 3 and set(ab.mask_path) == {"Mask/a_b_mask.png"}
    assert set(rows(forged, group_id="39406").mask_path) == {"Mask/39406_mask.png"}
    auth = rows(df, kind="real")
    assert auth.image_path.tolist() == ["Authentic/39406.jpg"] and auth.iloc[0].mask_path == ""
    assert auth.iloc[0].group_id == "39406" and set(df.split) == {"test"} and set(df.dataset) == {"autosplice"}


def test_autosplice_missing_mask(tmp_path):
    root = autosplice_tree(tmp_path / "AutoSplice")
    put_image(root / "Forged_JPEG100" / "777_0.jpg")
    put_image(root / "Forged_JPEG100" / "nounderscore.jpg")
    res = scan_dataset(root, "autosplice", progress=False)
    probs = dict(zip(res.problems.path, res.problems.reason))
    assert probs == {"Forged_JPEG100/777_0.jpg": "missing-mask", "Forged_JPEG100/nounderscore.jpg": "missing-mask"}
    assert "Mask/777_mask.png" in res.problems.detail.iloc[0]


def test_pairs_flat_polarity_and_unmasked(tmp_path):
    put_image(tmp_path / "images" / "a.jpg")
    put_mask(tmp_path / "masks" / "a.png")
    put_image(tmp_path / "images" / "b.png")
    res = scan_dataset(tmp_path, "pairs", polarity="fake_is_black", progress=False)
    assert res.manifest.image_path.tolist() == ["images/a.jpg"]
    assert res.manifest.iloc[0].mask_path == "masks/a.png" and res.manifest.iloc[0].mask_polarity == "fake_is_black"
    assert res.manifest.iloc[0].split == "" and res.manifest.iloc[0].dataset == tmp_path.name
    assert res.problems.reason.tolist() == ["missing-mask"] and "--unmasked-real" in res.problems.detail.iloc[0]
    res = scan_dataset(tmp_path, "pairs", unmasked_real=True, progress=False)
    b = rows(res.manifest, group_id="b").iloc[0]
    assert (b.kind, b.label, b.mask_path, b.mask_polarity) == ("real", 0, "", "fake_is_white") and res.problems.empty


def test_pairs_with_splits(tmp_path):
    for split in ("train", "test"):
        put_image(tmp_path / "images" / split / f"x_{split}.png")
        put_mask(tmp_path / "masks" / split / f"x_{split}.png")
    res = scan_dataset(tmp_path, "auto", progress=False)
    assert res.layout == "pairs" and res.problems.empty
    assert sorted(res.manifest.split) == ["test", "train"]
    assert set(res.manifest.mask_path) == {"masks/train/x_train.png", "masks/test/x_test.png"}


def test_list_file(tmp_path):
    for n in "abcd":
        put_image(tmp_path / "img" / f"{n}.png")
    put_mask(tmp_path / "msk" / "a.png")
    (tmp_path / "list.txt").write_text("image,mask\n# comment\nimg/a.png,msk/a.png\nimg/b.png,Negative\n"
                                       "img/c.png,\n\nimg/d.png\n")
    res = scan_dataset(tmp_path, "auto", progress=False)
    assert res.layout == "list" and res.problems.empty
    df = res.manifest.set_index("group_id")
    assert df.loc["a", "label"] == 1 and df.loc["a", "mask_path"] == "msk/a.png" and df.loc["a", "kind"] == "partial"
    assert df.loc[["b", "c", "d"], "label"].tolist() == [0, 0, 0]
    assert set(df.loc[["b", "c", "d"], "mask_path"]) == {""}


def test_list_file_outside_root(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    put_image(tmp_path / "outside.png")
    put_mask(tmp_path / "outside_mask.png")
    (tmp_path / "my.txt").write_text("../outside.png,../outside_mask.png\n")
    with pytest.raises(DeclipError, match="allow-outside-root"):
        scan_dataset(root, "list", list_file=str(tmp_path / "my.txt"), progress=False)
    res = scan_dataset(root, "list", list_file=str(tmp_path / "my.txt"), allow_outside_root=True, progress=False)
    assert res.manifest.image_path.tolist() == ["../outside.png"]
    write_manifest(res.manifest, tmp_path / "m.parquet", root, "list")
    m = read_manifest(tmp_path / "m.parquet")
    assert m.abspath(m.df.image_path[0]) == (tmp_path / "outside.png").resolve()


def problem_tree(root: Path):
    tree = dolos_tree(root / "celebahq")
    masks = tree / "fake" / "lama" / "masks" / "train"
    imgs = tree / "fake" / "lama" / "images" / "train"
    put_image(imgs / "nomask.png")
    put_image(imgs / "small.png")
    put_mask(masks / "small.png", size=(12, 16))
    put_image(imgs / "grad.png")
    put_mask(masks / "grad.png", values=np.tile(np.arange(32, dtype=np.uint8) * 8, (24, 1)))
    put_image(imgs / "zeroone.png")
    put_mask(masks / "zeroone.png", values=(np.arange(24 * 32).reshape(24, 32) % 2).astype(np.uint8))
    put_image(imgs / "aa.png")
    aa = np.zeros((24, 32), np.uint8)
    aa[4:12, 6:20] = 255
    aa[12, 6:20] = 128  # one anti-aliased edge row: accepted
    put_mask(masks / "aa.png", values=aa)
    (tree / "real" / "train" / "empty.png").write_bytes(b"")
    (tree / "real" / "train" / "text.png").write_text("not an image")
    good = put_image(tree / "real" / "train" / "trunc.jpg", size=(200, 200)).read_bytes()
    (tree / "real" / "train" / "trunc.jpg").write_bytes(good[: len(good) // 2])
    dup = np.full((24, 32, 3), 7, np.uint8)
    put_image(tree / "real" / "train" / "dup.png", data=dup)
    put_image(tree / "real" / "test" / "dup.png", data=dup)
    (tree / "real" / "valid").mkdir()
    return root


EXPECTED_PROBLEMS = {
    ("celebahq/fake/lama/images/train/nomask.png", "missing-mask"),
    ("celebahq/fake/lama/images/train/small.png", "mask-size-mismatch"),
    ("celebahq/fake/lama/masks/train/grad.png", "mask-not-binary"),
    ("celebahq/fake/lama/masks/train/zeroone.png", "mask-not-binary"),
    ("celebahq/real/train/empty.png", "zero-byte"),
    ("celebahq/real/train/text.png", "not-an-image"),
    ("celebahq/real/train/trunc.jpg", "truncated"),
    ("celebahq/real/train/dup.png", "duplicate-across-splits"),
    ("celebahq/real/test/dup.png", "duplicate-across-splits"),
    ("celebahq/real/valid", "empty-split-folder"),
}


def test_every_problem_kind(tmp_path):
    res = scan_dataset(problem_tree(tmp_path), "dolos", progress=False)
    p = res.problems
    assert list(p.columns) == ["path", "reason", "detail"]
    assert set(zip(p.path, p.reason)) == EXPECTED_PROBLEMS
    detail = dict(zip(p.path, p.detail))
    assert "32 distinct values" in detail["celebahq/fake/lama/masks/train/grad.png"]
    assert "0/1 label map" in detail["celebahq/fake/lama/masks/train/zeroone.png"]
    assert "32x24" in detail["celebahq/fake/lama/images/train/small.png"]
    assert "16x12" in detail["celebahq/fake/lama/images/train/small.png"]
    assert "celebahq/real/test/dup.png" in detail["celebahq/real/train/dup.png"]
    kept = set(res.manifest.image_path)
    assert "celebahq/fake/lama/images/train/aa.png" in kept
    for path, _ in EXPECTED_PROBLEMS:
        assert path not in kept and path.replace("/masks/", "/images/") not in kept
    assert len(res.manifest) == 7 + 1


def test_no_layout_matches(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(DeclipError) as info:
        scan_dataset(tmp_path, "auto", progress=False)
    msg = str(info.value)
    assert "tried dolos, autosplice, pairs, list" in msg
    for bit in ("real/ and fake/", "Mask/", "images/ + masks/", "list.txt"):
        assert bit in msg
    with pytest.raises(DeclipError, match="does not look like the autosplice layout"):
        scan_dataset(tmp_path, "autosplice", progress=False)
    with pytest.raises(DeclipError, match="no such dataset folder"):
        scan_dataset(tmp_path / "nope", "auto", progress=False)


def test_scan_is_deterministic(tmp_path):
    problem_tree(tmp_path)
    a = scan_dataset(tmp_path, "dolos", progress=False)
    b = scan_dataset(tmp_path, "dolos", progress=False)
    pd.testing.assert_frame_equal(a.manifest, b.manifest)
    pd.testing.assert_frame_equal(a.problems, b.problems)


def test_write_read_round_trip(tmp_path):
    dolos_tree(tmp_path / "ds" / "celebahq")
    res = scan_dataset(tmp_path / "ds", "dolos", progress=False)
    out = write_manifest(res.manifest, tmp_path / "out" / "m.parquet", tmp_path / "ds", "dolos")
    assert [p.name for p in out.parent.iterdir()] == ["m.parquet"]  # no temp file left
    m = read_manifest(out)
    pd.testing.assert_frame_equal(m.df, res.manifest)
    assert m.root == (tmp_path / "ds").resolve() and m.layout == "dolos"
    assert m.abspath(m.df.image_path[0]).is_file()
    assert m.df.label.dtype == "int64" and m.df.width.dtype == "int64"


def test_a_manifest_write_killed_midway_keeps_the_previous_manifest(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    dolos_tree(tmp_path / "ds" / "celebahq")
    res = scan_dataset(tmp_path / "ds", "dolos", progress=False)
    out = write_manifest(res.manifest, tmp_path / "out" / "m.parquet", tmp_path / "ds", "dolos")
    before = out.read_bytes()

    def killed(table, where, *args, **kwargs):
        open(where, "wb").write(b"PAR1")  # half a parquet file, then the process is interrupted
        raise KeyboardInterrupt

    monkeypatch.setattr(pq, "write_table", killed)
    with pytest.raises(KeyboardInterrupt):
        write_manifest(res.manifest.iloc[:2], out, tmp_path / "ds", "dolos")
    assert [p.name for p in out.parent.iterdir()] == ["m.parquet"] and out.read_bytes() == before


def test_read_manifest_refuses_other_files(tmp_path):
    with pytest.raises(DeclipError, match="no such manifest"):
        read_manifest(tmp_path / "none.parquet")
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "x.parquet")
    with pytest.raises(DeclipError, match="not a declip manifest"):
        read_manifest(tmp_path / "x.parquet")


def test_counts_table(tmp_path):
    dolos_tree(tmp_path / "celebahq")
    t = counts_table(scan_dataset(tmp_path / "celebahq", "dolos", progress=False).manifest)
    assert list(t.columns) == ["train", "test", "total"]
    assert t.loc["lama"].tolist() == [2, 1, 3] and t.loc["real", "total"] == 2


# `declip data scan` and `declip data demo` run the way a user runs them: a subprocess.

from tests.fixtures import REPO  # noqa: E402


def declip(*args):
    return subprocess.run([sys.executable, "-m", "declip.cli", "data", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_scan_clean_tree(tmp_path):
    dolos_tree(tmp_path / "ds" / "celebahq")
    out = tmp_path / "m.parquet"
    r = declip("scan", "--layout", "dolos", tmp_path / "ds", "--out", out, "--strict")
    assert r.returncode == 0, r.stderr
    assert "lama" in r.stdout and "train" in r.stdout and "problems: none" in r.stdout
    assert len(read_manifest(out).df) == 7 and (tmp_path / "m.problems.csv").is_file()


@pytest.mark.slow
def test_scan_with_problems_and_strict(tmp_path):
    problem_tree(tmp_path / "ds")
    out = tmp_path / "m.parquet"
    r = declip("scan", tmp_path / "ds", "--out", out, "--problems", tmp_path / "p.csv")
    assert r.returncode == 0, r.stderr
    assert "celebahq/real/train/trunc.jpg: truncated" in r.stdout and "empty-split-folder" in r.stdout
    assert "problems: 10 file(s)" in r.stdout and len((tmp_path / "p.csv").read_text().splitlines()) == 11
    r = declip("scan", tmp_path / "ds", "--out", out, "--strict")
    assert r.returncode == 1


@pytest.mark.slow
def test_scan_no_layout_is_a_clean_error(tmp_path):
    r = declip("scan", tmp_path, "--out", tmp_path / "m.parquet")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "tried dolos, autosplice, pairs, list" in r.stderr


@pytest.mark.slow
def test_demo_then_scan(tmp_path):
    r = declip("demo", tmp_path / "demo", "--size", "3", "--seed", "1")
    assert r.returncode == 0, r.stderr
    assert "telea" in r.stdout and "not deep generators" in r.stdout
    r = declip("scan", "--layout", "dolos", tmp_path / "demo", "--out", tmp_path / "m.parquet", "--strict")
    assert r.returncode == 0, r.stdout + r.stderr
    assert set(read_manifest(tmp_path / "m.parquet").df.dataset) == {"dolos-demo"}
