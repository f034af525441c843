"""PyTorch CRATE and CRATE-α image models (book §8.4.1 and the CRATE-α section of Chapter 8).

The data path follows the book's §8.1 notation:

    pixel_values ─f^emb→ tokens Z⁰ ─f^backbone (L CRATE layers)→ Z^L ─f^ext (pool + LN)→ z ─h→ logits

Each CRATE layer is one unrolled step of optimising the sparse rate reduction objective:
compression by MSSA (`whitebox_hf.nn.MultiHeadSubspaceSelfAttention`), then sparsification by ISTA
(`whitebox_hf.nn.ISTA`) or, for CRATE-α, overcomplete dictionary learning (`whitebox_hf.nn.OvercompleteDictionaryLearning`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.conversion_mapping import register_checkpoint_conversion_mapping
from transformers.core_model_loading import WeightRenaming
from transformers.modeling_outputs import BaseModelOutputWithPooling, ImageClassifierOutput
from transformers.utils import ModelOutput

from ...nn import (
    ISTA,
    ConvPatchEmbedding,
    LinearPatchEmbedding,
    MultiHeadSubspaceSelfAttention,
    OvercompleteDictionaryLearning,
    check_pixel_values,
    interpolate_position_embedding,
    patchify,
    sincos_position_embedding_2d,
    unpatchify,
)
from ...utils.validation import check_binary_mask, check_tensor
from .masked_modeling import masked_patch_loss, random_patch_mask
from ..modeling_utils import WhiteboxPreTrainedModel, image_classifier_output, run_layers
from .configuration_crate import CrateConfig

__all__ = [
    "CrateEmbeddings",
    "CrateLayer",
    "CratePreTrainedModel",
    "CrateModel",
    "CrateForImageClassification",
    "CrateMAEDecoderLayer",
    "CrateMaskedImageModelingOutput",
    "CrateForMaskedImageModeling",
    "patchify",
    "unpatchify",
    "sincos_position_embedding_2d",
    "CRATE_MAE_LEGACY_RENAMES",
]



def check_patch_mask(bool_masked_pos) -> None:
    """``bool_masked_pos`` must be a tensor of bools or of exact 0/1 values (values read on CPU only)."""
    check_tensor("bool_masked_pos", bool_masked_pos)
    check_binary_mask("bool_masked_pos", bool_masked_pos)

class CrateEmbeddings(nn.Module):
    """f^emb: patch embedding, class token and positions.

    Positions are CRATE's learned table (interpolated for other image sizes) or, with
    ``position_embedding_type="sincos"``, CRATE-MAE's fixed 2-D sin-cos table (a non-persistent buffer, evaluated
    on other grids). With ``use_mask_token`` the patches chosen by ``bool_masked_pos`` are replaced by a learned
    mask token *before* positions are added, so every masked slot still knows where it is (CRATE-MAE, spec §6).
    """

    def __init__(self, config: CrateConfig, use_mask_token: bool = False):
        super().__init__()
        if config.position_embedding_type not in ("learned", "sincos"):
            raise ValueError(f"`position_embedding_type` must be resolved to 'learned' or 'sincos' before the "
                             f"embeddings are built, got {config.position_embedding_type!r}")
        if config.patch_embedding_type == "linear":
            self.patch_embeddings = LinearPatchEmbedding(
                config.num_channels, config.patch_size, config.hidden_size, config.layer_norm_eps
            )
        else:
            self.patch_embeddings = ConvPatchEmbedding(config.num_channels, config.patch_size, config.hidden_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size)) if use_mask_token else None
        self.position_embedding_type = config.position_embedding_type
        self.grid_size = config.image_size // config.patch_size
        if self.position_embedding_type == "sincos":
            # Frozen by construction: a buffer, filled again in `_init_weights` (it is not saved).
            self.register_buffer("position_embeddings", self.sincos_table(), persistent=False)
        else:
            self.position_embeddings = nn.Parameter(torch.zeros(1, config.num_patches + 1, config.hidden_size))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.patch_size = config.patch_size

    def sincos_table(self) -> torch.Tensor:
        """The sin-cos table of the configured grid (what `position_embeddings` holds in ``"sincos"`` mode)."""
        return sincos_position_embedding_2d(self.cls_token.shape[-1], self.grid_size, self.grid_size)

    def positions(self, grid_height: int, grid_width: int) -> torch.Tensor:
        if self.position_embedding_type == "learned":
            return interpolate_position_embedding(self.position_embeddings, grid_height, grid_width)
        return sincos_positions(self.position_embeddings, self.grid_size, grid_height, grid_width)

    def forward(self, pixel_values: torch.Tensor, bool_masked_pos: torch.Tensor | None = None) -> torch.Tensor:
        patch_tokens = self.patch_embeddings(pixel_values)  # validates the input shape
        batch_size, num_patches, _ = patch_tokens.shape
        if bool_masked_pos is not None:
            if self.mask_token is None:
                raise ValueError(
                    "`bool_masked_pos` needs a mask token: build `CrateModel(config, use_mask_token=True)`"
                )
            if tuple(bool_masked_pos.shape) != (batch_size, num_patches):
                raise ValueError(
                    f"`bool_masked_pos` must have shape (batch, num_patches) = {(batch_size, num_patches)}, "
                    f"got {tuple(bool_masked_pos.shape)}"
                )
            mask = bool_masked_pos.to(device=patch_tokens.device, dtype=torch.bool).unsqueeze(-1)
            patch_tokens = torch.where(mask, self.mask_token.to(patch_tokens.dtype), patch_tokens)
        height, width = pixel_values.shape[-2:]
        positions = self.positions(height // self.patch_size, width // self.patch_size)
        cls_tokens = self.cls_token.expand(batch_size, -1, -1)
        tokens = torch.cat([cls_tokens, patch_tokens], dim=1) + positions
        return self.dropout(tokens)


def sincos_positions(table: torch.Tensor, grid_size: int, grid_height: int, grid_width: int) -> torch.Tensor:
    """``table`` (the sin-cos table of a ``grid_size``² grid) or the same formula evaluated on another grid."""
    if (grid_height, grid_width) == (grid_size, grid_size):
        return table
    # Sin-cos positions are a formula, not a learned table: evaluate it on the new grid.
    return sincos_position_embedding_2d(table.shape[-1], grid_height, grid_width).to(table)


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
        self.attention = MultiHeadSubspaceSelfAttention.from_config(
            config, config.attention_output_bias, is_causal=is_causal, layer_idx=layer_idx
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
    _no_split_modules = ["CrateEmbeddings", "CrateLayer", "CrateMAEDecoderLayer"]

    @torch.no_grad()
    def _init_weights(self, module):
        # A sin-cos configuration is a CRATE-MAE (or its encoder, loaded alone): MAE's scheme for every module
        # (spec §6), xavier-uniform Linears and patch projection, normal(0.02) tokens. The ISTA dictionaries keep
        # CRATE's kaiming-uniform init in both schemes (MAE's `apply` only visits Linear and LayerNorm). The
        # backbone is a sub-model with its own `_init_weights`, so the choice must follow the configuration,
        # not the class.
        mae = self.config.position_embedding_type == "sincos"
        if mae and isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif mae and isinstance(module, nn.Conv2d):
            # xavier on the weight viewed as (d, C·ps²), as MAE does; bound computed here so the init
            # function sees the real parameter (and its loaded/initialised flag), not a view.
            fan_out, fan_in = module.weight.shape[0], module.weight[0].numel()
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            init.uniform_(module.weight, -bound, bound)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, CrateEmbeddings):
            std = self.config.initializer_range if mae else self.config.position_embedding_init_std
            init.normal_(module.cls_token, mean=0.0, std=std)
            if module.mask_token is not None:
                init.normal_(module.mask_token, mean=0.0, std=self.config.initializer_range)
            if mae:
                init.copy_(module.position_embeddings, module.sincos_table())
            else:
                init.normal_(module.position_embeddings, mean=0.0, std=std)
        elif isinstance(module, CrateForMaskedImageModeling):
            grid = self.config.image_size // self.config.patch_size
            init.copy_(module.decoder_position_embeddings,
                       sincos_position_embedding_2d(self.config.hidden_size, grid, grid))
        else:
            super()._init_weights(module)
            if isinstance(module, (ISTA, OvercompleteDictionaryLearning)):
                # The dictionaries keep the authors' kaiming-uniform init (Ma-Lab-Berkeley/CRATE, CRATE-alpha).
                module.reset_parameters()


class CrateModel(CratePreTrainedModel):
    """The CRATE backbone: f^emb, L CRATE layers (f^backbone) and the feature extractor f^ext.

    `last_hidden_state` is ``Z^L`` (for CRATE: non-negative sparse codes); `pooler_output` is
    ``LN(pool(Z^L))``, the feature a classification head or probe reads.

    It is also the encoder of CRATE-MAE (`CrateForMaskedImageModeling.crate`, built with ``use_mask_token=True``):
    `AutoModel` on a CRATE-MAE folder gives this class with every encoder weight loaded (only the decoder and the
    mask token are left over), and its `pooler_output` (class-token pooling) is the class token of the MAE's
    representation.

    Args:
        config (`CrateConfig`): the model configuration; an unset ``position_embedding_type`` becomes
            `"learned"` (recorded in the configuration).
        use_mask_token (`bool`, *optional*, defaults to `False`): build the learned mask token that
            ``forward(bool_masked_pos=...)`` puts in place of the masked patches.
    """

    def __init__(self, config: CrateConfig, use_mask_token: bool = False):
        if config.position_embedding_type is None:
            config.position_embedding_type = "learned"
        super().__init__(config)
        self.embeddings = CrateEmbeddings(config, use_mask_token=use_mask_token)
        self.layers = nn.ModuleList([CrateLayer(config, layer_idx=i) for i in range(config.num_hidden_layers)])
        pooler_eps = config.layer_norm_eps if config.pooler_layer_norm_eps is None else config.pooler_layer_norm_eps
        self.pooler_norm = nn.LayerNorm(config.hidden_size, eps=pooler_eps)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.patch_embeddings

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        bool_masked_pos: torch.BoolTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling | tuple:
        r"""
        bool_masked_pos (`torch.BoolTensor` of shape `(batch, num_patches)`, *optional*):
            True for the patches to replace by the mask token (needs ``use_mask_token=True``).
        """
        if pixel_values is None:
            raise ValueError("`pixel_values` is required")
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        backend = self._attention_backend(output_attentions)

        # Checked before the cast to the model's dtype, which would hide integer, bool or complex images.
        check_pixel_values(pixel_values, self.config.num_channels, self.config.patch_size)
        if bool_masked_pos is not None:
            check_patch_mask(bool_masked_pos)
        expected_dtype = self.embeddings.cls_token.dtype
        hidden_states = self.embeddings(pixel_values.to(expected_dtype), bool_masked_pos=bool_masked_pos)
        hidden_states, all_hidden_states, all_attentions = run_layers(
            self.layers, hidden_states, output_hidden_states, output_attentions, attn_implementation=backend
        )

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
        outputs = self.crate(
            pixel_values,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        return image_classifier_output(self, outputs, labels, return_dict, **kwargs)


# ---------------------------------------------------------------------------------------------------- CRATE-MAE


class CrateMAEDecoderLayer(GradientCheckpointingLayer):
    """One CRATE-MAE decoder layer (spec ``crate_family.md`` §6), the encoder layer run "backwards":

        Y      = LN₁(Z) Eᵀ                 E: free d×d bias-free map (a transposed dictionary), no ReLU
        Z_new  = Y − MSSA(LN₂(Y))          MINUS: undo the encoder's compression step

    The encoder's ISTA step sparsifies with a dictionary; the decoder maps codes back with a linear E. The
    encoder adds ``MSSA`` (a gradient step that compresses); the decoder subtracts it (a step that expands).
    """

    def __init__(self, config: CrateConfig, layer_idx: int | None = None):
        super().__init__()
        self.dictionary_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dictionary = nn.Linear(config.hidden_size, config.hidden_size, bias=False)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = MultiHeadSubspaceSelfAttention.from_config(
            config, config.attention_output_bias, layer_idx=layer_idx
        )

    def forward(
        self,
        hidden_states: torch.Tensor,
        output_attentions: bool = False,
        attn_implementation: str = "sdpa",
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        decoded = self.dictionary(self.dictionary_norm(hidden_states))
        expansion, attention_probabilities = self.attention(
            self.attention_norm(decoded), output_attentions=output_attentions, attn_implementation=attn_implementation
        )
        return decoded - expansion, attention_probabilities


@dataclass
class CrateMaskedImageModelingOutput(ModelOutput):
    r"""
    Output of `CrateForMaskedImageModeling`.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*):
            Per-patch MSE averaged over the masked patches only; `None` when the mask hides no patch (the loss
            is undefined there).
        logits (`torch.FloatTensor` of shape `(batch, num_patches, patch_size² · num_channels)`):
            Predicted pixels of every patch, in `patchify` layout (class token dropped).
        reconstruction (`torch.FloatTensor` of shape `(batch, num_channels, height, width)`):
            `logits` unpatchified into an image.
        mask (`torch.BoolTensor` of shape `(batch, num_patches)`):
            True where a patch was replaced by the mask token (the given `bool_masked_pos` or the sampled one).
        last_hidden_state (`torch.FloatTensor` of shape `(batch, 1 + num_patches, hidden_size)`):
            The encoder's output after its final LayerNorm (class token first): the representation.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*):
            Encoder input and the output of every encoder layer, when `output_hidden_states=True`.
        attentions (`tuple(torch.FloatTensor)`, *optional*):
            Encoder MSSA probabilities per layer, when `output_attentions=True`.
        decoder_hidden_states (`tuple(torch.FloatTensor)`, *optional*):
            Decoder input and the output of every decoder layer, when `output_hidden_states=True`.
        decoder_attentions (`tuple(torch.FloatTensor)`, *optional*):
            Decoder MSSA probabilities per layer, when `output_attentions=True`.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    reconstruction: torch.FloatTensor | None = None
    mask: torch.BoolTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    decoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    decoder_attentions: tuple[torch.FloatTensor, ...] | None = None


class CrateForMaskedImageModeling(CratePreTrainedModel):
    r"""CRATE-MAE (spec ``crate_family.md`` §6; Ma-Lab-Berkeley/CRATE ``model/crate_ae/``): a masked
    autoencoder whose encoder is a stack of CRATE layers and whose decoder is the layer-wise inverse
    (`CrateMAEDecoderLayer`).

        pixels ─patch embed─▶ masked patches := mask token ─+ sin-cos─▶ [cls, Z] ─L CRATE layers─▶ LN
               ─+ sin-cos─▶ L' decoder layers ─▶ LN ─▶ Linear(d → ps²·C) ─▶ drop cls ─▶ patches

    Unlike He et al.'s MAE, masked tokens are **not dropped**: the full sequence (class token + every patch)
    goes through the encoder, so the encoder keeps the fixed token geometry CRATE's derivation assumes. The
    mask token replaces the patch embedding *before* positions are added, so every masked slot still knows
    where it is.

    The encoder is a `CrateModel` under ``crate`` (the ``ViTMAEForPreTraining.vit`` pattern), built with a mask token
    and ``position_embedding_type="sincos"``: `AutoModel` on a saved CRATE-MAE gives that encoder with every weight
    loaded. The encoder's final LayerNorm is the backbone's ``pooler_norm`` applied to every token, so the
    backbone's `pooler_output` (class-token pooling) equals ``last_hidden_state[:, 0]`` here.

    Positions are fixed 2-D sin-cos tables (non-persistent buffers, rebuilt for other grid sizes); they are not
    parameters and not in the checkpoint. The authors' model also builds a ``decoder_embed`` Linear(d→d) that
    its forward never calls (encoder and decoder have the same width); it is left out here, as an unused
    parameter gets no gradient and breaks DDP without ``find_unused_parameters``. Hence ``num_parameters()`` is
    smaller than the book's count by ``d² + d`` (``decoder_embed``) and ``2·197·d`` (the two frozen tables):
    24,846,528 vs 25.41M for `crate-mae-small`, 43,745,280 vs 44.64M for `crate-mae-base`.

    Checkpoints saved before the encoder moved under ``crate`` (root keys ``patch_embeddings``, ``cls_token``,
    ``mask_token``, ``encoder_layers``, ``encoder_norm``) still load through this class: the renames are
    registered with transformers' checkpoint-conversion mapping (`CRATE_MAE_LEGACY_RENAMES`), and
    `save_pretrained` writes the current layout.

    Args:
        config (`CrateConfig`): an unset ``position_embedding_type`` becomes `"sincos"` (recorded in the
            configuration); `"learned"` is refused, as CRATE-MAE's positions are fixed tables.
    """

    def __init__(self, config: CrateConfig):
        if config.position_embedding_type is None:
            config.position_embedding_type = "sincos"
        if config.position_embedding_type != "sincos":
            raise ValueError(f"CRATE-MAE uses fixed sin-cos positions: `position_embedding_type` must be 'sincos' "
                             f"(or unset), got {config.position_embedding_type!r}")
        if config.hidden_size % 4:
            raise ValueError(f"CRATE-MAE's 2-D sin-cos positions need `hidden_size` divisible by 4, got "
                             f"{config.hidden_size}")
        super().__init__(config)
        self.crate = CrateModel(config, use_mask_token=True)
        grid = config.image_size // config.patch_size
        self.register_buffer(
            "decoder_position_embeddings", sincos_position_embedding_2d(config.hidden_size, grid, grid),
            persistent=False,
        )
        self.decoder_layers = nn.ModuleList(
            [CrateMAEDecoderLayer(config, layer_idx=i) for i in range(config.decoder_num_hidden_layers)]
        )
        self.decoder_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder_pred = nn.Linear(config.hidden_size, config.patch_size**2 * config.num_channels)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.crate.embeddings.patch_embeddings

    def save_pretrained(self, save_directory, *args, save_original_format: bool = False, **kwargs):
        """`PreTrainedModel.save_pretrained`, but in the current key layout by default: transformers would
        otherwise undo the registered legacy renames (`CRATE_MAE_LEGACY_RENAMES`) and write the old layout, which
        `AutoModel` cannot read."""
        return super().save_pretrained(save_directory, *args, save_original_format=save_original_format, **kwargs)

    def patchify(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` → reconstruction targets ``(B, N, ps²·C)``."""
        return patchify(pixel_values, self.config.patch_size)

    def unpatchify(self, patches: torch.Tensor, grid_size: tuple[int, int] | None = None) -> torch.Tensor:
        """Patches ``(B, N, ps²·C)`` → images ``(B, C, H, W)`` (square grid unless ``grid_size=(h, w)``)."""
        return unpatchify(patches, self.config.patch_size, self.config.num_channels, grid_size)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        bool_masked_pos: torch.BoolTensor | None = None,
        generator: torch.Generator | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> CrateMaskedImageModelingOutput | tuple:
        r"""
        bool_masked_pos (`torch.BoolTensor` of shape `(batch, num_patches)`, *optional*):
            True for the patches to hide. When omitted, each sample hides ``int(num_patches · mask_ratio)``
            patches drawn with `generator` (torch's default generator if `None`) on the generator's device.
        generator (`torch.Generator`, *optional*):
            Source of randomness for the sampled mask.

        `loss` is `None` when the mask hides no patch. For a given mask that takes a look at its values, done on
        CPU tensors only: on an accelerator the check would stall the device, and an empty mask gives a NaN loss.
        """
        if pixel_values is None:
            raise ValueError("`pixel_values` is required")
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        backend = self._attention_backend(output_attentions)

        check_pixel_values(pixel_values, self.config.num_channels, self.config.patch_size)
        pixel_values = pixel_values.to(self.crate.embeddings.cls_token.dtype)
        batch_size = pixel_values.shape[0]
        grid_height = pixel_values.shape[-2] // self.config.patch_size
        grid_width = pixel_values.shape[-1] // self.config.patch_size
        num_patches = grid_height * grid_width
        if bool_masked_pos is None:
            bool_masked_pos = random_patch_mask(
                batch_size, num_patches, self.config.mask_ratio, generator=generator, device=pixel_values.device
            )
            hides_a_patch = int(num_patches * self.config.mask_ratio) > 0
        elif check_patch_mask(bool_masked_pos) or tuple(bool_masked_pos.shape) != (batch_size, num_patches):
            raise ValueError(
                f"`bool_masked_pos` must have shape (batch, num_patches) = {(batch_size, num_patches)}, "
                f"got {tuple(bool_masked_pos.shape)}"
            )
        else:
            hides_a_patch = bool(bool_masked_pos.any()) if bool_masked_pos.device.type == "cpu" else True
        bool_masked_pos = bool_masked_pos.to(device=pixel_values.device, dtype=torch.bool)

        # Spec §6: masked patches are replaced (not dropped), then the full sequence is encoded.
        outputs = self.crate(
            pixel_values,
            bool_masked_pos=bool_masked_pos,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        encoded = self.crate.pooler_norm(outputs.last_hidden_state)

        positions = sincos_positions(self.decoder_position_embeddings, self.crate.embeddings.grid_size,
                                     grid_height, grid_width)
        hidden_states, decoder_hidden_states, decoder_attentions = run_layers(
            self.decoder_layers, encoded + positions, output_hidden_states, output_attentions,
            attn_implementation=backend,
        )
        logits = self.decoder_pred(self.decoder_norm(hidden_states))[:, 1:]
        reconstruction = self.unpatchify(logits, (grid_height, grid_width))

        loss = None
        if hides_a_patch:
            loss = masked_patch_loss(
                logits, self.patchify(pixel_values), bool_masked_pos, normalize_target=self.config.norm_pix_loss
            )

        output = CrateMaskedImageModelingOutput(
            loss=loss,
            logits=logits,
            reconstruction=reconstruction,
            mask=bool_masked_pos,
            last_hidden_state=encoded,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            decoder_hidden_states=decoder_hidden_states,
            decoder_attentions=decoder_attentions,
        )
        return output if return_dict else output.to_tuple()


# Pre-`crate.` CRATE-MAE checkpoints kept the encoder at the root; `from_pretrained` renames their keys on load.
CRATE_MAE_LEGACY_RENAMES = (
    (r"^patch_embeddings", "crate.embeddings.patch_embeddings"),
    (r"^cls_token", "crate.embeddings.cls_token"),
    (r"^mask_token", "crate.embeddings.mask_token"),
    (r"^encoder_layers", "crate.layers"),
    (r"^encoder_norm", "crate.pooler_norm"),
)
register_checkpoint_conversion_mapping(
    CrateForMaskedImageModeling.__name__,
    [WeightRenaming(source, target) for source, target in CRATE_MAE_LEGACY_RENAMES],
    overwrite=True,
)
