"""PyTorch SITA-VAE: Michelangelo's shape-image-text-aligned variational autoencoder (spec
``threed_and_motion.md`` §1.1-1.2; NeuralCarver/Michelangelo ``sal_perceiver.py``, ``tsal/loss.py``).

    surface points (B, N, 6) ─Fourier + normals → Linear→ point tokens
    1 + L learned queries ─cross-attention(point tokens)→ self-attention ×E → LN → [global | local tokens]
    global token ─W_align→ shape embedding (L2-normalised, image/text space)
    local tokens ─Linear→ (mean, logvar) of N(·) (B, L, d₀) ─sample / mean→ latents ─Linear→ width
    ─self-attention ×D→ ; query points (B, M, 3) ─Fourier → Linear→ cross-attention(latents) → LN → Linear → logit

With ``block_type="crate"`` every self-attention block is a CRATE layer (`whitebox_hf.nn.MultiHeadSubspaceSelfAttention`
then `whitebox_hf.nn.ISTA`) and the cross-attention blocks sparsify with ISTA in place of their MLP.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Normal, kl_divergence
from torch.nn import functional as F
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput

from ...nn import ISTA, MultiHeadSubspaceSelfAttention, attend
from ...utils.validation import (
    check_finite_tensor,
    check_floating_tensor,
    check_positive_int,
    check_tensor,
    reads_values,
)
from ..modeling_utils import WhiteboxPreTrainedModel
from .configuration_sita_vae import SitaVaeConfig
from .mesh_extraction import dense_query_grid, meshes_from_occupancy_grid

__all__ = ["FourierPointEmbedding", "SitaVaeEncoderOutput", "SitaVaeModel", "SitaVaeOutput", "SitaVaePreTrainedModel"]

# The authors clamp the posterior's log-variance to this range before exponentiating it.
_LOGVAR_RANGE = (-30.0, 20.0)
# Std of the learned encoder queries (the authors' init, independent of the width).
_QUERY_INIT_STD = 0.02


class FourierPointEmbedding(nn.Module):
    """``[x, sin(2^k x), cos(2^k x)]`` for ``k = 0 … F−1`` on each coordinate (no π factor, as the authors):
    ``(..., 3) → (..., 3·(2F + 1))``."""

    def __init__(self, num_frequencies: int):
        super().__init__()
        # A constant of the architecture, rebuilt from the configuration: not saved.
        self.register_buffer("frequencies", 2.0 ** torch.arange(num_frequencies, dtype=torch.float32),
                             persistent=False)

    def forward(self, coordinates: torch.Tensor) -> torch.Tensor:
        angles = (coordinates[..., None] * self.frequencies.to(coordinates.dtype)).flatten(-2)
        return torch.cat([coordinates, angles.sin(), angles.cos()], dim=-1)


class _Attention(nn.Module):
    """Softmax multi-head attention of ``query`` tokens over ``context`` tokens (self-attention when they are the
    same tensor): the authors' ``c_qkv`` / ``c_q`` + ``c_kv`` projections and ``c_proj``."""

    def __init__(self, config: SitaVaeConfig):
        super().__init__()
        width = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = width // self.num_heads
        self.query = nn.Linear(width, width, bias=config.qkv_bias)
        self.key_value = nn.Linear(width, 2 * width, bias=config.qkv_bias)
        self.output_projection = nn.Linear(width, width)

    def forward(self, hidden_states, context, output_attentions=False, attn_implementation="sdpa"):
        batch_size, num_queries, width = hidden_states.shape

        def heads(tensor):
            return tensor.view(batch_size, -1, self.num_heads, self.head_dim).transpose(1, 2)

        key, value = self.key_value(context).chunk(2, dim=-1)
        output, weights = attend(heads(self.query(hidden_states)), heads(key), heads(value), None,
                                 self.head_dim**-0.5, 0.0, False, attn_implementation, output_attentions)
        return self.output_projection(output.transpose(1, 2).reshape(batch_size, num_queries, width)), weights


class _Mlp(nn.Sequential):
    def __init__(self, config: SitaVaeConfig):
        width = config.hidden_size
        super().__init__(nn.Linear(width, config.mlp_ratio * width), nn.GELU(),
                         nn.Linear(config.mlp_ratio * width, width))


class SitaVaeSelfAttentionLayer(GradientCheckpointingLayer):
    """``"transformer"``: ``Z + Attn(LN Z)`` then ``+ MLP(LN ·)``. ``"crate"``: a CRATE layer,
    ``Z½ = Z + MSSA(LN Z)``, ``Z⁺ = ISTA(LN Z½)`` (the sparse code replaces the token, no residual)."""

    def __init__(self, config: SitaVaeConfig):
        super().__init__()
        width, eps = config.hidden_size, config.layer_norm_eps
        self.crate = config.block_type == "crate"
        self.attention_norm = nn.LayerNorm(width, eps=eps)
        if self.crate:
            self.attention = MultiHeadSubspaceSelfAttention(width, config.num_attention_heads, config.head_dim)
            self.sparse_coding = ISTA(width, config.ista_step_size, config.ista_lambda)
        else:
            self.attention = _Attention(config)
            self.mlp = _Mlp(config)
        self.mlp_norm = nn.LayerNorm(width, eps=eps)

    def forward(self, hidden_states, output_attentions=False, attn_implementation="sdpa"):
        normed = self.attention_norm(hidden_states)
        if self.crate:
            update, weights = self.attention(normed, output_attentions=output_attentions,
                                             attn_implementation=attn_implementation)
            return self.sparse_coding(self.mlp_norm(hidden_states + update)), weights
        update, weights = self.attention(normed, normed, output_attentions, attn_implementation)
        hidden_states = hidden_states + update
        return hidden_states + self.mlp(self.mlp_norm(hidden_states)), weights


class SitaVaeCrossAttentionLayer(GradientCheckpointingLayer):
    """``X + Attn(LN₁ X, LN₂ C)`` then ``+ MLP(LN₃ ·)`` (``"crate"``: ``ISTA(LN₃ ·)``, no residual)."""

    def __init__(self, config: SitaVaeConfig):
        super().__init__()
        width, eps = config.hidden_size, config.layer_norm_eps
        self.crate = config.block_type == "crate"
        self.query_norm = nn.LayerNorm(width, eps=eps)
        self.context_norm = nn.LayerNorm(width, eps=eps)
        self.attention = _Attention(config)
        self.mlp_norm = nn.LayerNorm(width, eps=eps)
        if self.crate:
            self.sparse_coding = ISTA(width, config.ista_step_size, config.ista_lambda)
        else:
            self.mlp = _Mlp(config)

    def forward(self, hidden_states, context, output_attentions=False, attn_implementation="sdpa"):
        update, weights = self.attention(self.query_norm(hidden_states), self.context_norm(context),
                                         output_attentions, attn_implementation)
        hidden_states = hidden_states + update
        if self.crate:
            return self.sparse_coding(self.mlp_norm(hidden_states)), weights
        return hidden_states + self.mlp(self.mlp_norm(hidden_states)), weights


@dataclass
class SitaVaeEncoderOutput(ModelOutput):
    """What `SitaVaeModel.encode` returns.

    Args:
        latent_dist (`torch.distributions.Normal`): the diagonal-Gaussian posterior over the local latents,
            batch shape ``(B, L, d₀)``.
        latents (`torch.FloatTensor` of shape `(B, L, d₀)`): a sample of it (training, or ``sample_posterior``) or
            its mean.
        shape_embeds (`torch.FloatTensor` of shape `(B, alignment_dim)`): the global token projected into the
            alignment space, L2-normalised.
    """

    latent_dist: Normal | None = None
    latents: torch.FloatTensor | None = None
    shape_embeds: torch.FloatTensor | None = None


@dataclass
class SitaVaeOutput(ModelOutput):
    """What `SitaVaeModel.forward` returns.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): ``volume_loss + near_loss_weight·near_loss +
            kl_loss_weight·kl_loss + contrastive_loss_weight·contrastive_loss`` over the terms available (returned
            when `occupancy_labels` or an image/text embedding is given).
        logits (`torch.FloatTensor` of shape `(B, M)`, *optional*): occupancy logits at the query points.
        volume_loss, near_loss (`torch.FloatTensor` of shape `()`, *optional*): BCE-with-logits on the first
            (uniform volume) and second (near-surface) half of the query points, given `occupancy_labels`.
        kl_loss (`torch.FloatTensor` of shape `()`): KL of the posterior to ``N(0, I)``, averaged over tokens and
            channels, then over the batch.
        contrastive_loss (`torch.FloatTensor` of shape `()`, *optional*): sum of the symmetric InfoNCE losses of the
            shape embedding against each embedding given.
        latents (`torch.FloatTensor` of shape `(B, L, d₀)`): the latents decoded.
        latent_mean, latent_logvar (`torch.FloatTensor` of shape `(B, L, d₀)`): the posterior's parameters (log-variance
            clamped).
        shape_embeds (`torch.FloatTensor` of shape `(B, alignment_dim)`): the normalised shape embedding.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    volume_loss: torch.FloatTensor | None = None
    near_loss: torch.FloatTensor | None = None
    kl_loss: torch.FloatTensor | None = None
    contrastive_loss: torch.FloatTensor | None = None
    latents: torch.FloatTensor | None = None
    latent_mean: torch.FloatTensor | None = None
    latent_logvar: torch.FloatTensor | None = None
    shape_embeds: torch.FloatTensor | None = None


class SitaVaePreTrainedModel(WhiteboxPreTrainedModel):
    config: SitaVaeConfig
    config_class = SitaVaeConfig
    base_model_prefix = "sita_vae"
    main_input_name = "surface_points"
    supports_gradient_checkpointing = True
    _no_split_modules = ["SitaVaeSelfAttentionLayer", "SitaVaeCrossAttentionLayer"]

    @torch.no_grad()
    def _init_weights(self, module):
        # The authors' scheme (Michelangelo ``init_linear``): every Linear normal(init_scale·width^-½), zero bias.
        std = self.config.init_scale * self.config.hidden_size**-0.5
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, SitaVaeModel):
            init.normal_(module.queries, mean=0.0, std=_QUERY_INIT_STD)
            # The second half of pre_kl's outputs is the log-variance (encode's chunk order).
            init.constant_(module.pre_kl.bias[module.config.latent_channels:], module.config.initial_posterior_logvar)
            init.normal_(module.shape_projection, mean=0.0, std=self.config.hidden_size**-0.5)
        elif isinstance(module, FourierPointEmbedding):
            init.copy_(module.frequencies, 2.0 ** torch.arange(module.frequencies.numel(), dtype=torch.float32))
        else:
            super()._init_weights(module)
            if isinstance(module, ISTA):
                # The dictionaries keep CRATE's kaiming-uniform init (Ma-Lab-Berkeley/CRATE).
                module.reset_parameters()


def _check_points(name: str, value, columns: int, shape_doc: str, batch_size: int | None = None) -> None:
    check_tensor(name, value, ndim=3, shape_doc=shape_doc)
    check_floating_tensor(name, value)
    if value.shape[-1] != columns:
        raise ValueError(f"`{name}` must have shape {shape_doc}, got {tuple(value.shape)}")
    if batch_size is not None and value.shape[0] != batch_size:
        raise ValueError(f"`{name}` must hold {batch_size} items (the batch of `surface_points`), got "
                         f"{value.shape[0]}")
    check_finite_tensor(name, value)


def _check_embeddings(name: str, value, batch_size: int, dim: int) -> None:
    check_tensor(name, value, ndim=2, shape_doc=f"(batch_size, alignment_dim) = ({batch_size}, {dim})")
    check_floating_tensor(name, value)
    if tuple(value.shape) != (batch_size, dim):
        raise ValueError(f"`{name}` must have shape ({batch_size}, {dim}) (batch_size, alignment_dim), got "
                         f"{tuple(value.shape)}")
    check_finite_tensor(name, value)


def symmetric_info_nce(first: torch.Tensor, second: torch.Tensor, logit_scale: float) -> torch.Tensor:
    """CLIP's symmetric InfoNCE between two batches of embeddings (row ``i`` of each is a positive pair; the other
    rows of the batch are the negatives), on L2-normalised embeddings with logits scaled by ``logit_scale``."""
    logits = logit_scale * F.normalize(first, dim=-1) @ F.normalize(second, dim=-1).T
    targets = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


class SitaVaeModel(SitaVaePreTrainedModel):
    """The SITA-VAE: `encode` surface points to a posterior over local latents and a global shape embedding,
    `decode` latents to occupancy logits at query points, and `forward` for both and the training loss."""

    def __init__(self, config: SitaVaeConfig):
        super().__init__(config)
        width = config.hidden_size
        self.fourier = FourierPointEmbedding(config.num_fourier_frequencies)
        self.point_projection = nn.Linear(config.point_embedding_dim + 3, width)  # + the normals
        self.queries = nn.Parameter(torch.zeros(1 + config.num_latents, width))
        self.encoder_cross_attention = SitaVaeCrossAttentionLayer(config)
        self.encoder_layers = nn.ModuleList(SitaVaeSelfAttentionLayer(config) for _ in range(config.num_encoder_layers))
        self.encoder_norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.shape_projection = nn.Parameter(torch.zeros(width, config.alignment_dim))
        self.pre_kl = nn.Linear(width, 2 * config.latent_channels)
        self.post_kl = nn.Linear(config.latent_channels, width)
        self.decoder_layers = nn.ModuleList(SitaVaeSelfAttentionLayer(config) for _ in range(config.num_decoder_layers))
        self.query_projection = nn.Linear(config.point_embedding_dim, width)
        self.decoder_cross_attention = SitaVaeCrossAttentionLayer(config)
        self.decoder_norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.occupancy_head = nn.Linear(width, 1)
        self.gradient_checkpointing = False
        self.post_init()

    def encode(self, surface_points: torch.Tensor, sample_posterior: bool | None = None,
               generator: torch.Generator | None = None) -> SitaVaeEncoderOutput:
        """Encode ``surface_points`` ``(B, N, 6)`` (xyz then unit normals) to the posterior over the local latents
        and the normalised shape embedding. ``latents`` is a sample when ``sample_posterior`` (default: in training
        mode), else the posterior mean."""
        _check_points("surface_points", surface_points, 6, "(batch_size, num_points, 6): xyz then normals")
        attn_implementation = self._attention_backend(False)
        xyz, normals = surface_points[..., :3], surface_points[..., 3:]
        points = self.point_projection(torch.cat([self.fourier(xyz), normals], dim=-1))
        tokens = self.queries.to(points.dtype).expand(points.shape[0], -1, -1)
        tokens, _ = self.encoder_cross_attention(tokens, points, attn_implementation=attn_implementation)
        for layer in self.encoder_layers:
            tokens, _ = layer(tokens, attn_implementation=attn_implementation)
        tokens = self.encoder_norm(tokens)
        shape_embeds = F.normalize(tokens[:, 0] @ self.shape_projection, dim=-1)
        mean, logvar = self.pre_kl(tokens[:, 1:]).chunk(2, dim=-1)
        logvar = logvar.clamp(*_LOGVAR_RANGE)
        latent_dist = Normal(mean, torch.exp(0.5 * logvar), validate_args=False)
        if sample_posterior is None:
            sample_posterior = self.training
        if sample_posterior:
            noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            latents = mean + latent_dist.stddev * noise
        else:
            latents = mean
        return SitaVaeEncoderOutput(latent_dist=latent_dist, latents=latents, shape_embeds=shape_embeds)

    def decode(self, latents: torch.Tensor, query_points: torch.Tensor) -> torch.Tensor:
        """Occupancy logits ``(B, M)`` at ``query_points`` ``(B, M, 3)`` of the shapes whose local latents are
        ``latents`` ``(B, L, d₀)``."""
        config = self.config
        check_tensor("latents", latents, ndim=3, shape_doc=f"(batch_size, {config.num_latents}, "
                                                          f"{config.latent_channels})")
        check_floating_tensor("latents", latents)
        if tuple(latents.shape[1:]) != (config.num_latents, config.latent_channels):
            raise ValueError(f"`latents` must have shape (batch_size, {config.num_latents}, {config.latent_channels}), "
                             f"got {tuple(latents.shape)}")
        check_finite_tensor("latents", latents)
        _check_points("query_points", query_points, 3, "(batch_size, num_queries, 3)", batch_size=latents.shape[0])
        attn_implementation = self._attention_backend(False)
        tokens = self.post_kl(latents)
        for layer in self.decoder_layers:
            tokens, _ = layer(tokens, attn_implementation=attn_implementation)
        queries = self.query_projection(self.fourier(query_points))
        queries, _ = self.decoder_cross_attention(queries, tokens, attn_implementation=attn_implementation)
        return self.occupancy_head(self.decoder_norm(queries)).squeeze(-1)

    def occupancy_grid(self, latents: torch.Tensor, octree_depth: int = 7, bound: float = 1.25,
                       chunk_size: int = 10_000) -> torch.Tensor:
        """Occupancy logits ``(B, G, G, G)`` on `dense_query_grid` (``G = 2^octree_depth + 1``, spanning
        ``[−bound, bound]³``: the authors use depth 7, ±1.25 to reconstruct and ±1.1 for generated shapes), decoded
        ``chunk_size`` query points at a time."""
        check_positive_int("chunk_size", chunk_size)
        grid = dense_query_grid(octree_depth, bound, device=latents.device, dtype=latents.dtype)
        points = grid.reshape(1, -1, 3).expand(latents.shape[0], -1, -1)
        logits = torch.cat([self.decode(latents, points[:, start:start + chunk_size])
                            for start in range(0, points.shape[1], chunk_size)], dim=1)
        return logits.view(latents.shape[0], *grid.shape[:3])

    def extract_meshes(self, latents: torch.Tensor, octree_depth: int = 7, bound: float = 1.25,
                       chunk_size: int = 10_000, level: float = 0.0):
        """Marching-cubes meshes of the shapes ``latents`` ``(B, L, d₀)``: `occupancy_grid`, then
        `meshes_from_occupancy_grid` (one ``(vertices, faces)`` NumPy pair per shape, ``None`` where the decoded
        field has no surface)."""
        return meshes_from_occupancy_grid(self.occupancy_grid(latents, octree_depth, bound, chunk_size), bound, level)

    def forward(
        self,
        surface_points: torch.Tensor,
        query_points: torch.Tensor | None = None,
        occupancy_labels: torch.Tensor | None = None,
        image_embeds: torch.Tensor | None = None,
        text_embeds: torch.Tensor | None = None,
        sample_posterior: bool | None = None,
        generator: torch.Generator | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SitaVaeOutput | tuple:
        r"""
        surface_points (`torch.FloatTensor` of shape `(B, N, 6)`): surface samples, xyz then normals.
        query_points (`torch.FloatTensor` of shape `(B, M, 3)`, *optional*): where to predict occupancy; with
            `occupancy_labels` the first ``M/2`` are uniform volume points and the rest near-surface points.
        occupancy_labels (`torch.FloatTensor` of shape `(B, M)`, *optional*): 0/1 (or soft, in [0, 1]) occupancy
            at the query points.
        image_embeds, text_embeds (`torch.FloatTensor` of shape `(B, alignment_dim)`, *optional*): embeddings of
            the same shapes from a frozen image/text model, for the contrastive term.
        sample_posterior (`bool`, *optional*): decode a posterior sample (default: in training mode) or its mean.
        generator (`torch.Generator`, *optional*): the randomness of the sample.
        """
        if kwargs:
            raise TypeError(f"SitaVaeModel.forward got unexpected arguments {sorted(kwargs)}")
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        encoded = self.encode(surface_points, sample_posterior=sample_posterior, generator=generator)
        batch_size = surface_points.shape[0]
        if occupancy_labels is not None and query_points is None:
            raise ValueError("`occupancy_labels` needs the `query_points` they label")
        logits = self.decode(encoded.latents, query_points) if query_points is not None else None
        posterior = encoded.latent_dist
        prior = Normal(torch.zeros_like(posterior.loc), torch.ones_like(posterior.scale), validate_args=False)
        kl_loss = kl_divergence(posterior, prior).mean(dim=(1, 2)).mean()
        volume_loss = near_loss = contrastive_loss = None
        if occupancy_labels is not None:
            num_queries = query_points.shape[1]
            check_tensor("occupancy_labels", occupancy_labels, ndim=2, shape_doc=f"({batch_size}, {num_queries})")
            check_floating_tensor("occupancy_labels", occupancy_labels)
            if tuple(occupancy_labels.shape) != (batch_size, num_queries):
                raise ValueError(f"`occupancy_labels` must have shape ({batch_size}, {num_queries}) (one per query "
                                 f"point), got {tuple(occupancy_labels.shape)}")
            check_finite_tensor("occupancy_labels", occupancy_labels)
            if reads_values(occupancy_labels) and not bool(((occupancy_labels >= 0) & (occupancy_labels <= 1)).all()):
                raise ValueError("`occupancy_labels` must lie in [0, 1] (occupancy probabilities)")
            if num_queries % 2:
                raise ValueError(f"`query_points` must hold an even number of points with `occupancy_labels` (first "
                                 f"half volume, second half near-surface), got {num_queries}")
            half = num_queries // 2
            volume_loss = F.binary_cross_entropy_with_logits(logits[:, :half], occupancy_labels[:, :half])
            near_loss = F.binary_cross_entropy_with_logits(logits[:, half:], occupancy_labels[:, half:])
        for name, embeds in (("image_embeds", image_embeds), ("text_embeds", text_embeds)):
            if embeds is None:
                continue
            _check_embeddings(name, embeds, batch_size, self.config.alignment_dim)
            term = symmetric_info_nce(encoded.shape_embeds, embeds, self.config.contrastive_logit_scale)
            contrastive_loss = term if contrastive_loss is None else contrastive_loss + term
        loss = None
        if volume_loss is not None or contrastive_loss is not None:
            loss = self.config.kl_loss_weight * kl_loss
            if volume_loss is not None:
                loss = loss + volume_loss + self.config.near_loss_weight * near_loss
            if contrastive_loss is not None:
                loss = loss + self.config.contrastive_loss_weight * contrastive_loss
        output = SitaVaeOutput(
            loss=loss, logits=logits, volume_loss=volume_loss, near_loss=near_loss, kl_loss=kl_loss,
            contrastive_loss=contrastive_loss, latents=encoded.latents, latent_mean=posterior.loc,
            latent_logvar=2 * posterior.scale.log(), shape_embeds=encoded.shape_embeds,
        )
        return output if return_dict else output.to_tuple()
