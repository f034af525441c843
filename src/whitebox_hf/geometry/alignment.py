"""Similarity alignment (spec threed_and_motion.md §2.6): Cupid places each generated object in a scene by the
similarity ``y ≈ s·R·x + t`` fitted to depth, Umeyama's method (Umeyama 1991, eqs. 34-42; Kabsch when s = 1).
``roma.rigid_points_registration`` implements exactly the spec's column-convention formulas (weighted means and
covariance, SVD with the reflection guard ``S = diag(1, 1, sign(det U·det V))``, ``s = tr(D·S)/σ_x²``); this module
validates the inputs and fixes the conventions around it."""

from __future__ import annotations

import roma
import torch

from ._checks import check_like, check_matrix, check_points, check_weights

__all__ = ["apply_similarity", "rotation_error_degrees", "similarity_alignment"]


def similarity_alignment(source: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None, *,
                         with_scale: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(s, R, t)`` minimising ``Σ w_i ‖target_i − (s·R·source_i + t)‖²`` over ``s > 0``, ``R ∈ SO(3)``, t.

    ``source`` and ``target`` are ``(N, 3)`` with N ≥ 3; ``weights`` optional non-negative ``(N,)``. With
    ``with_scale=False`` (Kabsch) s is 1. R is always a proper rotation, also for reflected inputs (the nearest
    rotation then). Returns float tensors of the inputs' dtype: s ``()``, R ``(3, 3)``, t ``(3,)``."""
    check_points("source", source, 3, min_count=3)
    check_points("target", target, 3, min_count=3)
    check_like("target", target, "source", source)
    if target.shape != source.shape:
        raise ValueError(f"`target` must have the shape of `source` {tuple(source.shape)}, got {tuple(target.shape)}")
    if weights is not None:
        check_weights("weights", weights, source.shape[0], source)
    if not isinstance(with_scale, bool):
        raise TypeError(f"`with_scale` must be a bool, got {type(with_scale).__name__}")
    centred = source - source.mean(dim=0)
    if not bool(centred.abs().max() > 0):
        raise ValueError("`source` must not be a single repeated point: neither rotation nor scale is determined")
    if with_scale:
        R, t, s = roma.rigid_points_registration(source, target, weights=weights, compute_scaling=True)
    else:
        R, t = roma.rigid_points_registration(source, target, weights=weights, compute_scaling=False)
        s = torch.ones((), dtype=source.dtype, device=source.device)
    return s, R, t


def apply_similarity(points: torch.Tensor, scale: torch.Tensor, rotation: torch.Tensor,
                     translation: torch.Tensor) -> torch.Tensor:
    """``s·R·x + t`` for ``points`` ``(N, 3)``."""
    check_points("points", points, 3)
    check_matrix("scale", scale, ())
    check_matrix("rotation", rotation, (3, 3))
    check_matrix("translation", translation, (3,))
    for name, value in (("scale", scale), ("rotation", rotation), ("translation", translation)):
        check_like(name, value, "points", points)
    return scale * points @ rotation.T + translation


def rotation_error_degrees(rotation: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Geodesic angle between two rotation matrices ``(..., 3, 3)`` in degrees (``roma.rotmat_geodesic_distance``),
    the pose metric of spec §2.7."""
    for name, value in (("rotation", rotation), ("reference", reference)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"`{name}` must be a torch.Tensor, got {type(value).__name__}")
        if value.ndim < 2 or tuple(value.shape[-2:]) != (3, 3):
            raise ValueError(f"`{name}` must have shape (..., 3, 3), got {tuple(value.shape)}")
    check_like("reference", reference, "rotation", rotation)
    return torch.rad2deg(roma.rotmat_geodesic_distance(rotation, reference))
