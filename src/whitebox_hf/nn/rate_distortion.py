"""The coding rate R_ε, the measure of "how spread" features are that every white-box layer is derived
from (book Ch. 3-5; used in §8 as a diagnostic of learned representations).

For ``n`` tokens of width ``d`` stacked as the rows of ``Z ∈ R^{n×d}``:

    R_ε(Z) = ½ · logdet( I_d + d/(n·ε²) · ZᵀZ )

By Sylvester's identity ``logdet(I_d + c·ZᵀZ) = logdet(I_n + c·ZZᵀ)``; the smaller Gram matrix is used.
"""

from __future__ import annotations

import torch

__all__ = ["coding_rate"]


def coding_rate(features: torch.Tensor, eps: float = 0.5, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Coding rate of ``features`` of shape ``(n, d)`` or ``(batch, n, d)`` (rows are tokens/samples).

    Returns a scalar, or one value per batch element. The log-determinant is taken through a Cholesky factor
    (``logdet = 2 Σ log diag L``) in ``dtype`` (float64 by default, float32 allowed), with autocast disabled:
    under bf16 autocast the Gram matrix would otherwise be rounded to 8 bits of mantissa. Gradients flow.

    Raises:
        TypeError: ``features`` is not a tensor.
        ValueError: wrong rank, fewer than two rows, ``eps ≤ 0`` or a ``dtype`` other than float32/float64.
    """
    if not isinstance(features, torch.Tensor):
        raise TypeError(f"`features` must be a torch.Tensor, got {type(features).__name__}")
    if features.ndim not in (2, 3):
        raise ValueError(f"`features` must have shape (n, d) or (batch, n, d), got {tuple(features.shape)}")
    if features.shape[-2] < 2:
        raise ValueError(f"`features` needs at least two samples (rows) for a coding rate, got {features.shape[-2]}")
    if not eps > 0:
        raise ValueError(f"`eps` must be positive, got {eps!r}")
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"`dtype` must be torch.float32 or torch.float64, got {dtype}")
    with torch.autocast(features.device.type, enabled=False):
        z = features.to(dtype)
        n, d = z.shape[-2:]
        scale = d / (n * eps**2)
        # Sylvester: logdet(I_d + c ZᵀZ) = logdet(I_n + c ZZᵀ); factor the smaller Gram matrix.
        gram = z.transpose(-1, -2) @ z if d <= n else z @ z.transpose(-1, -2)
        identity = torch.eye(gram.shape[-1], dtype=z.dtype, device=z.device)
        factor, _ = torch.linalg.cholesky_ex(identity + scale * gram)
        return torch.log(torch.diagonal(factor, dim1=-2, dim2=-1)).sum(-1)
