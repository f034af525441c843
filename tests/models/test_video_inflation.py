"""Temporal inflation: at initialisation the video model equals the image model on every frame; only the temporal
layers train; clips longer than the positional embedding are refused."""

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel

from whitebox_hf.models.world_model.video import (
    check_num_frames,
    image_unet,
    inflate_to_video,
    null_condition,
    sample_frames,
    temporal_modules,
    video_loss,
)

TINY = {"sample_size": 8, "block_out_channels": (8, 16), "cross_attention_dim": 8, "attention_head_dim": 4,
        "norm_num_groups": 4}


def tiny_image_model(seed=0):
    torch.manual_seed(seed)
    unet = image_unet(**TINY).eval()
    with torch.no_grad():  # the 2D zero-initialised output layer would make every comparison trivially 0 = 0
        torch.nn.init.normal_(unet.conv_out.weight, std=0.1)
    return unet


def test_inflated_model_equals_the_image_model_per_frame_at_initialisation():
    unet = tiny_image_model()
    video = inflate_to_video(unet, motion_max_seq_length=6).eval()
    assert temporal_modules(video) and all(not m.proj_out.weight.any() for m in temporal_modules(video))
    clips = torch.randn(2, 3, 5, 8, 8, generator=torch.Generator().manual_seed(0))  # (B, C, F, H, W)
    t = torch.tensor([10, 700])
    with torch.no_grad():
        out = video(clips, t, encoder_hidden_states=null_condition(video, 10)).sample
        frames = clips.transpose(1, 2).flatten(0, 1)
        per_frame = unet(frames, t.repeat_interleave(5), encoder_hidden_states=null_condition(unet, 10)).sample
    assert out.abs().mean() > 1e-3
    torch.testing.assert_close(out.transpose(1, 2).flatten(0, 1), per_frame, rtol=1e-4, atol=1e-5)
    # Once the temporal layers move, frames interact: the equality is the zero projections' doing.
    with torch.no_grad():
        for module in temporal_modules(video):
            torch.nn.init.normal_(module.proj_out.weight, std=0.5)
        moved = video(clips, t, encoder_hidden_states=null_condition(video, 10)).sample
    assert not torch.allclose(moved, out, atol=1e-4)


def test_only_the_temporal_layers_train():
    video = inflate_to_video(tiny_image_model(), motion_max_seq_length=4)
    trainable = {name for name, p in video.named_parameters() if p.requires_grad}
    assert trainable and all("motion_modules" in name for name in trainable)
    before = {name: p.detach().clone() for name, p in video.named_parameters()}
    optimizer = torch.optim.Adam([p for p in video.parameters() if p.requires_grad], lr=1e-2)
    clips = torch.rand(2, 4, 3, 8, 8) * 2 - 1
    for step in range(2):
        optimizer.zero_grad()
        video_loss(video, DDPMScheduler(num_train_timesteps=50), clips, torch.Generator().manual_seed(step)).backward()
        optimizer.step()
    changed = {name for name, p in video.named_parameters() if not torch.equal(p, before[name])}
    assert changed and changed <= trainable


def test_too_long_videos_are_refused_naming_the_argument():
    video = inflate_to_video(tiny_image_model(), motion_max_seq_length=4)
    with pytest.raises(ValueError, match="`num_frames`.*at most 4"):
        sample_frames(video, DDIMScheduler(num_train_timesteps=50), 1, 5, num_inference_steps=1)
    with pytest.raises(ValueError, match="`clips`"):
        video_loss(video, DDPMScheduler(num_train_timesteps=50), torch.zeros(1, 5, 3, 8, 8))
    with pytest.raises(ValueError, match="`num_frames`"):
        check_num_frames(video, 0)
    with pytest.raises(TypeError, match="`unet`"):
        inflate_to_video(torch.nn.Linear(2, 2))
    assert check_num_frames(tiny_image_model(), 100) == 100  # independent frames: any count


def test_sampling_shapes_for_both_models():
    unet = tiny_image_model()
    scheduler = DDIMScheduler(num_train_timesteps=50)
    frames = sample_frames(unet, scheduler, 2, 3, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    clips = sample_frames(inflate_to_video(unet, 4), scheduler, 2, 3, num_inference_steps=2,
                          generator=torch.Generator().manual_seed(0))
    assert frames.shape == clips.shape == (2, 3, 3, 8, 8)
    # Same noise, identity temporal layers: the inflated model samples what the image model samples.
    torch.testing.assert_close(frames, clips, rtol=1e-4, atol=1e-4)
    assert isinstance(unet, UNet2DConditionModel)
