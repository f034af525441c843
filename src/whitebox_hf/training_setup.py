"""Shared pieces of the training scripts and the demo: which data set, which model, which processor.

Image classification: `load_image_dataset`, `load_image_tensors`, `build_image_classifier`,
`build_image_processor`.
Language modelling: `build_causal_lm` (the white-box LMs and the GPT-2 baseline, one shape for all),
`causal_lm_parameter_groups` (nanoGPT's weight-decay split) and `causal_lm_parameter_count`.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel, ViTConfig, ViTForImageClassification

# The data set registry lives in data/ (re-exported here for the scripts that import it from this module).
from .data import DATASETS, dataset_to_tensors, load_image_dataset
from .models.aot import AoTConfig, AoTForCausalLM
from .models.causal_crate import CausalCrateConfig, CausalCrateForCausalLM
from .models.crate import CrateConfig, CrateForImageClassification, CrateImageProcessor
from .models.language_modeling import nanogpt_parameter_count
from .models.tost import ToSTConfig, ToSTForCausalLM

__all__ = [
    "CAUSAL_LM_MODELS",
    "DATASETS",
    "build_causal_lm",
    "build_image_classifier",
    "build_image_processor",
    "causal_lm_parameter_count",
    "causal_lm_parameter_groups",
    "load_image_dataset",
    "load_image_tensors",
    "normalise_images",
]

def load_image_tensors(args: dict, accelerator=None, data: dict | None = None) -> dict:
    """The train and test splits as in-memory uint8 ``(n, C, H, W)`` tensors, for the self-supervised scripts.

    Reads ``args["dataset"]``, ``args["data_dir"]`` and the optional ``args["train_subset"]`` /
    ``args["test_subset"]`` (first n images; 0 = all). ``data`` (tests) replaces the data set: a dict with
    ``train_images``, ``train_labels``, ``test_images``, ``test_labels``, ``image_mean`` and ``image_std``.
    Returns those keys plus ``dataset_name`` and ``horizontal_flip_ok``.
    """
    if data is None:
        dataset, info = load_image_dataset(args["dataset"], args.get("data_dir") or None, accelerator)
        train_images, train_labels = dataset_to_tensors(dataset["train"])
        test_images, test_labels = dataset_to_tensors(dataset["test"])
        tensors = {"image_mean": info["image_mean"], "image_std": info["image_std"], "dataset_name": info["name"],
                   "horizontal_flip_ok": info["horizontal_flip_ok"]}
    else:
        train_images, train_labels = data["train_images"], data["train_labels"]
        test_images, test_labels = data["test_images"], data["test_labels"]
        tensors = {"image_mean": data["image_mean"], "image_std": data["image_std"], "dataset_name": "in-memory",
                   "horizontal_flip_ok": True}
    if args.get("train_subset"):
        train_images, train_labels = train_images[: args["train_subset"]], train_labels[: args["train_subset"]]
    if args.get("test_subset"):
        test_images, test_labels = test_images[: args["test_subset"]], test_labels[: args["test_subset"]]
    tensors.update(train_images=train_images, train_labels=train_labels, test_images=test_images,
                   test_labels=test_labels)
    return tensors


def normalise_images(images: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 ``(n, C, H, W)`` → float32 ``(x/255 − mean)/std`` per channel (what `build_image_processor` does)."""
    mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (images.float() / 255.0 - mean) / std


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
        return ViTForImageClassification(config)
    raise ValueError(f"`model_type` must be 'crate' or 'vit', got {args['model_type']!r}")


def build_image_processor(image_size: int, image_mean, image_std) -> CrateImageProcessor:
    """The preprocessing the model was trained with: to the model's channels, resize, rescale, normalise."""
    return CrateImageProcessor(
        num_channels=len(image_mean), do_resize=True, size={"height": image_size, "width": image_size},
        image_mean=list(image_mean), image_std=list(image_std),
    )


# --------------------------------------------------------------------------------------------------------------
# Language models
# --------------------------------------------------------------------------------------------------------------

# `--model` name → (configuration class, model class, family-specific fields). Every model gets the same
# width, depth, heads, context and vocabulary from `build_causal_lm`, so a comparison varies only the layer.
CAUSAL_LM_MODELS = {
    # crate-lm `crate.py`: MSSA + ISTA, no residual, no final LayerNorm; nn.Linear's own init in the layers
    # (`CausalCrateConfig.projection_init` defaults to GPT-2's init only where the layer has a residual).
    "causal_crate": (CausalCrateConfig, CausalCrateForCausalLM, dict(block_type="ista")),
    # Ablation: the same layer with the authors' GPT-2 init of U and c_proj (normal 0.02, c_proj / √(2L)),
    # which stalls at the unigram loss on small budgets.
    "causal_crate_gpt2_init": (CausalCrateConfig, CausalCrateForCausalLM,
                               dict(block_type="ista", projection_init="gpt2")),
    # Ablation (not in the book): ISTA with a residual and a final LayerNorm, i.e. CRATE-α's layer with the
    # square ISTA dictionary.
    "causal_crate_residual": (CausalCrateConfig, CausalCrateForCausalLM,
                              dict(block_type="ista", ista_residual=True, final_layer_norm=True)),
    # crate-lm `crate_overcomplete.py`: MSSA + residual ODL, with the final LayerNorm.
    "crate_alpha": (CausalCrateConfig, CausalCrateForCausalLM, dict(block_type="odl", final_layer_norm=True)),
    "aot_mssa": (AoTConfig, AoTForCausalLM, dict(attention_type="mssa")),
    "aot_mhsa": (AoTConfig, AoTForCausalLM, dict(attention_type="mhsa")),
    # tost_lang: bias-free, layer scale 1e-5 (the ToSTConfig defaults).
    "tost": (ToSTConfig, ToSTForCausalLM, {}),
    "gpt2": (GPT2Config, GPT2LMHeadModel, {}),
}

# ≥2-D parameters that are biases in role: ToST's per-head, per-position score bias β (heads × positions).
# Decaying it would pull the learned position prior towards zero; nanoGPT's rule (decay every ≥2-D tensor)
# only reasons about matrices and embeddings.
NO_DECAY_SUFFIXES = ("position_bias",)


def build_causal_lm(args: dict, vocab_size: int, bos_token_id: int | None = None, eos_token_id: int | None = None,
                    pad_token_id: int | None = None):
    """A freshly initialised causal LM ``args["model"]`` (a key of `CAUSAL_LM_MODELS`) of the shape
    ``hidden_size``, ``num_hidden_layers``, ``num_attention_heads``, ``context_length`` in ``args``.

    ``gpt2`` is transformers' `GPT2LMHeadModel` (MLP 4·d, tied embeddings), the white-box models are
    whitebox_hf's; all run without dropout. The special-token ids go into the configuration and the
    generation config, so `generate` and `pipeline` stop and pad with the tokenizer's tokens.

    Raises:
        ValueError: an unknown ``model`` name or a non-positive shape.
    """
    name = args.get("model")
    if name not in CAUSAL_LM_MODELS:
        raise ValueError(f"`model` must be one of {sorted(CAUSAL_LM_MODELS)}, got {name!r}")
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "context_length"):
        value = args.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"`{key}` must be a positive integer, got {value!r}")
    config_class, model_class, family_fields = CAUSAL_LM_MODELS[name]
    tokens = dict(bos_token_id=bos_token_id, eos_token_id=eos_token_id, pad_token_id=pad_token_id)
    if name == "gpt2":
        config = GPT2Config(
            vocab_size=vocab_size, n_positions=args["context_length"], n_embd=args["hidden_size"],
            n_layer=args["num_hidden_layers"], n_head=args["num_attention_heads"],
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True, **tokens,
        )
    else:
        config = config_class(
            vocab_size=vocab_size, max_position_embeddings=args["context_length"], hidden_size=args["hidden_size"],
            num_hidden_layers=args["num_hidden_layers"], num_attention_heads=args["num_attention_heads"],
            **family_fields, **tokens,
        )
    model = model_class(config)
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


def causal_lm_parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """nanoGPT's two AdamW groups: weight decay on every parameter with ≥ 2 dimensions (matrices, dictionaries,
    embeddings), none on biases, LayerNorms, layer scales, temperatures — and none on the ≥2-D tensors named in
    `NO_DECAY_SUFFIXES`. Tied tensors appear once."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():  # yields a shared (tied) tensor once
        if not parameter.requires_grad:
            continue
        if parameter.ndim >= 2 and not name.endswith(NO_DECAY_SUFFIXES):
            decay.append(parameter)
        else:
            no_decay.append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
