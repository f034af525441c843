"""Triangle meshes as exact shapes: reading and normalising a mesh file, and inside/outside by the generalised
winding number (the data layer, so that `whitebox_hf.evaluation` and `whitebox_hf.hub` can both use it).

`winding_number` is the sum of the signed solid angles the triangles subtend at a point, over 4π: exactly 1 inside
and 0 outside a closed, consistently oriented mesh, with no ray casting (trimesh's ``contains`` needs rtree or
embree, neither a dependency). `grid_occupancy` labels a whole ``(2^d + 1)³`` grid with it, evaluating the
winding number only at grid points next to a triangle and at one point of every connected region of the others
(a region no triangle crosses has one winding number), which makes 65³ labels of a 90k-face mesh affordable.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

__all__ = ["MESH_FORMATS", "grid_occupancy", "normalise_mesh", "read_mesh", "winding_number"]

# The suffixes trimesh 5.2 reads and writes as triangle meshes without extra packages.
MESH_FORMATS = ("obj", "ply", "glb", "gltf", "off", "stl")
_HALF_EXTENT = 0.9  # as data.shapes and data.cgal_meshes
# The solid-angle arrays of one chunk hold about this many (point, face) pairs: bounded memory for large meshes.
_PAIRS_PER_CHUNK = 500_000


def _suffix(path: Path, name: str) -> str:
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in MESH_FORMATS:
        raise ValueError(f"`{name}` must end in one of {', '.join('.' + f for f in MESH_FORMATS)}, got {str(path)!r}")
    return suffix


def read_mesh(path: str | os.PathLike):
    """The triangle mesh in ``path`` as a `trimesh.Trimesh` (a scene's geometries are concatenated).

    Raises:
        ValueError: the suffix is not one of `MESH_FORMATS`.
        OSError: the file is missing, cannot be parsed, or holds no triangles.
    """
    import trimesh

    path = Path(path)
    suffix = _suffix(path, "mesh")
    if not path.is_file():
        raise FileNotFoundError(f"mesh file {str(path)!r} does not exist")
    try:
        mesh = trimesh.load(path, file_type=suffix, force="mesh", process=True)
    except Exception as error:  # trimesh's parsers raise anything from ValueError to KeyError
        raise OSError(f"{path} could not be read as a mesh ({suffix.upper()}): {type(error).__name__}: {error}") \
            from error
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise OSError(f"{path} holds no triangles")
    return mesh


def normalise_mesh(mesh):
    """Centre ``mesh``'s bounding box at the origin and scale its longest side to 1.8, in place; returns the
    ``(offset, scale)`` applied (normalised = (original - offset) · scale)."""
    low, high = mesh.bounds
    extent = float(np.max(high - low))
    if not extent > 0:
        raise OSError("the mesh is degenerate: its bounding box has no extent")
    offset, scale = (low + high) / 2, 2 * _HALF_EXTENT / extent
    mesh.apply_translation(-offset)
    mesh.apply_scale(scale)
    return offset, scale


def winding_number(vertices, faces, points, chunk_size: int | None = None) -> np.ndarray:
    """The generalised winding number of the triangle mesh (``vertices`` ``(V, 3)``, ``faces`` ``(F, 3)``) at
    ``points`` ``(M, 3)``, float64 ``(M,)``: Σ Ω_f / 4π, with each triangle's signed solid angle Ω_f by Van
    Oosterom and Strackee's formula, tan(Ω/2) = a·(b×c) / (|a||b||c| + (a·b)|c| + (b·c)|a| + (c·a)|b|) for the
    corners a, b, c relative to the point. ``chunk_size`` points are done at a time (default: as many as keep
    about half a million point-face pairs in memory)."""
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces)
    points = np.asarray(points, dtype=np.float64)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"`vertices` must have shape (V, 3), got {vertices.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
        raise ValueError(f"`faces` must be integer indices of shape (F, 3), got {faces.dtype} {faces.shape}")
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError(f"`faces` must index the {len(vertices)} vertices, got indices in "
                         f"[{faces.min()}, {faces.max()}]")
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"`points` must have shape (M, 3), got {points.shape}")
    if chunk_size is None:
        chunk_size = max(1, _PAIRS_PER_CHUNK // max(len(faces), 1))
    elif isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
        raise ValueError(f"`chunk_size` must be a positive integer, got {chunk_size!r}")
    triangles = vertices[faces]  # (F, 3 corners, 3)
    result = np.empty(len(points))
    for start in range(0, len(points), chunk_size):
        corners = triangles[None] - points[start:start + chunk_size, None, None]  # (m, F, 3, 3)
        a, b, c = corners[:, :, 0], corners[:, :, 1], corners[:, :, 2]
        la, lb, lc = (np.linalg.norm(x, axis=-1) for x in (a, b, c))
        numerator = np.einsum("mfi,mfi->mf", a, np.cross(b, c))
        denominator = (la * lb * lc + np.einsum("mfi,mfi->mf", a, b) * lc + np.einsum("mfi,mfi->mf", b, c) * la
                       + np.einsum("mfi,mfi->mf", c, a) * lb)
        result[start:start + chunk_size] = 2 * np.arctan2(numerator, denominator).sum(axis=1) / (4 * math.pi)
    return result


def grid_occupancy(mesh, grid_depth: int, bound: float) -> np.ndarray:
    """Exact inside (|winding number| > 1/2) of the watertight ``mesh`` (a `trimesh.Trimesh`) at the points of the
    ``(G, G, G)`` grid over ``[-bound, bound]³``, ``G = 2^grid_depth + 1``, axis order x, y, z (as
    `whitebox_hf.models.sita_vae.dense_query_grid`). Boolean ``(G, G, G)``.

    Why it is exact with few evaluations: every grid point inside the index-space bounding box of some triangle is
    evaluated. Two grid neighbours that are not both evaluated have no triangle crossing the edge between them
    (a crossing point lies in that triangle's box, and so do the edge's ends, which are the crossing rounded
    down and up along one axis). So each 6-connected region of unevaluated points has one winding number, taken
    at one of its points.

    Raises:
        ValueError: ``mesh`` is not watertight (inside is undefined), or the depth / bound is out of range.
    """
    from scipy.ndimage import label

    if isinstance(grid_depth, bool) or not isinstance(grid_depth, int) or not 1 <= grid_depth <= 9:
        raise ValueError(f"`grid_depth` must be an integer in [1, 9], got {grid_depth!r}")
    if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not (math.isfinite(bound) and bound > 0):
        raise ValueError(f"`bound` must be a finite positive number, got {bound!r}")
    if not getattr(mesh, "is_watertight", False):
        raise ValueError("`mesh` must be a watertight trimesh.Trimesh: inside and outside are undefined for an open "
                         f"surface, got {type(mesh).__name__} (watertight: {getattr(mesh, 'is_watertight', None)})")
    size = 2**grid_depth + 1
    spacing = 2.0 * bound / (size - 1)
    axis = np.linspace(-bound, bound, size)
    triangles = np.asarray(mesh.vertices, dtype=np.float64)[np.asarray(mesh.faces)]
    low = np.clip(np.floor((triangles.min(axis=1) + bound) / spacing).astype(np.int64), 0, size - 1)
    high = np.clip(np.ceil((triangles.max(axis=1) + bound) / spacing).astype(np.int64), 0, size - 1)
    span = high - low + 1
    near = np.zeros((size, size, size), dtype=bool)
    small = (span <= 4).all(axis=1)  # a triangle a few cells wide: mark its box by offsets, all at once
    for dx in range(4):
        for dy in range(4):
            for dz in range(4):
                pick = small & (span[:, 0] > dx) & (span[:, 1] > dy) & (span[:, 2] > dz)
                near[low[pick, 0] + dx, low[pick, 1] + dy, low[pick, 2] + dz] = True
    for lo, hi in zip(low[~small], high[~small]):  # the few large triangles, one by one
        near[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1] = True
    inside = np.zeros((size, size, size), dtype=bool)
    index = np.nonzero(near)
    points = np.stack([axis[index[0]], axis[index[1]], axis[index[2]]], axis=-1)
    inside[index] = np.abs(winding_number(mesh.vertices, mesh.faces, points)) > 0.5
    regions, count = label(~near)  # 6-connectivity
    if count:
        flat = regions.ravel()
        first = np.unique(flat, return_index=True)[1][1:]  # one point of each region (label 0 is `near`)
        ijk = np.stack(np.unravel_index(first, regions.shape), axis=-1)
        region_inside = np.abs(winding_number(mesh.vertices, mesh.faces, axis[ijk])) > 0.5
        inside |= np.concatenate([[False], region_inside])[regions]
    return inside
