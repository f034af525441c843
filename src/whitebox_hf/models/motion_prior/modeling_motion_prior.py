"""PyTorch EgoAllo motion prior: an encoder-decoder transformer that predicts clean body motion x₀ from a noisy one
and the head trajectory (spec threed_and_motion.md §3.1-3.4; brentyi/egoallo ``network.py``, ``training_loss.py``,
``sampling.py``).

    head poses (B, T, 4, 4) ─head features (Table 8.15 variant) → Fourier → Linear→ condition tokens
    noise level t ─Embedding → Linear→ one token, prepended to both streams
    [noise ‖ condition] ─[self-attn, FF] × N_enc→ memory
    noisy motion [body 21·9 ‖ contacts 4] ─per-modality MLPs, summed→ motion tokens
    [noise ‖ motion] ─[self-attn, cross-attn(memory), FF] × N_dec→ per-modality MLP decoders → x̂₀ (B, T, 193)

Rotary embeddings of the frame index (diffusers' ``get_1d_rotary_pos_embed`` / ``apply_rotary_emb``) give every
attention its positions. Module functions: the training loss (`motion_prior_loss`, the terms separately), the
schedulers (`motion_prior_scheduler`), the pelvis placement from the head (`place_root_from_head`) and the DDIM
sampler (`sample_motion`), which projects each x̂₀'s rotations onto SO(3) (never done in training).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.models.embeddings import apply_rotary_emb, get_1d_rotary_pos_embed
from diffusers.utils.torch_utils import randn_tensor
from torch import nn
from torch.nn import functional as F
from transformers import initialization as init
from transformers.utils import ModelOutput

from ...data.motion import CPF_OFFSET, CPF_ROTATION, HEAD_INDEX, JOINT_PARENTS
from ...data.motion_kinematics import check_parents, forward_kinematics, project_to_so3
from ...utils.validation import (
    check_binary_mask,
    check_finite_tensor,
    check_floating_tensor,
    check_positive_int,
    check_tensor,
)
from ..modeling_utils import WhiteboxPreTrainedModel
from .configuration_motion_prior import MotionPriorConfig
from .head_conditioning import check_head_poses, fourier_encode, head_condition_features

__all__ = [
    "MotionPriorModel",
    "MotionPriorOutput",
    "MotionPriorPreTrainedModel",
    "MotionSample",
    "egoallo_timesteps",
    "motion_prior_loss",
    "motion_prior_training_loss",
    "motion_prior_scheduler",
    "noise_level_weights",
    "pack_motion",
    "place_root_from_head",
    "sample_motion",
    "unpack_motion",
]


def pack_motion(body_rotations: torch.Tensor, contacts: torch.Tensor) -> torch.Tensor:
    """``(B, T, J, 3, 3)`` or ``(B, T, J, 9)`` body rotations and ``(B, T, C)`` contacts (float 0/1 or bool) ->
    the ``(B, T, J·9 + C)`` vector the model denoises. For windows of `whitebox_hf.data.load_motion`:
    ``pack_motion(local_rotations[:, :, 1:], contacts)`` (joint 0, the pelvis, is placed from the head)."""
    check_tensor("body_rotations", body_rotations)
    check_floating_tensor("body_rotations", body_rotations)
    if body_rotations.ndim == 5 and tuple(body_rotations.shape[-2:]) == (3, 3):
        body_rotations = body_rotations.flatten(-2)
    if body_rotations.ndim != 4 or body_rotations.shape[-1] != 9:
        raise ValueError(f"`body_rotations` must have shape (B, T, J, 3, 3) or (B, T, J, 9), got "
                         f"{tuple(body_rotations.shape)}")
    check_tensor("contacts", contacts, ndim=3, shape_doc="(B, T, C)")
    if tuple(contacts.shape[:2]) != tuple(body_rotations.shape[:2]):
        raise ValueError(f"`contacts` must have the (B, T) of `body_rotations` {tuple(body_rotations.shape[:2])}, "
                         f"got {tuple(contacts.shape)}")
    if contacts.dtype == torch.bool:
        contacts = contacts.to(body_rotations.dtype)  # labels: False/True are exactly 0/1
    check_floating_tensor("contacts", contacts)
    return torch.cat([body_rotations.flatten(-2), contacts.to(body_rotations.dtype)], dim=-1)


def unpack_motion(motion: torch.Tensor, config: MotionPriorConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, T, motion_size)`` -> ``(body_rotations (B, T, J, 3, 3), contacts (B, T, C))`` (rotations unprojected)."""
    _check_motion("motion", motion, config)
    body = motion[..., : config.num_body_joints * 9]
    return body.reshape(*motion.shape[:2], config.num_body_joints, 3, 3), motion[..., config.num_body_joints * 9:]


def _check_motion(name: str, value, config: MotionPriorConfig, shape: tuple | None = None) -> None:
    shape_doc = f"(batch, frames, {config.motion_size})"
    check_tensor(name, value, ndim=3, shape_doc=shape_doc)
    check_floating_tensor(name, value)
    if value.shape[-1] != config.motion_size:
        raise ValueError(f"`{name}` must have shape {shape_doc} (body {config.num_body_joints}·9 + contacts "
                         f"{config.num_contacts}), got {tuple(value.shape)}")
    if shape is not None and tuple(value.shape) != shape:
        raise ValueError(f"`{name}` must have shape {shape} (that of `sample`), got {tuple(value.shape)}")
    check_finite_tensor(name, value)


@dataclass
class MotionPriorOutput(ModelOutput):
    """Output of `MotionPriorModel`.

    Args:
        sample (`torch.FloatTensor` of shape `(batch, frames, motion_size)`):
            The predicted clean motion x̂₀, ``[body rotations (9 per joint, unprojected) ‖ contacts]``.
        loss (`torch.FloatTensor`, *optional*):
            `motion_prior_loss`'s total, when a ``target`` is given.
    """

    sample: torch.FloatTensor | None = None
    loss: torch.FloatTensor | None = None


class _MLP(nn.Sequential):
    """``layers`` linear maps with GELU between them (a modality's encoder or decoder, spec §3.3)."""

    def __init__(self, in_features: int, hidden: int, out_features: int, layers: int):
        widths = [in_features] + [hidden] * (layers - 1) + [out_features]
        modules: list[nn.Module] = []
        for index, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:])):
            if index:
                modules.append(nn.GELU())
            modules.append(nn.Linear(width_in, width_out))
        super().__init__(*modules)


class _Attention(nn.Module):
    def __init__(self, config: MotionPriorConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.output = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = config.dropout

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

    def forward(self, hidden_states, context, rotary, key_mask):
        query, key = self._heads(self.query(hidden_states)), self._heads(self.key(context))
        # Both streams are indexed by the same frame positions, so queries and keys share the rotary table.
        query, key = apply_rotary_emb(query, rotary), apply_rotary_emb(key, rotary)
        attended = F.scaled_dot_product_attention(query, key, self._heads(self.value(context)),
                                                  attn_mask=key_mask[:, None, None, :],
                                                  dropout_p=self.dropout if self.training else 0.0)
        return self.output(attended.transpose(1, 2).flatten(-2))


class _FeedForward(nn.Sequential):
    def __init__(self, config: MotionPriorConfig):
        super().__init__(nn.Linear(config.hidden_size, config.intermediate_size), nn.GELU(),
                         nn.Dropout(config.dropout), nn.Linear(config.intermediate_size, config.hidden_size))


class MotionPriorEncoderLayer(nn.Module):
    """Pre-LN self-attention + feed-forward over the condition tokens."""

    def __init__(self, config: MotionPriorConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attention = _Attention(config)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = _FeedForward(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, hidden_states, rotary, key_mask):
        normed = self.norm1(hidden_states)
        hidden_states = hidden_states + self.dropout(self.self_attention(normed, normed, rotary, key_mask))
        return hidden_states + self.dropout(self.feed_forward(self.norm2(hidden_states)))


class MotionPriorDecoderLayer(nn.Module):
    """Pre-LN self-attention, cross-attention to the encoder output, feed-forward over the motion tokens."""

    def __init__(self, config: MotionPriorConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attention = _Attention(config)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.cross_attention = _Attention(config)
        self.norm3 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = _FeedForward(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, hidden_states, memory, rotary, key_mask):
        normed = self.norm1(hidden_states)
        hidden_states = hidden_states + self.dropout(self.self_attention(normed, normed, rotary, key_mask))
        hidden_states = hidden_states + self.dropout(self.cross_attention(self.norm2(hidden_states), memory, rotary,
                                                                          key_mask))
        return hidden_states + self.dropout(self.feed_forward(self.norm3(hidden_states)))


class MotionPriorPreTrainedModel(WhiteboxPreTrainedModel):
    config: MotionPriorConfig
    config_class = MotionPriorConfig
    base_model_prefix = "motion_prior"
    main_input_name = "sample"
    _no_split_modules = ["MotionPriorEncoderLayer", "MotionPriorDecoderLayer"]

    @torch.no_grad()
    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        else:
            super()._init_weights(module)


class MotionPriorModel(MotionPriorPreTrainedModel):
    """EgoAllo's motion prior (see `MotionPriorConfig`): predicts the clean motion x̂₀ of a noisy motion window
    given the head poses of the same frames."""

    def __init__(self, config: MotionPriorConfig):
        super().__init__(config)
        hidden, layers = config.hidden_size, config.modality_mlp_layers
        body_size = config.num_body_joints * 9
        self.condition_projection = nn.Linear(config.condition_size, hidden)
        self.noise_embedding = nn.Embedding(config.num_train_timesteps, config.noise_embedding_dim)
        self.noise_projection = nn.Linear(config.noise_embedding_dim, hidden)
        self.body_encoder = _MLP(body_size, hidden, hidden, layers)
        self.contacts_encoder = _MLP(config.num_contacts, hidden, hidden, layers)
        self.encoder_layers = nn.ModuleList(MotionPriorEncoderLayer(config) for _ in range(config.num_encoder_layers))
        self.encoder_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.decoder_layers = nn.ModuleList(MotionPriorDecoderLayer(config) for _ in range(config.num_decoder_layers))
        self.decoder_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.body_decoder = _MLP(hidden, hidden, body_size, layers)
        self.contacts_decoder = _MLP(hidden, hidden, config.num_contacts, layers)
        self.post_init()

    def _check_inputs(self, sample, timestep, head_poses, floor_height, attention_mask) -> None:
        _check_motion("sample", sample, self.config)
        batch, frames = sample.shape[:2]
        check_tensor("timestep", timestep, ndim=1, shape_doc=f"({batch},)")
        if timestep.dtype not in (torch.int32, torch.int64) or timestep.shape[0] != batch:
            raise ValueError(f"`timestep` must be an integer tensor of shape ({batch},) (one step per sequence), got "
                             f"{timestep.dtype} {tuple(timestep.shape)}")
        if not torch.compiler.is_compiling() and bool(
                ((timestep < 0) | (timestep >= self.config.num_train_timesteps)).any()):
            raise ValueError(f"`timestep` must lie in [0, {self.config.num_train_timesteps}) (diffusers' indexing), "
                             f"got values in [{timestep.min().item()}, {timestep.max().item()}]")
        check_head_poses(head_poses, floor_height)
        if tuple(head_poses.shape[:2]) != (batch, frames):
            raise ValueError(f"`head_poses` must have shape ({batch}, {frames}, 4, 4), one pose per frame of "
                             f"`sample`, got {tuple(head_poses.shape)}")
        if attention_mask is not None:
            check_tensor("attention_mask", attention_mask, ndim=2, shape_doc=f"({batch}, {frames})")
            if tuple(attention_mask.shape) != (batch, frames):
                raise ValueError(f"`attention_mask` must have shape ({batch}, {frames}), got "
                                 f"{tuple(attention_mask.shape)}")
            check_binary_mask("attention_mask", attention_mask)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, head_poses: torch.Tensor,
                floor_height: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                target: torch.Tensor | None = None, return_dict: bool | None = None) -> MotionPriorOutput | tuple:
        r"""
        Args:
            sample (`torch.FloatTensor` of shape `(batch, frames, motion_size)`):
                The noisy motion x_t (`pack_motion`).
            timestep (`torch.LongTensor` of shape `(batch,)`):
                Diffusion step of each sequence, in ``[0, num_train_timesteps)`` (diffusers' indexing; EgoAllo's
                ``t − 1``).
            head_poses (`torch.FloatTensor` of shape `(batch, frames, 4, 4)`):
                World poses of the head (CPF) frame, rigid, +Z up; at least 2 frames.
            floor_height (`torch.FloatTensor` of shape `(batch,)`, *optional*):
                The floor's z, subtracted from the head heights (None: the floor is at z = 0).
            attention_mask (`torch.Tensor` of shape `(batch, frames)`, *optional*):
                1 for real frames, 0 for padding (masked out of every attention's keys).
            target (`torch.FloatTensor` of shape `(batch, frames, motion_size)`, *optional*):
                The clean motion x₀; with it ``loss`` is `motion_prior_loss`'s total.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        self._check_inputs(sample, timestep, head_poses, floor_height, attention_mask)
        config = self.config
        batch, frames = sample.shape[:2]
        condition = fourier_encode(head_condition_features(head_poses, config.head_conditioning, floor_height)
                                   .to(sample.dtype), config.num_fourier_frequencies)
        noise_token = self.noise_projection(self.noise_embedding(timestep))[:, None]
        condition_tokens = torch.cat([noise_token, self.condition_projection(condition)], dim=1)
        body_size = config.num_body_joints * 9
        motion_tokens = self.body_encoder(sample[..., :body_size]) + self.contacts_encoder(sample[..., body_size:])
        motion_tokens = torch.cat([noise_token, motion_tokens], dim=1)

        head_dim = config.hidden_size // config.num_attention_heads
        cos, sin = get_1d_rotary_pos_embed(head_dim, frames + 1, theta=config.rope_theta, use_real=True)
        rotary = (cos.to(sample.device, sample.dtype), sin.to(sample.device, sample.dtype))
        valid = torch.ones(batch, frames, dtype=torch.bool, device=sample.device)
        if attention_mask is not None:
            valid = attention_mask.to(torch.bool)
        key_mask = torch.cat([torch.ones_like(valid[:, :1]), valid], dim=1)  # the noise token is always a key

        for layer in self.encoder_layers:
            condition_tokens = layer(condition_tokens, rotary, key_mask)
        memory = self.encoder_norm(condition_tokens)
        for layer in self.decoder_layers:
            motion_tokens = layer(motion_tokens, memory, rotary, key_mask)
        motion_tokens = self.decoder_norm(motion_tokens)[:, 1:]
        predicted = torch.cat([self.body_decoder(motion_tokens), self.contacts_decoder(motion_tokens)], dim=-1)

        loss = None
        if target is not None:
            _check_motion("target", target, config, tuple(sample.shape))
            alphas_cumprod = motion_prior_scheduler(config).alphas_cumprod.to(sample.device)
            loss = motion_prior_loss(predicted, target, timestep, alphas_cumprod, config, attention_mask)["loss"]
        if not return_dict:
            return (predicted,) if loss is None else (predicted, loss)
        return MotionPriorOutput(sample=predicted, loss=loss)


def motion_prior_scheduler(config: MotionPriorConfig, kind: str = "ddpm") -> DDPMScheduler | DDIMScheduler:
    """The schedule of spec §3.4 as a diffusers scheduler: cosine ᾱ (``squaredcos_cap_v2``), x₀ prediction, no
    clipping. ``kind="ddpm"`` for training (``add_noise``), ``"ddim"`` for sampling (trailing spacing, so the first
    step starts from pure noise at t = T − 1 as EgoAllo's schedule starts at 1000)."""
    common = dict(num_train_timesteps=config.num_train_timesteps, beta_schedule="squaredcos_cap_v2",
                  prediction_type="sample", clip_sample=False)
    if kind == "ddpm":
        return DDPMScheduler(**common)
    if kind == "ddim":
        return DDIMScheduler(**common, timestep_spacing="trailing", set_alpha_to_one=True)
    raise ValueError(f"`kind` must be 'ddpm' or 'ddim', got {kind!r}")


def noise_level_weights(alphas_cumprod: torch.Tensor, min_weight: float = 0.01) -> torch.Tensor:
    """Per-step loss weights (spec §3.4): ``w_t = ᾱ_t / (1 − ᾱ_t)`` divided by its value at the first step (the
    largest: ᾱ decreases), then mapped linearly onto ``[min_weight, 1]`` as ``min_weight + (1 − min_weight)·w``.
    The x₀ loss so weighted behaves like an ε-prediction loss at low noise without vanishing at high noise."""
    check_tensor("alphas_cumprod", alphas_cumprod, ndim=1, shape_doc="(num_train_timesteps,)")
    check_floating_tensor("alphas_cumprod", alphas_cumprod)
    if not 0 < min_weight <= 1:
        raise ValueError(f"`min_weight` must be in (0, 1], got {min_weight!r}")
    snr = alphas_cumprod / (1 - alphas_cumprod)
    return min_weight + (1 - min_weight) * (snr / snr[0]).clamp(0, 1)


def motion_prior_loss(predicted: torch.Tensor, target: torch.Tensor, timestep: torch.Tensor,
                      alphas_cumprod: torch.Tensor, config: MotionPriorConfig,
                      attention_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """EgoAllo's x₀ loss (spec §3.4), its terms separately.

    Returns ``{"body", "contacts", "loss"}``: per modality the squared error averaged over its channels and the
    (unmasked) frames of each sequence, then over the batch weighted by `noise_level_weights` at ``timestep``;
    ``loss = body_loss_weight·body + contacts_loss_weight·contacts``.
    """
    _check_motion("predicted", predicted, config)
    _check_motion("target", target, config, tuple(predicted.shape))
    batch, frames = predicted.shape[:2]
    check_tensor("timestep", timestep, ndim=1, shape_doc=f"({batch},)")
    if timestep.shape[0] != batch or timestep.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"`timestep` must be an integer tensor of shape ({batch},), got {timestep.dtype} "
                         f"{tuple(timestep.shape)}")
    weights = noise_level_weights(alphas_cumprod, config.min_noise_weight)[timestep].to(predicted.dtype)
    if attention_mask is None:
        mask = torch.ones(batch, frames, dtype=predicted.dtype, device=predicted.device)
    else:
        check_tensor("attention_mask", attention_mask, ndim=2, shape_doc=f"({batch}, {frames})")
        if tuple(attention_mask.shape) != (batch, frames):
            raise ValueError(f"`attention_mask` must have shape ({batch}, {frames}), got "
                             f"{tuple(attention_mask.shape)}")
        check_binary_mask("attention_mask", attention_mask)
        mask = attention_mask.to(predicted.dtype)
    body_size = config.num_body_joints * 9
    squared = (predicted - target) ** 2
    terms = {}
    for name, part in (("body", squared[..., :body_size]), ("contacts", squared[..., body_size:])):
        per_sequence = (part.mean(-1) * mask).sum(-1) / mask.sum(-1).clamp_min(1)
        terms[name] = (weights * per_sequence).mean()
    terms["loss"] = config.body_loss_weight * terms["body"] + config.contacts_loss_weight * terms["contacts"]
    return terms


def motion_prior_training_loss(model: MotionPriorModel, clean: torch.Tensor, head_poses: torch.Tensor,
                               floor_height: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                               generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """One training evaluation of spec §3.4: t uniform in ``[0, num_train_timesteps)`` per sequence, x_t from
    `motion_prior_scheduler`'s ``add_noise``, the model's x̂₀, and `motion_prior_loss`'s terms (``"loss"`` is the
    one to back-propagate). No SO(3) projection: training sees the raw 9D prediction."""
    config = model.config
    _check_motion("clean", clean, config)
    batch = clean.shape[0]
    scheduler = motion_prior_scheduler(config)
    timestep = torch.randint(0, config.num_train_timesteps, (batch,), generator=generator).to(clean.device)
    noise = torch.randn(clean.shape, generator=generator, dtype=clean.dtype).to(clean.device)
    noisy = scheduler.add_noise(clean, noise, timestep)
    predicted = model(noisy, timestep, head_poses, floor_height, attention_mask).sample
    return motion_prior_loss(predicted, clean, timestep, scheduler.alphas_cumprod.to(clean.device), config,
                             attention_mask)


def place_root_from_head(body_rotations: torch.Tensor, offsets: torch.Tensor, head_poses: torch.Tensor,
                         parents=JOINT_PARENTS, head_index: int = HEAD_INDEX, cpf_offset=CPF_OFFSET,
                         cpf_rotation=CPF_ROTATION) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pose the skeleton so that its head (CPF) frame coincides with the observed head pose (EgoAllo's root
    placement, spec §3.1; the CPF is ``cpf_offset``, ``cpf_rotation`` in the head joint's frame as in
    `whitebox_hf.data.motion`).

    Args:
        body_rotations: (B, T, J-1, 3, 3) local rotations of the joints after the root.
        offsets: (J, 3) or (B, J, 3) bone offsets of each sequence's skeleton.
        head_poses: (B, T, 4, 4) world head poses.

    Returns:
        ``(local_rotations (B, T, J, 3, 3), root_translation (B, T, 3), positions (B, T, J, 3))`` in the
        conventions of `forward_kinematics` (joint 0's local rotation is the pelvis's world orientation).
    """
    check_tensor("body_rotations", body_rotations, ndim=5, shape_doc="(B, T, J-1, 3, 3)")
    check_floating_tensor("body_rotations", body_rotations)
    check_finite_tensor("body_rotations", body_rotations)
    batch, frames, num_body = body_rotations.shape[:3]
    parents = check_parents("parents", parents, num_body + 1)
    check_head_poses(head_poses)
    if tuple(head_poses.shape[:2]) != (batch, frames) or head_poses.dtype != body_rotations.dtype:
        raise ValueError(f"`head_poses` must have shape ({batch}, {frames}, 4, 4) and dtype {body_rotations.dtype}, "
                         f"got {tuple(head_poses.shape)} {head_poses.dtype}")
    check_tensor("offsets", offsets)
    if offsets.ndim == 2:
        offsets = offsets.expand(batch, -1, -1)
    if tuple(offsets.shape) != (batch, num_body + 1, 3):
        raise ValueError(f"`offsets` must have shape ({num_body + 1}, 3) or ({batch}, {num_body + 1}, 3), got "
                         f"{tuple(offsets.shape)}")
    offsets = offsets[:, None].to(body_rotations.dtype)
    dtype, device = body_rotations.dtype, body_rotations.device
    cpf_t = torch.as_tensor(cpf_offset, dtype=dtype, device=device)
    cpf_r = torch.as_tensor(cpf_rotation, dtype=dtype, device=device)
    identity = torch.eye(3, dtype=dtype, device=device).expand(batch, frames, 1, 3, 3)
    zeros = torch.zeros(batch, frames, 3, dtype=dtype, device=device)
    # The body with an identity root at the origin, and its CPF in that frame.
    local = torch.cat([identity, body_rotations], dim=2)
    rotations, positions = forward_kinematics(local, offsets, parents, zeros)
    head_rotation = rotations[:, :, head_index]
    cpf_rotation_body = head_rotation @ cpf_r
    cpf_position_body = positions[:, :, head_index] + (head_rotation @ cpf_t[:, None])[..., 0]
    # T_world_body = T_world_cpf · T_body_cpf⁻¹.
    root_rotation = head_poses[..., :3, :3] @ cpf_rotation_body.transpose(-1, -2)
    body_origin = head_poses[..., :3, 3] - (root_rotation @ cpf_position_body[..., None])[..., 0]
    # forward_kinematics puts joint 0 at root_translation + offsets[0] and rotates only the children's offsets.
    root_offset = offsets[:, :, 0]
    root_translation = body_origin - root_offset + (root_rotation @ root_offset[..., None])[..., 0]
    local = torch.cat([root_rotation[:, :, None], body_rotations], dim=2)
    _, positions = forward_kinematics(local, offsets, parents, root_translation)
    return local, root_translation, positions


@dataclass
class MotionSample(ModelOutput):
    """Output of `sample_motion`.

    Args:
        local_rotations (`(batch, frames, J, 3, 3)`): rotations in SO(3); joint 0's is the pelvis's world
            orientation, placed from the head.
        root_translation (`(batch, frames, 3)`): the `forward_kinematics` root translation.
        positions (`(batch, frames, J, 3)`): world joint positions.
        contacts (`(batch, frames, num_contacts)`): the sampled contact values (≈ 0/1; threshold at 0.5).
        motion (`(batch, frames, motion_size)`): the final x̂₀ with projected rotations.
    """

    local_rotations: torch.FloatTensor | None = None
    root_translation: torch.FloatTensor | None = None
    positions: torch.FloatTensor | None = None
    contacts: torch.FloatTensor | None = None
    motion: torch.FloatTensor | None = None


def _project_motion(motion: torch.Tensor, config: MotionPriorConfig) -> torch.Tensor:
    body, contacts = unpack_motion(motion, config)
    return pack_motion(project_to_so3(body), contacts)


def egoallo_timesteps(num_inference_steps: int = 30, num_train_timesteps: int = 1000) -> list[int]:
    """EgoAllo's sampling times in its 1-based indexing (spec §3.4): ``k²`` for k = n..0 with the top value replaced
    by ``T``, so n = 30, T = 1000 gives 1000, 841, 784, …, 4, 1, 0 (n steps). Needs ``n² ≤ T``."""
    check_positive_int("num_inference_steps", num_inference_steps)
    check_positive_int("num_train_timesteps", num_train_timesteps)
    if num_inference_steps**2 > num_train_timesteps:
        raise ValueError(f"`num_inference_steps` ({num_inference_steps}) squared must not exceed "
                         f"`num_train_timesteps` ({num_train_timesteps}) for EgoAllo's k² schedule")
    return [num_train_timesteps] + [k * k for k in range(num_inference_steps - 1, -1, -1)]


def _egoallo_step(clean, sample, t: int, t_next: int, alphas_cumprod, eta: float, quirk: bool, generator):
    """EgoAllo's update from 1-based time t to t' (spec §3.4): ``x_t' = √ᾱ_t'·x̂₀ + √(1 − ᾱ_t' − σ²)·ε̂ + σ·z`` with
    ``ε̂ = (x_t − √ᾱ_t·x̂₀)/√(1 − ᾱ_t [+ 0.1 with the quirk])`` and ``σ = eta·√((1 − ᾱ_{t−1})/(1 − ᾱ_t)·(1 − α_t))``,
    the one-step α_t = ᾱ_t/ᾱ_{t−1} as in the authors' code (ᾱ_0 = 1)."""
    def alpha_bar(index: int) -> torch.Tensor:
        return alphas_cumprod.new_tensor(1.0) if index == 0 else alphas_cumprod[index - 1]

    a_t, a_next, a_previous = alpha_bar(t), alpha_bar(t_next), alpha_bar(t - 1)
    sigma = eta * torch.sqrt((1 - a_previous) / (1 - a_t) * (1 - a_t / a_previous))
    epsilon = (sample - a_t.sqrt() * clean) / torch.sqrt(1 - a_t + (0.1 if quirk else 0.0))
    # diffusers' randn_tensor draws on the generator's device: a CPU generator also serves a model on an accelerator.
    noise = randn_tensor(sample.shape, generator=generator, dtype=sample.dtype, device=sample.device)
    direction = torch.sqrt((1 - a_next - sigma**2).clamp_min(0))
    return a_next.sqrt() * clean + direction * epsilon + (sigma * noise if t_next > 0 else 0)


def _check_sampler_arguments(num_inference_steps: int, eta: float, schedule: str, egoallo_quirk: bool) -> None:
    """The checks of `sample_motion`'s and `sample_motion_windowed`'s sampler settings (``eta`` in [0, 1], a known
    ``schedule``, a bool ``egoallo_quirk``).

    Raises:
        ValueError: an argument out of its range or of the wrong type.
    """
    check_positive_int("num_inference_steps", num_inference_steps)
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0 <= eta <= 1:
        raise ValueError(f"`eta` must be a number in [0, 1], got {eta!r}")
    if schedule not in ("ddim", "egoallo"):
        raise ValueError(f"`schedule` must be 'ddim' or 'egoallo', got {schedule!r}")
    if not isinstance(egoallo_quirk, bool):
        raise ValueError(f"`egoallo_quirk` must be a bool, got {egoallo_quirk!r}")


@torch.no_grad()
def sample_motion(model: MotionPriorModel, head_poses: torch.Tensor, offsets: torch.Tensor,
                  num_inference_steps: int = 30, eta: float = 0.8, floor_height: torch.Tensor | None = None,
                  generator: torch.Generator | None = None, schedule: str = "ddim",
                  egoallo_quirk: bool = False) -> MotionSample:
    """Body motion for head trajectories ``head_poses`` (B, T, 4, 4) on skeletons ``offsets`` ((J, 3) or
    (B, J, 3)), from pure noise over ``num_inference_steps`` (spec §3.4: 30) steps, each x̂₀'s rotations projected
    onto SO(3) by SVD before the update (EgoAllo's sampler; training never projects). ``eta`` scales the update's
    noise (EgoAllo: 0.8).

    ``schedule="ddim"`` is diffusers' `DDIMScheduler` (trailing spacing from t = T − 1, the standard DDIM update).
    ``schedule="egoallo"`` is the authors' sampler: the times of `egoallo_timesteps` and their update
    (`_egoallo_step`), with the ``+0.1`` in the ε̂ denominator (a code quirk, spec §3.4) only when
    ``egoallo_quirk``. The last x̂₀ gives the rotations; the pelvis is placed from the head
    (`place_root_from_head`) and forward kinematics gives the joints."""
    config = model.config
    _check_sampler_arguments(num_inference_steps, eta, schedule, egoallo_quirk)
    check_head_poses(head_poses, floor_height)
    batch, frames = head_poses.shape[:2]
    parameter = next(model.parameters())
    motion = randn_tensor((batch, frames, config.motion_size), generator=generator, dtype=parameter.dtype,
                          device=parameter.device)
    head = head_poses.to(parameter.dtype)
    floor = None if floor_height is None else floor_height.to(parameter.dtype)

    def denoise(step: int) -> torch.Tensor:
        timestep = torch.full((batch,), step, dtype=torch.long, device=parameter.device)
        return _project_motion(model(motion, timestep, head, floor).sample, config)

    scheduler = motion_prior_scheduler(config, "ddim")
    if schedule == "ddim":
        scheduler.set_timesteps(num_inference_steps, device=parameter.device)
        for step in scheduler.timesteps:
            clean = denoise(int(step))
            motion = scheduler.step(clean, step, motion, eta=eta, generator=generator).prev_sample
    else:
        times = egoallo_timesteps(num_inference_steps, config.num_train_timesteps)
        alphas_cumprod = scheduler.alphas_cumprod.to(parameter.device, parameter.dtype)
        for t, t_next in zip(times[:-1], times[1:]):
            clean = denoise(t - 1)  # the network's index of 1-based time t (EgoAllo's Embedding[t − 1])
            motion = _egoallo_step(clean, motion, t, t_next, alphas_cumprod, eta, egoallo_quirk, generator)
    body, contacts = unpack_motion(clean, config)
    local_rotations, root_translation, positions = place_root_from_head(body, offsets.to(parameter.dtype), head)
    return MotionSample(local_rotations=local_rotations, root_translation=root_translation, positions=positions,
                        contacts=contacts, motion=clean)
