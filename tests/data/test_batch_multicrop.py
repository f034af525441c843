"""`BatchMultiCrop`: the multi-crop recipe of `MultiCropTransform`, computed for a whole batch."""

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from whitebox_hf.data import BatchMultiCrop, MultiCropTransform

MEAN, STD = [0.5], [0.25]
PLAIN = dict(jitter_probability=0.0, blur_probabilities=(0.0, 0.0, 0.0), solarize_probability=0.0,
             image_mean=MEAN, image_std=STD)


def images(n=16, size=28, seed=0, channels=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, size, size), generator=generator, dtype=torch.uint8)


def normalised(x):
    return (x.float() / 255 - MEAN[0]) / STD[0]


def test_views_shapes_determinism_and_independence_across_images():
    batch = images()
    multi_crop = BatchMultiCrop(num_local=6, image_mean=MEAN, image_std=STD)
    views = multi_crop(batch, generator=torch.Generator().manual_seed(1))
    assert [tuple(v.shape) for v in views] == [(16, 1, 28, 28)] * 2 + [(16, 1, 12, 12)] * 6
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in views)
    again = multi_crop(batch, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(views, again))
    # The global RNG is what the training loop seeds per step: the same seed, the same views.
    torch.manual_seed(5)
    first = multi_crop(batch)
    torch.manual_seed(5)
    assert all(torch.equal(a, b) for a, b in zip(first, multi_crop(batch)))
    # Every image draws its own crop: copies of one image get different views.
    same = batch[:1].expand(8, -1, -1, -1).contiguous()
    local = multi_crop(same, generator=torch.Generator().manual_seed(2))[2]
    assert len({tuple(v.flatten().tolist()) for v in local}) == 8


def test_full_crops_without_photometry_are_the_normalised_image_or_its_mirror():
    batch = images()
    identity = BatchMultiCrop(num_local=0, global_scale=(1.0, 1.0), horizontal_flip=False, **PLAIN)
    view = identity(batch, generator=torch.Generator().manual_seed(0))[0]
    torch.testing.assert_close(view, normalised(batch), atol=1e-4, rtol=0)
    flipping = BatchMultiCrop(num_local=0, global_scale=(1.0, 1.0), **PLAIN)
    view = flipping(batch, generator=torch.Generator().manual_seed(0))[0]
    mirrored = [torch.allclose(v, normalised(b).flip(-1), atol=1e-4) for v, b in zip(view, batch)]
    plain = [torch.allclose(v, normalised(b), atol=1e-4) for v, b in zip(view, batch)]
    assert all(m or p for m, p in zip(mirrored, plain)) and any(mirrored) and any(plain)


@pytest.mark.parametrize("scale", [(0.05, 0.4), (0.4, 1.0)])
def test_crop_areas_follow_the_random_resized_crop_range(scale):
    # Two channels carry each pixel's column and row: a view's range of them is its crop's width and height.
    size, n = 28, 400
    columns = torch.arange(size).mul(9).view(1, size).expand(size, size)
    coordinates = torch.stack([columns, columns.T]).to(torch.uint8).expand(n, -1, -1, -1).contiguous()
    multi_crop = BatchMultiCrop(global_size=size, num_local=0, global_scale=scale, horizontal_flip=False,
                                jitter_probability=0.0, blur_probabilities=(0.0, 0.0, 0.0), solarize_probability=0.0,
                                image_mean=[0.0, 0.0], image_std=[1.0, 1.0])
    view = multi_crop(coordinates, generator=torch.Generator().manual_seed(0))[0] * 255 / 9
    # The output's pixel centres span (size - 1) / size of the crop: rescale the sampled range to the crop side.
    width = (view[:, 0].amax(dim=(1, 2)) - view[:, 0].amin(dim=(1, 2))) * size / (size - 1)
    height = (view[:, 1].amax(dim=(1, 2)) - view[:, 1].amin(dim=(1, 2))) * size / (size - 1)
    area = width * height / size**2
    assert area.min() >= scale[0] - 0.02 and area.max() <= scale[1] + 0.02
    ratio = width / height
    assert ratio.min() >= 3 / 4 - 0.2 and ratio.max() <= 4 / 3 + 0.2
    assert abs(area.mean().item() - sum(scale) / 2) < 0.1


def test_blur_matches_torchvision_gaussian_blur():
    batch = images(8)
    sigma = 0.7
    multi_crop = BatchMultiCrop(num_local=0, global_scale=(1.0, 1.0), horizontal_flip=False, jitter_probability=0.0,
                                blur_probabilities=(1.0, 0.0, 0.0), solarize_probability=0.0, blur_sigma=(sigma, sigma),
                                image_mean=MEAN, image_std=STD)
    view = multi_crop(batch, generator=torch.Generator().manual_seed(0))[0]
    expected = TF.gaussian_blur(batch.float() / 255, [3, 3], [sigma, sigma])
    torch.testing.assert_close(view, (expected - MEAN[0]) / STD[0], atol=1e-4, rtol=0)


def test_solarisation_of_the_second_global_view_inverts_bright_pixels():
    batch = images(8)
    multi_crop = BatchMultiCrop(num_local=0, global_scale=(1.0, 1.0), horizontal_flip=False, jitter_probability=0.0,
                                blur_probabilities=(0.0, 0.0, 0.0), solarize_probability=1.0, image_mean=MEAN,
                                image_std=STD)
    first, second = multi_crop(batch, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(first, normalised(batch), atol=1e-4, rtol=0)
    expected = torch.where(batch >= 128, 255 - batch, batch)
    torch.testing.assert_close(second, normalised(expected), atol=1e-4, rtol=0)


def test_jitter_keeps_values_in_range_and_changes_brightness_per_image():
    batch = images(64)
    multi_crop = BatchMultiCrop(num_local=0, global_scale=(1.0, 1.0), horizontal_flip=False, jitter_probability=1.0,
                                blur_probabilities=(0.0, 0.0, 0.0), solarize_probability=0.0, image_mean=[0.0],
                                image_std=[1.0])
    view = multi_crop(batch, generator=torch.Generator().manual_seed(0))[0]
    assert view.min() >= 0 and view.max() <= 1
    ratio = view.mean(dim=(1, 2, 3)) / (batch.float() / 255).mean(dim=(1, 2, 3))
    assert ratio.std() > 0.05 and ratio.min() > 0.6 - 0.1 and ratio.max() < 1.4 + 0.1


def test_view_statistics_match_the_per_image_transform():
    """Same recipe, same distribution: pixel mean and spread of each kind of view agree with `MultiCropTransform`
    on real-looking images (a bright object on a dark background)."""
    n, size = 600, 28
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    radius = torch.linspace(5, 12, n).view(n, 1, 1)
    batch = ((((yy - 14) ** 2 + (xx - 12) ** 2) < radius**2) * 200 + 20).to(torch.uint8).unsqueeze(1)
    torch.manual_seed(0)
    per_image = MultiCropTransform(num_local=1, image_mean=MEAN, image_std=STD)
    reference = [per_image(image) for image in batch]
    views = BatchMultiCrop(num_local=1, image_mean=MEAN, image_std=STD)(batch, torch.Generator().manual_seed(0))
    for k in range(3):
        expected = torch.stack([r[k] for r in reference])
        assert abs(views[k].mean() - expected.mean()) < 0.1, k
        assert abs(views[k].std() - expected.std()) < 0.1, k
        # The mirror symmetry of the flips and the spread of the crops' content, image by image.
        assert abs(views[k].mean(dim=(1, 2, 3)).std() - expected.mean(dim=(1, 2, 3)).std()) < 0.1, k


@pytest.mark.parametrize("bad", [
    torch.zeros(2, 1, 28, 28),  # float, not uint8
    torch.zeros(1, 28, 28, dtype=torch.uint8),  # one image, no batch axis
    torch.zeros(0, 1, 28, 28, dtype=torch.uint8),  # empty
    torch.zeros(2, 3, 28, 28, dtype=torch.uint8),  # 3 channels against a 1-channel mean
    [[0]],
])
def test_bad_batches_raise(bad):
    with pytest.raises(ValueError, match="images"):
        BatchMultiCrop(image_mean=MEAN, image_std=STD)(bad)


@pytest.mark.parametrize("kwargs", [dict(brightness=1.5), dict(contrast=-0.1), dict(brightness=True)])
def test_bad_jitter_strengths_raise(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        BatchMultiCrop(**kwargs)

