"""WhiteboxDDPMPipeline: the class-conditional pixel-space U-Net baseline runs through a pipeline too."""

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

from whitebox_hf import WhiteboxDDPMPipeline

NUM_CLASSES = 3


def tiny_pipeline():
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                       norm_num_groups=4, num_class_embeds=NUM_CLASSES + 1).eval()
    pipe = WhiteboxDDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=100),
                                id2label={0: "a", 1: "b", 2: "c"})
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run(pipe, seed=0, **kwargs):
    kwargs = {"num_inference_steps": 4, "guidance_scale": 1.5, "output_type": "pt", **kwargs}
    return pipe([0, 1, 2], generator=torch.Generator().manual_seed(seed), **kwargs).images


def test_shapes_determinism_null_class_and_reload(tmp_path):
    pipe = tiny_pipeline()
    assert pipe.null_class_id == NUM_CLASSES  # from num_class_embeds − 1
    images = run(pipe)
    assert images.shape == (3, 1, 8, 8) and images.dtype == torch.float32 and 0 <= images.min() <= images.max() <= 1
    assert run(pipe, output_type="np").shape == (3, 8, 8, 1)
    assert [im.mode for im in run(pipe, output_type="pil")] == ["L"] * 3
    torch.testing.assert_close(run(pipe), images, rtol=0, atol=0)
    assert not torch.equal(run(pipe, seed=1), images)
    pipe.save_pretrained(tmp_path)
    reloaded = WhiteboxDDPMPipeline.from_pretrained(tmp_path)
    reloaded.set_progress_bar_config(disable=True)
    torch.testing.assert_close(run(reloaded), images, rtol=0, atol=0)
    # Any epsilon scheduler can be swapped in.
    reloaded.scheduler = DDIMScheduler.from_config(reloaded.scheduler.config)
    assert np.isfinite(run(reloaded, output_type="np")).all()


@pytest.mark.parametrize("kwargs,argument", [
    (dict(class_labels=[NUM_CLASSES]), "class_labels"),
    (dict(num_inference_steps=0), "num_inference_steps"),
    (dict(guidance_scale=-1.0), "guidance_scale"),
    (dict(latents=torch.zeros(1, 1, 4, 4)), "latents"),
])
def test_bad_inputs_raise(kwargs, argument):
    pipe = tiny_pipeline()
    with pytest.raises(ValueError, match=argument):
        pipe(**{"class_labels": [0], "num_inference_steps": 2, **kwargs})


def test_unet_must_have_a_null_class_embedding():
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                       down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2, norm_num_groups=4,
                       num_class_embeds=3)
    with pytest.raises(ValueError, match="num_class_embeds"):
        WhiteboxDDPMPipeline(unet=unet, scheduler=DDPMScheduler(), num_classes=3)
