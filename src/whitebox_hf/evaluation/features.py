"""Frozen features f^ext(x) for probes: the pooled, layer-normalised token a classification head reads.

- CRATE / CRATE-α (`CrateModel`, `CrateForImageClassification`): ``pooler_output`` = ``LN(pool(Z^L))``.
- ViT (`transformers.ViTModel`, `transformers.ViTForImageClassification`): the class token of
  ``last_hidden_state``, which `ViTModel` has already passed through its final LayerNorm (the tanh
  ``pooler`` of `ViTModel` is *not* used: it is untrained in `ViTForImageClassification`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel, ViTModel

from ..models.crate import CrateModel
from ..utils.validation import check_positive_int
from ._utils import check_pixel_batch, evaluation_mode, model_device

__all__ = ["extract_features", "get_backbone"]

SUPPORTED_BACKBONES = (CrateModel, ViTModel)


def get_backbone(model: nn.Module) -> nn.Module:
    """The base model (`CrateModel` or `ViTModel`) of ``model``, which may be that base model itself or a
    task model wrapping it (`CrateForImageClassification`, `ViTForImageClassification`)."""
    if isinstance(model, SUPPORTED_BACKBONES):
        return model
    if isinstance(model, PreTrainedModel) and isinstance(model.base_model, SUPPORTED_BACKBONES):
        return model.base_model
    raise TypeError(
        "`model` must be a CRATE or ViT model (CrateModel, CrateForImageClassification, ViTModel, "
        f"ViTForImageClassification), got {type(model).__name__}"
    )


def _pixel_values_of(batch, name: str) -> torch.Tensor:
    """The image tensor of a data-loader batch: a tensor, a mapping with ``"pixel_values"``, or a
    tuple/list whose first element is the images (``(images, labels)``)."""
    if isinstance(batch, Mapping):
        if "pixel_values" not in batch:
            raise ValueError(f"`{name}` yielded a mapping without a 'pixel_values' key: {sorted(batch)}")
        batch = batch["pixel_values"]
    elif isinstance(batch, (tuple, list)):
        if not batch:
            raise ValueError(f"`{name}` yielded an empty batch")
        batch = batch[0]
    if isinstance(batch, np.ndarray):
        batch = torch.from_numpy(batch)
    return check_pixel_batch(batch, name=f"{name} batch")


def _preprocess(images: torch.Tensor, image_processor: Callable | None) -> torch.Tensor:
    """Raw images → model pixel values (see `extract_features` for the rules)."""
    if image_processor is None:
        if images.dtype == torch.uint8:
            return images.to(torch.float32) / 255.0
        if not images.is_floating_point():
            raise TypeError(f"`pixel_values` must be uint8 or floating point, got dtype {images.dtype}")
        return images
    if hasattr(image_processor, "preprocess"):  # a transformers image processor
        processed = image_processor(images, return_tensors="pt")
    else:
        processed = image_processor(images)
    if isinstance(processed, Mapping):
        processed = processed["pixel_values"]
    if isinstance(processed, np.ndarray):
        processed = torch.from_numpy(processed)
    if not isinstance(processed, torch.Tensor) or not processed.is_floating_point():
        raise TypeError(
            "`image_processor` must return a float tensor or a mapping with a float 'pixel_values' tensor, "
            f"got {type(processed).__name__}"
        )
    return processed


def _pooled_features(backbone: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    outputs = backbone(pixel_values=pixel_values, return_dict=True)
    if isinstance(backbone, CrateModel):
        return outputs.pooler_output
    return outputs.last_hidden_state[:, 0]  # ViTModel: already layer-normalised


def extract_features(
    model: nn.Module,
    pixel_values_or_dataloader: torch.Tensor | Iterable,
    batch_size: int = 256,
    image_processor: Callable | None = None,
) -> torch.Tensor:
    """Frozen pooled features of a CRATE or ViT model, one row per image.

    The model is run in eval mode under `torch.no_grad()` (its training flag is restored afterwards), on the
    device of its parameters; the features come back on the CPU.

    Args:
        model (`nn.Module`):
            `CrateModel`, `CrateForImageClassification`, `ViTModel` or `ViTForImageClassification` (task
            models are reduced to their base model; the classification head is not used).
        pixel_values_or_dataloader (`torch.Tensor` or iterable):
            Either a ``(n, C, H, W)`` tensor of images, processed in chunks of ``batch_size``; or an iterable
            (e.g. a `torch.utils.data.DataLoader`) of batches, each a tensor, a mapping with a
            ``"pixel_values"`` entry, or a ``(images, labels, ...)`` tuple (``batch_size`` is then ignored).
        batch_size (`int`, *optional*, defaults to 256):
            Images per forward pass when a tensor is given.
        image_processor (`Callable`, *optional*):
            Normalisation applied to every raw batch before the forward pass. A transformers image processor
            (e.g. the `ViTImageProcessor` saved with the model) is called as
            ``image_processor(batch, return_tensors="pt")["pixel_values"]`` and does its own rescaling; any
            other callable (e.g. a torchvision ``v2.Normalize`` or
            `whitebox_hf.data.image_classification_transforms(..., train=False)`) is called as
            ``image_processor(batch)`` and must return a float tensor (or a mapping with ``"pixel_values"``).
            Without one, uint8 images are only rescaled to ``[0, 1]`` and float images are used unchanged
            (i.e. they are taken to be model-ready pixel values).

    Returns:
        `torch.Tensor`: float32 features of shape ``(n, hidden_size)``.
    """
    backbone = get_backbone(model)
    check_positive_int("batch_size", batch_size)
    if image_processor is not None and not callable(image_processor):
        raise TypeError(f"`image_processor` must be callable, got {type(image_processor).__name__}")

    if isinstance(pixel_values_or_dataloader, (torch.Tensor, np.ndarray)):
        images = pixel_values_or_dataloader
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(images)
        check_pixel_batch(images, name="pixel_values_or_dataloader")
        batches: Iterable = images.split(batch_size)
    elif isinstance(pixel_values_or_dataloader, Iterable) and not isinstance(pixel_values_or_dataloader, (str, bytes)):
        batches = (_pixel_values_of(b, "pixel_values_or_dataloader") for b in pixel_values_or_dataloader)
    else:
        raise TypeError(
            "`pixel_values_or_dataloader` must be a (n, C, H, W) tensor or an iterable of batches, got "
            f"{type(pixel_values_or_dataloader).__name__}"
        )

    device = model_device(backbone)
    features = []
    with evaluation_mode(backbone):
        for batch in batches:
            pixel_values = _preprocess(batch, image_processor).to(device)
            features.append(_pooled_features(backbone, pixel_values).float().cpu())
    if not features:
        raise ValueError("`pixel_values_or_dataloader` yielded no images")
    return torch.cat(features)
