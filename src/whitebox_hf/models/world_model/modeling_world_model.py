"""An action-conditioned world model (Genie-style, book §8.7): the next frame of an environment from its past
``num_context_frames`` frames and the discrete action taken, by diffusion, with a deterministic regressor of the same
network as the baseline.

    past frames (B, k, 3, H, W) ─┐ channel concat
    noisy next frame x_t (B, 3, H, W) ─┴→ (B, 3(k+1), H, W) ─ UNet2DConditionModel(t, encoder_hidden_states) → ε̂
    action a (B,) ─ nn.Embedding → the action token(s) (B, num_action_tokens, cross_attention_dim) ─┘

**Why a token through cross-attention, not a class embedding.** Genie conditions its dynamics model on a latent
action *token*; here the action is embedded as ``num_action_tokens`` learned tokens that every cross-attention
block of the U-Net reads as ``encoder_hidden_states``. The class-embedding route (added to the timestep embedding)
would work too, but it gives the regressor (which has no timestep) a different path to the action than the diffusion
model, and it cannot grow into a sequence of actions or a text prompt; the cross-attention route is the same in both
models and is what diffusers' conditional U-Nets are built around. With one token the attention weights are all 1
(softmax over one key), so each block adds a learned, per-action feature everywhere; more tokens let the blocks pick
among them per position.

**The regressor** (``prediction="regressor"``) is the same U-Net with the same input channels, so both have exactly
the same parameters: the noisy-frame slot is filled with zeros and the timestep with 0, and the output is the next
frame itself (trained by MSE), so it predicts the conditional mean in one pass.

Frames are pixels in [-1, 1], ``(B, 3, H, W)`` float; `frames_to_pixels` converts the recordings' uint8
``(..., H, W, 3)``. A diffusers ``ModelMixin`` (as the package's denoisers): ``save_pretrained`` / ``from_pretrained``,
safetensors only, and a `WorldModelPipeline` component.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models import UNet2DConditionModel
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from ..safe_loading import SafetensorsOnlyModelMixin

__all__ = ["PREDICTIONS", "WorldModel", "WorldModelOutput", "check_actions", "frames_to_pixels",
           "pixels_to_frames", "world_model_loss"]

PREDICTIONS = ("diffusion", "regressor")


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
    return value


def frames_to_pixels(frames) -> torch.Tensor:
    """uint8 frames ``(..., H, W, 3)`` (numpy or torch, the recordings' layout) → float pixels ``(..., 3, H, W)`` in
    [-1, 1].

    Raises:
        TypeError: not an array, or not uint8 (nothing is silently rescaled).
        ValueError: the last axis is not the 3 RGB channels.
    """
    if not isinstance(frames, torch.Tensor):
        if not isinstance(frames, np.ndarray):
            raise TypeError(f"`frames` must be a uint8 numpy array or tensor, got {type(frames).__name__}")
        frames = torch.from_numpy(frames)
    if frames.dtype != torch.uint8:
        raise TypeError(f"`frames` must be uint8 (0-255), got dtype {frames.dtype}")
    if frames.ndim < 3 or frames.shape[-1] != 3:
        raise ValueError(f"`frames` must have shape (..., H, W, 3), got {tuple(frames.shape)}")
    return frames.movedim(-1, -3).float() / 127.5 - 1.0


def pixels_to_frames(pixels: torch.Tensor) -> torch.Tensor:
    """Float pixels ``(..., 3, H, W)`` in [-1, 1] → uint8 frames ``(..., H, W, 3)`` (clamped, rounded)."""
    return ((pixels.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).movedim(-3, -1).cpu()


def check_actions(actions, num_actions: int, batch_size: int | None = None, name: str = "actions") -> torch.Tensor:
    """Integer action ids in ``[0, num_actions)``; returns them as an int64 tensor.

    Raises:
        TypeError: not integer ids.
        ValueError: empty, out of range, or not ``batch_size`` of them along the first axis.
    """
    if not isinstance(actions, torch.Tensor):
        try:
            actions = torch.as_tensor(actions)
        except (TypeError, ValueError, RuntimeError) as error:
            raise TypeError(f"`{name}` must be integer action ids, got {type(actions).__name__}") from error
    # Emptiness first: an empty Python list becomes a float tensor.
    if actions.numel() == 0:
        raise ValueError(f"`{name}` must hold at least one action, got an empty sequence {tuple(actions.shape)}")
    if actions.dtype.is_floating_point or actions.dtype.is_complex or actions.dtype == torch.bool:
        raise TypeError(f"`{name}` must be integer action ids, got dtype {actions.dtype}")
    if batch_size is not None and (actions.ndim == 0 or actions.shape[0] != batch_size):
        raise ValueError(f"`{name}` must have {batch_size} rows (one per batch item), got shape "
                         f"{tuple(actions.shape)}")
    low, high = int(actions.min()), int(actions.max())
    if low < 0 or high >= num_actions:
        bad = low if low < 0 else high
        raise ValueError(f"`{name}` must be action ids in [0, {num_actions}), got {bad}")
    return actions.long()


@dataclass
class WorldModelOutput(BaseOutput):
    """What `WorldModel.forward` returns.

    Args:
        sample (`torch.FloatTensor` of shape `(B, 3, H, W)`): the predicted noise ε̂ (``prediction="diffusion"``) or
            the predicted next frame in [-1, 1] (``prediction="regressor"``).
    """

    sample: torch.FloatTensor


class WorldModel(SafetensorsOnlyModelMixin, ModelMixin, ConfigMixin):
    """Next frame from the past frames and an action (see the module docstring).

    Args:
        sample_size (`int`, defaults to 24): the frames' height and width (MiniGrid 6×6 at 4 pixels a cell).
        num_channels (`int`, defaults to 3): channels of a frame (RGB).
        num_context_frames (`int`, defaults to 2): past frames k the next frame is predicted from.
        num_actions (`int`, defaults to 3): discrete actions (ids ``0 .. num_actions - 1``).
        num_action_tokens (`int`, defaults to 1): tokens each action is embedded as (the cross-attention's keys).
        prediction (`str`, defaults to `"diffusion"`): ``"diffusion"`` (ε-prediction of the noisy next frame) or
            ``"regressor"`` (the next frame itself from the same network, no noise, no timestep).
        block_out_channels (`tuple[int]`, defaults to `(32, 64)`): channels of the U-Net's resolution levels;
            the first level has no attention, the others cross-attend to the action tokens.
        layers_per_block (`int`, defaults to 1): ResNet layers per U-Net block.
        cross_attention_dim (`int`, defaults to 64): width of the action tokens.
        attention_head_dim (`int`, defaults to 16): width of an attention head.
        norm_num_groups (`int`, defaults to 8): GroupNorm groups of the U-Net (must divide every channel count).
    """

    @register_to_config
    def __init__(self, sample_size: int = 24, num_channels: int = 3, num_context_frames: int = 2,
                 num_actions: int = 3, num_action_tokens: int = 1, prediction: str = "diffusion",
                 block_out_channels: tuple = (32, 64), layers_per_block: int = 1, cross_attention_dim: int = 64,
                 attention_head_dim: int = 16, norm_num_groups: int = 8):
        super().__init__()
        for name, value in (("sample_size", sample_size), ("num_channels", num_channels),
                            ("num_context_frames", num_context_frames), ("num_actions", num_actions),
                            ("num_action_tokens", num_action_tokens), ("layers_per_block", layers_per_block),
                            ("cross_attention_dim", cross_attention_dim), ("attention_head_dim", attention_head_dim),
                            ("norm_num_groups", norm_num_groups)):
            _check_positive_int(name, value)
        if prediction not in PREDICTIONS:
            raise ValueError(f"`prediction` must be one of {PREDICTIONS}, got {prediction!r}")
        block_out_channels = tuple(block_out_channels)
        if len(block_out_channels) < 2 or any(_check_positive_int("block_out_channels", c) % norm_num_groups
                                               for c in block_out_channels):
            raise ValueError(f"`block_out_channels` must be >= 2 positive multiples of `norm_num_groups` "
                             f"({norm_num_groups}), got {block_out_channels!r}")
        levels = len(block_out_channels)
        self.unet = UNet2DConditionModel(
            sample_size=sample_size, in_channels=num_channels * (num_context_frames + 1), out_channels=num_channels,
            down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (levels - 1),
            up_block_types=("CrossAttnUpBlock2D",) * (levels - 1) + ("UpBlock2D",),
            block_out_channels=block_out_channels, layers_per_block=layers_per_block,
            cross_attention_dim=cross_attention_dim, attention_head_dim=attention_head_dim,
            norm_num_groups=norm_num_groups)
        self.action_embedding = nn.Embedding(num_actions, num_action_tokens * cross_attention_dim)

    def action_tokens(self, actions: torch.Tensor) -> torch.Tensor:
        """``(B,)`` action ids → ``(B, num_action_tokens, cross_attention_dim)`` tokens."""
        actions = check_actions(actions, self.config.num_actions)
        if actions.ndim != 1:
            raise ValueError(f"`actions` must be one action per batch item (B,), got shape {tuple(actions.shape)}")
        tokens = self.action_embedding(actions.to(self.action_embedding.weight.device))
        return tokens.view(len(actions), self.config.num_action_tokens, self.config.cross_attention_dim)

    def _check_frames(self, name: str, frames, frames_per_item: int | None) -> torch.Tensor:
        if not isinstance(frames, torch.Tensor):
            raise TypeError(f"`{name}` must be a float tensor of pixels in [-1, 1], got {type(frames).__name__}")
        if not frames.dtype.is_floating_point:
            raise TypeError(f"`{name}` must be a float tensor of pixels in [-1, 1], got dtype {frames.dtype} "
                            f"(uint8 frames: convert with frames_to_pixels)")
        c, s = self.config.num_channels, self.config.sample_size
        expected = (c, s, s) if frames_per_item is None else (frames_per_item, c, s, s)
        if tuple(frames.shape[1:]) != expected or frames.ndim != len(expected) + 1:
            raise ValueError(f"`{name}` must have shape (B, {', '.join(map(str, expected))}), got "
                             f"{tuple(frames.shape)}")
        return frames

    def forward(self, context_frames: torch.Tensor, actions: torch.Tensor, noisy_frame: torch.Tensor | None = None,
                timestep: torch.Tensor | int | None = None, return_dict: bool = True):
        """ε̂ (diffusion) or the next frame (regressor).

        Args:
            context_frames: ``(B, k, 3, H, W)`` float pixels in [-1, 1], oldest first.
            actions: ``(B,)`` action ids, the action taken after the last context frame.
            noisy_frame: ``(B, 3, H, W)`` x_t; diffusion only (the regressor refuses it).
            timestep: the diffusion timestep(s); diffusion only.

        Raises:
            TypeError: frames that are not float tensors, or actions that are not integer ids.
            ValueError: wrong shapes, actions out of range, a noisy frame given to the regressor or missing for
                diffusion.
        """
        k = self.config.num_context_frames
        context_frames = self._check_frames("context_frames", context_frames, k)
        batch = len(context_frames)
        actions = check_actions(actions, self.config.num_actions, batch)
        if self.config.prediction == "regressor":
            if noisy_frame is not None or timestep is not None:
                raise ValueError("`noisy_frame` and `timestep` must be None for prediction='regressor', got "
                                 f"{'noisy_frame' if noisy_frame is not None else 'timestep'}")
            noisy_frame = torch.zeros_like(context_frames[:, 0])
            timestep = 0
        else:
            if noisy_frame is None or timestep is None:
                raise ValueError("`noisy_frame` and `timestep` are required for prediction='diffusion', got None")
            noisy_frame = self._check_frames("noisy_frame", noisy_frame, None)
            if len(noisy_frame) != batch:
                raise ValueError(f"`noisy_frame` must have {batch} items like `context_frames`, got "
                                 f"{len(noisy_frame)}")
        sample = torch.cat([context_frames.flatten(1, 2), noisy_frame.to(context_frames.dtype)], dim=1)
        out = self.unet(sample, timestep, encoder_hidden_states=self.action_tokens(actions).to(sample.dtype)).sample
        return WorldModelOutput(sample=out) if return_dict else (out,)


def world_model_loss(model: WorldModel, noise_scheduler, context_frames: torch.Tensor, actions: torch.Tensor,
                     next_frame: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The training loss: for diffusion, the squared error of the network's prediction of the scheduler's
    ``prediction_type`` target (ε, the clean frame x0 for ``"sample"``, or v) with t uniform and x_t from
    ``noise_scheduler``'s ``add_noise`` (a diffusers DDPM-style scheduler); for the regressor, ``‖f̂ − f‖²``. ``generator``
    (CPU) draws t and ε, so a resumed run draws what an uninterrupted one drew. ``model`` may be the DDP wrapper
    ``accelerator.prepare`` returns (its forward is what synchronises the gradients across processes)."""
    if getattr(model, "module", model).config.prediction == "regressor":
        return F.mse_loss(model(context_frames, actions).sample.float(), next_frame.float())
    batch = len(next_frame)
    timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (batch,), generator=generator)
    noise = torch.randn(next_frame.shape, generator=generator, dtype=torch.float32).to(next_frame)
    timesteps = timesteps.to(next_frame.device)
    noisy = noise_scheduler.add_noise(next_frame, noise, timesteps)
    prediction_type = noise_scheduler.config.prediction_type
    if prediction_type == "epsilon":
        target = noise
    elif prediction_type == "sample":
        target = next_frame
    elif prediction_type == "v_prediction":
        target = noise_scheduler.get_velocity(next_frame, noise, timesteps)
    else:
        raise ValueError(f"the noise scheduler's `prediction_type` must be 'epsilon', 'sample' or 'v_prediction', "
                         f"got {prediction_type!r}")
    return F.mse_loss(model(context_frames, actions, noisy, timesteps).sample.float(), target.float())
