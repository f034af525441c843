"""Cupid's occupancy + UV cube (spec threed_and_motion.md §2.3): pose as dense 2D-3D correspondences.

For a shape in its canonical frame and a camera, every voxel of a ``resolution³`` grid over the canonical cube
carries its occupancy and, when occupied, the normalised pixel ``(u, v) = π(P, x_i) ∈ [0, 1]²`` its centre ``x_i``
projects to (OpenCV camera, image origin top-left; `whitebox_hf.geometry.project_points`). A generated cube is
decoded back to correspondences ``(x_i, u_i)`` at its occupied voxels, and the camera (K, R, t) is recovered from
them by PnP (`whitebox_hf.geometry.solve_pnp_dlt`).

Layout: a float64 tensor ``(3, R, R, R)`` with channels ``(occupancy, u, v)`` as in Cupid (no fourth mask channel:
the occupancy channel is the mask); ``u, v`` are 0 at empty voxels. Index ``[c, i, j, k]`` is the voxel whose
centre is ``extent · ((i, j, k) + 0.5) / R − extent / 2`` along (x, y, z): Cupid's ``(idx + 0.5)/R − 0.5`` cube
scaled to the side ``extent`` of the canonical frame (2 for the procedural shapes, which lie in [−1, 1]³).

The flow model denoises the cube mapped to [−1, 1] (`normalize_cube`); `denormalize_cube` maps a sample back.

This module sits in the models layer because it joins ``whitebox_hf.geometry`` with the shapes and renders of
``whitebox_hf.data``, and the data layer lies below geometry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

from ...geometry import PnPSolution, project_points, solve_pnp_dlt, voxel_centers

__all__ = [
    "UV_CUBE_CHANNELS",
    "UVCubeCorrespondences",
    "build_uv_cube",
    "camera_from_pose",
    "camera_from_uv_cube",
    "decode_uv_cube",
    "denormalize_cube",
    "normalize_cube",
    "uv_cube_from_shape",
    "voxel_grid_points",
]

UV_CUBE_CHANNELS = ("occupancy", "u", "v")
# Cupid lowers the occupancy threshold in steps of 0.05 until at least 10 voxels are active (spec §2.3).
DEFAULT_MIN_VOXELS = 10
DEFAULT_THRESHOLD_STEP = 0.05
# solve_pnp_dlt's own floor: a 3×4 camera matrix has 11 degrees of freedom, two equations per point.
_PNP_MIN_POINTS = 6


def _check_resolution(resolution) -> int:
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2:
        raise ValueError(f"`resolution` must be an integer >= 2, got {resolution!r}")
    return resolution


def _check_extent(extent) -> float:
    if isinstance(extent, bool) or not isinstance(extent, (int, float)) or not np.isfinite(extent) or extent <= 0:
        raise ValueError(f"`extent` must be a finite number > 0 (the side of the canonical cube), got {extent!r}")
    return float(extent)


def voxel_grid_points(resolution: int, extent: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The integer ``indices`` ``(R³, 3)`` of every voxel (row-major, i slowest) and their centres ``(R³, 3)`` in
    the canonical frame (float64): `voxel_centers` scaled by ``extent``."""
    resolution, extent = _check_resolution(resolution), _check_extent(extent)
    axis = torch.arange(resolution)
    indices = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    return indices, extent * voxel_centers(indices, resolution)


def camera_from_pose(intrinsics: torch.Tensor, pose: torch.Tensor, image_size: tuple[int, int]):
    """``(K, R, t)`` in normalised uv units and world-to-camera form from a render's pixel ``intrinsics`` ``(3, 3)``
    and camera-to-world ``pose`` ``(4, 4)`` (`whitebox_hf.data.rendering.Camera`, the ``intrinsics`` / ``poses``
    columns of `load_shape_renders`) of a ``(W, H)`` image: ``K_uv = diag(1/W, 1/H, 1)·K``, ``R = R_c2wᵀ``,
    ``t = −R·c``."""
    from ...geometry import intrinsics_pixels_to_uv

    for name, value, shape in (("intrinsics", intrinsics, (3, 3)), ("pose", pose, (4, 4))):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"`{name}` must be a torch.Tensor, got {type(value).__name__}")
        if tuple(value.shape) != shape or not value.is_floating_point():
            raise ValueError(f"`{name}` must be a floating tensor of shape {shape}, got {value.dtype} "
                             f"{tuple(value.shape)}")
    rotation = pose[:3, :3].T.contiguous()
    translation = -rotation @ pose[:3, 3]
    return intrinsics_pixels_to_uv(intrinsics, image_size), rotation, translation


def build_uv_cube(sdf: Callable[[np.ndarray], np.ndarray], intrinsics: torch.Tensor, rotation: torch.Tensor,
            translation: torch.Tensor, resolution: int = 32, extent: float = 2.0, dense: bool = False) -> torch.Tensor:
    """The ``(3, R, R, R)`` float64 cube ``(occupancy, u, v)`` of a shape given by its signed distance ``sdf``
    (``(M, 3)`` float64 array of canonical points → ``(M,)``, negative inside; e.g. `Shape.sdf`) seen by the camera
    ``(K, R, t)`` with K in normalised uv units (`camera_from_pose`).

    Occupancy is exact at the voxel centres (``sdf < 0``). ``u, v`` are not clamped: a voxel outside the image
    (an object cut by the frame) keeps its uv outside [0, 1], a valid correspondence all the same. With ``dense``
    every voxel, occupied or not, carries its centre's projection (`CupidFlowConfig.dense_uv`); otherwise empty
    voxels hold 0 (Cupid). Raises ValueError when no voxel is occupied, or (from `project_points`) when a voxel
    that gets a projection lies behind the camera."""
    if not isinstance(dense, bool):
        raise TypeError(f"`dense` must be a bool, got {type(dense).__name__}")
    if not callable(sdf):
        raise TypeError(f"`sdf` must be callable (points (M, 3) -> signed distances (M,)), got {type(sdf).__name__}")
    _, points = voxel_grid_points(resolution, extent)
    distances = np.asarray(sdf(points.numpy()), dtype=np.float64)
    if distances.shape != (points.shape[0],):
        raise ValueError(f"`sdf` must return one distance per point, shape ({points.shape[0]},), got "
                         f"{distances.shape}")
    occupied = torch.from_numpy(distances < 0)
    if not bool(occupied.any()):
        raise ValueError(f"`sdf` is nowhere negative at the {resolution}³ voxel centres of the cube of side {extent}: "
                         "the shape is empty or outside the canonical cube")
    projected = slice(None) if dense else occupied
    uv = project_points(points[projected], intrinsics, rotation, translation)
    cube = torch.zeros(3, resolution**3, dtype=torch.float64)
    cube[0, occupied] = 1.0
    cube[1:, projected] = uv.T.to(torch.float64)
    return cube.reshape(3, resolution, resolution, resolution)


def uv_cube_from_shape(shape, intrinsics: torch.Tensor, pose: torch.Tensor, image_size: tuple[int, int],
                       resolution: int = 32, extent: float = 2.0) -> torch.Tensor:
    """`build_uv_cube` of a `whitebox_hf.data.shapes.Shape` seen by a render's camera (pixel ``intrinsics``,
    camera-to-world ``pose``, ``image_size = (W, H)``; see `camera_from_pose`)."""
    if not callable(getattr(shape, "sdf", None)):
        raise TypeError(f"`shape` must have an `sdf` method (a whitebox_hf.data.shapes.Shape), got "
                        f"{type(shape).__name__}")
    return build_uv_cube(shape.sdf, *camera_from_pose(intrinsics, pose, image_size), resolution=resolution, extent=extent)


def normalize_cube(cube: torch.Tensor) -> torch.Tensor:
    """``2·cube − 1``: the cube's [0, 1] channels mapped to [−1, 1], the scale of the flow's unit-variance noise."""
    return 2 * cube - 1


def denormalize_cube(sample: torch.Tensor) -> torch.Tensor:
    """The inverse of `normalize_cube`, clamped to [0, 1] (a generated sample can overshoot)."""
    return ((sample + 1) / 2).clamp(0, 1)


class UVCubeCorrespondences(NamedTuple):
    """The decoded correspondences of a cube: canonical voxel centres ``points`` ``(N, 3)``, their ``uv``
    ``(N, 2)``, the voxel ``indices`` ``(N, 3)`` and the occupancy ``threshold`` that selected them."""

    points: torch.Tensor
    uv: torch.Tensor
    indices: torch.Tensor
    threshold: float


def _check_cube(cube) -> int:
    if not isinstance(cube, torch.Tensor):
        raise TypeError(f"`cube` must be a torch.Tensor, got {type(cube).__name__}")
    if cube.ndim != 4 or cube.shape[0] != 3 or not (cube.shape[1] == cube.shape[2] == cube.shape[3]):
        raise ValueError(f"`cube` must have shape (3, R, R, R) (occupancy, u, v), got {tuple(cube.shape)}")
    if not cube.is_floating_point():
        raise TypeError(f"`cube` must be a floating tensor, got dtype {cube.dtype}")
    if not bool(torch.isfinite(cube).all()):
        raise ValueError("`cube` must be finite, got NaN or inf")
    return _check_resolution(int(cube.shape[1]))


def decode_uv_cube(cube: torch.Tensor, threshold: float = 0.5, min_voxels: int = DEFAULT_MIN_VOXELS,
                   threshold_step: float = DEFAULT_THRESHOLD_STEP, extent: float = 2.0) -> UVCubeCorrespondences:
    """The correspondences at the voxels of ``cube`` ``(3, R, R, R)`` (in [0, 1] units; `denormalize_cube` a
    sample first) whose occupancy exceeds ``threshold``.

    As Cupid does, when fewer than ``min_voxels`` voxels pass, the threshold is lowered by ``threshold_step``
    (while it stays > 0) until enough do; if none of those thresholds gives ``min_voxels`` voxels, ValueError."""
    resolution = _check_cube(cube)
    for name, value in (("threshold", threshold), ("threshold_step", threshold_step)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise ValueError(f"`{name}` must be a number in (0, 1), got {value!r}")
    if isinstance(min_voxels, bool) or not isinstance(min_voxels, int) or min_voxels < _PNP_MIN_POINTS:
        raise ValueError(f"`min_voxels` must be an integer >= {_PNP_MIN_POINTS} (PnP needs 6 points), got "
                         f"{min_voxels!r}")
    occupancy = cube[0].reshape(-1)
    current = float(threshold)
    while True:
        occupied = occupancy > current
        count = int(occupied.sum())
        lowered = current - threshold_step
        if count >= min_voxels or lowered <= 1e-9:
            break
        current = lowered
    if count < min_voxels:
        raise ValueError(f"`cube` has {count} voxels with occupancy above {current:.3g} (the threshold lowered from "
                         f"{threshold} in steps of {threshold_step}); recovering the camera needs at least "
                         f"{min_voxels} (`min_voxels`)")
    indices, points = voxel_grid_points(resolution, extent)
    uv = cube[1:].reshape(2, -1).T
    return UVCubeCorrespondences(points=points[occupied], uv=uv[occupied].to(torch.float64),
                                 indices=indices[occupied], threshold=current)


def camera_from_uv_cube(cube: torch.Tensor, threshold: float = 0.5, min_voxels: int = DEFAULT_MIN_VOXELS,
                        threshold_step: float = DEFAULT_THRESHOLD_STEP, extent: float = 2.0,
                        **pnp_kwargs) -> tuple[PnPSolution, UVCubeCorrespondences]:
    """The camera ``(K, R, t)`` (K in normalised uv units) recovered from ``cube`` by `solve_pnp_dlt` on the
    correspondences of `decode_uv_cube`, and those correspondences. ``pnp_kwargs`` go to `solve_pnp_dlt`
    (``refine_steps``, ``principal_point``, ``weights`` ...). Degenerate correspondences (coplanar voxels) raise
    ValueError naming ``cube``."""
    correspondences = decode_uv_cube(cube, threshold, min_voxels, threshold_step, extent)
    try:
        solution = solve_pnp_dlt(correspondences.points, correspondences.uv, **pnp_kwargs)
    except ValueError as error:
        raise ValueError(f"`cube`: the correspondences of its {correspondences.points.shape[0]} occupied voxels "
                         f"give no camera: {error}") from error
    return solution, correspondences
