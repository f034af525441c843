"""`predict_image_labels`: the logits' argmax in batches, and flip averaging as the mean of the image's and its
mirror image's class probabilities."""

import pytest
import torch

from whitebox_hf import CrateConfig, CrateForImageClassification
from whitebox_hf.evaluation import predict_image_labels


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = CrateConfig(image_size=8, patch_size=4, num_channels=1, hidden_size=16, num_hidden_layers=1,
                         num_attention_heads=2, num_labels=5)
    return CrateForImageClassification(config).eval()


@pytest.fixture(scope="module")
def pixels():
    return torch.randn(7, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def test_plain_predictions_are_the_argmax_whatever_the_batch_size(model, pixels):
    with torch.no_grad():
        expected = model(pixel_values=pixels).logits.argmax(-1)
    assert torch.equal(predict_image_labels(model, pixels), expected)
    assert torch.equal(predict_image_labels(model, pixels, batch_size=3), expected)


def test_flip_averaging_averages_the_image_and_its_mirror(model, pixels):
    with torch.no_grad():
        both = model(pixel_values=pixels).logits.softmax(-1) + model(pixel_values=pixels.flip(-1)).logits.softmax(-1)
    averaged = predict_image_labels(model, pixels, batch_size=2, flip_averaging=True)
    assert torch.equal(averaged, both.argmax(-1))
    # Mirror-symmetric images: averaging changes nothing.
    symmetric = (pixels + pixels.flip(-1)) / 2
    assert torch.equal(predict_image_labels(model, symmetric, flip_averaging=True),
                       predict_image_labels(model, symmetric))


class LeftOrRight(torch.nn.Module):
    """Logits (left-half mass, right-half mass, 0): a mirror swaps the first two."""

    def forward(self, pixel_values):
        half = pixel_values.shape[-1] // 2
        left, right = pixel_values[..., :half].sum((1, 2, 3)), pixel_values[..., half:].sum((1, 2, 3))
        return type("Output", (), {"logits": torch.stack([left, right, torch.zeros_like(left)], -1)})


def test_flip_averaging_flips_the_width_axis():
    # Right-heavy images are class 1 plainly; averaged with their mirror, classes 0 and 1 tie and 1 is never chosen.
    images = torch.zeros(2, 1, 4, 4)
    images[0, ..., 2:] = 1.0  # right-heavy
    images[1, ..., :2, :] = 1.0  # top-heavy: a flip of the wrong axis would move it
    images[1, ..., 0] += 0.5  # and a little left-heavy
    assert predict_image_labels(LeftOrRight(), images).tolist() == [1, 0]
    assert predict_image_labels(LeftOrRight(), images, flip_averaging=True).tolist() == [0, 0]


@pytest.mark.parametrize("kwargs, error, needle", [
    ({"pixel_values": torch.zeros(0, 1, 8, 8)}, ValueError, "no images"),
    ({"pixel_values": torch.zeros(1, 8, 8)}, ValueError, "4-d"),
    ({"pixel_values": torch.zeros(2, 1, 8, 8, dtype=torch.uint8)}, TypeError, "floating point"),
    ({"pixel_values": torch.zeros(2, 1, 8, 8), "batch_size": 0}, ValueError, "batch_size"),
    ({"pixel_values": torch.zeros(2, 1, 8, 8), "flip_averaging": 1}, TypeError, "flip_averaging"),
])
def test_bad_inputs_are_named(model, kwargs, error, needle):
    with pytest.raises(error, match=needle):
        predict_image_labels(model, **kwargs)
