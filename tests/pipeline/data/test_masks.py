import numpy as np
import pytest

from declip.pipeline.data.masks import POLARITIES, binary_native, empty_mask, fake_is_white, soft_target_256


def test_polarity_values():
    assert POLARITIES == ("fake_is_white", "fake_is_black")


def test_fake_is_white_both_polarities():
    m = np.array([[0, 255], [10, 200]], np.uint8)
    assert fake_is_white(m, "fake_is_white").tolist() == m.tolist()
    assert fake_is_white(m, "fake_is_black").tolist() == [[255, 0], [245, 55]]


def test_bad_polarity_and_shape():
    with pytest.raises(ValueError, match="fake_is_white"):
        fake_is_white(np.zeros((2, 2), np.uint8), "white")
    with pytest.raises(ValueError):
        fake_is_white(np.zeros((2, 2, 3), np.uint8), "fake_is_white")


def test_soft_target_keeps_edge_values():
    m = np.zeros((512, 400), np.uint8)
    m[101:301, 51:251] = 255
    soft = soft_target_256(m)
    assert soft.shape == (256, 256) and soft.dtype == np.uint8
    assert soft.min() == 0 and soft.max() == 255
    assert ((soft > 0) & (soft < 255)).any()  # anti-aliased, not nearest
    assert soft[100, 80] == 255 and soft[5, 5] == 0


def test_soft_target_identity_at_256():
    m = (np.random.default_rng(0).random((256, 256)) > 0.5).astype(np.uint8) * 255
    assert np.array_equal(soft_target_256(m), m)


def test_binary_native_rule():
    m = np.array([[0, 127, 128, 255]], np.uint8)
    assert binary_native(m).tolist() == [[False, False, True, True]]
    assert binary_native(m).shape == m.shape


def test_empty_mask():
    e = empty_mask(3, 5)
    assert e.shape == (3, 5) and e.dtype == np.uint8 and not e.any()
