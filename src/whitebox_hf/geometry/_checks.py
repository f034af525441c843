"""Argument checks shared by the geometry functions; each raises naming the argument, the expectation and the value."""

from __future__ import annotations

import torch

from whitebox_hf.utils.validation import check_finite_tensor, check_floating_tensor, check_tensor


def check_points(name: str, value, dim: int, min_count: int = 1) -> None:
    """A finite floating ``(N, dim)`` tensor with ``N >= min_count``."""
    check_tensor(name, value, ndim=2, shape_doc=f"(N, {dim})")
    if value.shape[1] != dim:
        raise ValueError(f"`{name}` must have shape (N, {dim}), got {tuple(value.shape)}")
    check_floating_tensor(name, value)
    check_finite_tensor(name, value)
    if value.shape[0] < min_count:
        raise ValueError(f"`{name}` must hold at least {min_count} points, got {value.shape[0]}")


def check_matrix(name: str, value, shape: tuple[int, ...]) -> None:
    """A finite floating tensor of exactly ``shape``."""
    check_tensor(name, value, ndim=len(shape), shape_doc=str(shape))
    if tuple(value.shape) != shape:
        raise ValueError(f"`{name}` must have shape {shape}, got {tuple(value.shape)}")
    check_floating_tensor(name, value)
    check_finite_tensor(name, value)


def check_like(name: str, value: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    """Same dtype and device as ``ref``: nothing is cast behind the caller's back."""
    if value.dtype != ref.dtype or value.device != ref.device:
        raise TypeError(f"`{name}` must have the dtype and device of `{ref_name}` ({ref.dtype}, {ref.device}), got "
                        f"({value.dtype}, {value.device})")


def check_weights(name: str, value, count: int, ref: torch.Tensor) -> None:
    """Non-negative finite ``(count,)`` weights with a positive sum, of ``ref``'s dtype and device."""
    check_tensor(name, value, ndim=1, shape_doc=f"({count},)")
    if value.shape[0] != count:
        raise ValueError(f"`{name}` must have shape ({count},), one weight per point, got {tuple(value.shape)}")
    check_floating_tensor(name, value)
    check_finite_tensor(name, value)
    check_like(name, value, "points", ref)
    if bool((value < 0).any()):
        raise ValueError(f"`{name}` must be non-negative, got a minimum of {value.min().item()}")
    if not bool(value.sum() > 0):
        raise ValueError(f"`{name}` must have a positive sum, got all zeros")


def check_size(name: str, value) -> tuple[float, float]:
    """A ``(width, height)`` pair of positive numbers."""
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 for v in value)):
        raise ValueError(f"`{name}` must be a (width, height) pair of positive numbers, got {value!r}")
    return float(value[0]), float(value[1])


def check_box(name: str, value) -> tuple[float, float, float, float]:
    """A crop box ``(x0, y0, width, height)`` in pixels, with a positive width and height."""
    if (not isinstance(value, (tuple, list)) or len(value) != 4
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value)
            or not (value[2] > 0 and value[3] > 0)):
        raise ValueError(f"`{name}` must be a crop box (x0, y0, width, height) with width, height > 0, got {value!r}")
    return tuple(float(v) for v in value)
