"""The coding rate R_ε, the measure of "how spread" features are that every white-box layer is derived
from (book Ch. 3-5; used in §8 as a diagnostic of learned representations).

For ``n`` tokens of width ``d`` stacked as the rows of ``Z ∈ R^{n×d}``:

    R_ε(Z) = ½ · logdet( I_d + d/(n·ε²) · ZᵀZ )

By Sylvester's identity ``logdet(I_d + c·ZᵀZ) = logdet(I_n + c·ZZᵀ)``; the smaller Gram matrix is used.
"""

from __future__ import annotations

import torch

__all__ = ["coding_rate"]


def coding_rate(features: torch.Tensor, eps: float = 0.5) -> torch.Tensor:
    """Coding rate of ``features`` of shape ``(n, d)`` or ``(batch, n, d)`` (rows are tokens/samples).

    Returns a scalar, or one value per batch element. Computed in float64 for a stable log-determinant.
    """
    if not isinstance(features, torch.Tensor):
        raise TypeError(f"`features` must be a torch.Tensor, got {type(features).__name__}")
    if features.ndim not in (2, 3):
        raise ValueError(f"`features` must have shape (n, d) or (batch, n, d), got {tuple(features.shape)}")
    if eps <= 0:
        raise ValueError(f"`eps` must be positive, got {eps!r}")
    z = features.to(torch.float64)
    n, d = z.shape[-2:]
    scale = d / (n * eps**2)
    if d <= n:
        gram = z.transpose(-1, -2) @ z
        size = d
    else:
        gram = z @ z.transpose(-1, -2)
        size = n
    identity = torch.eye(size, dtype=z.dtype, device=z.device)
    return 0.5 * torch.logdet(identity + scale * gram)
