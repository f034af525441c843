"""Sampling sequences longer than the training window (spec threed_and_motion.md §3.6), with guidance (§3.5).

MultiDiffusion-style: the noisy sequence x_t covers all T frames; at every step the prior denoises overlapping
windows of ``window`` frames (starts every ``window − overlap`` frames, the last flush with the end, all windows
as one batch), and the windows' x̂₀ are blended frame by frame with ramp weights (`window_blend_weights`) that sum to
one. Blending, the SVD projection of the blended rotations onto SO(3), and guidance (`guide_motion`, ``inner``
iterations) happen before the update, which then moves the whole sequence; after the last step guidance runs once
more (``post`` iterations).

The ramp of a window at local frame i (0-based, length L) is ``min(1, (i+1)/(overlap+1))`` where another window
overlaps its start and ``min(1, (L−i)/(overlap+1))`` where one overlaps its end (1 at the ends of the sequence):
EgoAllo's ``min(overlap, i, L−i)/overlap`` without its zeros at the sequence's first and last frames.

A sequence no longer than ``window`` is one window with weight 1, and then `sample_motion_windowed` without
guidance draws the same random numbers in the same order as `sample_motion` and returns the same motion.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from diffusers.utils.torch_utils import randn_tensor

from ...data.motion_kinematics import project_to_so3
from ...utils.validation import check_positive_int
from .guidance import MotionGuidanceConfig, guide_motion
from .head_conditioning import check_head_poses
from .modeling_motion_prior import (
    MotionPriorModel,
    MotionSample,
    _check_sampler_arguments,
    _egoallo_step,
    egoallo_timesteps,
    motion_prior_scheduler,
    pack_motion,
    place_root_from_head,
    unpack_motion,
)

__all__ = ["GUIDANCE_MODES", "sample_motion_windowed", "window_blend_weights", "window_starts"]

GUIDANCE_MODES = ("off", "post", "inner_and_post")


def window_starts(num_frames: int, window: int, overlap: int) -> list[int]:
    """First frames of the windows covering ``num_frames`` frames: 0, s, 2s, … (s = window − overlap), the last one
    moved back to end flush with the sequence; ``[0]`` when the sequence fits in one window."""
    check_positive_int("num_frames", num_frames)
    check_positive_int("window", window)
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < window:
        raise ValueError(f"`overlap` must be an integer in [0, window) = [0, {window}), got {overlap!r}")
    if num_frames <= window:
        return [0]
    stride = window - overlap
    starts = list(range(0, num_frames - window + 1, stride))
    if starts[-1] != num_frames - window:
        starts.append(num_frames - window)
    return starts


def window_blend_weights(num_frames: int, window: int, overlap: int, dtype: torch.dtype = torch.float32,
                         device: torch.device | str | None = None) -> tuple[list[int], torch.Tensor]:
    """``(starts, weights)``: `window_starts` and the normalised blending weights (W, num_frames) of each window at
    each frame (zero outside it; every column sums to one). See the module docstring for the ramps."""
    starts = window_starts(num_frames, window, overlap)
    length = min(window, num_frames)
    index = torch.arange(length, dtype=dtype, device=device)
    weights = torch.zeros(len(starts), num_frames, dtype=dtype, device=device)
    for row, start in enumerate(starts):
        ramp = torch.ones(length, dtype=dtype, device=device)
        if start > 0:
            ramp = torch.minimum(ramp, (index + 1) / (overlap + 1))
        if start + length < num_frames:
            ramp = torch.minimum(ramp, (length - index) / (overlap + 1))
        weights[row, start:start + length] = ramp
    return starts, weights / weights.sum(0, keepdim=True)


def _check_guidance(guidance: str, guidance_config) -> MotionGuidanceConfig:
    if guidance not in GUIDANCE_MODES:
        raise ValueError(f"`guidance` must be one of {GUIDANCE_MODES}, got {guidance!r}")
    if guidance_config is None:
        return MotionGuidanceConfig()
    if not isinstance(guidance_config, MotionGuidanceConfig):
        raise TypeError(f"`guidance_config` must be a MotionGuidanceConfig or None, got "
                        f"{type(guidance_config).__name__}")
    return guidance_config


@torch.no_grad()
def sample_motion_windowed(model: MotionPriorModel, head_poses: torch.Tensor, offsets: torch.Tensor,
                           num_inference_steps: int = 30, eta: float = 0.8, floor_height: torch.Tensor | None = None,
                           generator: torch.Generator | None = None, schedule: str = "ddim",
                           egoallo_quirk: bool = False, window: int = 128, overlap: int = 32,
                           guidance: str = "inner_and_post", guidance_config: MotionGuidanceConfig | None = None,
                           wrist_positions: torch.Tensor | None = None, wrist_rotations: torch.Tensor | None = None,
                           scheduler=None,
                           progress: Callable[[Iterable], Iterable] | None = None) -> MotionSample:
    """Body motion for head trajectories of any length ≥ 2 (module docstring).

    Args:
        model, head_poses (B, T, 4, 4), offsets ((22, 3) or (B, 22, 3)), num_inference_steps, eta, floor_height
            (B,), generator, schedule (``"ddim"`` / ``"egoallo"``), egoallo_quirk: as `sample_motion`.
        window (`int`, defaults to 128): frames per window (the training window).
        overlap (`int`, defaults to 32): frames shared by neighbouring windows, in [0, window).
        guidance (`str`, defaults to ``"inner_and_post"``): ``"off"``, ``"post"`` (once after sampling) or
            ``"inner_and_post"`` (also after each x̂₀), as in EgoAllo.
        guidance_config (`MotionGuidanceConfig`, *optional*): weights and iteration counts.
        wrist_positions (B, T, 2, 3), wrist_rotations (B, T, 2, 3, 3) (*optional*): observed wrists in the world.
        scheduler (`DDIMScheduler`, *optional*): for ``schedule="ddim"`` (default `motion_prior_scheduler`'s).
        progress (*optional*): wraps the step iterable (a pipeline's ``progress_bar``).
    """
    config = model.config
    _check_sampler_arguments(num_inference_steps, eta, schedule, egoallo_quirk)
    guidance_config = _check_guidance(guidance, guidance_config)
    check_head_poses(head_poses, floor_height)
    batch, frames = head_poses.shape[:2]
    parameter = next(model.parameters())
    dtype, device = parameter.dtype, parameter.device
    starts, weights = window_blend_weights(frames, window, overlap, dtype, device)
    length = min(window, frames)
    # diffusers' randn_tensor: torch.randn on the CPU (the same numbers as `sample_motion`), and a CPU generator
    # also serves a model on an accelerator.
    motion = randn_tensor((batch, frames, config.motion_size), generator=generator, device=device, dtype=dtype)
    head = head_poses.to(dtype)
    floor = None if floor_height is None else floor_height.to(dtype)
    offsets = offsets.to(dtype)
    windows_head = torch.cat([head[:, s:s + length] for s in starts])
    windows_floor = None if floor is None else floor.repeat(len(starts))
    wrists = {"wrist_positions": wrist_positions if wrist_positions is None else wrist_positions.to(dtype),
              "wrist_rotations": wrist_rotations if wrist_rotations is None else wrist_rotations.to(dtype)}

    def guided(clean: torch.Tensor, iterations: int) -> torch.Tensor:
        body, contacts = unpack_motion(clean, config)
        body = guide_motion(body, offsets, head, contacts, guidance_config, iterations, **wrists)
        return pack_motion(body, contacts)

    def denoise(step: int) -> torch.Tensor:
        timestep = torch.full((batch * len(starts),), step, dtype=torch.long, device=device)
        windows = torch.cat([motion[:, s:s + length] for s in starts])
        predicted = model(windows, timestep, windows_head, windows_floor).sample.split(batch)
        # Blend the raw predictions, then project: one window (weight exactly 1) gives sample_motion's x̂₀ bit for bit.
        if len(starts) == 1:
            blended = predicted[0]
        else:
            blended = torch.zeros_like(motion)
            for start, row, value in zip(starts, weights, predicted):
                blended[:, start:start + length] += row[start:start + length, None] * value
        body, contacts = unpack_motion(blended, config)
        clean = pack_motion(project_to_so3(body), contacts)
        if guidance == "inner_and_post" and guidance_config.inner_iterations > 0:
            clean = guided(clean, guidance_config.inner_iterations)
        return clean

    progress = progress or (lambda steps: steps)
    if schedule == "ddim":
        scheduler = scheduler or motion_prior_scheduler(config, "ddim")
        scheduler.set_timesteps(num_inference_steps, device=device)
        for step in progress(scheduler.timesteps):
            clean = denoise(int(step))
            motion = scheduler.step(clean, step, motion, eta=eta, generator=generator).prev_sample
    else:
        times = egoallo_timesteps(num_inference_steps, config.num_train_timesteps)
        alphas_cumprod = motion_prior_scheduler(config, "ddim").alphas_cumprod.to(device, dtype)
        for t, t_next in progress(list(zip(times[:-1], times[1:]))):
            clean = denoise(t - 1)
            motion = _egoallo_step(clean, motion, t, t_next, alphas_cumprod, eta, egoallo_quirk, generator)
    if guidance != "off" and guidance_config.post_iterations > 0:
        clean = guided(clean, guidance_config.post_iterations)
    body, contacts = unpack_motion(clean, config)
    local_rotations, root_translation, positions = place_root_from_head(body, offsets, head)
    return MotionSample(local_rotations=local_rotations, root_translation=root_translation, positions=positions,
                        contacts=contacts, motion=clean)
