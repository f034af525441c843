"""PyTorch Cupid stage-1 flow: a rectified-flow DiT over the occupancy + UV cube, cross-attending to CRATE image
tokens (spec threed_and_motion.md §2.1-2.3; cupid3d/Cupid ``cupid/trainers/flow_matching/flow_matching.py``, TRELLIS's
sparse-structure flow).

    cube (B, C, R, R, R) ─Conv3d(p, stride p)→ (R/p)³ tokens + position ─[AdaLN-zero self-attn, cross-attn(image
    tokens), AdaLN-zero MLP] ×L→ AdaLN → Linear → unpatchify → velocity (B, C, R, R, R)
    image (B, 3, H, W) ─CrateModel→ last_hidden_state ─LN → Linear→ image tokens; null condition: zero tokens
    1000·t ─sinusoidal → MLP→ timestep embedding (the AdaLN shifts, scales and gates)

The rectified-flow helpers (logit-normal t, the path and its target, the time shift) are functions of this module;
`CupidFlowModel.sample` is the Euler sampler with interval classifier-free guidance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn
from torch.nn import functional as F
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput

from ...utils.validation import (
    check_finite_tensor,
    check_floating_tensor,
    check_positive_int,
    check_tensor,
)
from ..crate.modeling_crate import CrateModel
from ..modeling_utils import WhiteboxPreTrainedModel
from .configuration_cupid_flow import CupidFlowConfig

__all__ = [
    "CupidFlowModel",
    "CupidFlowOutput",
    "CupidFlowPreTrainedModel",
    "flow_matching_target",
    "interpolate_flow_path",
    "sample_logit_normal_timesteps",
    "shift_timesteps",
]


def sample_logit_normal_timesteps(batch_size: int, mean: float = 1.0, std: float = 1.0,
                                  generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Training times ``t = sigmoid(mean + std·n)``, ``n ~ N(0, 1)`` (TRELLIS/Cupid: mean 1, std 1, which puts
    more weight near the noise end), shape ``(batch_size,)``."""
    check_positive_int("batch_size", batch_size)
    return torch.sigmoid(mean + std * torch.randn(batch_size, generator=generator, device=device))


def shift_timesteps(t: torch.Tensor, shift: float) -> torch.Tensor:
    """The sampler's time warp ``s·t / (1 + (s − 1)·t)`` (TRELLIS ``rescale_t``; the same map as diffusers'
    ``FlowMatchEulerDiscreteScheduler(shift=s)``): fixes 0 and 1, spends more steps near the noise end for s > 1."""
    if not shift > 0:
        raise ValueError(f"`shift` must be positive, got {shift!r}")
    return shift * t / (1 + (shift - 1) * t)


def _broadcast_time(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def interpolate_flow_path(clean: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
                          sigma_min: float = 1e-5) -> torch.Tensor:
    """``x_t = (1 − t)·x₀ + (σ_min + (1 − σ_min)·t)·ε`` (spec §2.2; t = 1 is noise), ``t`` of shape ``(B,)``."""
    t = _broadcast_time(t, clean)
    return (1 - t) * clean + (sigma_min + (1 - sigma_min) * t) * noise


def flow_matching_target(clean: torch.Tensor, noise: torch.Tensor, sigma_min: float = 1e-5) -> torch.Tensor:
    """The velocity ``d x_t / dt = (1 − σ_min)·ε − x₀`` the network is trained to predict."""
    return (1 - sigma_min) * noise - clean


@dataclass
class CupidFlowOutput(ModelOutput):
    """What `CupidFlowModel.forward` returns.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): the flow-matching MSE between `velocity` and the given
            `target`.
        velocity (`torch.FloatTensor` of shape `(B, C, R, R, R)`): the predicted velocity ``v̂(x_t, t | image)``.
    """

    loss: torch.FloatTensor | None = None
    velocity: torch.FloatTensor | None = None


class _Attention(nn.Module):
    """Softmax multi-head attention of ``hidden_states`` over ``context`` (self-attention when they coincide)."""

    def __init__(self, width: int, context_width: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.query = nn.Linear(width, width)
        self.key_value = nn.Linear(context_width, 2 * width)
        self.output_projection = nn.Linear(width, width)

    def forward(self, hidden_states: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        batch_size, length, width = hidden_states.shape

        def heads(tensor):
            return tensor.view(batch_size, -1, self.num_heads, width // self.num_heads).transpose(1, 2)

        key, value = self.key_value(context).chunk(2, dim=-1)
        output = F.scaled_dot_product_attention(heads(self.query(hidden_states)), heads(key), heads(value))
        return self.output_projection(output.transpose(1, 2).reshape(batch_size, length, width))


class _Modulation(nn.Sequential):
    """SiLU → Linear: the timestep embedding to ``chunks`` vectors of the token width (zero-initialised)."""

    def __init__(self, width: int, chunks: int):
        super().__init__(nn.SiLU(), nn.Linear(width, chunks * width))


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class CupidFlowBlock(GradientCheckpointingLayer):
    """A DiT block with AdaLN-zero timestep modulation and an (ungated) cross-attention to the image tokens."""

    def __init__(self, config: CupidFlowConfig):
        super().__init__()
        width, eps = config.hidden_size, config.layer_norm_eps
        self.norm1 = nn.LayerNorm(width, eps=eps, elementwise_affine=False)
        self.self_attention = _Attention(width, width, config.num_attention_heads)
        self.norm2 = nn.LayerNorm(width, eps=eps)
        self.cross_attention = _Attention(width, width, config.num_attention_heads)
        self.norm3 = nn.LayerNorm(width, eps=eps, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(width, config.mlp_ratio * width), nn.GELU(approximate="tanh"),
                                 nn.Linear(config.mlp_ratio * width, width))
        self.modulation = _Modulation(width, 6)

    def forward(self, hidden_states, context, time_embedding):
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(time_embedding).chunk(6, dim=-1)
        normed = _modulate(self.norm1(hidden_states), shift1, scale1)
        hidden_states = hidden_states + gate1[:, None] * self.self_attention(normed, normed)
        hidden_states = hidden_states + self.cross_attention(self.norm2(hidden_states), context)
        normed = _modulate(self.norm3(hidden_states), shift2, scale2)
        return hidden_states + gate2[:, None] * self.mlp(normed)


class CupidFlowPreTrainedModel(WhiteboxPreTrainedModel):
    config: CupidFlowConfig
    config_class = CupidFlowConfig
    base_model_prefix = "cupid_flow"
    main_input_name = "sample"
    supports_gradient_checkpointing = True
    _no_split_modules = ["CupidFlowBlock"]

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """`WhiteboxPreTrainedModel.from_pretrained`, with the image encoder frozen again when
        ``freeze_image_encoder`` (loading replaces the parameters, and with them the ``requires_grad`` flags set in
        ``__init__``)."""
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        if isinstance(model, CupidFlowModel) and model.config.freeze_image_encoder:
            model.image_encoder.requires_grad_(False)
        return loaded

    @torch.no_grad()
    def _init_weights(self, module):
        if not init_dit_weights(self, module, (nn.Linear, nn.Conv3d)):
            super()._init_weights(module)


@torch.no_grad()
def init_dit_weights(model, module, projection_types: tuple) -> bool:
    """DiT's initialisation for the Cupid flows (stage 1 and stage 2): AdaLN-zero modulation, a zero output layer
    (``model.output_projection``; with the zero modulation the velocity is 0 at init), normal(``initializer_range``)
    weights and zero biases for ``projection_types``, unit LayerNorms and a normal ``model.position_embedding``.
    Returns False for a module it leaves to the caller's default."""
    std = model.config.initializer_range
    if isinstance(module, _Modulation):
        init.zeros_(module[1].weight)  # AdaLN-zero: every block starts as the identity
        init.zeros_(module[1].bias)
    elif isinstance(module, projection_types):
        if module is getattr(model, "output_projection", None):
            init.zeros_(module.weight)
        else:
            init.normal_(module.weight, mean=0.0, std=std)
        if module.bias is not None:
            init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        if module.weight is not None:
            init.ones_(module.weight)
            init.zeros_(module.bias)
    elif module is model:
        init.normal_(module.position_embedding, mean=0.0, std=std)
    elif not isinstance(module, TimestepEmbedding):  # its Linear layers are initialised above
        return False
    return True


def _check_cube_tensor(name: str, value, config: CupidFlowConfig, batch_size: int | None = None) -> None:
    resolution, channels = config.cube_resolution, config.cube_channels
    shape_doc = f"(batch, {channels}, {resolution}, {resolution}, {resolution})"
    check_tensor(name, value, ndim=5, shape_doc=shape_doc)
    check_floating_tensor(name, value)
    if tuple(value.shape[1:]) != (channels, resolution, resolution, resolution):
        raise ValueError(f"`{name}` must have shape {shape_doc}, got {tuple(value.shape)}")
    if batch_size is not None and value.shape[0] != batch_size:
        raise ValueError(f"`{name}` must have batch size {batch_size} (that of `sample`), got {value.shape[0]}")
    check_finite_tensor(name, value)


class CupidFlowModel(CupidFlowPreTrainedModel):
    """Cupid stage 1 (see `CupidFlowConfig`): predicts the rectified-flow velocity of a noisy occupancy + UV cube
    given an image."""

    def __init__(self, config: CupidFlowConfig):
        super().__init__(config)
        width, patch = config.hidden_size, config.patch_size
        self.image_encoder = CrateModel(config.image_encoder_config)
        if config.freeze_image_encoder:
            self.image_encoder.requires_grad_(False)
        encoder_width = config.image_encoder_config.hidden_size
        self.context_norm = nn.LayerNorm(encoder_width, eps=config.layer_norm_eps)
        self.context_projection = nn.Linear(encoder_width, width)
        self.patch_embedding = nn.Conv3d(config.cube_channels, width, kernel_size=patch, stride=patch)
        self.position_embedding = nn.Parameter(torch.zeros(1, config.num_tokens, width))
        self.time_projection = Timesteps(width, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(width, width)
        self.blocks = nn.ModuleList(CupidFlowBlock(config) for _ in range(config.num_hidden_layers))
        self.output_norm = nn.LayerNorm(width, eps=config.layer_norm_eps, elementwise_affine=False)
        self.output_modulation = _Modulation(width, 2)
        self.output_projection = nn.Linear(width, patch**3 * config.cube_channels)
        self.gradient_checkpointing = False
        self.post_init()

    # -- conditioning ---------------------------------------------------------------------------------------------

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The image encoder's tokens ``(B, 1 + N, image_encoder_config.hidden_size)`` (before the projection),
        without gradients when ``freeze_image_encoder``."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_image_encoder):
            return self.image_encoder(pixel_values=pixel_values).last_hidden_state

    def _condition(self, pixel_values, encoder_hidden_states, batch_size: int) -> torch.Tensor:
        if (pixel_values is None) == (encoder_hidden_states is None):
            raise ValueError("pass exactly one of `pixel_values` (images for the CRATE encoder) and "
                             "`encoder_hidden_states` (its tokens)")
        if pixel_values is not None:
            check_tensor("pixel_values", pixel_values, ndim=4, shape_doc="(batch, channels, height, width)")
            if pixel_values.shape[0] != batch_size:
                raise ValueError(f"`pixel_values` must have batch size {batch_size} (that of `sample`), got "
                                 f"{pixel_values.shape[0]}")
            return self.encode_image(pixel_values)
        width = self.config.image_encoder_config.hidden_size
        check_tensor("encoder_hidden_states", encoder_hidden_states, ndim=3, shape_doc=f"(batch, tokens, {width})")
        check_floating_tensor("encoder_hidden_states", encoder_hidden_states)
        if encoder_hidden_states.shape[0] != batch_size or encoder_hidden_states.shape[2] != width:
            raise ValueError(f"`encoder_hidden_states` must have shape ({batch_size}, tokens, {width}), got "
                             f"{tuple(encoder_hidden_states.shape)}")
        check_finite_tensor("encoder_hidden_states", encoder_hidden_states)
        return encoder_hidden_states

    # -- the network ----------------------------------------------------------------------------------------------

    def _velocity(self, sample: torch.Tensor, timestep: torch.Tensor, image_tokens: torch.Tensor) -> torch.Tensor:
        config = self.config
        batch_size, side, patch = sample.shape[0], config.tokens_per_side, config.patch_size
        tokens = self.patch_embedding(sample).flatten(2).transpose(1, 2) + self.position_embedding
        time_embedding = self.time_embedding(
            self.time_projection(config.timestep_scale * timestep).to(tokens.dtype))
        context = self.context_projection(self.context_norm(image_tokens.to(tokens.dtype)))
        for block in self.blocks:
            tokens = block(tokens, context, time_embedding)
        shift, scale = self.output_modulation(time_embedding).chunk(2, dim=-1)
        patches = self.output_projection(_modulate(self.output_norm(tokens), shift, scale))
        # (B, n³, C·p³) → (B, C, n·p, n·p, n·p), the inverse of the Conv3d patch embedding's layout.
        patches = patches.view(batch_size, side, side, side, config.cube_channels, patch, patch, patch)
        return patches.permute(0, 4, 1, 5, 2, 6, 3, 7).reshape(sample.shape)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        drop_condition: torch.Tensor | None = None,
        target: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> CupidFlowOutput | tuple:
        r"""
        sample (`torch.FloatTensor` of shape `(B, C, R, R, R)`): the noisy cube ``x_t`` (normalised, see
            `whitebox_hf.models.cupid.uv_cube.normalize_cube`).
        timestep (`torch.FloatTensor` of shape `(B,)`): flow times ``t ∈ [0, 1]`` (1 is noise).
        pixel_values (`torch.FloatTensor` of shape `(B, 3, H, W)`, *optional*): the condition images, encoded by the
            CRATE image encoder.
        encoder_hidden_states (`torch.FloatTensor` of shape `(B, N, D_image)`, *optional*): image tokens in place of
            `pixel_values` (exactly one of the two).
        drop_condition (`torch.BoolTensor` of shape `(B,)`, *optional*): rows that see the null condition (zero
            image tokens): classifier-free-guidance dropout in training.
        target (`torch.FloatTensor` of shape `(B, C, R, R, R)`, *optional*): the velocity target
            (`flow_matching_target`); the MSE to it is returned as `loss`.
        """
        if kwargs:
            raise TypeError(f"CupidFlowModel.forward got unexpected arguments {sorted(kwargs)}")
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        _check_cube_tensor("sample", sample, self.config)
        batch_size = sample.shape[0]
        check_tensor("timestep", timestep, ndim=1, shape_doc=f"({batch_size},)")
        check_floating_tensor("timestep", timestep)
        if timestep.shape[0] != batch_size:
            raise ValueError(f"`timestep` must have shape ({batch_size},) (one time per sample), got "
                             f"{tuple(timestep.shape)}")
        check_finite_tensor("timestep", timestep)
        if not bool(((timestep >= 0) & (timestep <= 1)).all()):
            raise ValueError(f"`timestep` must lie in [0, 1] (flow time, 1 is noise), got values in "
                             f"[{timestep.min().item():.4g}, {timestep.max().item():.4g}]")
        image_tokens = self._condition(pixel_values, encoder_hidden_states, batch_size)
        if drop_condition is not None:
            check_tensor("drop_condition", drop_condition, ndim=1, shape_doc=f"({batch_size},)")
            if drop_condition.dtype != torch.bool or drop_condition.shape[0] != batch_size:
                raise ValueError(f"`drop_condition` must be a bool tensor of shape ({batch_size},), got "
                                 f"{drop_condition.dtype} {tuple(drop_condition.shape)}")
            image_tokens = image_tokens * (~drop_condition).to(image_tokens.dtype)[:, None, None]
        if target is not None:
            _check_cube_tensor("target", target, self.config, batch_size)
        velocity = self._velocity(sample, timestep, image_tokens)
        loss = F.mse_loss(velocity, target) if target is not None else None
        output = CupidFlowOutput(loss=loss, velocity=velocity)
        return output if return_dict else output.to_tuple()

    # -- training and sampling ------------------------------------------------------------------------------------

    def flow_matching_loss(self, cube: torch.Tensor, pixel_values: torch.Tensor | None = None,
                           encoder_hidden_states: torch.Tensor | None = None,
                           generator: torch.Generator | None = None, forward=None) -> torch.Tensor:
        """One training loss on clean normalised cubes ``(B, C, R, R, R)``: logit-normal times, Gaussian noise, the
        condition dropped with probability ``condition_dropout_prob``, MSE to the rectified-flow velocity.
        ``forward`` runs the network (default: this model); pass its DDP wrapper (what ``accelerator.prepare``
        returned) so that the gradients synchronise across processes."""
        _check_cube_tensor("cube", cube, self.config)
        batch_size, config = cube.shape[0], self.config
        t = sample_logit_normal_timesteps(batch_size, config.logit_normal_mean, config.logit_normal_std,
                                          generator=generator).to(cube.device)
        noise = torch.randn(cube.shape, generator=generator, dtype=cube.dtype).to(cube.device)
        drop = (torch.rand(batch_size, generator=generator) < config.condition_dropout_prob).to(cube.device)
        return (forward or self)(sample=interpolate_flow_path(cube, noise, t, config.sigma_min),
                                 timestep=t.to(cube.dtype), pixel_values=pixel_values, encoder_hidden_states=encoder_hidden_states, drop_condition=drop,
                    target=flow_matching_target(cube, noise, config.sigma_min), return_dict=True).loss

    def guided_velocity(self, sample: torch.Tensor, timestep: torch.Tensor, image_tokens: torch.Tensor,
                        guidance_scale: float, guidance_interval: tuple[float, float]) -> torch.Tensor:
        """``v̂ = v_u + g·(v_c − v_u)`` where every sample's time lies in ``guidance_interval`` (inclusive) and
        ``g ≠ 1``, else the conditional velocity ``v_c`` alone (TRELLIS's interval guidance; ``image_tokens`` are
        encoder tokens, the null condition is zeros). ``timestep`` ``(B,)`` is shared by the batch in sampling."""
        conditional = self(sample=sample, timestep=timestep, encoder_hidden_states=image_tokens,
                           return_dict=True).velocity
        low, high = guidance_interval
        inside = bool(((timestep >= low) & (timestep <= high)).all())
        if guidance_scale == 1 or not inside:
            return conditional
        unconditional = self(sample=sample, timestep=timestep, encoder_hidden_states=torch.zeros_like(image_tokens),
                             return_dict=True).velocity
        return unconditional + guidance_scale * (conditional - unconditional)

    def make_scheduler(self) -> FlowMatchEulerDiscreteScheduler:
        """diffusers' Euler flow scheduler with TRELLIS's time warp (``shift = time_shift``). It matches the
        sampler of spec §2.2 when given the grid ``linspace(1, 0, S + 1)`` (`sample` does this): its default grid
        ends at ``1/1000`` instead of 0. It knows nothing of the guidance interval or of σ_min (the path's
        ``σ_min = 1e-5`` offset is below the sampler's resolution and is ignored there), both handled in `sample`."""
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=self.config.time_shift)

    @torch.no_grad()
    def sample(self, pixel_values: torch.Tensor | None = None, encoder_hidden_states: torch.Tensor | None = None,
               num_inference_steps: int = 25, guidance_scale: float | None = None,
               guidance_interval: tuple[float, float] | None = None, generator: torch.Generator | None = None,
               latents: torch.Tensor | None = None) -> torch.Tensor:
        """Euler sampling of normalised cubes ``(B, C, R, R, R)`` given images (or their tokens): ``x_{t'} = x_t −
        (t − t')·v̂`` on the shifted grid, with interval classifier-free guidance (defaults from the config).
        `whitebox_hf.models.cupid.uv_cube.denormalize_cube` then `camera_from_uv_cube` give the camera."""
        check_positive_int("num_inference_steps", num_inference_steps)
        guidance_scale = self.config.guidance_scale if guidance_scale is None else guidance_scale
        if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)) or guidance_scale < 1:
            raise ValueError(f"`guidance_scale` must be a number >= 1 (1 turns guidance off), got {guidance_scale!r}")
        guidance_interval = tuple(self.config.guidance_interval if guidance_interval is None else guidance_interval)
        if len(guidance_interval) != 2 or not 0 <= guidance_interval[0] <= guidance_interval[1] <= 1:
            raise ValueError(f"`guidance_interval` must be (t_low, t_high) with 0 <= t_low <= t_high <= 1, got "
                             f"{guidance_interval!r}")
        reference = pixel_values if pixel_values is not None else encoder_hidden_states
        if reference is None:
            raise ValueError("pass exactly one of `pixel_values` and `encoder_hidden_states`")
        batch_size = reference.shape[0]
        image_tokens = self._condition(pixel_values, encoder_hidden_states, batch_size)
        resolution, dtype = self.config.cube_resolution, self.dtype
        shape = (batch_size, self.config.cube_channels, resolution, resolution, resolution)
        if latents is None:
            latents = torch.randn(shape, generator=generator, dtype=dtype).to(self.device)
        else:
            _check_cube_tensor("latents", latents, self.config, batch_size)
        scheduler = self.make_scheduler()
        scheduler.set_timesteps(sigmas=torch.linspace(1, 0, num_inference_steps + 1)[:-1].numpy(),
                                device=self.device)
        for timestep in scheduler.timesteps:
            t = (timestep / scheduler.config.num_train_timesteps).expand(batch_size).to(dtype)
            velocity = self.guided_velocity(latents, t, image_tokens, guidance_scale, guidance_interval)
            latents = scheduler.step(velocity, timestep, latents).prev_sample
        return latents
