"""Input checks of the class-conditional denoisers (`CrateDenoiserTransformer`, and the diffusers DiT that
`build_dit_transformer` returns), so that a bad call raises `ValueError`/`TypeError` naming the argument, what it
must be and what it got, instead of an error deep inside the model or -- worse -- a wrong answer: a 7×7 input to a
patch-2 model would otherwise come back 6×6, a NaN timestep would give NaN everywhere.

Shape and dtype checks always run; the value checks (finite, non-negative timesteps, labels in range) read the
data, so they run only on CPU tensors: on an accelerator they would synchronise the host with the device at every
call (the pattern of `whitebox_hf.models.language_modeling`).
"""

from __future__ import annotations

import math

import torch

__all__ = ["check_denoiser_inputs"]


def _on_cpu(tensor: torch.Tensor) -> bool:
    return tensor.device.type == "cpu"


def check_denoiser_inputs(hidden_states, timestep, class_labels, *, in_channels: int, patch_size: int,
                          num_classes: int) -> None:
    """Check one denoiser call (see the module docstring).

    Args:
        hidden_states: must be a floating-point tensor ``(B, in_channels, H, W)`` with ``H`` and ``W`` multiples of
            ``patch_size`` (finite, on CPU).
        timestep: a non-negative finite number, or a real tensor of shape ``()`` or ``(B,)`` (non-negative and
            finite, on CPU).
        class_labels: an integer tensor of shape ``(B,)`` with ids in ``[0, num_classes]`` (``num_classes`` is the
            null class; checked on CPU).

    Raises:
        TypeError: an argument of the wrong type or dtype.
        ValueError: a wrong shape, or (CPU) a NaN/inf or out-of-range value.
    """
    if not isinstance(hidden_states, torch.Tensor):
        raise TypeError(f"`hidden_states` must be a torch.Tensor (B, {in_channels}, H, W), "
                        f"got {type(hidden_states).__name__}")
    if not hidden_states.is_floating_point():
        raise TypeError(f"`hidden_states` must be a floating-point tensor, got dtype {hidden_states.dtype}")
    if hidden_states.ndim != 4 or hidden_states.shape[1] != in_channels or hidden_states.shape[0] == 0:
        raise ValueError(f"`hidden_states` must have shape (B ≥ 1, {in_channels}, H, W), "
                         f"got {tuple(hidden_states.shape)}")
    batch_size, _, height, width = hidden_states.shape
    if height % patch_size or width % patch_size or height == 0 or width == 0:
        raise ValueError(f"`hidden_states` height and width must be positive multiples of the patch size "
                         f"{patch_size} (the output would otherwise be cropped), got {height}×{width}")
    if _on_cpu(hidden_states) and not torch.isfinite(hidden_states).all():
        raise ValueError("`hidden_states` must be finite, got NaN or infinite values")

    if timestep is None:
        raise ValueError("`timestep` is required (a number or a tensor of shape () or (B,)), got None")
    if isinstance(timestep, torch.Tensor):
        if timestep.dtype == torch.bool or timestep.is_complex():
            raise TypeError(f"`timestep` must be a real tensor, got dtype {timestep.dtype}")
        if timestep.ndim > 1 or (timestep.ndim == 1 and timestep.shape[0] != batch_size):
            raise ValueError(f"`timestep` must have shape () or ({batch_size},) (the batch of `hidden_states`), "
                             f"got {tuple(timestep.shape)}")
        if _on_cpu(timestep) and timestep.numel():
            values = timestep.double()
            if not torch.isfinite(values).all() or (values < 0).any():
                raise ValueError(f"`timestep` must be finite and non-negative, got {timestep.tolist()}")
    elif isinstance(timestep, (int, float)) and not isinstance(timestep, bool):
        if not math.isfinite(timestep) or timestep < 0:
            raise ValueError(f"`timestep` must be finite and non-negative, got {timestep!r}")
    else:
        raise TypeError(f"`timestep` must be a number or a torch.Tensor, got {type(timestep).__name__}")

    if class_labels is None:
        raise ValueError(f"`class_labels` is required (ids in [0, {num_classes}], {num_classes} = the null class), "
                         "got None")
    if not isinstance(class_labels, torch.Tensor):
        raise TypeError(f"`class_labels` must be an integer torch.Tensor of shape ({batch_size},), "
                        f"got {type(class_labels).__name__}")
    if class_labels.is_floating_point() or class_labels.is_complex() or class_labels.dtype == torch.bool:
        raise TypeError(f"`class_labels` must be an integer tensor, got dtype {class_labels.dtype}")
    if tuple(class_labels.shape) != (batch_size,):
        raise ValueError(f"`class_labels` must have shape ({batch_size},) (the batch of `hidden_states`), "
                         f"got {tuple(class_labels.shape)}")
    if _on_cpu(class_labels) and ((class_labels < 0).any() or (class_labels > num_classes).any()):
        raise ValueError(f"`class_labels` must lie in [0, {num_classes}] ({num_classes} = the null class), "
                         f"got {class_labels.tolist()}")
