"""diffusers' `DiTTransformer2DModel`, built and initialised the way DiT (Peebles & Xie) trains it from scratch.

diffusers ships the DiT architecture but not DiT's initialisation (its weights normally come from a converted
checkpoint; spec ``ssl_and_generation.md`` §4.2). `build_dit_transformer` adds it:

* every adaLN-Zero modulation linear (``transformer_blocks[i].norm1.linear``, the final ``proj_out_1``) and the
  output projection ``proj_out_2`` are zero: each block starts as the identity and the model outputs exactly 0;
* every other linear and the patch-embedding convolution (viewed as a linear) are xavier-uniform with zero bias;
* timestep-MLP and class-embedding weights are normal(0, 0.02).

Class conditioning: ``num_embeds_ada_norm = num_classes``; the class table has ``num_classes + 1`` rows and row
``num_classes`` is the null (unconditional) class used by classifier-free guidance.

Label dropout happens in exactly one place — the training script. diffusers' `LabelEmbedding` would also drop
labels by itself whenever the model is in training mode (p = 0.1), and every DiT block owns its own embedder, so
each block would drop a *different* random subset. `disable_builtin_label_dropout` sets those probabilities to 0
(the null row stays in the table), which `build_dit_transformer` always does; call it again after
``DiTTransformer2DModel.from_pretrained`` before fine-tuning (loading rebuilds the embedders with p = 0.1).
"""

from __future__ import annotations

from diffusers import DiTTransformer2DModel
from diffusers.models.embeddings import LabelEmbedding, TimestepEmbedding
from diffusers.models.normalization import AdaLayerNormZero
from torch import nn

from ...utils.validation import check_positive_int
from .inputs import check_denoiser_inputs

__all__ = ["add_input_checks", "build_dit_transformer", "disable_builtin_label_dropout", "initialize_dit_weights"]


def _check_dit_call(module: DiTTransformer2DModel, args: tuple, kwargs: dict) -> None:
    """Forward pre-hook: the checks of `check_denoiser_inputs` on DiT's ``(hidden_states, timestep,
    class_labels)``, positional or keyword (a module-level function, so that a deep copy -- an EMA -- keeps it)."""
    names = ("hidden_states", "timestep", "class_labels")
    values = {name: args[index] if index < len(args) else kwargs.get(name) for index, name in enumerate(names)}
    config = module.config
    check_denoiser_inputs(values["hidden_states"], values["timestep"], values["class_labels"],
                          in_channels=config.in_channels, patch_size=config.patch_size,
                          num_classes=config.num_embeds_ada_norm)


def add_input_checks(model: DiTTransformer2DModel) -> DiTTransformer2DModel:
    """Check every call of a class-conditional ``model`` before it runs (`check_denoiser_inputs`): diffusers' DiT
    itself crops a 7×7 input of a patch-2 model to 6×6 and takes NaN timesteps silently. `build_dit_transformer`
    does it; call it after ``DiTTransformer2DModel.from_pretrained`` (hooks are not saved). Returns ``model``."""
    if not getattr(model, "_whitebox_input_checks", False):
        model.register_forward_pre_hook(_check_dit_call, with_kwargs=True)
        model._whitebox_input_checks = True
    return model


def disable_builtin_label_dropout(model: nn.Module) -> nn.Module:
    """Set the dropout probability of every diffusers `LabelEmbedding` inside ``model`` to 0 (the null-class row
    of the table is kept), so that only the training script drops labels. Returns ``model``."""
    for module in model.modules():
        if isinstance(module, LabelEmbedding):
            module.dropout_prob = 0.0
    return model


def initialize_dit_weights(model: DiTTransformer2DModel) -> DiTTransformer2DModel:
    """DiT's from-scratch initialisation, in place (see the module docstring). Returns ``model``."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    # Patch embedding: a linear map of each flattened patch.
    projection = model.pos_embed.proj
    nn.init.xavier_uniform_(projection.weight.view(projection.weight.shape[0], -1))
    if projection.bias is not None:
        nn.init.zeros_(projection.bias)
    for module in model.modules():
        if isinstance(module, LabelEmbedding):
            nn.init.normal_(module.embedding_table.weight, std=0.02)
        elif isinstance(module, TimestepEmbedding):
            nn.init.normal_(module.linear_1.weight, std=0.02)
            nn.init.normal_(module.linear_2.weight, std=0.02)
        elif isinstance(module, AdaLayerNormZero):
            nn.init.zeros_(module.linear.weight)
            nn.init.zeros_(module.linear.bias)
    for layer in (model.proj_out_1, model.proj_out_2):
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
    return model


def build_dit_transformer(
    sample_size: int,
    in_channels: int,
    num_classes: int,
    hidden_size: int = 192,
    num_layers: int = 6,
    num_attention_heads: int = 3,
    patch_size: int = 2,
    out_channels: int | None = None,
    norm_eps: float = 1e-6,
) -> DiTTransformer2DModel:
    """A freshly initialised class-conditional `DiTTransformer2DModel` predicting ``out_channels`` (default
    ``in_channels``: a velocity, no learned variance).

    Args:
        sample_size: side of the (square) input, pixels or latents.
        in_channels: channels of the input.
        num_classes: number of classes; the null class id is ``num_classes``.
        hidden_size: token width, split into ``num_attention_heads`` heads.
        num_layers: number of DiT blocks.
        patch_size: patch side; must divide ``sample_size``.
        norm_eps: epsilon of the blocks' LayerNorms (DiT: 1e-6; diffusers' default 1e-5).

    Raises:
        ValueError: a non-positive shape, ``hidden_size`` not divisible by the heads, or ``patch_size`` not
            dividing ``sample_size``.
    """
    for name, value in (("sample_size", sample_size), ("in_channels", in_channels), ("num_classes", num_classes),
                        ("hidden_size", hidden_size), ("num_layers", num_layers),
                        ("num_attention_heads", num_attention_heads), ("patch_size", patch_size)):
        check_positive_int(name, value)
    if hidden_size % num_attention_heads:
        raise ValueError(f"`hidden_size` ({hidden_size}) must be divisible by `num_attention_heads` "
                         f"({num_attention_heads})")
    if sample_size % patch_size:
        raise ValueError(f"`patch_size` ({patch_size}) must divide `sample_size` ({sample_size})")
    model = DiTTransformer2DModel(
        num_attention_heads=num_attention_heads,
        attention_head_dim=hidden_size // num_attention_heads,
        in_channels=in_channels,
        # Explicit (not None) so that code reading `config.out_channels`, e.g. diffusers' DiTPipeline, works.
        out_channels=in_channels if out_channels is None else out_channels,
        num_layers=num_layers,
        sample_size=sample_size,
        patch_size=patch_size,
        num_embeds_ada_norm=num_classes,
        norm_eps=norm_eps,
    )
    initialize_dit_weights(model)
    return add_input_checks(disable_builtin_label_dropout(model))
