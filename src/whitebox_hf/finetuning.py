"""Glue for fine-tuning saved models with `transformers.Trainer` and PEFT.

    processor = AutoImageProcessor.from_pretrained(folder)
    dataset = dataset.with_transform(image_transform(processor))
    trainer = Trainer(model, TrainingArguments(..., remove_unused_columns=False),
                      train_dataset=dataset, data_collator=collate_image_classification)

    model = get_peft_model(model, crate_lora_config(r=8))      # LoRA on the MSSA projections

Causal language models (any whitebox_hf LM with MSSA layers: CausalCRATE, CRATE-α LM, AoT-MSSA)::

    model = get_peft_model(model, causal_lm_lora_config(model, r=8))
    trainer = Trainer(model, TrainingArguments(...), train_dataset=PackedTokenBlocks(stream, 256),
                      data_collator=collate_causal_lm)
"""

from __future__ import annotations

import torch

from .utils.validation import check_positive_int

__all__ = [
    "MSSA_PROJECTIONS",
    "causal_lm_lora_config",
    "collate_causal_lm",
    "collate_image_classification",
    "crate_lora_config",
    "image_transform",
    "mssa_lora_config",
    "mssa_projection_names",
]

# Module-name suffixes of the MSSA projections (`whitebox_hf.nn.MultiHeadSubspaceSelfAttention`).
MSSA_PROJECTIONS = ("subspace_projection", "output_projection")


def image_transform(image_processor, image_column: str = "image", label_column: str = "label"):
    """A `Dataset.with_transform` function: PIL images → ``pixel_values`` with the model's own processor."""

    def transform(batch: dict) -> dict:
        if image_column not in batch:
            raise KeyError(f"batch has no column {image_column!r} (columns: {sorted(batch)}); with Trainer, set "
                           "TrainingArguments(remove_unused_columns=False)")
        pixel_values = image_processor(images=batch[image_column], return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixel_values, "labels": torch.as_tensor(batch[label_column])}

    return transform


def collate_image_classification(examples: list[dict]) -> dict:
    """Stack ``pixel_values`` and ``labels`` of single examples into a batch."""
    return {
        "pixel_values": torch.stack([example["pixel_values"] for example in examples]),
        "labels": torch.stack([torch.as_tensor(example["labels"]) for example in examples]),
    }


def collate_causal_lm(examples: list[dict]) -> dict:
    """Stack the ``input_ids`` of single examples (equal lengths, e.g. `whitebox_hf.data.PackedTokenBlocks`
    blocks) into a batch with ``labels = input_ids``: the models shift the labels inside, as every
    transformers causal LM does. Any other key of the examples (such as ``target_ids``) is left out."""
    input_ids = torch.stack([torch.as_tensor(example["input_ids"]) for example in examples])
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": input_ids.clone()}


def mssa_projection_names(model) -> list[str]:
    """Full names of the Linear layers of every MSSA module of ``model`` (its ``subspace_projection`` and
    ``output_projection``). Only MSSA ones: ToST's TSSA and AoT-MHSA's attention also have an
    ``output_projection``, which a suffix match would catch too."""
    from .nn import MultiHeadSubspaceSelfAttention

    names = []
    for module_name, module in model.named_modules():
        if isinstance(module, MultiHeadSubspaceSelfAttention):
            names += [f"{module_name}.{suffix}" for suffix in MSSA_PROJECTIONS]
    return names


def mssa_lora_config(model=None, r: int = 8, lora_alpha: int | None = None, lora_dropout: float = 0.0,
                     target_modules=MSSA_PROJECTIONS, modules_to_save=None, task_type: str | None = None):
    """A `peft.LoraConfig` adapting the MSSA projections.

    With ``model``, the targets are the exact MSSA layers of that model (`mssa_projection_names`); without,
    every module whose name ends with one of ``target_modules``.

    Args:
        model: the model to adapt, or `None` to match by name suffix.
        r (`int`): LoRA rank.
        lora_alpha (`int`, *optional*): LoRA scaling numerator (default ``2·r``).
        lora_dropout (`float`): dropout on the LoRA input.
        target_modules: name suffixes to adapt when no ``model`` is given.
        modules_to_save (`list[str]`, *optional*): modules trained in full and saved with the adapter.
        task_type (`str`, *optional*): PEFT task type, e.g. ``"CAUSAL_LM"``.

    Raises:
        ValueError: ``r`` is not positive, or ``model`` has no MSSA layer.
    """
    from peft import LoraConfig

    check_positive_int("r", r)
    if model is not None:
        target_modules = mssa_projection_names(model)
        if not target_modules:
            raise ValueError(
                f"`model` ({type(model).__name__}) has no MSSA layer to adapt; LoRA on MSSA needs CausalCRATE, "
                "the CRATE-α LM, AoT-MSSA or CRATE"
            )
    return LoraConfig(
        r=r,
        lora_alpha=lora_alpha if lora_alpha is not None else 2 * r,
        lora_dropout=lora_dropout,
        target_modules=list(target_modules),
        modules_to_save=modules_to_save,
        task_type=task_type,
    )


def crate_lora_config(r: int = 8, lora_alpha: int | None = None, lora_dropout: float = 0.0,
                      target_modules=MSSA_PROJECTIONS, train_classifier: bool = True):
    """A `peft.LoraConfig` adapting the MSSA projections of a CRATE image classifier (and training the
    classifier head in full)."""
    return mssa_lora_config(r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, target_modules=target_modules,
                            modules_to_save=["classifier"] if train_classifier else None)


def causal_lm_lora_config(model, r: int = 8, lora_alpha: int | None = None, lora_dropout: float = 0.0):
    """A `peft.LoraConfig` (task ``CAUSAL_LM``) adapting every MSSA projection of a whitebox_hf causal LM;
    the embeddings, the tied LM head, the LayerNorms and the sparse-coding dictionaries stay frozen.

    Raises:
        ValueError: ``r`` is not positive, or ``model`` has no MSSA layer (ToST, AoT-MHSA, GPT-2).
    """
    return mssa_lora_config(model, r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, task_type="CAUSAL_LM")
