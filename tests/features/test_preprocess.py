"""The normalisation table: the same float32 bits as the per-pixel arithmetic, written into a batch slot in place."""
import numpy as np
import pytest
import torch
from PIL import Image

from declip.features.preprocess import make_recipe, resize_for, to_tensor, to_tensor_into

CLIP = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))


def _arithmetic(recipe, image) -> torch.Tensor:
    """The oracle: ``(pixel / 255 - mean) / std`` computed on every pixel in float32, HWC → CHW."""
    arr = np.asarray(resize_for(recipe, image)).astype(np.float32) / np.float32(255.0)
    arr = (arr - np.array(recipe.mean, dtype=np.float32)) / np.array(recipe.std, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def _every_value_image(height: int = 96, width: int = 150) -> Image.Image:
    """Non-square, every 8-bit value in every channel, channels different from one another."""
    rng = np.random.default_rng(3)
    arr = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    arr[0, :256 if width >= 256 else width, 0] = np.arange(min(width, 256))
    arr[:, :, 1] = np.roll(arr[:, :, 0], 7, axis=1)
    arr[1, :, 2] = np.arange(width) % 256
    arr[2, :, 2] = 255 - np.arange(width) % 256
    return Image.fromarray(arr)


@pytest.mark.parametrize("name,mean,std", [("declip", *CLIP), ("openclip", *CLIP),
                                           ("srm", (0.0, 0.0, 0.0), (1 / 255,) * 3)])
def test_table_gives_the_bits_of_the_arithmetic(name, mean, std):
    recipe = make_recipe(name, 224, mean, std)
    image = _every_value_image()
    got = to_tensor(recipe, image)
    assert got.dtype == torch.float32 and got.shape == (3, 224, 224)
    assert torch.equal(got, _arithmetic(recipe, image))
    exact = np.random.default_rng(4).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    exact.reshape(-1, 3)[:256] = np.arange(256, dtype=np.uint8)[:, None]  # every value, each channel
    exact = Image.fromarray(exact)  # already 224²: the resize leaves its values alone
    assert set(np.asarray(resize_for(recipe, exact))[..., 2].ravel()) == set(range(256))
    assert torch.equal(to_tensor(recipe, exact), _arithmetic(recipe, exact))


def test_into_writes_the_batch_slot_and_nothing_else():
    recipe = make_recipe("declip", 64, *CLIP)
    image = _every_value_image()
    batch = torch.full((3, 3, 64, 64), 7.0)
    got = to_tensor_into(recipe, image, batch[1])
    assert got.data_ptr() == batch[1].data_ptr()
    assert torch.equal(batch[1], _arithmetic(recipe, image))
    assert torch.all(batch[0] == 7.0) and torch.all(batch[2] == 7.0)


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16"])
def test_an_image_that_is_not_8_bit_rgb_is_refused(mode):
    image = Image.new(mode, (32, 32))
    with pytest.raises(ValueError, match="8-bit RGB"):
        to_tensor(make_recipe("declip", 32, *CLIP), image)
