"""ToST, the Token Statistics Transformer (book §8.4; spec ``crate_family.md`` §3), for language and vision.

Both models stack the same block around the shared `whitebox_hf.nn.TokenStatisticsSelfAttention`:

    Z½ = Z + γ₁ ⊙ TSSA(LN Z)          linear-time compression against token statistics
    Z⁺ = Z½ + γ₂ ⊙ MLP(LN Z½)

`ToSTForCausalLM` runs causal TSSA on the nanoGPT scaffold and generates from a recurrent state
(`TokenStatisticsCache`): each new token costs the same whatever the context length. `ToSTForImageClassification`
runs vision TSSA on the authors' XCiT scaffold (`ToSTVisionModel`, configured by `ToSTVisionConfig`): a stride-2
conv stem, a Fourier position encoding, TSSA blocks on the patch tokens, then CaiT class-attention blocks that read
them into a class token.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling, ImageClassifierOutput

from ...nn import TokenStatisticsCache, TokenStatisticsSelfAttention, attend, check_pixel_values
from ..modeling_utils import image_classifier_output, run_layers
from ..language_modeling import WhiteboxCausalLMPreTrainedModel, WhiteboxDecoderModel, WhiteboxForCausalLM
from .configuration_tost import ToSTConfig, ToSTVisionConfig

__all__ = [
    "ToSTBlock",
    "ToSTModel",
    "ToSTForCausalLM",
    "ToSTVisionPreTrainedModel",
    "ToSTVisionModel",
    "ToSTForImageClassification",
]


class ToSTMLP(nn.Module):
    def __init__(self, config: ToSTConfig | ToSTVisionConfig):
        super().__init__()
        self.fc_in = nn.Linear(config.hidden_size, config.mlp_ratio * config.hidden_size, bias=config.bias)
        self.activation = ACT2FN["gelu"]
        self.fc_out = nn.Linear(config.mlp_ratio * config.hidden_size, config.hidden_size, bias=config.bias)
        self.fc_out._is_residual_output = True
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc_out(self.activation(self.fc_in(hidden_states))))


class ToSTBlock(GradientCheckpointingLayer):
    """``Z½ = Z + γ₁⊙TSSA(LN Z)``, ``Z⁺ = Z½ + γ₂⊙MLP(LN Z½)``; causal (language) or not (vision)."""

    def __init__(self, config: ToSTConfig | ToSTVisionConfig, layer_idx: int, is_causal: bool = True):
        super().__init__()
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, bias=config.bias)
        self.attention = TokenStatisticsSelfAttention(
            config.hidden_size,
            config.num_attention_heads,
            is_causal=is_causal,
            max_position_embeddings=config.max_position_embeddings if is_causal else None,
            projection_bias=config.bias,
            output_bias=config.bias,
            attention_dropout=config.attention_probs_dropout_prob,
            projection_dropout=config.hidden_dropout_prob,
            layer_idx=layer_idx,
        )
        self.attention.output_projection._is_residual_output = True
        self.mlp_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, bias=config.bias)
        self.mlp = ToSTMLP(config)
        self.layer_scale_init = config.layer_scale_init
        self.attention_scale = nn.Parameter(torch.full((config.hidden_size,), config.layer_scale_init))
        self.mlp_scale = nn.Parameter(torch.full((config.hidden_size,), config.layer_scale_init))

    def forward(
        self,
        hidden_states: torch.Tensor,
        token_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: TokenStatisticsCache | None = None,
        output_attentions: bool = False,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        update, memberships = self.attention(
            self.attention_norm(hidden_states),
            token_mask=token_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            output_attentions=output_attentions,
        )
        hidden_states = hidden_states + self.attention_scale * update
        hidden_states = hidden_states + self.mlp_scale * self.mlp(self.mlp_norm(hidden_states))
        return hidden_states, memberships


class ToSTModel(WhiteboxDecoderModel):
    """Causal ToST decoder. `attentions` (with ``output_attentions``) are the memberships Π ``(batch, heads,
    tokens)``: a linear-time model has no token-token attention map."""

    config: ToSTConfig
    config_class = ToSTConfig
    layer_class = ToSTBlock
    uses_attention_mask_4d = False
    _no_split_modules = ["ToSTBlock"]

    def make_cache(self) -> TokenStatisticsCache:
        return TokenStatisticsCache(self.config.num_hidden_layers)

    def forward(self, *args, past_key_values=None, **kwargs):
        if past_key_values is not None and not isinstance(past_key_values, TokenStatisticsCache):
            raise TypeError(
                "ToST generates from running token statistics: `past_key_values` must be a TokenStatisticsCache, "
                f"got {type(past_key_values).__name__}"
            )
        return super().forward(*args, past_key_values=past_key_values, **kwargs)


class ToSTForCausalLM(WhiteboxForCausalLM):
    """Causal ToST with the tied LM head. `generate()` keeps a `TokenStatisticsCache` (three running sums per
    layer), so each new token costs O(d) per layer whatever the context, up to ``max_position_embeddings``."""

    config: ToSTConfig
    config_class = ToSTConfig
    model_class = ToSTModel
    _no_split_modules = ["ToSTBlock"]

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        # generate() must not build a DynamicCache (key/value tensors); the model makes its own state cache.
        return False


# ----------------------------------------------------------------------------------------------------------------
# Vision


class ToSTConvStem(nn.Module):
    """XCiT's patch embedding: log2(patch) stride-2 3×3 convolutions, each followed by BatchNorm, GELU between.

    For patch 16 the widths are d/8 → d/4 → d/2 → d. (The authors use SyncBatchNorm; on one process it is
    BatchNorm.)"""

    def __init__(self, config: ToSTVisionConfig):
        super().__init__()
        num_stages = int(math.log2(config.patch_size))
        widths = [config.hidden_size // 2 ** (num_stages - 1 - i) for i in range(num_stages)]
        layers: list[nn.Module] = []
        in_channels = config.num_channels
        for stage, width in enumerate(widths):
            if stage:
                layers.append(nn.GELU())
            layers += [nn.Conv2d(in_channels, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width)]
            in_channels = width
        self.layers = nn.Sequential(*layers)
        self.num_channels = config.num_channels
        self.patch_size = config.patch_size

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        check_pixel_values(pixel_values, self.num_channels, self.patch_size)
        return self.layers(pixel_values)  # (B, d, H/patch, W/patch)


class FourierPositionEncoding(nn.Module):
    """XCiT's positional encoding: sines and cosines of the normalised (y, x) grid coordinates at geometric
    frequencies, mixed into ``d`` channels by a 1×1 convolution."""

    def __init__(self, config: ToSTVisionConfig, temperature: float = 10000.0):
        super().__init__()
        self.channels_per_axis = config.fourier_channels // 2
        self.temperature = temperature
        self.projection = nn.Conv2d(config.fourier_channels, config.hidden_size, kernel_size=1)

    def forward(self, batch_size: int, height: int, width: int) -> torch.Tensor:
        device, dtype = self.projection.weight.device, self.projection.weight.dtype
        scale, eps = 2 * math.pi, 1e-6
        y = torch.arange(1, height + 1, device=device, dtype=torch.float32)[:, None].expand(height, width)
        x = torch.arange(1, width + 1, device=device, dtype=torch.float32)[None, :].expand(height, width)
        y, x = y / (height + eps) * scale, x / (width + eps) * scale
        exponent = 2 * (torch.arange(self.channels_per_axis, device=device) // 2) / self.channels_per_axis
        frequencies = self.temperature ** exponent.float()

        def encode(axis):
            phase = axis[..., None] / frequencies  # (H, W, c)
            return torch.stack((phase[..., 0::2].sin(), phase[..., 1::2].cos()), dim=-1).flatten(-2)

        grid = torch.cat((encode(y), encode(x)), dim=-1).permute(2, 0, 1)[None].to(dtype)
        return self.projection(grid).expand(batch_size, -1, -1, -1)  # (B, d, H, W)


class ClassAttentionBlock(nn.Module):
    """CaiT class attention: only the class token is updated, reading every token (itself included).

        c ← c + γ₁ ⊙ Attn(q = LN c, k = v = LN [c; Z]),   c ← c + γ₂ ⊙ MLP(LN c)

    This is CaiT's form. XCiT's implementation, which the ToST code inherits, differs in two details that do not
    change the parameter count: the MLP residual starts from the *normalised* class token, and the patch tokens
    passed on to the next class-attention block are modified too (normalised and added to themselves). Here the
    patch tokens pass through unchanged, so every class-attention block reads the TSSA features.
    """

    def __init__(self, config: ToSTVisionConfig):
        super().__init__()
        d = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = d // config.num_attention_heads
        self.attention_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.query_key_value = nn.Linear(d, 3 * d, bias=config.bias)
        self.output_projection = nn.Linear(d, d, bias=True)
        self.mlp_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.mlp = ToSTMLP(config)
        self.layer_scale_init = config.layer_scale_init
        self.attention_scale = nn.Parameter(torch.full((d,), config.layer_scale_init))
        self.mlp_scale = nn.Parameter(torch.full((d,), config.layer_scale_init))

    def forward(self, tokens: torch.Tensor, output_attentions: bool = False):
        batch_size, num_tokens, d = tokens.shape
        qkv = self.query_key_value(self.attention_norm(tokens))
        qkv = qkv.view(batch_size, num_tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        query, key, value = qkv[0][:, :, :1], qkv[1], qkv[2]
        context, weights = attend(query, key, value, None, self.head_dim**-0.5, 0.0, False,
                                  "eager" if output_attentions else "sdpa", output_attentions)
        cls = tokens[:, :1] + self.attention_scale * self.output_projection(context.transpose(1, 2).reshape(batch_size, 1, d))
        cls = cls + self.mlp_scale * self.mlp(self.mlp_norm(cls))
        return torch.cat((cls, tokens[:, 1:]), dim=1), weights


class ToSTVisionPreTrainedModel(WhiteboxCausalLMPreTrainedModel):
    """Base of the vision ToST models: their own configuration (`ToSTVisionConfig`, ``model_type="tost_vision"``)
    so that `AutoModel` on a saved vision ToST gives `ToSTVisionModel`, and the nanoGPT-style initialisation the
    language models share (normal(0.02) linears, residual projections scaled by 1/√(2L), truncated-normal class
    token, layer scales at ``layer_scale_init``)."""

    config: ToSTVisionConfig
    config_class = ToSTVisionConfig
    base_model_prefix = "tost"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _no_split_modules = ["ToSTBlock", "ClassAttentionBlock"]

    def __init__(self, config: ToSTVisionConfig, *args, **kwargs):
        if not isinstance(config, ToSTVisionConfig):
            raise TypeError(f"vision ToST is configured by a `ToSTVisionConfig`, got {type(config).__name__} "
                            "(`ToSTConfig` configures the causal language model)")
        super().__init__(config, *args, **kwargs)


class ToSTVisionModel(ToSTVisionPreTrainedModel):
    """Vision ToST backbone: `last_hidden_state` is ``[class token; patch tokens]``, `pooler_output` the final
    LayerNorm of the class token. `attentions` (with ``output_attentions``) are the TSSA memberships Π of each
    block ``(batch, heads, patches)`` followed by the class-attention maps ``(batch, heads, 1, 1 + patches)``."""

    def __init__(self, config: ToSTVisionConfig):
        super().__init__(config)
        self.patch_embedding = ToSTConvStem(config)
        self.position_encoding = FourierPositionEncoding(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.layers = nn.ModuleList([ToSTBlock(config, i, is_causal=False) for i in range(config.num_hidden_layers)])
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.class_attention_layers = nn.ModuleList(
            [ClassAttentionBlock(config) for _ in range(config.num_class_attention_layers)]
        )
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.patch_embedding

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
        # Checked before the cast to the model's dtype, which would hide integer, bool or complex images.
        check_pixel_values(pixel_values, self.config.num_channels, self.config.patch_size)
        features = self.patch_embedding(pixel_values.to(self.cls_token.dtype))
        batch_size, _, height, width = features.shape
        features = features + self.position_encoding(batch_size, height, width)
        hidden_states = self.dropout(features.flatten(2).transpose(1, 2))  # (B, N, d)

        hidden_states, all_hidden_states, all_attentions = run_layers(
            self.layers, hidden_states, output_hidden_states, output_attentions
        )
        hidden_states = torch.cat((self.cls_token.expand(batch_size, -1, -1), hidden_states), dim=1)
        for block in self.class_attention_layers:
            hidden_states, weights = block(hidden_states, output_attentions=output_attentions)
            if output_attentions:
                all_attentions += (weights,)
        hidden_states = self.final_norm(hidden_states)
        pooled = hidden_states[:, 0]
        if not return_dict:
            return tuple(v for v in (hidden_states, pooled, all_hidden_states, all_attentions) if v is not None)
        return BaseModelOutputWithPooling(
            last_hidden_state=hidden_states,
            pooler_output=pooled,
            hidden_states=all_hidden_states,
            attentions=all_attentions,
        )


class ToSTForImageClassification(ToSTVisionPreTrainedModel):
    """Vision ToST with a linear head on the class token (`ToSTVisionModel`'s `pooler_output`)."""

    def __init__(self, config: ToSTVisionConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.tost = ToSTVisionModel(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)  # num_labels >= 1: the config checks it
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
        outputs = self.tost(
            pixel_values, output_attentions=output_attentions, output_hidden_states=output_hidden_states, return_dict=True
        )
        return image_classifier_output(self, outputs, labels, return_dict, **kwargs)
