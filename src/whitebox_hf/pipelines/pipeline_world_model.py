"""`WorldModelPipeline`: roll an action-conditioned world model (`WorldModel`, Genie-style, book §8.7) out from start
frames and an action sequence.

    start frames (B, k, 3, H, W) ─┐
    actions (B, T) ───────────────┴→ for each step: the last k frames + action a_t
        → diffusion: x_T ~ N(0, I), ``num_inference_steps`` steps of the scheduler (DDIM by default) → frame t+1
        → regressor: one pass → frame t+1
    → frames (B, T, ...): each generated frame becomes context for the next (autoregressive rollout)

The scheduler is a diffusers scheduler built from the training noise schedule (``DDIMScheduler.from_config`` of the
DDPM one); the regressor ignores it. The progress bar counts rollout steps.

Save/load as the package's other pipelines: ``pipe.save_pretrained(folder)``, then
``WorldModelPipeline.from_pretrained(folder)`` with whitebox_hf or ``DiffusionPipeline.from_pretrained(folder,
trust_remote_code=True)`` without it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from ..models.world_model.modeling_world_model import (
    check_actions,
    frames_to_pixels,
    pixels_to_frames,
)
from .class_conditional import ClassConditionalPipelineMixin

__all__ = ["WORLD_MODEL_OUTPUT_TYPES", "WorldModelPipeline", "WorldModelPipelineOutput"]

WORLD_MODEL_OUTPUT_TYPES = ("np", "pt")


@dataclass
class WorldModelPipelineOutput(BaseOutput):
    """What `WorldModelPipeline` returns.

    Args:
        frames (`np.ndarray` of shape `(B, T, H, W, 3)` uint8, or `torch.Tensor` of shape `(B, T, 3, H, W)` float
            in [-1, 1] with ``output_type="pt"``): the generated frames, one after each action (the start frames
            are not repeated).
        actions (`torch.LongTensor` of shape `(B, T)`): the actions they follow.
    """

    frames: np.ndarray | torch.Tensor
    actions: torch.LongTensor


class WorldModelPipeline(ClassConditionalPipelineMixin, DiffusionPipeline):
    """Autoregressive rollout of a `WorldModel` (see the module docstring).

    Args:
        model (`WorldModel`): the next-frame model (``prediction`` "diffusion" or "regressor").
        scheduler (`SchedulerMixin`): a diffusers scheduler with the model's training noise schedule (used by
            diffusion models only).
    """

    model_cpu_offload_seq = "model"

    def __init__(self, model, scheduler):
        super().__init__()
        self.register_modules(model=model, scheduler=scheduler)

    def _start_frames(self, start_frames) -> torch.Tensor:
        config = self.model.config
        k, c, s = config.num_context_frames, config.num_channels, config.sample_size
        if isinstance(start_frames, np.ndarray) and start_frames.dtype != np.uint8:
            raise TypeError(f"`start_frames` as a numpy array must be uint8 frames (B, k, H, W, 3), got dtype "
                            f"{start_frames.dtype}")
        if isinstance(start_frames, np.ndarray) or (isinstance(start_frames, torch.Tensor)
                                                    and start_frames.dtype == torch.uint8):
            if tuple(start_frames.shape[1:]) != (k, s, s, c) or start_frames.ndim != 5:
                raise ValueError(f"`start_frames` (uint8) must have shape (B, {k}, {s}, {s}, {c}), got "
                                 f"{tuple(start_frames.shape)}")
            return frames_to_pixels(start_frames)
        if not isinstance(start_frames, torch.Tensor):
            raise TypeError(f"`start_frames` must be uint8 frames (B, k, H, W, 3) or float pixels (B, k, 3, H, W), "
                            f"got {type(start_frames).__name__}")
        if not start_frames.dtype.is_floating_point:
            raise TypeError(f"`start_frames` must be uint8 frames or float pixels in [-1, 1], got dtype "
                            f"{start_frames.dtype}")
        if tuple(start_frames.shape[1:]) != (k, c, s, s) or start_frames.ndim != 5:
            raise ValueError(f"`start_frames` must have shape (B, {k}, {c}, {s}, {s}), got "
                             f"{tuple(start_frames.shape)}")
        return start_frames

    @torch.no_grad()
    def __call__(self, start_frames, actions, num_inference_steps: int = 20,
                 generator: torch.Generator | list[torch.Generator] | None = None, output_type: str = "np",
                 return_dict: bool = True):
        """Roll the model out.

        Args:
            start_frames: the first ``num_context_frames`` frames of each rollout: uint8 ``(B, k, H, W, 3)`` (the
                recordings' layout) or float pixels ``(B, k, 3, H, W)`` in [-1, 1].
            actions: ``(B, T)`` action ids (T >= 1), or ``(T,)`` for every rollout alike.
            num_inference_steps: denoising steps per frame (diffusion only).
            generator: the sampling noise.
            output_type: ``"np"`` (uint8 ``(B, T, H, W, 3)``) or ``"pt"`` (float ``(B, T, 3, H, W)``).

        Raises:
            TypeError: frames of another type/dtype, actions that are not integer ids.
            ValueError: frames of the wrong shape, an empty action sequence, action ids out of range, a bad
                ``num_inference_steps`` or ``output_type``.
        """
        if output_type not in WORLD_MODEL_OUTPUT_TYPES:
            raise ValueError(f"`output_type` must be one of {WORLD_MODEL_OUTPUT_TYPES}, got {output_type!r}")
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be a positive integer, got {num_inference_steps!r}")
        context = self._start_frames(start_frames)
        batch = len(context)
        actions = check_actions(actions, self.model.config.num_actions)
        if actions.ndim == 1:
            actions = actions[None].expand(batch, -1)
        if actions.ndim != 2 or actions.shape[0] != batch:
            raise ValueError(f"`actions` must have shape ({batch}, T) or (T,), got {tuple(actions.shape)}")
        device, dtype = self._execution_device, self.model.dtype
        context = context.to(device=device, dtype=dtype)
        actions = actions.to(device)
        diffusion = self.model.config.prediction == "diffusion"
        frames = []
        for step in self.progress_bar(range(actions.shape[1])):
            action = actions[:, step]
            if diffusion:
                sample = randn_tensor(context[:, 0].shape, generator=generator, device=device, dtype=dtype)
                self.scheduler.set_timesteps(num_inference_steps, device=device)
                sample = sample * self.scheduler.init_noise_sigma
                for t in self.scheduler.timesteps:
                    model_input = self.scheduler.scale_model_input(sample, t)
                    noise = self.model(context, action, model_input, t).sample
                    sample = self.scheduler.step(noise, t, sample, generator=generator).prev_sample
            else:
                sample = self.model(context, action).sample
            sample = sample.clamp(-1, 1)
            frames.append(sample)
            context = torch.cat([context[:, 1:], sample[:, None]], dim=1)
        frames = torch.stack(frames, dim=1)
        out = frames.float().cpu() if output_type == "pt" else pixels_to_frames(frames).numpy()
        self.maybe_free_model_hooks()
        if not return_dict:
            return (out, actions.cpu())
        return WorldModelPipelineOutput(frames=out, actions=actions.cpu())
