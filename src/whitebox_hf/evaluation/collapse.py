"""Collapse diagnostics for self-supervised features: effective rank and per-dimension spread.

A collapsed representation maps every image to (nearly) the same vector (complete collapse) or spans only a few
directions (dimensional collapse). Both show up without labels:

- `effective_rank` (Roy & Vetterli 2007): ``exp(H(p))`` with ``p`` the singular values of the centred feature
  matrix divided by their sum; 1 for a rank-one matrix, ``min(n, d)`` for equal singular values.
- `feature_std`: the mean over dimensions of the per-dimension std of l2-normalised features; ``1/sqrt(d)`` for
  features spread uniformly on the sphere, 0 under complete collapse.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["effective_rank", "feature_std"]


def _as_matrix(features, name: str = "features") -> torch.Tensor:
    if isinstance(features, np.ndarray):
        features = torch.from_numpy(features)
    if not isinstance(features, torch.Tensor) or features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"`{name}` must be a (n ≥ 2, d) matrix, got {tuple(getattr(features, 'shape', ()))}")
    if not torch.isfinite(features).all():
        raise ValueError(f"`{name}` must be finite")
    return features.detach().to(torch.float64)


def effective_rank(features: torch.Tensor | np.ndarray, center: bool = True) -> float:
    """``exp`` of the Shannon entropy of the normalised singular values of ``features`` (``(n, d)``).

    Features are centred first by default, so a common offset (a constant direction every sample shares) does
    not count as a dimension. All-zero (fully collapsed) features have effective rank 0.
    """
    matrix = _as_matrix(features)
    if center:
        matrix = matrix - matrix.mean(dim=0, keepdim=True)
    singular_values = torch.linalg.svdvals(matrix)
    total = singular_values.sum()
    if total <= 0:
        return 0.0
    p = singular_values / total
    p = p[p > 0]  # 0·log 0 = 0
    return float(torch.exp(-(p * p.log()).sum()))


def feature_std(features: torch.Tensor | np.ndarray) -> float:
    """Mean per-dimension standard deviation of the l2-normalised rows of ``features``."""
    matrix = torch.nn.functional.normalize(_as_matrix(features), dim=-1)
    return float(matrix.std(dim=0).mean())
