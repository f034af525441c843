"""Your own mesh in and out of a SITA-VAE: what `whitebox-hf shapes prepare` and `whitebox-hf shapes reconstruct` do.

`prepare_mesh` reads a mesh file (OBJ, PLY, GLB, OFF, STL: whatever trimesh reads), centres and scales it like
`whitebox_hf.data.shapes` and `whitebox_hf.data.cgal_meshes` (bounding box's longest side 1.8, inside
[-0.9, 0.9]^3), and writes one training item in the layout of `Shape.training_item`: surface points with normals
and labelled uniform-volume and near-surface queries, as ``shape.safetensors``, with ``summary.json``.

Occupancy needs an inside, so the mesh must be watertight (after `trimesh.repair.fill_holes`). It is computed by
the generalised winding number (the sum of the signed solid angles the triangles subtend at a point, over 4π):
exactly 1 inside and 0 outside a closed, consistently oriented mesh, with no ray casting (trimesh's `contains`
needs rtree, which is not a dependency).

`reconstruct` encodes the prepared surface points with a saved `SitaVaeModel`, scores the decoded occupancy on the
prepared volume queries (IoU) and writes the marching-cubes mesh of the decoded field.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

__all__ = ["MESH_FORMATS", "prepare_mesh", "read_mesh", "reconstruct", "winding_number"]

# The suffixes trimesh 5.2 reads and writes as triangle meshes without extra packages.
MESH_FORMATS = ("obj", "ply", "glb", "gltf", "off", "stl")
_HALF_EXTENT = 0.9  # as data.shapes and data.cgal_meshes
# The solid-angle arrays of one chunk hold about this many (point, face) pairs: bounded memory for large meshes.
_PAIRS_PER_CHUNK = 500_000
ITEM_FILE, SUMMARY_FILE = "shape.safetensors", "summary.json"


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


def _check_count(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}")


def prepare_mesh(mesh_path: str | os.PathLike, out_dir: str | os.PathLike, num_surface_points: int = 4096,
                 num_volume_queries: int = 1024, num_near_queries: int = 1024, near_noise_std: float = 0.015,
                 seed: int = 0) -> dict:
    """Normalise the mesh in ``mesh_path``, sample a training item from it and write ``out_dir``/shape.safetensors
    (``surface_points``, ``surface_normals``, ``volume_queries``, ``volume_occupancy``, ``near_queries``,
    ``near_occupancy``: float32 points, uint8 labels, as `Shape.training_item`) and ``out_dir``/summary.json.
    Returns the summary.

    Raises:
        OSError: the file cannot be read (see `read_mesh`).
        ValueError: the mesh is not watertight even after filling its holes (occupancy would be undefined), or a
            count / σ / seed is out of range.
    """
    import trimesh
    from safetensors.numpy import save_file

    for name, value in (("num_surface_points", num_surface_points), ("num_volume_queries", num_volume_queries),
                        ("num_near_queries", num_near_queries)):
        _check_count(name, value)
    if isinstance(near_noise_std, bool) or not isinstance(near_noise_std, (int, float)) \
            or not (math.isfinite(near_noise_std) and near_noise_std > 0):
        raise ValueError(f"`near_noise_std` must be a finite positive number, got {near_noise_std!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"`seed` must be an integer >= 0, got {seed!r}")
    mesh_path = Path(mesh_path)
    mesh = read_mesh(mesh_path)
    holes_filled = False
    if not mesh.is_watertight:
        trimesh.repair.fill_holes(mesh)
        holes_filled = True
        if not mesh.is_watertight:
            raise ValueError(f"`mesh` {str(mesh_path)!r} is not watertight, even after filling its holes: "
                             f"inside and outside (occupancy) are undefined for an open surface")
    # trimesh's mass properties divide by the volume (the centre of mass): a flat shell warns, and is refused below.
    with np.errstate(divide="ignore", invalid="ignore"):
        volume = float(mesh.volume)
    if volume < 0:
        mesh.invert()  # inward-facing triangles: the surface normals must point out
    # Hole filling can close two facing sheets into a flat "solid"; it has no inside to label.
    if not abs(volume) > 1e-9 * float(np.max(mesh.extents)) ** 3:
        raise ValueError(f"`mesh` {str(mesh_path)!r} encloses no volume (volume {volume:.3g}): there is no "
                         f"inside to label")
    offset, scale = normalise_mesh(mesh)
    rng = np.random.default_rng(seed)
    surface, face_index = trimesh.sample.sample_surface(mesh, num_surface_points, seed=rng)
    normals = mesh.face_normals[face_index]
    volume = rng.uniform(-1.0, 1.0, size=(num_volume_queries, 3))
    near_base, _ = trimesh.sample.sample_surface(mesh, num_near_queries, seed=rng)
    near = np.clip(near_base + near_noise_std * rng.standard_normal(near_base.shape), -1.0, 1.0)
    item = {
        "surface_points": surface.astype(np.float32),
        "surface_normals": normals.astype(np.float32),
        "volume_queries": volume.astype(np.float32),
        "near_queries": near.astype(np.float32),
    }
    # Labels of the float32 points actually stored; |w| > 1/2 is inside whatever the triangles' orientation.
    for name in ("volume", "near"):
        winding = winding_number(mesh.vertices, mesh.faces, item[f"{name}_queries"])
        item[f"{name}_occupancy"] = (np.abs(winding) > 0.5).astype(np.uint8)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(item, str(out_dir / ITEM_FILE))
    summary = {
        "source": str(mesh_path), "num_vertices": len(mesh.vertices), "num_faces": len(mesh.faces),
        "holes_filled": holes_filled, "offset": [float(x) for x in offset], "scale": float(scale),
        "num_surface_points": num_surface_points, "num_volume_queries": num_volume_queries,
        "num_near_queries": num_near_queries, "near_noise_std": float(near_noise_std), "seed": seed,
        "volume_inside_fraction": float(item["volume_occupancy"].mean()),
        "near_inside_fraction": float(item["near_occupancy"].mean()),
    }
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _load_item(prepared_dir: Path) -> dict:
    from safetensors.numpy import load_file

    path = prepared_dir / ITEM_FILE
    if not prepared_dir.is_dir():
        raise FileNotFoundError(f"{str(prepared_dir)!r} is not a folder; pass the --out folder of `shapes prepare`")
    if not path.is_file():
        raise FileNotFoundError(f"{prepared_dir} holds no {ITEM_FILE}; write it with `whitebox-hf shapes prepare`")
    try:
        item = load_file(str(path))
    except Exception as error:  # safetensors raises its own SafetensorError on a damaged file
        raise OSError(f"{path} could not be read: {error}") from error
    for key in ("surface_points", "surface_normals", "volume_queries", "volume_occupancy"):
        if key not in item:
            raise OSError(f"{path} has no {key!r} tensor; write it with `whitebox-hf shapes prepare`")
    return item


def reconstruct(prepared_dir: str | os.PathLike, model_folder: str | os.PathLike, out_path: str | os.PathLike,
                octree_depth: int = 7, bound: float = 1.25, level: float = 0.0) -> dict:
    """Encode the prepared surface points of ``prepared_dir`` with the `SitaVaeModel` saved in ``model_folder``
    (posterior mean), report the IoU of the decoded occupancy (logit > ``level``) against the prepared volume
    labels, and write the marching-cubes mesh of the decoded field (`SitaVaeModel.extract_meshes`) to
    ``out_path`` (format from its suffix).

    Returns ``{"iou", "num_volume_queries", "mesh_path", "num_vertices", "num_faces"}``; ``mesh_path`` is None (and
    nothing is written) when the decoded field never crosses ``level`` (no surface). The IoU is NaN when neither
    the labels nor the prediction hold an inside point.
    """
    import torch
    import trimesh
    from transformers import AutoModel

    from ..models.sita_vae import SitaVaeModel

    prepared_dir, model_folder, out_path = Path(prepared_dir), Path(model_folder), Path(out_path)
    item = _load_item(prepared_dir)
    _suffix(out_path, "out")
    if not out_path.resolve().parent.is_dir():
        raise FileNotFoundError(f"the folder of `out` {str(out_path)!r} does not exist")
    if not (model_folder / "config.json").is_file():
        raise FileNotFoundError(f"{str(model_folder)!r} is not a saved model folder (no config.json)")
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # the "Loading weights" bar would break the command's one-line messages
    try:
        model = AutoModel.from_pretrained(model_folder)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    if not isinstance(model, SitaVaeModel):
        raise TypeError(f"`model` must be a saved SitaVaeModel, got a {type(model).__name__} from {model_folder}")
    model.eval()
    parameter = next(model.parameters())
    surface = np.concatenate([item["surface_points"], item["surface_normals"]], axis=-1)
    with torch.no_grad():
        points = torch.from_numpy(surface)[None].to(parameter.device, parameter.dtype)
        latents = model.encode(points, sample_posterior=False).latents
        queries = torch.from_numpy(item["volume_queries"])[None].to(parameter.device, parameter.dtype)
        predicted = (model.decode(latents, queries)[0] > level).cpu().numpy()
        meshes = model.extract_meshes(latents, octree_depth=octree_depth, bound=bound, level=level)
    labels = item["volume_occupancy"].astype(bool)
    union = int(np.logical_or(predicted, labels).sum())
    iou = float(np.logical_and(predicted, labels).sum() / union) if union else float("nan")
    result = {"iou": iou, "num_volume_queries": len(labels), "mesh_path": None, "num_vertices": 0, "num_faces": 0}
    if meshes[0] is None:
        return result
    vertices, faces = meshes[0]
    trimesh.Trimesh(vertices=vertices, faces=faces, process=False).export(out_path)
    result.update(mesh_path=str(out_path), num_vertices=len(vertices), num_faces=len(faces))
    return result
