"""Mesh extraction from a SITA-VAE's occupancy field (spec ``threed_and_motion.md`` §1.3, Michelangelo
``tsal/inference_utils.py``): decode a dense grid of ``(2^d + 1)³`` query points in chunks, then run
``skimage.measure.marching_cubes`` (Lewiner) at logit 0.

The authors map grid indices to coordinates by dividing by ``grid_size`` instead of ``grid_size − 1``, which shrinks
every mesh by ``2^d / (2^d + 1)``; here index ``i`` maps to ``−bound + i · 2·bound / (grid_size − 1)``, the same
coordinates the grid was decoded at.

`coarse_to_fine_occupancy` gives the same grid with far fewer decoder queries (refining only the coarse cells the
surface crosses), and `export_mesh` writes a mesh to GLB, OBJ or PLY with trimesh.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ...utils.validation import check_finite_float, check_positive_int, check_tensor

__all__ = ["MESH_SUFFIXES", "coarse_to_fine_occupancy", "dense_query_grid", "export_mesh", "meshes_from_occupancy_grid"]


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


MESH_SUFFIXES = (".glb", ".obj", ".ply")


def export_mesh(vertices, faces, path) -> Path:
    """Write the triangle mesh ``vertices`` ``(V, 3)`` / ``faces`` ``(F, 3)`` (NumPy arrays or tensors, e.g. one
    item of `meshes_from_occupancy_grid`) to ``path``, in the format its suffix names: ``.glb`` (binary glTF, what
    viewers such as Gradio's ``Model3D`` load), ``.obj`` or ``.ply`` (trimesh's exporters). Returns the path.

    The mesh is written as given (``process=False``): no vertex merging or face removal, so the file holds exactly
    the marching-cubes output."""
    import trimesh

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`path` must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise ValueError(f"`path` must end in one of {MESH_SUFFIXES} (the mesh format), got {str(path)!r}")
    if isinstance(vertices, torch.Tensor):
        vertices = vertices.detach().cpu().numpy()
    if isinstance(faces, torch.Tensor):
        faces = faces.detach().cpu().numpy()
    vertices, faces = np.asarray(vertices), np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) == 0:
        raise ValueError(f"`vertices` must have shape (V, 3) with V >= 1, got {vertices.shape}")
    if not np.issubdtype(vertices.dtype, np.floating):
        raise TypeError(f"`vertices` must be floating point, got dtype {vertices.dtype}")
    if not np.isfinite(vertices).all():
        raise ValueError("`vertices` must be finite, got NaN or inf")
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise ValueError(f"`faces` must have shape (F, 3) with F >= 1, got {faces.shape}")
    if not np.issubdtype(faces.dtype, np.integer):
        raise TypeError(f"`faces` must hold integer vertex indices, got dtype {faces.dtype}")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise ValueError(f"`faces` must index vertices in [0, {len(vertices) - 1}], got indices in "
                         f"[{faces.min()}, {faces.max()}]")
    if not path.parent.is_dir():
        raise OSError(f"`path`'s folder {str(path.parent)!r} does not exist")
    trimesh.Trimesh(vertices=vertices, faces=faces, process=False).export(path, file_type=suffix[1:])
    return path


def _decode_in_chunks(decode_fn, points: torch.Tensor, chunk_size: int) -> torch.Tensor:
    logits = []
    for start in range(0, len(points), chunk_size):
        chunk = points[start:start + chunk_size]
        out = decode_fn(chunk)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(chunk),):
            raise ValueError(f"`decode_fn` must map (N, 3) points to a (N,) tensor of logits, got "
                             f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__} for "
                             f"N = {len(chunk)}")
        logits.append(out.detach().to(torch.float32).cpu())
    return torch.cat(logits)


def coarse_to_fine_occupancy(decode_fn, octree_depth: int = 7, bound: float = 1.25, coarse_depth: int = 5,
                             level: float = 0.0, dilation: int = 1, margin: float = 0.0, chunk_size: int = 10_000,
                             device=None, dtype=torch.float32) -> tuple[torch.Tensor, int]:
    """The ``(G, G, G)`` logit grid of `dense_query_grid` (``G = 2^octree_depth + 1``), decoding only near the
    surface. Returns ``(logits, num_queries)``, ``num_queries`` being the number of points given to ``decode_fn``
    (the dense grid needs ``G³``).

    ``decode_fn`` maps query points ``(N, 3)`` (on ``device``, ``dtype``) to logits ``(N,)``, e.g.
    ``lambda p: model.decode(latents[:1], p[None])[0]``. Steps:

    1. decode the coarse grid ``2^coarse_depth + 1`` per side (its points are fine-grid points);
    2. mark the coarse cells whose 8 corners are not all on one side of ``level`` (the surface crosses them) or
       where any corner's ``|logit − level| < margin``, grown by ``dilation`` cells in every direction, because a
       cell whose corners agree can still hold a piece of surface next to a crossed cell;
    3. decode every fine point in a marked cell (closed cells, so shared faces agree) not already decoded;
    4. fill every other fine point by trilinear interpolation of the coarse logits. An unmarked cell's corners
       share one side of ``level``, so its interpolated logits do too: the occupancy there equals the coarse one
       and marching cubes finds no surface in it.

    What it can miss: a part of the shape thinner than a coarse cell whose corners all lie outside it (a chair leg
    between coarse points), which the dense grid would resolve. For a signed-distance-like field (1-Lipschitz,
    e.g. ``-sdf``) ``margin = √3/2 · h``, ``h = 2·bound / 2^coarse_depth`` the coarse spacing, rules this out: a
    point of an unmarked cell lies within ``√3/2 · h`` of a corner, so its value keeps that corner's side. A
    decoder's occupancy logits have no such bound; there the tolerance is measured (IoU against the dense grid,
    ``benchmarks/bench_mesh_extraction.py``)."""
    if not callable(decode_fn):
        raise TypeError(f"`decode_fn` must be callable, got {type(decode_fn).__name__}")
    check_positive_int("octree_depth", octree_depth)
    check_positive_int("coarse_depth", coarse_depth)
    if coarse_depth >= octree_depth:
        raise ValueError(f"`coarse_depth` must be smaller than `octree_depth` ({octree_depth}), got {coarse_depth}")
    if isinstance(dilation, bool) or not isinstance(dilation, int) or dilation < 0:
        raise ValueError(f"`dilation` must be an integer >= 0, got {dilation!r}")
    check_positive_int("chunk_size", chunk_size)
    _check_bound(bound)
    check_finite_float("level", float(level))
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin >= 0 or margin == float("inf"):
        raise ValueError(f"`margin` must be a finite number >= 0, got {margin!r}")
    from scipy.ndimage import binary_dilation

    ratio = 2 ** (octree_depth - coarse_depth)
    fine_points = dense_query_grid(octree_depth, bound, device=device, dtype=dtype)
    size = fine_points.shape[0]
    coarse_points = fine_points[::ratio, ::ratio, ::ratio]
    coarse_size = coarse_points.shape[0]
    coarse = _decode_in_chunks(decode_fn, coarse_points.reshape(-1, 3), chunk_size).view(*coarse_points.shape[:3])
    if not torch.isfinite(coarse).all():
        raise ValueError("`decode_fn` returned non-finite logits on the coarse grid")

    inside = (coarse > level).numpy()
    corners = [inside[i:coarse_size - 1 + i, j:coarse_size - 1 + j, k:coarse_size - 1 + k]
               for i in (0, 1) for j in (0, 1) for k in (0, 1)]
    crossed = np.logical_or.reduce(corners) & ~np.logical_and.reduce(corners)
    if margin > 0:
        near = (coarse - level).abs().numpy() < margin
        crossed |= np.logical_or.reduce([near[i:coarse_size - 1 + i, j:coarse_size - 1 + j, k:coarse_size - 1 + k]
                                         for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    if dilation:
        crossed = binary_dilation(crossed, structure=np.ones((3, 3, 3), dtype=bool), iterations=dilation)

    # Fine cells of the marked coarse cells, then the fine points at their corners.
    fine_cells = crossed.repeat(ratio, 0).repeat(ratio, 1).repeat(ratio, 2)
    refine = np.zeros((size, size, size), dtype=bool)
    for i in (0, 1):
        for j in (0, 1):
            for k in (0, 1):
                refine[i:size - 1 + i, j:size - 1 + j, k:size - 1 + k] |= fine_cells
    refine[::ratio, ::ratio, ::ratio] = False  # decoded already
    refine = torch.from_numpy(refine)

    logits = torch.nn.functional.interpolate(coarse[None, None], size=(size,) * 3, mode="trilinear",
                                             align_corners=True)[0, 0]
    logits[::ratio, ::ratio, ::ratio] = coarse  # exact, not re-rounded by the interpolation
    num_refined = int(refine.sum())
    if num_refined:
        refine_device = refine.to(fine_points.device)
        logits[refine] = _decode_in_chunks(decode_fn, fine_points[refine_device], chunk_size)
    return logits, coarse_size**3 + num_refined
