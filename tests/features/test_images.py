import io

import numpy as np
import pytest
from PIL import Image

import declip.features.images as images
from declip.features.images import ImageProblem, decode_rgb, open_mask_gray, open_rgb
from declip.core.errors import DeclipError


def _rgb(h=20, w=30, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_rgb_png_round_trip(tmp_path):
    arr = _rgb()
    Image.fromarray(arr).save(tmp_path / "a.png")
    im = open_rgb(tmp_path / "a.png")
    assert im.mode == "RGB" and np.array_equal(np.asarray(im), arr)


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "1"])
def test_other_modes_become_rgb(tmp_path, mode):
    src = Image.fromarray(_rgb()).convert(mode)
    path = tmp_path / ("a.jpg" if mode == "CMYK" else "a.png")
    src.save(path)
    im = open_rgb(path)
    assert im.mode == "RGB" and im.size == (30, 20)


def test_alpha_is_dropped_not_composited(tmp_path):
    arr = _rgb()
    rgba = np.dstack([arr, np.zeros(arr.shape[:2], np.uint8)])  # fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert np.array_equal(np.asarray(open_rgb(tmp_path / "a.png")), arr)


def test_16bit_is_scaled_to_8bit(tmp_path):
    arr = np.array([[0, 257 * 128, 65535]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "a.png")
    out = np.asarray(open_rgb(tmp_path / "a.png"))
    assert out[0, :, 0].tolist() == [0, 128, 255]
    assert open_mask_gray(tmp_path / "a.png").tolist() == [[0, 128, 255]]


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    Image.fromarray(_rgb(20, 30)).save(tmp_path / "a.jpg", exif=exif.tobytes())
    assert open_rgb(tmp_path / "a.jpg").size == (20, 30)


def test_mask_gray_from_rgb(tmp_path):
    m = np.zeros((8, 8, 3), np.uint8)
    m[2:5, 2:5] = 255
    Image.fromarray(m).save(tmp_path / "m.png")
    out = open_mask_gray(tmp_path / "m.png")
    assert out.dtype == np.uint8 and out.shape == (8, 8) and out[3, 3] == 255 and out[0, 0] == 0


def _reason(path):
    with pytest.raises(ImageProblem) as info:
        open_rgb(path)
    assert isinstance(info.value, DeclipError) and str(path) in str(info.value)
    return info.value.reason


def test_zero_byte(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    assert _reason(tmp_path / "a.png") == "zero-byte"


def test_not_an_image(tmp_path):
    (tmp_path / "a.png").write_text("hello, not a png")
    assert _reason(tmp_path / "a.png") == "not-an-image"


def test_missing_file(tmp_path):
    assert _reason(tmp_path / "nope.png") == "missing-file"


@pytest.mark.parametrize("fmt", ["jpg", "png"])
def test_truncated(tmp_path, fmt):
    buf = io.BytesIO()
    Image.fromarray(_rgb(200, 200)).save(buf, format="JPEG" if fmt == "jpg" else "PNG")
    data = buf.getvalue()
    (tmp_path / f"a.{fmt}").write_bytes(data[: len(data) // 2])
    assert _reason(tmp_path / f"a.{fmt}") == "truncated"


def test_decompression_bomb(tmp_path, monkeypatch):
    Image.fromarray(_rgb(40, 40)).save(tmp_path / "a.png")
    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    assert _reason(tmp_path / "a.png") == "decompression-bomb"


def test_decode_bytes_matches_file(tmp_path):
    Image.fromarray(_rgb()).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    assert np.array_equal(np.asarray(decode_rgb(data)), np.asarray(open_rgb(tmp_path / "a.png")))
