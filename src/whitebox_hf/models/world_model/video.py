"""Video by temporal inflation of a 2D U-Net (VideoLDM / AnimateDiff, book §8.7), on diffusers' own classes.

    image model: UNet2DConditionModel (single frames, ε-prediction; the cross-attention reads one constant null
        token, so the model is unconditional)
    → UNetMotionModel.from_unet2d(image model, MotionAdapter(...)): after every ResNet/attention block of the U-Net,
        a temporal transformer (self-attention along the frame axis at each pixel, sinusoidal positions up to
        ``motion_max_seq_length`` frames)
    → the temporal transformers' output projections (``proj_out``) set to zero, so each temporal block is the
        identity (its residual adds 0) and the video model is the image model applied to every frame
    → only the temporal layers are trained (``freeze_unet2d_params``), on short clips, one timestep per clip.

diffusers' `MotionAdapter` initialises ``proj_out`` randomly (AnimateDiff ships trained adapters), hence the explicit
zeroing here; `tests/models/test_video_inflation.py` checks the equality at initialisation, per frame.

`sample_frames` draws clips with the video model, or frames independently with the image model (the baseline of
the temporal-consistency comparison), with any diffusers scheduler.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel
from diffusers.utils.torch_utils import randn_tensor

__all__ = ["check_num_frames", "image_unet", "inflate_to_video", "null_condition", "sample_frames",
           "temporal_modules", "video_loss"]


def image_unet(sample_size: int = 24, in_channels: int = 3, block_out_channels: tuple = (32, 64),
               layers_per_block: int = 1, cross_attention_dim: int = 32, attention_head_dim: int = 16,
               norm_num_groups: int = 8) -> UNet2DConditionModel:
    """The 2D image model: a `UNet2DConditionModel` whose first level has no attention and whose other levels
    cross-attend (to the null token of `null_condition`), so that the inflation covers both kinds of block."""
    levels = len(block_out_channels)
    return UNet2DConditionModel(
        sample_size=sample_size, in_channels=in_channels, out_channels=in_channels,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (levels - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (levels - 1) + ("UpBlock2D",),
        block_out_channels=tuple(block_out_channels), layers_per_block=layers_per_block,
        cross_attention_dim=cross_attention_dim, attention_head_dim=attention_head_dim,
        norm_num_groups=norm_num_groups)


def null_condition(unet, batch_size: int) -> torch.Tensor:
    """The constant condition of the unconditional image model: one zero token ``(B, 1, cross_attention_dim)``."""
    return torch.zeros(batch_size, 1, unet.config.cross_attention_dim, device=unet.device, dtype=unet.dtype)


def temporal_modules(model: UNetMotionModel) -> list:
    """The temporal transformers (``motion_modules``) of every block of an inflated U-Net."""
    blocks = [*model.down_blocks, *model.up_blocks] + ([model.mid_block] if model.mid_block is not None else [])
    return [module for block in blocks for module in getattr(block, "motion_modules", [])]


def inflate_to_video(unet: UNet2DConditionModel, motion_max_seq_length: int = 16,
                     motion_num_attention_heads: int = 2, motion_norm_num_groups: int | None = None,
                     freeze_image_layers: bool = True) -> UNetMotionModel:
    """The video model of ``unet`` (see the module docstring): its 2D weights copied, temporal layers with zero
    output projections, the 2D weights frozen unless ``freeze_image_layers=False``.

    Args:
        motion_max_seq_length: the most frames the temporal layers' positional embedding holds.
        motion_num_attention_heads: heads of the temporal attention.
        motion_norm_num_groups: GroupNorm groups of the temporal layers (default: the U-Net's ``norm_num_groups``).

    Raises:
        TypeError: ``unet`` is not a `UNet2DConditionModel`.
        ValueError: a non-positive ``motion_max_seq_length``.
    """
    if not isinstance(unet, UNet2DConditionModel):
        raise TypeError(f"`unet` must be a UNet2DConditionModel, got {type(unet).__name__}")
    if isinstance(motion_max_seq_length, bool) or not isinstance(motion_max_seq_length, int) or \
            motion_max_seq_length < 1:
        raise ValueError(f"`motion_max_seq_length` must be a positive integer, got {motion_max_seq_length!r}")
    adapter = MotionAdapter(block_out_channels=tuple(unet.config.block_out_channels),
                            motion_layers_per_block=unet.config.layers_per_block,
                            motion_num_attention_heads=motion_num_attention_heads,
                            motion_norm_num_groups=motion_norm_num_groups or unet.config.norm_num_groups,
                            motion_max_seq_length=motion_max_seq_length, use_motion_mid_block=True)
    video = UNetMotionModel.from_unet2d(unet, adapter)
    with torch.no_grad():
        for module in temporal_modules(video):
            module.proj_out.weight.zero_()
            module.proj_out.bias.zero_()
    if freeze_image_layers:
        video.freeze_unet2d_params()
    return video.to(unet.device)


def check_num_frames(model, num_frames, name: str = "num_frames") -> int:
    """``num_frames`` as an int the model can hold: any positive count for an image model (frames are
    independent), at most ``motion_max_seq_length`` for an inflated one (its positional embedding's length).

    Raises:
        ValueError: not a positive integer, or more frames than the temporal layers hold.
    """
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {num_frames!r}")
    if isinstance(model, UNetMotionModel) and num_frames > model.config.motion_max_seq_length:
        raise ValueError(f"`{name}` must be at most {model.config.motion_max_seq_length} (the temporal layers' "
                         f"motion_max_seq_length, their positional embedding's length), got {num_frames}")
    return num_frames


def _predict(model, sample: torch.Tensor, timestep) -> torch.Tensor:
    """ε̂ of clips ``(B, F, C, H, W)``: the video model sees them as ``(B, C, F, H, W)``; the image model sees
    B·F independent frames. ``model`` may be a DDP wrapper: only its forward is called, the rest is read from
    ``model.module``."""
    batch, frames = sample.shape[:2]
    network = getattr(model, "module", model)
    if isinstance(network, UNetMotionModel):
        check_num_frames(network, frames, "clips")
        # UNetMotionModel takes the condition per frame (B·F, S, D), as AnimateDiffPipeline repeats it.
        return model(sample.transpose(1, 2), timestep, encoder_hidden_states=null_condition(network, batch * frames)
                     ).sample.transpose(1, 2)
    timestep = timestep.repeat_interleave(frames) if torch.is_tensor(timestep) and timestep.ndim else timestep
    out = model(sample.flatten(0, 1), timestep, encoder_hidden_states=null_condition(network, batch * frames)).sample
    return out.unflatten(0, (batch, frames))


def video_loss(model, noise_scheduler, clips: torch.Tensor, generator: torch.Generator | None = None
               ) -> torch.Tensor:
    """ε-prediction loss on clips ``(B, F, C, H, W)`` in [-1, 1]: one timestep per clip (as AnimateDiff), fresh ε
    per frame. ``generator`` (CPU) draws t and ε, so a resumed run draws what an uninterrupted one drew."""
    if not isinstance(clips, torch.Tensor) or not clips.dtype.is_floating_point or clips.ndim != 5:
        raise ValueError(f"`clips` must be a float (B, F, C, H, W) tensor, got "
                         f"{getattr(clips, 'dtype', type(clips).__name__)} {tuple(getattr(clips, 'shape', ()))}")
    timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(clips),), generator=generator)
    noise = torch.randn(clips.shape, generator=generator).to(clips)
    timesteps = timesteps.to(clips.device)
    noisy = noise_scheduler.add_noise(clips.flatten(1, 2), noise.flatten(1, 2), timesteps).view_as(clips)
    return F.mse_loss(_predict(model, noisy, timesteps).float(), noise.float())


@torch.no_grad()
def sample_frames(model, scheduler, num_videos: int, num_frames: int, num_inference_steps: int = 20,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """``(num_videos, num_frames, C, H, W)`` pixels in [-1, 1]: clips from an inflated model, or frames drawn
    independently (fresh noise each) from an image model.

    Raises:
        ValueError: counts below 1, or more frames than the temporal layers hold (`check_num_frames`).
    """
    if isinstance(num_videos, bool) or not isinstance(num_videos, int) or num_videos < 1:
        raise ValueError(f"`num_videos` must be a positive integer, got {num_videos!r}")
    check_num_frames(model, num_frames)
    config = model.config
    shape = (num_videos, num_frames, config.in_channels, config.sample_size, config.sample_size)
    sample = randn_tensor(shape, generator=generator, device=model.device, dtype=model.dtype)
    scheduler.set_timesteps(num_inference_steps, device=model.device)
    sample = sample * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        noise = _predict(model, scheduler.scale_model_input(sample, t), t)
        sample = scheduler.step(noise.flatten(1, 2), t, sample.flatten(1, 2)).prev_sample.view_as(sample)
    return sample.clamp(-1, 1)
