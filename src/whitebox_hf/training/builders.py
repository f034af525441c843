"""The model families the training scripts build, and their builders.

`CAUSAL_LM_MODELS` is the one table of the causal language-model families: its keys are what
``train_causal_lm.py --model`` takes, what the run folders (``runs/lm-<key>``), the language report, the language
benchmark and the model cards use. `build_image_classifier` and `build_image_processor` serve the image
scripts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel, ViTConfig, ViTForImageClassification

from ..models.aot import AoTConfig, AoTForCausalLM
from ..models.attention_interface import register_whitebox_attention
from ..models.causal_crate import CausalCrateConfig, CausalCrateForCausalLM
from ..models.crate import CrateConfig, CrateForImageClassification, CrateImageProcessor
from ..models.language_modeling import nanogpt_parameter_count
from ..models.tost import ToSTConfig, ToSTForCausalLM
from ..utils.validation import check_positive_int

__all__ = [
    "CAUSAL_LM_MODELS",
    "CausalLMFamily",
    "check_causal_lm_key",
    "build_causal_lm",
    "build_image_classifier",
    "build_image_processor",
    "causal_lm_parameter_count",
]


def build_image_classifier(args: dict, image_size: int, num_channels: int, class_names: list[str]):
    """A freshly initialised `CrateForImageClassification` or `ViTForImageClassification` from the training
    arguments (`model_type`, `hidden_size`, `num_hidden_layers`, `num_attention_heads`, `patch_size`, ...)."""
    labels = dict(
        num_labels=len(class_names),
        id2label=dict(enumerate(class_names)),
        label2id={name: i for i, name in enumerate(class_names)},
    )
    shape = dict(
        hidden_size=args["hidden_size"],
        num_hidden_layers=args["num_hidden_layers"],
        num_attention_heads=args["num_attention_heads"],
        image_size=image_size,
        patch_size=args["patch_size"],
        num_channels=num_channels,
    )
    if args["model_type"] == "crate":
        if args.get("preset"):
            config = CrateConfig.from_preset(args["preset"], **shape, **labels)
        else:
            alpha = args["block_type"] == "odl"
            config = CrateConfig(
                **shape, **labels,
                block_type=args["block_type"],
                pooling=args.get("pooling", "cls"),
                patch_embedding_type="conv" if alpha else "linear",
                attention_output_bias=not alpha,
                layer_norm_eps=1e-6 if alpha else 1e-5,
                position_embedding_init_std=0.02 if alpha else 1.0,
            )
        return CrateForImageClassification(config)
    if args["model_type"] == "vit":
        config = ViTConfig(**shape, **labels, intermediate_size=args.get("mlp_ratio", 4) * args["hidden_size"],
                           layer_norm_eps=1e-6)
        model = ViTForImageClassification(config)
        # The white-box models' attention kernel by default, so CRATE and ViT differ in their models, not in their
        # kernels (in bf16 on CPU PyTorch's flash kernel makes a ViT training step about 2x slower at 28 px).
        kernel = register_whitebox_attention()  # registered whatever is asked, so "whitebox_sdpa" by name works too
        model.set_attn_implementation(args.get("vit_attention") or kernel)
        return model
    raise ValueError(f"`model_type` must be 'crate' or 'vit', got {args['model_type']!r}")


def build_image_processor(image_size: int, image_mean, image_std) -> CrateImageProcessor:
    """The preprocessing the model was trained with: to the model's channels, resize, rescale, normalise."""
    return CrateImageProcessor(
        num_channels=len(image_mean), do_resize=True, size={"height": image_size, "width": image_size},
        image_mean=list(image_mean), image_std=list(image_std),
    )


@dataclass(frozen=True)
class CausalLMFamily:
    """One causal-LM family: its configuration and model classes, the configuration fields that make it this
    family, and the name reports and plots print."""

    config_class: type
    model_class: type
    fields: dict = field(default_factory=dict)
    label: str = ""


# Family key → family. Every model gets the same width, depth, heads, context and vocabulary from
# `build_causal_lm`, so a comparison varies only the layer. The keys follow the configuration presets
# (``CausalCrateConfig.from_preset("causal-crate-alpha-base")`` is the family ``causal-crate-alpha`` at the base
# size); they are what ``--model`` takes and what the benchmark, the report and the model cards use.
CAUSAL_LM_MODELS: dict[str, CausalLMFamily] = {
    # crate-lm `crate.py`: MSSA + ISTA, no residual, no final LayerNorm; nn.Linear's own init in the layers.
    "causal-crate": CausalLMFamily(CausalCrateConfig, CausalCrateForCausalLM, dict(block_type="ista"),
                                   "CausalCRATE (MSSA + ISTA)"),
    # Ablation: the same layer with the authors' GPT-2 init of U and c_proj (normal 0.02, c_proj / √(2L)),
    # which stalls at the unigram loss on small budgets.
    "causal-crate-gpt2-init": CausalLMFamily(CausalCrateConfig, CausalCrateForCausalLM,
                                             dict(block_type="ista", projection_init="gpt2"),
                                             "CausalCRATE, authors' GPT-2 init (ablation)"),
    # Ablation (not in the book): ISTA with a residual and a final LayerNorm, i.e. CRATE-α's layer with the
    # square ISTA dictionary.
    "causal-crate-residual": CausalLMFamily(CausalCrateConfig, CausalCrateForCausalLM,
                                            dict(block_type="ista", ista_residual=True, final_layer_norm=True),
                                            "CausalCRATE + ISTA residual (ablation)"),
    # crate-lm `crate_overcomplete.py`: MSSA + residual ODL, with the final LayerNorm.
    "causal-crate-alpha": CausalLMFamily(CausalCrateConfig, CausalCrateForCausalLM,
                                         dict(block_type="odl", final_layer_norm=True), "CRATE-α LM (MSSA + ODL)"),
    "aot-mssa": CausalLMFamily(AoTConfig, AoTForCausalLM, dict(attention_type="mssa"), "AoT-MSSA"),
    "aot-mhsa": CausalLMFamily(AoTConfig, AoTForCausalLM, dict(attention_type="mhsa"), "AoT-MHSA"),
    # tost_lang: bias-free, layer scale 1e-5 (the ToSTConfig defaults).
    "tost": CausalLMFamily(ToSTConfig, ToSTForCausalLM, {}, "ToST (causal TSSA)"),
    "gpt2": CausalLMFamily(GPT2Config, GPT2LMHeadModel, {}, "GPT-2 (transformers)"),
}

# Spellings the keys had before they were unified; only to name the new key in the error message.
RENAMED_CAUSAL_LM_KEYS = {
    "causal_crate": "causal-crate",
    "causal_crate_gpt2_init": "causal-crate-gpt2-init",
    "causal_crate_residual": "causal-crate-residual",
    "crate_alpha": "causal-crate-alpha",
    "crate-alpha": "causal-crate-alpha",
    "crate_alpha_lm": "causal-crate-alpha",
    "aot_mssa": "aot-mssa",
    "aot_mhsa": "aot-mhsa",
}


def check_causal_lm_key(name) -> str:
    """``name`` if it is a key of `CAUSAL_LM_MODELS`.

    Raises:
        ValueError: any other value (naming the current key when ``name`` is a former spelling).
    """
    if name in CAUSAL_LM_MODELS:
        return name
    hint = f" ({name!r} is now {RENAMED_CAUSAL_LM_KEYS[name]!r})" if name in RENAMED_CAUSAL_LM_KEYS else ""
    raise ValueError(f"`model` must be one of {sorted(CAUSAL_LM_MODELS)}, got {name!r}{hint}")


def build_causal_lm(args: dict, vocab_size: int, bos_token_id: int | None = None, eos_token_id: int | None = None,
                    pad_token_id: int | None = None, **config_overrides):
    """A freshly initialised causal LM ``args["model"]`` (a key of `CAUSAL_LM_MODELS`) of the shape
    ``hidden_size``, ``num_hidden_layers``, ``num_attention_heads``, ``context_length`` in ``args``.

    ``gpt2`` is transformers' `GPT2LMHeadModel` (MLP 4·d, tied embeddings), the white-box models are
    whitebox_hf's; all run without dropout. The special-token ids go into the configuration and the
    generation config, so `generate` and `pipeline` stop and pad with the tokenizer's tokens. ``config_overrides``
    go into the configuration as they are (e.g. ``attn_implementation="eager"`` for a benchmark).

    Raises:
        ValueError: an unknown ``model`` name or a non-positive shape.
    """
    name = check_causal_lm_key(args.get("model"))
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "context_length"):
        check_positive_int(key, args.get(key))
    family = CAUSAL_LM_MODELS[name]
    tokens = dict(bos_token_id=bos_token_id, eos_token_id=eos_token_id, pad_token_id=pad_token_id)
    if name == "gpt2":
        config = GPT2Config(
            vocab_size=vocab_size, n_positions=args["context_length"], n_embd=args["hidden_size"],
            n_layer=args["num_hidden_layers"], n_head=args["num_attention_heads"],
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True, **tokens, **config_overrides,
        )
    else:
        config = family.config_class(
            vocab_size=vocab_size, max_position_embeddings=args["context_length"], hidden_size=args["hidden_size"],
            num_hidden_layers=args["num_hidden_layers"], num_attention_heads=args["num_attention_heads"],
            **family.fields, **tokens, **config_overrides,
        )
    model = family.model_class(config)
    for key, value in tokens.items():
        setattr(model.generation_config, key, value)
    return model


def causal_lm_parameter_count(model: nn.Module) -> int:
    """Parameters as nanoGPT counts them (tied embedding once, position table excluded), for the white-box
    LMs and for transformers' GPT-2 alike."""
    count = nanogpt_parameter_count(model)
    if isinstance(model, GPT2LMHeadModel):
        # `nanogpt_parameter_count` knows the whitebox_hf position table only; GPT-2's is `transformer.wpe`.
        count -= model.transformer.wpe.weight.numel()
    return count
