"""CLIP's symmetric InfoNCE with a learnable temperature (spec ``ssl_and_generation.md`` §2)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["MAX_LOGIT_SCALE", "clamp_logit_scale_", "clip_loss"]

MAX_LOGIT_SCALE = math.log(100.0)


def clip_loss(image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Mean of the image→text and text→image cross-entropies of ``exp(s) · Îᵀ T̂`` with the diagonal as targets.

    Embeddings are l2-normalised here; pair ``k`` of the batch is image ``k`` with text ``k``.
    """
    if image_embeds.ndim != 2 or text_embeds.ndim != 2 or image_embeds.shape != text_embeds.shape:
        raise ValueError(
            "`image_embeds` and `text_embeds` must both be (batch, dim) with the same shape, got "
            f"{tuple(image_embeds.shape)} and {tuple(text_embeds.shape)}"
        )
    if image_embeds.shape[0] < 2:
        raise ValueError(f"a contrastive loss needs at least two pairs, got {image_embeds.shape[0]}")
    logits = logit_scale.exp() * F.normalize(image_embeds, dim=-1) @ F.normalize(text_embeds, dim=-1).T
    targets = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


@torch.no_grad()
def clamp_logit_scale_(logit_scale: nn.Parameter | torch.Tensor, maximum: float = MAX_LOGIT_SCALE) -> None:
    """Clamp the log-temperature to ``[0, ln 100]`` in place, after each optimizer step (as open_clip does;
    transformers' `CLIPModel` does not)."""
    logit_scale.clamp_(0.0, maximum)
