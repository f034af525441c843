"""Mesh extraction from a SITA-VAE's occupancy field (spec ``threed_and_motion.md`` §1.3, Michelangelo
``tsal/inference_utils.py``): decode a dense grid of ``(2^d + 1)³`` query points in chunks, then run
``skimage.measure.marching_cubes`` (Lewiner) at logit 0.

The authors map grid indices to coordinates by dividing by ``grid_size`` instead of ``grid_size − 1``, which shrinks
every mesh by ``2^d / (2^d + 1)``; here index ``i`` maps to ``−bound + i · 2·bound / (grid_size − 1)``, the same
coordinates the grid was decoded at.
"""

from __future__ import annotations

import numpy as np
import torch

from ...utils.validation import check_finite_float, check_positive_int, check_tensor

__all__ = ["dense_query_grid", "meshes_from_occupancy_grid"]


def _check_bound(bound) -> None:
    if isinstance(bound, bool) or not isinstance(bound, (int, float)):
        raise TypeError(f"`bound` must be a number, got {type(bound).__name__}")
    check_finite_float("bound", float(bound))
    if bound <= 0:
        raise ValueError(f"`bound` must be positive (the grid spans [-bound, bound]³), got {bound!r}")


def dense_query_grid(octree_depth: int, bound: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """The ``(G, G, G, 3)`` grid of points spanning ``[−bound, bound]³``, ``G = 2^octree_depth + 1`` (the authors
    call the depth "octree" but evaluate every point: there is no octree). Axis order ``x, y, z`` (``ij`` indexing),
    so a mesh's vertex in index space maps straight to coordinates."""
    check_positive_int("octree_depth", octree_depth)
    _check_bound(bound)
    axis = torch.linspace(-bound, bound, 2**octree_depth + 1, device=device, dtype=dtype)
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1)


def meshes_from_occupancy_grid(grid_logits: torch.Tensor, bound: float, level: float = 0.0):
    """Marching cubes (Lewiner) on each ``(G, G, G)`` logit grid of ``grid_logits`` ``(B, G, G, G)`` at ``level``.

    Returns one ``(vertices (V, 3) float32, faces (F, 3) int64)`` pair of NumPy arrays per item, vertices in the
    coordinates of `dense_query_grid`, or ``None`` for an item whose logits never cross ``level`` (an empty or
    full grid has no surface)."""
    from skimage.measure import marching_cubes

    check_tensor("grid_logits", grid_logits, ndim=4, shape_doc="(batch_size, G, G, G)")
    if len(set(grid_logits.shape[1:])) != 1 or grid_logits.shape[1] < 2:
        raise ValueError(f"`grid_logits` must hold cubic grids of side >= 2, got shape {tuple(grid_logits.shape)}")
    _check_bound(bound)
    check_finite_float("level", float(level))
    grid_size = grid_logits.shape[1]
    spacing = 2.0 * bound / (grid_size - 1)
    meshes = []
    for volume in grid_logits.detach().float().cpu().numpy():
        if not np.isfinite(volume).all():
            raise ValueError("`grid_logits` must be finite")
        if not volume.min() < level < volume.max():
            meshes.append(None)
            continue
        vertices, faces, _, _ = marching_cubes(volume, level=level, method="lewiner")
        meshes.append(((vertices * spacing - bound).astype(np.float32), faces.astype(np.int64)))
    return meshes
