"""PyTorch CRATE and CRATE-α image models (book §8.4.1 and the CRATE-α section of Chapter 8).

The data path follows the book's §8.1 notation:

    pixel_values ─f^emb→ tokens Z⁰ ─f^backbone (L CRATE layers)→ Z^L ─f^ext (pool + LN)→ z ─h→ logits

Each CRATE layer is one unrolled step of optimising the sparse rate reduction objective:
compression by MSSA (`whitebox_hf.nn.MultiHeadSubspaceSelfAttention`), then sparsification by ISTA
(`whitebox_hf.nn.ISTA`) or, for CRATE-α, overcomplete dictionary learning (`whitebox_hf.nn.OvercompleteDictionaryLearning`).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling, ImageClassifierOutput

from ...nn import (
    ISTA,
    ConvPatchEmbedding,
    LinearPatchEmbedding,
    MultiHeadSubspaceSelfAttention,
    OvercompleteDictionaryLearning,
    interpolate_position_embedding,
)
from ..modeling_utils import WhiteboxPreTrainedModel, image_classifier_output
from .configuration_crate import CrateConfig

__all__ = ["CrateEmbeddings", "CrateLayer", "CratePreTrainedModel", "CrateModel", "CrateForImageClassification"]


class CrateEmbeddings(nn.Module):
    """f^emb: patch embedding, class token, learned positions (interpolated for other image sizes)."""

    def __init__(self, config: CrateConfig):
        super().__init__()
        if config.patch_embedding_type == "linear":
            self.patch_embeddings = LinearPatchEmbedding(
                config.num_channels, config.patch_size, config.hidden_size, config.layer_norm_eps
            )
        else:
            self.patch_embeddings = ConvPatchEmbedding(config.num_channels, config.patch_size, config.hidden_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.position_embeddings = nn.Parameter(torch.zeros(1, config.num_patches + 1, config.hidden_size))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.patch_size = config.patch_size

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        patch_tokens = self.patch_embeddings(pixel_values)  # validates the input shape
        height, width = pixel_values.shape[-2:]
        positions = interpolate_position_embedding(
            self.position_embeddings, height // self.patch_size, width // self.patch_size
        )
        cls_tokens = self.cls_token.expand(patch_tokens.shape[0], -1, -1)
        tokens = torch.cat([cls_tokens, patch_tokens], dim=1) + positions
        return self.dropout(tokens)


class CrateLayer(GradientCheckpointingLayer):
    """One CRATE layer (book §8.4.1):

        Z^{ℓ+½} = Z^ℓ + MSSA(LN(Z^ℓ))                       compression against K subspaces
        Z^{ℓ+1} = ISTA(LN(Z^{ℓ+½}))                          CRATE: sparse codes, no residual
        Z^{ℓ+1} = Z^{ℓ+½} + ODL(LN(Z^{ℓ+½}))                 CRATE-α: overcomplete dictionary, residual
        Z^{ℓ+1} = Z^{ℓ+½} + ISTA(LN(Z^{ℓ+½}))                ablation (`ista_residual=True`), not in the book

    With ``is_causal`` the MSSA masks future tokens and can use a KV cache: the layer of the causal CRATE
    language model (spec ``crate_family.md`` §5), which reads the same configuration fields.
    """

    def __init__(self, config: CrateConfig, is_causal: bool = False, layer_idx: int | None = None):
        super().__init__()
        self.block_type = config.block_type
        # CRATE-α (ODL) always adds its input back; plain CRATE only as the `ista_residual` ablation.
        self.sparse_coding_residual = config.block_type == "odl" or config.ista_residual
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = MultiHeadSubspaceSelfAttention(
            config.hidden_size,
            config.num_attention_heads,
            config.head_dim,
            output_bias=config.attention_output_bias,
            attention_dropout=config.attention_probs_dropout_prob,
            projection_dropout=config.hidden_dropout_prob,
            is_causal=is_causal,
            layer_idx=layer_idx,
        )
        self.sparse_coding_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        if config.block_type == "ista":
            self.sparse_coding = ISTA(config.hidden_size, config.ista_step_size, config.ista_lambda)
        else:
            self.sparse_coding = OvercompleteDictionaryLearning(
                config.hidden_size, config.odl_expansion, config.odl_steps, config.ista_step_size, config.ista_lambda
            )

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        attn_implementation: str = "sdpa",
        past_key_values=None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        compressed, attention_probabilities = self.attention(
            self.attention_norm(hidden_states),
            attention_mask=attention_mask,
            output_attentions=output_attentions,
            attn_implementation=attn_implementation,
            past_key_values=past_key_values,
        )
        compressed = hidden_states + compressed
        sparse = self.sparse_coding(self.sparse_coding_norm(compressed))
        if self.sparse_coding_residual:
            sparse = compressed + sparse
        return sparse, attention_probabilities


class CratePreTrainedModel(WhiteboxPreTrainedModel):
    config: CrateConfig
    config_class = CrateConfig
    base_model_prefix = "crate"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["CrateEmbeddings", "CrateLayer"]

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, CrateEmbeddings):
            std = self.config.position_embedding_init_std
            init.normal_(module.cls_token, mean=0.0, std=std)
            init.normal_(module.position_embeddings, mean=0.0, std=std)
        elif isinstance(module, (ISTA, OvercompleteDictionaryLearning)):
            # The dictionaries keep the authors' kaiming-uniform init (Ma-Lab-Berkeley/CRATE, CRATE-alpha).
            module.reset_parameters()


class CrateModel(CratePreTrainedModel):
    """The CRATE backbone: f^emb, L CRATE layers (f^backbone) and the feature extractor f^ext.

    `last_hidden_state` is ``Z^L`` (for CRATE: non-negative sparse codes); `pooler_output` is
    ``LN(pool(Z^L))``, the feature a classification head or probe reads.
    """

    def __init__(self, config: CrateConfig):
        super().__init__(config)
        self.embeddings = CrateEmbeddings(config)
        self.layers = nn.ModuleList([CrateLayer(config) for _ in range(config.num_hidden_layers)])
        self.pooler_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.patch_embeddings

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling | tuple:
        if pixel_values is None:
            raise ValueError("`pixel_values` is required")
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        backend = self._attention_backend(output_attentions)

        expected_dtype = self.embeddings.position_embeddings.dtype
        hidden_states = self.embeddings(pixel_values.to(expected_dtype))
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for layer in self.layers:
            hidden_states, attention_probabilities = layer(
                hidden_states, output_attentions=output_attentions, attn_implementation=backend
            )
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            if output_attentions:
                all_attentions += (attention_probabilities,)

        pooled = hidden_states[:, 0] if self.config.pooling == "cls" else hidden_states.mean(dim=1)
        pooled = self.pooler_norm(pooled)
        if not return_dict:
            return tuple(v for v in (hidden_states, pooled, all_hidden_states, all_attentions) if v is not None)
        return BaseModelOutputWithPooling(
            last_hidden_state=hidden_states,
            pooler_output=pooled,
            hidden_states=all_hidden_states,
            attentions=all_attentions,
        )


class CrateForImageClassification(CratePreTrainedModel):
    """CRATE with the linear head h on the pooled feature (book §8.4.1): ``logits = W·LN(z) + b``."""

    def __init__(self, config: CrateConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.crate = CrateModel(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels) if config.num_labels > 0 else nn.Identity()
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> ImageClassifierOutput | tuple:
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.crate(
            pixel_values,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        return image_classifier_output(self, outputs, labels, return_dict, **kwargs)
