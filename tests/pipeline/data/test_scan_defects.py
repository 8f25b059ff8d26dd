"""Scanner defects that used to pass silently (issue 10.8), plus property tests of the pairs and Dolos scanners."""
import io
import shutil
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from declip.pipeline.data.manifest import scan_dataset
from declip.pipeline.data.perceptual import dhash, hamming


def _photo(seed: int, size: int = 48) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((size, size), Image.BICUBIC)


def _mask(path: Path, size: int = 48, fake: bool = True) -> None:
    arr = np.zeros((size, size), np.uint8)
    if fake:
        arr[8:20, 8:20] = 255
    Image.fromarray(arr).save(path)


def _pairs(root: Path, split: str = "") -> tuple[Path, Path]:
    images, masks = root / "images" / split, root / "masks" / split
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    return images, masks


def _reasons(result) -> dict[str, str]:
    return dict(zip(result.problems["path"], result.problems["reason"]))


def test_two_masks_with_one_stem_are_ambiguous(tmp_path):
    images, masks = _pairs(tmp_path)
    _photo(0).save(images / "a.png")
    _photo(1).save(images / "b.png")
    _mask(masks / "a.png")
    _mask(masks / "a.jpg")
    _mask(masks / "b.png")
    res = scan_dataset(tmp_path, "pairs", progress=False)
    assert _reasons(res) == {"images/a.png": "ambiguous-mask"}
    assert list(res.manifest["image_path"]) == ["images/b.png"]


def test_partial_fake_with_an_all_real_mask_is_a_problem(tmp_path):
    images, masks = _pairs(tmp_path)
    _photo(0).save(images / "a.png")
    _photo(1).save(images / "b.png")
    _mask(masks / "a.png", fake=False)
    _mask(masks / "b.png")
    res = scan_dataset(tmp_path, "pairs", progress=False)
    assert _reasons(res) == {"masks/a.png": "empty-mask"} and len(res.manifest) == 1


def test_dolos_tree_without_fake_is_reported(tiny_dolos, tmp_path):
    shutil.copytree(tiny_dolos / "celebahq", tmp_path / "celebahq")
    (tmp_path / "ffhq" / "real" / "train").mkdir(parents=True)
    _photo(3).save(tmp_path / "ffhq" / "real" / "train" / "x.png")
    res = scan_dataset(tmp_path, "dolos", progress=False)
    assert _reasons(res) == {"ffhq": "incomplete-tree"}
    assert "has real/ but no fake/" in res.problems["detail"][0]


def test_reencoded_copy_in_another_split_is_a_near_duplicate(tmp_path):
    for split in ("train", "test"):
        _pairs(tmp_path, split)
    for i in range(3):
        _photo(10 + i, 96).save(tmp_path / "images" / "train" / f"t{i}.png")
        _mask(tmp_path / "masks" / "train" / f"t{i}.png", 96)
    buf = io.BytesIO()
    _photo(11, 96).save(buf, "JPEG", quality=80)  # t1, re-encoded
    (tmp_path / "images" / "test" / "copy.jpg").write_bytes(buf.getvalue())
    _photo(99, 96).save(tmp_path / "images" / "test" / "other.png")
    for name in ("copy.png", "other.png"):
        _mask(tmp_path / "masks" / "test" / name, 96)
    res = scan_dataset(tmp_path, "pairs", progress=False)
    assert _reasons(res) == {"images/train/t1.png": "near-duplicate-across-splits",
                             "images/test/copy.jpg": "near-duplicate-across-splits"}
    assert len(res.manifest) == 5  # reported, not removed


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), quality=st.integers(60, 95), scale=st.sampled_from([0.5, 0.75, 1.5]))
def test_dhash_survives_reencoding_and_resizing(seed, quality, scale):
    image = _photo(seed, 64)
    buf = io.BytesIO()
    image.resize((int(64 * scale), int(64 * scale)), Image.BICUBIC).save(buf, "JPEG", quality=quality)
    assert hamming(dhash(image), dhash(Image.open(buf))) <= 8


name = st.text("abcxyz", min_size=1, max_size=3)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(images=st.dictionaries(name, st.sampled_from([".png", ".PNG", ".jpg"]), min_size=1, max_size=5),
       masks=st.dictionaries(name, st.lists(st.sampled_from([".png", ".jpg", ".Png"]), min_size=1, max_size=2,
                                            unique=True), max_size=5),
       empty=st.sets(name, max_size=2))
def test_pairs_scanner_accounts_for_every_image(images, masks, empty):
    """Every image is exactly one of: a row with a same-stem mask, or a problem naming it or its mask."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        img_dir, mask_dir = _pairs(root)
        for i, (stem, ext) in enumerate(images.items()):
            _photo(i * 7 + 1).save(img_dir / f"{stem}{ext}", "PNG" if ext.lower() == ".png" else "JPEG")
        written = {}
        for stem, exts in masks.items():
            for ext in exts:
                _mask(mask_dir / f"{stem}{ext}", fake=stem not in empty)
                written.setdefault(stem, []).append(ext)
        res = scan_dataset(root, "pairs", progress=False)
        rows = set(res.manifest["image_path"])
        problem_paths = set(res.problems["path"])
        for stem, ext in images.items():
            path = f"images/{stem}{ext}"
            mask_paths = {f"masks/{stem}{e}" for e in written.get(stem, [])}
            assert (path in rows) != bool(({path} | mask_paths) & problem_paths), (path, res.problems)
            if path in rows:
                row = res.manifest[res.manifest["image_path"] == path].iloc[0]
                assert Path(row["mask_path"]).stem == stem and len(written[stem]) == 1 and stem not in empty
