"""A CRATE-style class-conditional denoiser: DiT's scaffolding around CRATE's white-box layer.

Each block is CRATE's compression step (MSSA, `whitebox_hf.nn.MultiHeadSubspaceSelfAttention`) followed by its
sparsification step (one non-negative ISTA step, `whitebox_hf.nn.ISTA`), each wrapped in adaLN-Zero:

    (shift₁, scale₁, gate₁, shift₂, scale₂, gate₂) = Linear(SiLU(c))           c = t_emb + y_emb
    Z ← Z + gate₁ · MSSA( LN(Z)·(1 + scale₁) + shift₁ )
    Z ← Z + gate₂ · ISTA( LN(Z)·(1 + scale₂) + shift₂ )

Deviation from the CRATE encoder layer (`whitebox_hf.models.crate.CrateLayer`): there the ISTA output *replaces*
the tokens; here it is added back through a gate (the repository's ``ista_residual`` ablation). adaLN-Zero needs
every block to be the identity at initialisation (all gates 0), which a replacing ISTA step cannot be.

Everything else follows DiT (book §8.6; spec ``ssl_and_generation.md`` §4.1): patch embedding with fixed 2-D
sin-cos positions (diffusers `PatchEmbed`), timestep features from diffusers `Timesteps` (256 channels, same
convention as diffusers' DiT) through `TimestepEmbedding`, a class table of ``num_classes + 1`` rows whose last
row is the null class, one conditioning vector shared by all blocks (as in the original DiT), a final adaLN
LayerNorm and a zero-initialised output projection. At initialisation the model outputs exactly zero.

The call signature is that of diffusers' `DiTTransformer2DModel`:
``forward(hidden_states, timestep, class_labels, return_dict=True)`` → ``Transformer2DModelOutput(sample=...)``.
Class labels are never dropped inside the model: the training script does it (to the id ``num_classes``).
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import PatchEmbed, TimestepEmbedding, Timesteps
from diffusers.models.modeling_outputs import Transformer2DModelOutput

# diffusers resolves a custom pipeline component by importing its module path and looking `ModelMixin` up in that
# module's namespace: this import must stay at module level.
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ...nn import ISTA, MultiHeadSubspaceSelfAttention, unpatchify
from ...utils.validation import check_positive_int
from ..safe_loading import SafetensorsOnlyModelMixin
from .inputs import check_denoiser_inputs

__all__ = ["CrateDenoiserBlock", "CrateDenoiserTransformer"]


def _modulate(hidden_states: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return hidden_states * (1 + scale) + shift


class CrateDenoiserBlock(nn.Module):
    """MSSA + ISTA, each under adaLN-Zero modulation by the conditioning vector (see the module docstring)."""

    def __init__(self, hidden_size: int, num_attention_heads: int, attention_head_dim: int,
                 ista_step_size: float, ista_lambda: float, norm_eps: float):
        super().__init__()
        self.attention_norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=norm_eps)
        self.attention = MultiHeadSubspaceSelfAttention(hidden_size, num_attention_heads, attention_head_dim)
        self.sparse_coding_norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=norm_eps)
        self.sparse_coding = ISTA(hidden_size, ista_step_size, ista_lambda)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward(self, hidden_states: torch.Tensor, conditioning: torch.Tensor) -> torch.Tensor:
        shift_a, scale_a, gate_a, shift_s, scale_s, gate_s = self.modulation(conditioning)[:, None].chunk(6, dim=-1)
        compressed, _ = self.attention(_modulate(self.attention_norm(hidden_states), shift_a, scale_a))
        hidden_states = hidden_states + gate_a * compressed
        sparse = self.sparse_coding(_modulate(self.sparse_coding_norm(hidden_states), shift_s, scale_s))
        return hidden_states + gate_s * sparse


class CrateDenoiserTransformer(SafetensorsOnlyModelMixin, ModelMixin, ConfigMixin):
    """Class-conditional CRATE denoiser for flow matching or diffusion on square inputs.

    ``from_pretrained`` loads safetensors weights only (a pickled ``.bin`` is refused: `SafetensorsOnlyModelMixin`).

    Args:
        sample_size (`int`, defaults to 28): side of the square input (pixels or latents).
        in_channels (`int`, defaults to 1): input channels.
        out_channels (`int`, *optional*): output channels (default ``in_channels``).
        num_classes (`int`, defaults to 10): number of classes; id ``num_classes`` is the null class.
        hidden_size (`int`, defaults to 192): token width.
        num_layers (`int`, defaults to 6): number of MSSA + ISTA blocks.
        num_attention_heads (`int`, defaults to 3): number of MSSA subspaces ``K``.
        attention_head_dim (`int`, *optional*): subspace dimension ``p`` (default ``hidden_size // heads``).
        patch_size (`int`, defaults to 2): patch side; must divide ``sample_size``.
        ista_step_size (`float`, defaults to 0.1): ISTA's ``η``.
        ista_lambda (`float`, defaults to 0.1): ISTA's ``λ``.
        norm_eps (`float`, defaults to 1e-6): LayerNorm epsilon.
    """

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        sample_size: int = 28,
        in_channels: int = 1,
        out_channels: int | None = None,
        num_classes: int = 10,
        hidden_size: int = 192,
        num_layers: int = 6,
        num_attention_heads: int = 3,
        attention_head_dim: int | None = None,
        patch_size: int = 2,
        ista_step_size: float = 0.1,
        ista_lambda: float = 0.1,
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        for name, value in (("sample_size", sample_size), ("in_channels", in_channels),
                            ("num_classes", num_classes), ("hidden_size", hidden_size), ("num_layers", num_layers),
                            ("num_attention_heads", num_attention_heads), ("patch_size", patch_size)):
            check_positive_int(name, value)
        if sample_size % patch_size:
            raise ValueError(f"`patch_size` ({patch_size}) must divide `sample_size` ({sample_size})")
        if attention_head_dim is None:
            if hidden_size % num_attention_heads:
                raise ValueError(f"`hidden_size` ({hidden_size}) must be divisible by `num_attention_heads` "
                                 f"({num_attention_heads}) unless `attention_head_dim` is given")
            attention_head_dim = hidden_size // num_attention_heads
        self.out_channels = in_channels if out_channels is None else out_channels
        self.patch_size = patch_size
        self.pos_embed = PatchEmbed(height=sample_size, width=sample_size, patch_size=patch_size,
                                    in_channels=in_channels, embed_dim=hidden_size, pos_embed_type="sincos")
        self.time_proj = Timesteps(num_channels=256, flip_sin_to_cos=True, downscale_freq_shift=1)
        self.timestep_embedder = TimestepEmbedding(in_channels=256, time_embed_dim=hidden_size)
        self.class_embedder = nn.Embedding(num_classes + 1, hidden_size)  # last row: the null class
        self.blocks = nn.ModuleList(
            CrateDenoiserBlock(hidden_size, num_attention_heads, attention_head_dim, ista_step_size, ista_lambda,
                               norm_eps)
            for _ in range(num_layers)
        )
        self.norm_out = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=norm_eps)
        self.proj_out_1 = nn.Linear(hidden_size, 2 * hidden_size)
        self.proj_out_2 = nn.Linear(hidden_size, patch_size * patch_size * self.out_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT's initialisation for the scaffolding (xavier linears, normal(0.02) embeddings, zero adaLN and
        output layers); MSSA's and ISTA's own matrices keep the initialisation of the CRATE operators."""
        operator_parameters = {id(p) for block in self.blocks
                               for p in (*block.attention.parameters(), *block.sparse_coding.parameters())}
        for module in self.modules():
            if isinstance(module, nn.Linear) and id(module.weight) not in operator_parameters:
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        projection = self.pos_embed.proj
        nn.init.xavier_uniform_(projection.weight.view(projection.weight.shape[0], -1))
        nn.init.zeros_(projection.bias)
        nn.init.normal_(self.class_embedder.weight, std=0.02)
        nn.init.normal_(self.timestep_embedder.linear_1.weight, std=0.02)
        nn.init.normal_(self.timestep_embedder.linear_2.weight, std=0.02)
        for layer in [block.modulation[-1] for block in self.blocks] + [self.proj_out_1, self.proj_out_2]:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor | float | None = None,
        class_labels: torch.LongTensor | None = None,
        cross_attention_kwargs: dict | None = None,
        return_dict: bool = True,
    ) -> Transformer2DModelOutput | tuple[torch.Tensor]:
        """Predict the velocity (or noise) for ``hidden_states`` ``(B, C, H, W)`` at ``timestep`` (``(B,)`` or a
        scalar, in the scheduler's units, e.g. σ·1000) and ``class_labels`` ``(B,)`` (``num_classes`` = null).
        ``cross_attention_kwargs`` is accepted for signature compatibility with DiT and ignored.

        Raises:
            TypeError, ValueError: a bad input (`whitebox_hf.models.denoisers.inputs.check_denoiser_inputs`): the
                wrong dtype, channels, a side that is not a multiple of ``patch_size``, timesteps or labels of the
                wrong shape, and (CPU tensors) NaN/inf values, negative timesteps, labels out of range.
        """
        check_denoiser_inputs(hidden_states, timestep, class_labels, in_channels=self.config.in_channels,
                              patch_size=self.patch_size, num_classes=self.config.num_classes)
        batch_size, _, height, width = hidden_states.shape
        timestep = torch.as_tensor(timestep, device=hidden_states.device)
        if timestep.ndim == 0:
            timestep = timestep.expand(batch_size)
        conditioning = self.timestep_embedder(self.time_proj(timestep).to(hidden_states.dtype))
        conditioning = conditioning + self.class_embedder(class_labels)
        tokens = self.pos_embed(hidden_states)
        for block in self.blocks:
            tokens = block(tokens, conditioning)
        shift, scale = self.proj_out_1(nn.functional.silu(conditioning))[:, None].chunk(2, dim=-1)
        tokens = self.proj_out_2(_modulate(self.norm_out(tokens), shift, scale))
        grid = (height // self.patch_size, width // self.patch_size)
        output = unpatchify(tokens, self.patch_size, self.out_channels, grid)
        if not return_dict:
            return (output,)
        return Transformer2DModelOutput(sample=output)
