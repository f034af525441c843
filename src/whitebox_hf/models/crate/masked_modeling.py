"""MAE's masking and masked-patch reconstruction loss (He et al. 2022; CRATE-MAE, spec ``crate_family.md`` §6)."""

from __future__ import annotations

import torch

__all__ = ["masked_patch_loss", "random_patch_mask"]


def random_patch_mask(batch_size: int, num_patches: int, mask_ratio: float,
                      generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Boolean ``(batch, num_patches)``, True for masked patches: each sample masks exactly
    ``int(num_patches · mask_ratio)`` patches chosen by its own random permutation.

    The noise is drawn on ``generator``'s device (a CUDA generator cannot draw on the CPU, nor the reverse), then
    moved to ``device``, so a seeded generator gives the same mask whatever ``device`` is."""
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"`mask_ratio` must be in [0, 1), got {mask_ratio!r}")
    if batch_size <= 0 or num_patches <= 0:
        raise ValueError(f"`batch_size` and `num_patches` must be positive, got {batch_size}, {num_patches}")
    num_masked = int(num_patches * mask_ratio)
    noise_device = generator.device if generator is not None else device
    noise = torch.rand(batch_size, num_patches, generator=generator, device=noise_device)
    ranks = noise.to(device).argsort(dim=1).argsort(dim=1)
    return ranks < num_masked


def masked_patch_loss(predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                      normalize_target: bool = False) -> torch.Tensor:
    """Mean squared error per patch, averaged over the **masked** patches only.

    ``predicted`` and ``target`` are ``(batch, patches, values per patch)``; ``mask`` ``(batch, patches)`` is
    True where a patch was hidden. With ``normalize_target`` each target patch is standardised by its own mean and
    variance first (MAE's ``norm_pix_loss``).

    An empty mask raises `ValueError` for a CPU ``mask``; on an accelerator the check would stall the device
    (a host synchronisation), so it is skipped there and an empty mask gives NaN.
    """
    if predicted.shape != target.shape or predicted.ndim != 3:
        raise ValueError(
            f"`predicted` and `target` must both be (batch, patches, values), got {tuple(predicted.shape)} and "
            f"{tuple(target.shape)}"
        )
    if tuple(mask.shape) != tuple(predicted.shape[:2]):
        raise ValueError(f"`mask` must have shape {tuple(predicted.shape[:2])}, got {tuple(mask.shape)}")
    if mask.device.type == "cpu" and not mask.any():
        raise ValueError("`mask` hides no patch: the masked-patch loss is undefined")
    if normalize_target:
        mean = target.mean(dim=-1, keepdim=True)
        variance = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (variance + 1e-6).sqrt()
    per_patch = (predicted - target).square().mean(dim=-1)
    weights = mask.to(per_patch.dtype)
    return (per_patch * weights).sum() / weights.sum()
