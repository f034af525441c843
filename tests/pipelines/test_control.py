"""ControlNet on the text-to-image base (`whitebox_hf.pipelines.control`): the zero-convolution theory property, the
assembly into diffusers' `StableDiffusionControlNetPipeline`, and the control-image checks (item 8 of issue 17)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.tiny_text_to_image import tiny_text_to_image_pipeline
from whitebox_hf.pipelines.control import (
    canny_control_images,
    check_control_image,
    control_image_size,
    control_pipeline,
    controlnet_from_base,
    generate_with_control,
)


@pytest.fixture(scope="module")
def pipes():
    base = tiny_text_to_image_pipeline()
    controlnet = controlnet_from_base(base)
    return base, control_pipeline(base, controlnet)


def sample(pipe, **kwargs):
    return pipe(["a star", "a red tree"], num_inference_steps=3, guidance_scale=2.0, output_type="np",
                generator=torch.Generator().manual_seed(0), **kwargs).images


def edge_images(n=2, size=32):
    drawings = np.full((n, size, size, 3), 255, dtype=np.uint8)
    drawings[:, 8:20, 6:26] = 30
    return canny_control_images(drawings)


def test_zero_convolutions_make_the_controlled_pipeline_the_base_at_initialisation(pipes):
    base, pipe = pipes
    assert control_image_size(pipe) == (32, 32)
    zero = [m.weight for m in pipe.controlnet.controlnet_down_blocks] + [pipe.controlnet.controlnet_mid_block.weight]
    assert all(torch.count_nonzero(w) == 0 for w in zero)
    reference = sample(base)
    controlled = sample(pipe, image=edge_images())
    np.testing.assert_array_equal(controlled, reference)


def test_a_trained_controlnet_changes_the_images(pipes):
    base, _ = pipes
    controlnet = controlnet_from_base(base)
    with torch.no_grad():
        for block in controlnet.controlnet_down_blocks:
            block.weight.normal_(0, 0.5)
    assert not np.array_equal(sample(control_pipeline(base, controlnet), image=edge_images()), sample(base))


def test_a_saved_controlnet_reloads_into_the_pipeline(pipes, tmp_path):
    base, pipe = pipes
    pipe.controlnet.save_pretrained(tmp_path / "controlnet")
    reloaded = control_pipeline(base, tmp_path / "controlnet")
    np.testing.assert_array_equal(sample(reloaded, image=edge_images()), sample(pipe, image=edge_images()))


def test_the_conditioning_embedding_must_fit_the_vae_scale(pipes):
    base, _ = pipes
    with pytest.raises(ValueError, match="`conditioning_embedding_out_channels` must have 3 entries"):
        controlnet_from_base(base, conditioning_embedding_out_channels=(16, 32, 96, 256))


def test_diffusers_refuses_a_control_image_of_the_wrong_type_by_itself(pipes):
    _, pipe = pipes
    with pytest.raises(TypeError, match="image must be passed"):
        pipe("a star", image="edges.png", num_inference_steps=1)


@pytest.mark.parametrize("image, error, message", [
    # Each of these diffusers resizes, converts or misreads without a word (or fails inside a convolution).
    (Image.new("RGB", (48, 40)), ValueError, r"`image` must be 32×32 pixels .* got 48×40"),
    (Image.new("L", (32, 32)), ValueError, r"`image` must be an RGB image .* got mode 'L'"),
    (Image.new("RGBA", (32, 32)), ValueError, "got mode 'RGBA'"),
    (torch.zeros(1, 1, 32, 32), ValueError, r"`image` must have 3 channels \(RGB\), got 1"),
    (torch.zeros(1, 3, 16, 16), ValueError, r"`image` must be 32×32 .* got 16×16"),
    (torch.full((1, 3, 32, 32), 255.0), ValueError, r"`image` must have values in \[0, 1\]"),
    (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), ValueError, "floating point"),
    (np.zeros((32, 32, 3), dtype=np.uint8), TypeError, "`image` must be an RGB PIL image"),
    ([], ValueError, "at least one control image"),
    ([Image.new("RGB", (32, 32)), "x"], TypeError, "got str at index 1"),
])
def test_a_bad_control_image_is_refused_naming_the_argument(pipes, image, error, message):
    _, pipe = pipes
    with pytest.raises(error, match=message):
        generate_with_control(pipe, "a star", image, num_inference_steps=1)


def test_a_good_control_image_passes_and_generates(pipes):
    _, pipe = pipes
    check_control_image(torch.rand(2, 3, 32, 32), 32, 32)
    images = generate_with_control(pipe, "a star", edge_images(1), num_inference_steps=1, output_type="np").images
    assert images.shape == (1, 32, 32, 3)


def test_canny_control_images_are_white_edges_on_black():
    (edge,) = edge_images(1)
    array = np.asarray(edge)
    assert edge.mode == "RGB" and edge.size == (32, 32)
    assert set(np.unique(array)) == {0, 255} and array[7:21, 5:27].max() == 255 and array[12:16, 10:20].max() == 0
