"""Glue for fine-tuning saved models with `transformers.Trainer` and PEFT.

    processor = AutoImageProcessor.from_pretrained(folder)
    dataset = dataset.with_transform(image_transform(processor))
    trainer = Trainer(model, TrainingArguments(..., remove_unused_columns=False),
                      train_dataset=dataset, data_collator=collate_image_classification)

    model = get_peft_model(model, crate_lora_config(r=8))      # LoRA on the MSSA projections
"""

from __future__ import annotations

import torch

__all__ = ["image_transform", "collate_image_classification", "crate_lora_config", "MSSA_PROJECTIONS"]

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


def crate_lora_config(r: int = 8, lora_alpha: int | None = None, lora_dropout: float = 0.0,
                      target_modules=MSSA_PROJECTIONS, train_classifier: bool = True):
    """A `peft.LoraConfig` adapting the MSSA projections (and training the classifier head in full)."""
    from peft import LoraConfig

    if r <= 0:
        raise ValueError(f"`r` must be positive, got {r!r}")
    return LoraConfig(
        r=r,
        lora_alpha=lora_alpha if lora_alpha is not None else 2 * r,
        lora_dropout=lora_dropout,
        target_modules=list(target_modules),
        modules_to_save=["classifier"] if train_classifier else None,
    )
