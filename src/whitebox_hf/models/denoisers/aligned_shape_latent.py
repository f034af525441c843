"""`AlignedShapeLatentDenoiser`: Michelangelo's ASLDM (book §8.8; spec ``threed_and_motion.md`` §1.4), the
ε-predictor of diffusion in the SITA-VAE's local-latent space, conditioned on text or image tokens.

Layout (``conditioning="in_context"``, the one that matches the released weights)::

    t token   = MLP(sinusoid(t))                                   (B, 1, w)
    condition = Linear(LN(c))                                      (B, Lc, w)
    latents   = Linear(z)                                          (B, L, w)
    x = [t; condition; latents]
    encoder:  x ← block_i(x), pushing each output                  i = 1..num_layers
    middle:   x ← block(x)
    decoder:  x ← block_j(LN(Linear([x, popped skip])))            j = 1..num_layers   (Linear: 2w → w)
    ε̂ = Linear(LN(x))[:, −L:]

With ``conditioning="cross_attention"`` the sequence is ``[t; latents]`` and every block attends to the projected
condition tokens after its self-attention (the unused alternative of the authors' repository).

``block_type="transformer"`` is a pre-LN transformer block (softmax attention + GELU MLP); ``block_type="crate"`` is
the white-box block of this package: compression by MSSA (`whitebox_hf.nn.MultiHeadSubspaceSelfAttention`, one
subspace basis ``U`` shared by query, key and value) then sparsification by one ISTA step (`whitebox_hf.nn.ISTA`),
both residual as in `CrateDenoiserBlock` (a replacing ISTA step would make the long skips the only path for the
latents). Its cross-attention variant uses the same subspace bases for the latent queries and the condition keys
(= values), i.e. MSSA's compression of the latents against the condition tokens.

Condition padding: ``encoder_attention_mask`` (``(B, Lc)``, 1 = keep) masks padded condition tokens as keys; they
still flow through the network as queries (in-context) but no other token reads them.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_outputs import Transformer2DModelOutput

# diffusers resolves a custom pipeline component by importing its module path and looking `ModelMixin` up in that
# module's namespace: this import must stay at module level.
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ...nn import ISTA, MultiHeadSubspaceSelfAttention, attend
from ...utils.validation import (
    check_binary_mask,
    check_finite_tensor,
    check_floating_tensor,
    check_positive_int,
    check_tensor,
)
from ..safe_loading import SafetensorsOnlyModelMixin

__all__ = ["CONDITIONING_MODES", "DENOISER_BLOCK_TYPES", "AlignedShapeLatentDenoiser"]

CONDITIONING_MODES = ("in_context", "cross_attention")
DENOISER_BLOCK_TYPES = ("transformer", "crate")
ATTENTION_BACKENDS = ("sdpa", "eager")


def _additive_key_mask(keep: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """``(B, N)`` 1 = keep → additive ``(B, 1, 1, N)`` mask (0 or the dtype's minimum) for `attend`."""
    if keep is None:
        return None
    return ((1.0 - keep.to(dtype)) * torch.finfo(dtype).min)[:, None, None, :]


class _SoftmaxAttention(nn.Module):
    """Multi-head attention with separate query / key / value projections (self-attention when ``context`` is
    None)."""

    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.output_projection = nn.Linear(hidden_size, hidden_size)

    def _heads(self, tensor: torch.Tensor) -> torch.Tensor:
        batch_size, num_tokens, _ = tensor.shape
        return tensor.view(batch_size, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, hidden_states, context=None, attention_mask=None, attn_implementation="sdpa"):
        context = hidden_states if context is None else context
        query, key, value = self._heads(self.query(hidden_states)), self._heads(self.key(context)), \
            self._heads(self.value(context))
        output, _ = attend(query, key, value, attention_mask, self.head_dim**-0.5, 0.0, False, attn_implementation,
                           False)
        batch_size, _, num_tokens, _ = query.shape
        return self.output_projection(output.transpose(1, 2).reshape(batch_size, num_tokens, -1))


class _SubspaceCrossAttention(nn.Module):
    """MSSA's operator with the keys (= values) taken from the condition tokens: ``U_kᵀ z`` queries against
    ``U_kᵀ c`` for the shared bases ``U_k`` of this module."""

    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.subspace_projection = nn.Linear(hidden_size, hidden_size, bias=False)
        self.output_projection = nn.Linear(hidden_size, hidden_size)

    def _coordinates(self, tensor: torch.Tensor) -> torch.Tensor:
        batch_size, num_tokens, _ = tensor.shape
        return self.subspace_projection(tensor).view(batch_size, num_tokens, self.num_heads,
                                                     self.head_dim).transpose(1, 2)

    def forward(self, hidden_states, context, attention_mask=None, attn_implementation="sdpa"):
        query, key = self._coordinates(hidden_states), self._coordinates(context)
        output, _ = attend(query, key, key, attention_mask, self.head_dim**-0.5, 0.0, False, attn_implementation,
                           False)
        batch_size, _, num_tokens, _ = query.shape
        return self.output_projection(output.transpose(1, 2).reshape(batch_size, num_tokens, -1))


class AlignedShapeLatentBlock(nn.Module):
    """One residual block: self-attention (softmax or MSSA), optional cross-attention to the condition, then an
    MLP (transformer) or one ISTA step (crate); every sub-layer is pre-LayerNorm and residual."""

    def __init__(self, hidden_size: int, num_heads: int, block_type: str, cross_attention: bool, mlp_ratio: float,
                 ista_step_size: float, ista_lambda: float, norm_eps: float):
        super().__init__()
        self.block_type = block_type
        self.attention_norm = nn.LayerNorm(hidden_size, eps=norm_eps)
        if block_type == "crate":
            self.attention = MultiHeadSubspaceSelfAttention(hidden_size, num_heads, hidden_size // num_heads)
        else:
            self.attention = _SoftmaxAttention(hidden_size, num_heads)
        self.cross_attention_norm = nn.LayerNorm(hidden_size, eps=norm_eps) if cross_attention else None
        if not cross_attention:
            self.cross_attention = None
        elif block_type == "crate":
            self.cross_attention = _SubspaceCrossAttention(hidden_size, num_heads)
        else:
            self.cross_attention = _SoftmaxAttention(hidden_size, num_heads)
        self.feed_forward_norm = nn.LayerNorm(hidden_size, eps=norm_eps)
        if block_type == "crate":
            self.feed_forward = ISTA(hidden_size, ista_step_size, ista_lambda)
        else:
            inner = int(hidden_size * mlp_ratio)
            self.feed_forward = nn.Sequential(nn.Linear(hidden_size, inner), nn.GELU(approximate="tanh"),
                                              nn.Linear(inner, hidden_size))

    def forward(self, hidden_states, self_mask=None, context=None, context_mask=None, attn_implementation="sdpa"):
        normed = self.attention_norm(hidden_states)
        if self.block_type == "crate":
            attended, _ = self.attention(normed, attention_mask=self_mask, attn_implementation=attn_implementation)
        else:
            attended = self.attention(normed, attention_mask=self_mask, attn_implementation=attn_implementation)
        hidden_states = hidden_states + attended
        if self.cross_attention is not None:
            hidden_states = hidden_states + self.cross_attention(
                self.cross_attention_norm(hidden_states), context, attention_mask=context_mask,
                attn_implementation=attn_implementation)
        return hidden_states + self.feed_forward(self.feed_forward_norm(hidden_states))


class AlignedShapeLatentDenoiser(SafetensorsOnlyModelMixin, ModelMixin, ConfigMixin):
    """ε-predictor on SITA-VAE latents ``(B, L, d₀)`` conditioned on condition tokens ``(B, Lc, d_c)`` (see the
    module docstring). Michelangelo's sizes: ``num_latents=256, latent_channels=64, hidden_size=768,
    num_attention_heads=12, num_layers=6`` (image) or ``8`` (text), ``condition_dim=1024`` (CLIP ViT-L/14 image
    tokens) or ``768`` (CLIP text).

    ``from_pretrained`` loads safetensors weights only (`SafetensorsOnlyModelMixin`).

    Args:
        num_latents (`int`, defaults to 256): number of latent tokens ``L`` (the SITA-VAE's ``num_latents``).
        latent_channels (`int`, defaults to 64): latent width ``d₀`` (the SITA-VAE's ``latent_channels``).
        condition_dim (`int`, defaults to 768): width of the condition tokens (384 for MiniLM text tokens, the
            CRATE image tower's ``hidden_size`` for image tokens).
        hidden_size (`int`, defaults to 768): token width ``w`` of the transformer.
        num_layers (`int`, defaults to 6): encoder blocks, and as many decoder blocks (plus one middle block).
        num_attention_heads (`int`, defaults to 12): attention heads (MSSA subspaces for ``block_type="crate"``);
            must divide ``hidden_size``.
        mlp_ratio (`float`, defaults to 4.0): MLP inner width / ``hidden_size`` (transformer blocks only).
        conditioning (`str`, defaults to `"in_context"`): ``"in_context"`` (condition tokens concatenated into the
            self-attention sequence) or ``"cross_attention"`` (blocks cross-attend to them).
        block_type (`str`, defaults to `"transformer"`): ``"transformer"`` or the white-box ``"crate"``
            (MSSA + ISTA).
        timestep_channels (`int`, defaults to 256): sinusoidal timestep features fed to the timestep MLP.
        ista_step_size (`float`, defaults to 0.1): ISTA's ``η`` (crate blocks only).
        ista_lambda (`float`, defaults to 0.1): ISTA's ``λ`` (crate blocks only).
        norm_eps (`float`, defaults to 1e-6): LayerNorm epsilon.
    """

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        num_latents: int = 256,
        latent_channels: int = 64,
        condition_dim: int = 768,
        hidden_size: int = 768,
        num_layers: int = 6,
        num_attention_heads: int = 12,
        mlp_ratio: float = 4.0,
        conditioning: str = "in_context",
        block_type: str = "transformer",
        timestep_channels: int = 256,
        ista_step_size: float = 0.1,
        ista_lambda: float = 0.1,
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        for name, value in (("num_latents", num_latents), ("latent_channels", latent_channels),
                            ("condition_dim", condition_dim), ("hidden_size", hidden_size),
                            ("num_layers", num_layers), ("num_attention_heads", num_attention_heads),
                            ("timestep_channels", timestep_channels)):
            check_positive_int(name, value)
        if hidden_size % num_attention_heads:
            raise ValueError(f"`num_attention_heads` ({num_attention_heads}) must divide `hidden_size` "
                             f"({hidden_size})")
        if conditioning not in CONDITIONING_MODES:
            raise ValueError(f"`conditioning` must be one of {CONDITIONING_MODES}, got {conditioning!r}")
        if block_type not in DENOISER_BLOCK_TYPES:
            raise ValueError(f"`block_type` must be one of {DENOISER_BLOCK_TYPES}, got {block_type!r}")
        if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, (int, float)) or not mlp_ratio > 0:
            raise ValueError(f"`mlp_ratio` must be a positive number, got {mlp_ratio!r}")
        self.latent_projection = nn.Linear(latent_channels, hidden_size)
        self.time_proj = Timesteps(num_channels=timestep_channels, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.timestep_embedder = TimestepEmbedding(in_channels=timestep_channels, time_embed_dim=hidden_size)
        self.condition_norm = nn.LayerNorm(condition_dim, eps=norm_eps)
        self.condition_projection = nn.Linear(condition_dim, hidden_size)
        cross = conditioning == "cross_attention"

        def block():
            return AlignedShapeLatentBlock(hidden_size, num_attention_heads, block_type, cross, mlp_ratio,
                                           ista_step_size, ista_lambda, norm_eps)

        self.encoder_blocks = nn.ModuleList(block() for _ in range(num_layers))
        self.middle_block = block()
        self.decoder_blocks = nn.ModuleList(block() for _ in range(num_layers))
        # The long skips: Linear(2w → w) then LayerNorm on [decoder input, popped encoder output].
        self.skip_projections = nn.ModuleList(nn.Linear(2 * hidden_size, hidden_size) for _ in range(num_layers))
        self.skip_norms = nn.ModuleList(nn.LayerNorm(hidden_size, eps=norm_eps) for _ in range(num_layers))
        self.norm_out = nn.LayerNorm(hidden_size, eps=norm_eps)
        self.proj_out = nn.Linear(hidden_size, latent_channels)

    def _check_inputs(self, sample, timestep, encoder_hidden_states, encoder_attention_mask, attn_implementation):
        config = self.config
        check_tensor("sample", sample, ndim=3, shape_doc=f"(batch_size, {config.num_latents}, "
                                                         f"{config.latent_channels})")
        check_floating_tensor("sample", sample)
        if tuple(sample.shape[1:]) != (config.num_latents, config.latent_channels):
            raise ValueError(f"`sample` must have shape (batch_size, {config.num_latents}, {config.latent_channels}), "
                             f"got {tuple(sample.shape)}")
        check_finite_tensor("sample", sample)
        batch_size = sample.shape[0]
        if isinstance(timestep, bool) or not isinstance(timestep, (int, float, torch.Tensor)):
            raise TypeError(f"`timestep` must be a number or a tensor, got {type(timestep).__name__}")
        if isinstance(timestep, torch.Tensor) and not (timestep.ndim == 0 or tuple(timestep.shape) == (batch_size,)):
            raise ValueError(f"`timestep` must be a scalar or of shape ({batch_size},), got {tuple(timestep.shape)}")
        check_tensor("encoder_hidden_states", encoder_hidden_states, ndim=3,
                     shape_doc=f"(batch_size, num_condition_tokens, {config.condition_dim})")
        check_floating_tensor("encoder_hidden_states", encoder_hidden_states)
        if encoder_hidden_states.shape[0] != batch_size or encoder_hidden_states.shape[2] != config.condition_dim:
            raise ValueError(f"`encoder_hidden_states` must have shape ({batch_size}, num_condition_tokens, "
                             f"{config.condition_dim}), got {tuple(encoder_hidden_states.shape)}")
        check_finite_tensor("encoder_hidden_states", encoder_hidden_states)
        if encoder_attention_mask is not None:
            check_tensor("encoder_attention_mask", encoder_attention_mask)
            if encoder_attention_mask.shape != encoder_hidden_states.shape[:2]:
                raise ValueError(f"`encoder_attention_mask` must have shape {tuple(encoder_hidden_states.shape[:2])} "
                                 f"(batch_size, num_condition_tokens), got {tuple(encoder_attention_mask.shape)}")
            check_binary_mask("encoder_attention_mask", encoder_attention_mask)
        if attn_implementation not in ATTENTION_BACKENDS:
            raise ValueError(f"`attn_implementation` must be one of {ATTENTION_BACKENDS}, got {attn_implementation!r}")

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
        attn_implementation: str = "sdpa",
        return_dict: bool = True,
    ) -> Transformer2DModelOutput | tuple[torch.Tensor]:
        """Predict the noise ε in ``sample`` ``(B, L, d₀)`` at ``timestep`` (a scalar or ``(B,)``, in the
        scheduler's units 0..T−1) given the condition tokens ``encoder_hidden_states`` ``(B, Lc, condition_dim)``
        with the optional key mask ``encoder_attention_mask`` ``(B, Lc)`` (1 = a real token, 0 = padding).
        ``attn_implementation`` picks the attention kernel (``"sdpa"`` or ``"eager"``; both give the same output).

        Raises:
            TypeError, ValueError: a bad input, naming it (wrong shape or dtype, NaN/inf, a non-0/1 mask, an
                unknown ``attn_implementation``).
        """
        self._check_inputs(sample, timestep, encoder_hidden_states, encoder_attention_mask, attn_implementation)
        batch_size = sample.shape[0]
        timestep = torch.as_tensor(timestep, device=sample.device)
        if timestep.ndim == 0:
            timestep = timestep.expand(batch_size)
        time_token = self.timestep_embedder(self.time_proj(timestep).to(sample.dtype))[:, None]
        condition = self.condition_projection(self.condition_norm(encoder_hidden_states.to(sample.dtype)))
        latents = self.latent_projection(sample)
        condition_keep = None if encoder_attention_mask is None else encoder_attention_mask.to(sample.dtype)
        if self.config.conditioning == "in_context":
            tokens = torch.cat([time_token, condition, latents], dim=1)
            self_mask = None
            if condition_keep is not None:
                ones = condition_keep.new_ones(batch_size, 1)
                keep = torch.cat([ones, condition_keep, ones.expand(batch_size, latents.shape[1])], dim=1)
                self_mask = _additive_key_mask(keep, sample.dtype)
            context, context_mask = None, None
        else:
            tokens = torch.cat([time_token, latents], dim=1)
            self_mask, context = None, condition
            context_mask = _additive_key_mask(condition_keep, sample.dtype)
        options = dict(self_mask=self_mask, context=context, context_mask=context_mask,
                       attn_implementation=attn_implementation)
        skips = []
        for block in self.encoder_blocks:
            tokens = block(tokens, **options)
            skips.append(tokens)
        tokens = self.middle_block(tokens, **options)
        for block, projection, norm in zip(self.decoder_blocks, self.skip_projections, self.skip_norms):
            tokens = norm(projection(torch.cat([tokens, skips.pop()], dim=-1)))
            tokens = block(tokens, **options)
        output = self.proj_out(self.norm_out(tokens))[:, -self.config.num_latents:]
        if not return_dict:
            return (output,)
        return Transformer2DModelOutput(sample=output)
