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

# The mesh pieces live in the data layer (evaluation uses them too); re-exported here for `whitebox-hf shapes`.
from ..data.meshes import (
    MESH_FORMATS,
    _suffix,
    normalise_mesh,
    read_mesh,
    winding_number,
)

__all__ = ["MESH_FORMATS", "normalise_mesh", "prepare_mesh", "read_mesh", "reconstruct", "winding_number"]
ITEM_FILE, SUMMARY_FILE = "shape.safetensors", "summary.json"


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
