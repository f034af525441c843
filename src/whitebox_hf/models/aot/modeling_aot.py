"""AoT: the attention-only transformer language model (spec ``crate_family.md`` §4).

Book §8.4: with the sparsification step removed, unrolling compression alone gives layers
``Z + η Σ_k U_k U_kᵀ Z φ(Zᵀ U_k U_kᵀ Z)``, i.e. residual MSSA. AoT-MHSA swaps in standard attention.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

from ...nn import MultiHeadSelfAttention, MultiHeadSubspaceSelfAttention
from ..language_modeling import WhiteboxDecoderModel, WhiteboxForCausalLM
from .configuration_aot import AoTConfig

__all__ = ["AoTLayer", "AoTModel", "AoTForCausalLM"]


class AoTLayer(GradientCheckpointingLayer):
    """``Z⁺ = Z + Attention(LN Z)``: a compression step and nothing else."""

    def __init__(self, config: AoTConfig, layer_idx: int):
        super().__init__()
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, bias=config.bias)
        if config.attention_type == "mssa":
            self.attention = MultiHeadSubspaceSelfAttention.from_config(
                config, config.bias, is_causal=True, layer_idx=layer_idx
            )
        else:
            self.attention = MultiHeadSelfAttention(
                config.hidden_size,
                config.num_attention_heads,
                bias=config.bias,
                attention_dropout=config.attention_probs_dropout_prob,
                projection_dropout=config.hidden_dropout_prob,
                is_causal=True,
                layer_idx=layer_idx,
            )
        self.attention.output_projection._is_residual_output = True

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        attn_implementation: str = "sdpa",
        past_key_values=None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        update, weights = self.attention(
            self.attention_norm(hidden_states),
            attention_mask=attention_mask,
            output_attentions=output_attentions,
            attn_implementation=attn_implementation,
            past_key_values=past_key_values,
        )
        return hidden_states + update, weights


class AoTModel(WhiteboxDecoderModel):
    config: AoTConfig
    config_class = AoTConfig
    layer_class = AoTLayer
    _no_split_modules = ["AoTLayer"]


class AoTForCausalLM(WhiteboxForCausalLM):
    """AoT with the tied LM head; generation uses a KV cache."""

    config: AoTConfig
    config_class = AoTConfig
    model_class = AoTModel
    _no_split_modules = ["AoTLayer"]
