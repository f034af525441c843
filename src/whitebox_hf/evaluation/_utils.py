"""Shared input checks and model plumbing for `whitebox_hf.evaluation`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

__all__ = ["as_feature_tensor", "as_label_tensor", "check_pixel_batch", "evaluation_mode", "model_device"]


def as_feature_tensor(value, name: str) -> torch.Tensor:
    """``value`` (tensor or array of shape ``(n, d)``) as a float32 tensor; errors name the argument."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"`{name}` must be a numeric array, got dtype {value.dtype}")
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor or numpy.ndarray, got {type(value).__name__}")
    if value.ndim != 2:
        raise ValueError(f"`{name}` must have shape (n, d), got {tuple(value.shape)}")
    if value.shape[0] == 0:
        raise ValueError(f"`{name}` must hold at least one row")
    if value.is_complex() or value.dtype == torch.bool:
        raise TypeError(f"`{name}` must be real-valued, got dtype {value.dtype}")
    # A value check reads the data: on CPU tensors only (no host synchronisation with an accelerator).
    if value.device.type == "cpu" and value.is_floating_point() and not torch.isfinite(value).all():
        raise ValueError(f"`{name}` must be finite, got NaN or infinite values")
    return value.to(torch.float32)


def as_label_tensor(value, name: str) -> torch.Tensor:
    """``value`` (tensor, array or sequence of integers, shape ``(n,)``) as an int64 tensor."""
    if isinstance(value, torch.Tensor):
        tensor = value
    else:
        try:
            tensor = torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError) as error:
            raise TypeError(f"`{name}` must be a sequence of integer class labels") from error
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise TypeError(f"`{name}` must hold integer class labels, got dtype {tensor.dtype}")
    if tensor.ndim != 1:
        raise ValueError(f"`{name}` must have shape (n,), got {tuple(tensor.shape)}")
    if tensor.device.type == "cpu" and tensor.numel() and int(tensor.min()) < 0:
        raise ValueError(f"`{name}` must hold non-negative class labels, got minimum {int(tensor.min())}")
    return tensor.to(torch.long)


def check_pixel_batch(pixel_values, name: str = "pixel_values") -> torch.Tensor:
    """Raise a clear error unless ``pixel_values`` is a ``(batch, channels, height, width)`` tensor."""
    if not isinstance(pixel_values, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(pixel_values).__name__}")
    if pixel_values.ndim != 4:
        raise ValueError(f"`{name}` must have shape (batch, channels, height, width), got {tuple(pixel_values.shape)}")
    if pixel_values.shape[0] == 0:
        raise ValueError(f"`{name}` must hold at least one image")
    if pixel_values.is_floating_point() and pixel_values.device.type == "cpu" \
            and not torch.isfinite(pixel_values).all():
        raise ValueError(f"`{name}` must be finite, got NaN or infinite values")
    return pixel_values


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameter-free module)."""
    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")


@contextlib.contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode under `torch.no_grad()`, restoring its training flag afterwards."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)
