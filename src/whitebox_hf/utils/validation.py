"""Argument checks shared by every layer (operators, data, models, evaluation), so each rule and its message is
written once. Each raises `ValueError` or `TypeError` naming the argument, what it must be and the value it got.

The tensor checks split in two: dtype and shape checks read only metadata and always run; checks on the values
(finite, in range, 0/1) read the tensor back to the host, so they run only for CPU tensors: on an accelerator they
would stall the device at every forward (issue 11's rule: no host synchronisation in a forward), nor while
``torch.compile`` traces (a value read is a graph break).
torch is imported inside the tensor checks, so that importing this module (as every configuration does) stays free
of it.
"""

from __future__ import annotations

import math

__all__ = [
    "check_binary_mask",
    "check_finite_float",
    "check_finite_tensor",
    "check_floating_tensor",
    "check_index_tensor",
    "check_positive_int",
    "check_tensor",
    "reads_values",
]


def reads_values(tensor) -> bool:
    """Whether a check may look at ``tensor``'s values: on CPU, and not inside a ``torch.compile`` trace."""
    import torch

    return tensor.device.type == "cpu" and not torch.compiler.is_compiling()


def check_positive_int(name: str, value) -> None:
    """``value`` must be an ``int`` ≥ 1; ``bool`` is refused although it subclasses ``int`` (``True`` as a size
    is a bug, not a 1)."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}")


def check_finite_float(name: str, value) -> None:
    """A float ``value`` must be finite (NaN or ±inf as a hyper-parameter turns every output into NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"`{name}` must be a finite number, got {value!r}")


def check_tensor(name: str, value, ndim: int | None = None, shape_doc: str | None = None) -> None:
    """``value`` must be a ``torch.Tensor`` (of ``ndim`` dimensions, described by ``shape_doc``) with no empty
    dimension."""
    import torch

    if not isinstance(value, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(value).__name__}")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"`{name}` must have shape {shape_doc or f'of {ndim} dimensions'}, got {tuple(value.shape)}")
    if value.numel() == 0:
        raise ValueError(f"`{name}` is empty (shape {tuple(value.shape)}): at least one element is needed")


def check_floating_tensor(name: str, value) -> None:
    """A real floating dtype: integer images (0-255), bool and complex tensors are refused rather than cast."""
    if not value.is_floating_point():
        raise TypeError(
            f"`{name}` must be a floating-point tensor (e.g. torch.float32, values already normalised), got dtype "
            f"{value.dtype}; convert it explicitly (an image processor does)"
        )


def check_finite_tensor(name: str, value) -> None:
    """No NaN or ±inf (checked on CPU tensors only, see the module docstring)."""
    import torch

    if not reads_values(value):
        return
    # One reduction first: a sum is finite only when every element is (NaN and ±inf propagate through it), so the
    # common case costs one pass instead of the four of `isfinite` (==, abs, !=, and) plus `all`. A non-finite sum,
    # from a bad element or from finite values overflowing, falls through to the exact element-wise test.
    if value.is_floating_point() and bool(torch.isfinite(value.sum())):
        return
    finite = torch.isfinite(value)
    if not bool(finite.all()):
        bad = value[~finite].flatten()[0].item()
        raise ValueError(f"`{name}` must be finite, got a tensor holding {bad}")


def check_index_tensor(name: str, value, high: int, high_name: str, ignore_index: int | None = None,
                       long_only: bool = False) -> None:
    """Integer ids in ``[0, high)`` (``ignore_index`` allowed too) of dtype int64 or int32 (what an embedding
    lookup takes; ``long_only``: int64 alone, what a cross-entropy target takes); the range is checked on CPU tensors
    only."""
    import torch

    dtypes = (torch.int64,) if long_only else (torch.int64, torch.int32)
    if value.dtype not in dtypes:
        raise TypeError(f"`{name}` must hold integer ids of dtype {' or '.join(map(str, dtypes))}, got dtype "
                        f"{value.dtype}")
    if not reads_values(value) or value.numel() == 0:
        return
    valid = (value >= 0) & (value < high)
    if ignore_index is not None:
        valid |= value == ignore_index
    if not bool(valid.all()):
        bad = int(value[~valid].flatten()[0])
        allowed = f"[0, {high_name}={high})" + (f" or {ignore_index}" if ignore_index is not None else "")
        raise ValueError(f"`{name}` must lie in {allowed}, got {bad}")


def check_binary_mask(name: str, value) -> None:
    """A 0/1 mask: bool, integer or floating dtype whose values are exactly 0 or 1 (values on CPU only)."""
    import torch

    if value.is_complex():
        raise TypeError(f"`{name}` must be a bool, integer or float 0/1 mask, got dtype {value.dtype}")
    if value.dtype == torch.bool or not reads_values(value):
        return
    binary = (value == 0) | (value == 1)
    if not bool(binary.all()):
        bad = value[~binary].flatten()[0].item()
        raise ValueError(f"`{name}` must hold only 0 and 1 (1 = keep), got {bad}")
