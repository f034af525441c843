"""CGAL's sample meshes rendered from random cameras, exactly as the procedural shapes are rendered: the real,
non-procedural evaluation set of image-conditioned shape models (issue 15: Cupid on "CGAL meshes rendered from
random cameras").

`render_mesh` is the mesh counterpart of `whitebox_hf.data.rendering.render_sdf`: the same rays through the pixel
centres (`camera_rays`), the same shading (albedo 0.8, ambient 0.25, the light fixed in the camera frame, a white
background), the same z-depth and silhouette; the ray-triangle intersections are Embree's (trimesh's ray module
over ``embreex``), the normal the vertex normals interpolated at the hit (flipped to face the viewer, as an SDF's
gradient does on the visible side).

`load_cgal_renders` renders each readable, watertight mesh of `whitebox_hf.data.cgal_meshes` (normalised into
[-0.9, 0.9]³, like the procedural shapes) from `random_cameras` — distance 2.5, 40° field of view, azimuth uniform,
elevation in [-10°, 40°], the procedural renders' cameras — and stores the views in the columns of
`load_shape_renders` (so the Cupid evaluation takes them unchanged), with the normalised mesh itself
(``vertices``, ``faces``) so that its exact occupancy (`whitebox_hf.data.meshes.grid_occupancy`, winding numbers)
and its re-renderings need no mesh file. Meshes that cannot be read, have too few or too many faces, or are not
watertight (inside is undefined) are skipped, and why is kept in the data set's description
(`skipped_cgal_meshes`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import zlib
from pathlib import Path

import numpy as np
import torch

from .fashion_mnist import default_cache_dir
from .rendering import (
    _ALBEDO,
    _LIGHT_DIRECTION_CAMERA,
    Camera,
    _check_camera,
    camera_rays,
    random_cameras,
)

logger = logging.getLogger(__name__)

__all__ = ["CGAL_CATEGORY", "load_cgal_renders", "mesh_voxel_occupancy", "render_mesh", "skipped_cgal_meshes"]

CGAL_CATEGORY = "cgal"
# Bumped whenever the rendering or the columns change, so a stale cache is never read.
_FORMAT_VERSION = 1


def render_mesh(vertices, faces, camera: Camera, ambient: float = 0.25, background: float = 1.0) -> dict:
    """Ray-cast the triangle mesh (``vertices`` ``(V, 3)``, ``faces`` ``(F, 3)``) seen by ``camera``, shaded as
    `render_sdf` shades: ``rgb`` ``(size, size, 3)`` float32, ``mask`` ``(size, size)`` bool, ``depth`` float32
    z-depth (0 where the ray misses) and ``normals`` ``(size, size, 3)`` float32 world-space unit normals."""
    import trimesh
    from trimesh.ray.ray_pyembree import (
        RayMeshIntersector,  # embreex: a declared dependency
    )

    _check_camera(camera)
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"`vertices` must have shape (V, 3), got {vertices.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer) or len(faces) == 0:
        raise ValueError(f"`faces` must be integer indices of shape (F >= 1, 3), got {faces.dtype} {faces.shape}")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise ValueError(f"`faces` must index the {len(vertices)} vertices, got indices in [{faces.min()}, "
                         f"{faces.max()}]")
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    origin, directions, cosines = camera_rays(camera)
    num_rays = directions.shape[0]
    origins = np.broadcast_to(origin.numpy(), (num_rays, 3))
    locations, ray_index, face_index = RayMeshIntersector(mesh).intersects_location(
        origins, directions.numpy(), multiple_hits=False)
    hit = np.zeros(num_rays, dtype=bool)
    hit[ray_index] = True
    depth = np.zeros(num_rays)
    depth[ray_index] = np.linalg.norm(locations - origins[ray_index], axis=1) * cosines.numpy()[ray_index]
    normals = np.zeros((num_rays, 3))
    if len(ray_index):
        # Smooth (interpolated vertex) normals, as the SDF's gradient is smooth; turned towards the viewer.
        barycentric = trimesh.triangles.points_to_barycentric(mesh.triangles[face_index], locations)
        normal = np.einsum("nk,nki->ni", barycentric, mesh.vertex_normals[faces[face_index]])
        flat = mesh.face_normals[face_index]
        normal = np.where((np.linalg.norm(normal, axis=1) > 1e-9)[:, None], normal, flat)
        normal /= np.linalg.norm(normal, axis=1, keepdims=True)
        towards = np.einsum("ni,ni->n", normal, directions.numpy()[ray_index]) > 0
        normal[towards] *= -1
        normals[ray_index] = normal
    light = camera.pose[:3, :3].numpy() @ np.asarray(_LIGHT_DIRECTION_CAMERA)
    light /= np.linalg.norm(light)
    shade = ambient + (1 - ambient) * np.clip(normals @ light, 0.0, None)
    rgb = np.full((num_rays, 3), background)
    rgb[hit] = shade[hit, None] * np.asarray(_ALBEDO)
    size = camera.size
    return {"rgb": torch.from_numpy(rgb.reshape(size, size, 3)).float(),
            "mask": torch.from_numpy(hit.reshape(size, size)),
            "depth": torch.from_numpy(depth.reshape(size, size)).float(),
            "normals": torch.from_numpy(normals.reshape(size, size, 3)).float()}


def mesh_voxel_occupancy(vertices, faces, resolution: int, extent: float = 2.0) -> np.ndarray:
    """Exact inside (winding number, `whitebox_hf.data.meshes.grid_occupancy`) of the watertight mesh at the
    ``resolution³`` voxel centres of the cube of side ``extent`` centred at the origin, indexed ``[i, j, k]`` along
    x, y, z (as `whitebox_hf.models.cupid.uv_cube.voxel_grid_points`). Boolean ``(R, R, R)``.

    The voxel centres ``−extent/2 + (i + ½)·h`` (``h = extent / R``) are not on `grid_occupancy`'s grid, which
    includes the cube's corners; moving the mesh by ``−h/2`` instead puts them on the first ``R`` points of its
    ``(R + 1)``-point grid, so the labels stay exact at the cost of an ``R + 1`` grid (not ``2R + 1``).

    Raises:
        ValueError: ``resolution`` is not a power of two in [2, 512], or the mesh is not watertight.
    """
    import trimesh

    from .meshes import grid_occupancy

    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2 or resolution > 512 \
            or resolution & (resolution - 1):
        raise ValueError(f"`resolution` must be a power of two in [2, 512] (the grid of grid_occupancy), got "
                         f"{resolution!r}")
    if isinstance(extent, bool) or not isinstance(extent, (int, float)) or not extent > 0:
        raise ValueError(f"`extent` must be a number > 0, got {extent!r}")
    mesh = trimesh.Trimesh(vertices=np.asarray(vertices, dtype=np.float64) - extent / resolution / 2,
                           faces=np.asarray(faces), process=False)
    depth = resolution.bit_length() - 1
    return grid_occupancy(mesh, depth, extent / 2)[:resolution, :resolution, :resolution]


def _mesh_seed(seed: int, name: str) -> int:
    """A mesh's "instance seed": from the data seed and the mesh's name alone (not its position in the folder)."""
    return int(np.random.SeedSequence([seed, zlib.crc32(name.encode())]).generate_state(1, dtype=np.uint32)[0])


def _features(num_views: int, size: int):
    import datasets

    return datasets.Features({
        "category": datasets.Value("string"),
        "caption": datasets.Value("string"),
        "parameters": datasets.Value("string"),
        "instance_seed": datasets.Value("int64"),
        "images": datasets.Array4D((num_views, size, size, 3), "uint8"),
        "masks": datasets.Array3D((num_views, size, size), "bool"),
        "intrinsics": datasets.Array3D((num_views, 3, 3), "float64"),
        "poses": datasets.Array3D((num_views, 4, 4), "float64"),
        "azimuth": datasets.Sequence(datasets.Value("float64"), length=num_views),
        "elevation": datasets.Sequence(datasets.Value("float64"), length=num_views),
        "name": datasets.Value("string"),
        "vertices": datasets.Array2D((None, 3), "float64"),
        "faces": datasets.Array2D((None, 3), "int64"),
    })


def skipped_cgal_meshes(renders) -> dict[str, str]:
    """The meshes `load_cgal_renders` left out of ``renders``, name → why."""
    return json.loads(renders.info.description or "{}").get("skipped", {})


def load_cgal_renders(names=None, num_views: int = 4, size: int = 64, seed: int = 0, min_faces: int = 500,
                      max_faces: int | None = None, mesh_dir=None, cache_dir: str | os.PathLike | None = None,
                      fetch: bool = True):
    """A `datasets.Dataset` of the CGAL meshes rendered from ``num_views`` random cameras each.

    Columns: those of `load_shape_renders` — ``category`` (``"cgal"``), ``caption``, ``parameters`` (JSON: the
    mesh's name and face count), ``instance_seed`` (from ``seed`` and the name), ``images`` ``(V, size, size, 3)``
    uint8, ``masks``, ``intrinsics`` ``(V, 3, 3)`` (pixels), ``poses`` ``(V, 4, 4)`` (camera-to-world, OpenCV),
    ``azimuth``, ``elevation`` — and ``name``, ``vertices`` ``(n, 3)`` float64, ``faces`` ``(m, 3)`` int64 (the
    normalised mesh rendered). Each mesh's cameras come from `random_cameras` seeded by
    `shape_renders.render_seed_of` of its instance seed, so a mesh's views do not change when other meshes are asked
    for.

    Args:
        names: the meshes (default: every mesh in the folder). A mesh that cannot be read, has fewer than
            ``min_faces`` or more than ``max_faces`` faces, or is not watertight is skipped; the reasons are in
            `skipped_cgal_meshes` of the result (and logged).
        num_views: views per mesh.
        size: the image side in pixels, in [8, 1024].
        seed: the seed every mesh's cameras derive from.
        min_faces, max_faces: the face counts kept (default: at least 500, which leaves out the collection's tiny
            test primitives; no upper bound). The exact occupancy labels cost about a millisecond per face at 32³.
        mesh_dir, cache_dir, fetch: where the meshes are (`whitebox_hf.data.cgal_meshes`); the renders are cached
            under ``cache_dir/cgal-renders/`` with ``save_to_disk`` and read back from there.

    Raises:
        ValueError: a bad argument, an unknown name, or no mesh left to render.
    """
    import datasets

    from .cgal_meshes import _mesh_folder, cgal_mesh_names, load_cgal_mesh
    from .shape_renders import render_seed_of
    from .shapes import _check_count, _check_seed

    _check_count("num_views", num_views)
    _check_seed("seed", seed)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 8 <= size <= 1024:
        raise ValueError(f"`size` must be an integer image side in [8, 1024] pixels, got {size!r}")
    if isinstance(min_faces, bool) or not isinstance(min_faces, int) or min_faces < 0:
        raise ValueError(f"`min_faces` must be an integer >= 0, got {min_faces!r}")
    if max_faces is not None and (isinstance(max_faces, bool) or not isinstance(max_faces, int)
                                  or max_faces < max(min_faces, 1)):
        raise ValueError(f"`max_faces` must be None or an integer >= max(`min_faces`, 1), got {max_faces!r}")
    if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
        raise ValueError(f"`cache_dir` must be a path or None, got {type(cache_dir).__name__}")
    available = cgal_mesh_names(mesh_dir, cache_dir, fetch)
    if names is not None:
        if isinstance(names, str) or not isinstance(names, (list, tuple)) or not names or \
                not all(isinstance(n, str) for n in names):
            raise ValueError(f"`names` must be a non-empty list of mesh names, got {names!r}")
        unknown = [n for n in names if n not in available]
        if unknown:
            raise ValueError(f"`names` must name available meshes (see cgal_mesh_names), got unknown {unknown!r}")
    chosen = list(names) if names is not None else available
    num_views, size = int(num_views), int(size)
    folder = _mesh_folder(mesh_dir, cache_dir, fetch=False)
    key = json.dumps({"names": chosen, "folder": str(folder.resolve()), "views": num_views, "size": size,
                      "seed": seed, "min_faces": min_faces, "max_faces": max_faces})
    prepared = (Path(cache_dir or default_cache_dir()) / "cgal-renders"
                / f"v{_FORMAT_VERSION}_{hashlib.sha256(key.encode()).hexdigest()[:16]}")
    if (prepared / "dataset_info.json").is_file():
        return datasets.load_from_disk(str(prepared))

    rows, skipped = [], {}
    for name in chosen:
        try:
            mesh = load_cgal_mesh(name, mesh_dir, cache_dir, fetch=False)
        except OSError as error:
            skipped[name] = f"unreadable: {error}".replace(str(folder) + os.sep, "")
        else:
            if len(mesh.faces) < min_faces:
                skipped[name] = f"{len(mesh.faces)} faces, fewer than min_faces = {min_faces}"
            elif max_faces is not None and len(mesh.faces) > max_faces:
                skipped[name] = f"{len(mesh.faces)} faces, more than max_faces = {max_faces}"
            elif not mesh.is_watertight:
                skipped[name] = "not watertight: its inside, and so its occupancy, is undefined"
        if name in skipped:
            logger.info("skipping CGAL mesh %s: %s", name, skipped[name])
            continue
        instance_seed = _mesh_seed(seed, name)
        cameras, azimuths, elevations = random_cameras(num_views, size, render_seed_of(instance_seed))
        vertices, faces = np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)
        views = [render_mesh(vertices, faces, camera) for camera in cameras]
        rows.append({
            "category": CGAL_CATEGORY, "caption": f"the CGAL sample mesh {name}",
            "parameters": json.dumps({"name": name, "num_faces": len(faces)}, sort_keys=True),
            "instance_seed": instance_seed,
            # As load_shape_renders: rounding keeps the white background at 255.
            "images": np.stack([(v["rgb"].numpy() * 255.0).round().clip(0, 255).astype(np.uint8) for v in views]),
            "masks": np.stack([v["mask"].numpy() for v in views]),
            "intrinsics": np.stack([c.intrinsics.numpy() for c in cameras]),
            "poses": np.stack([c.pose.numpy() for c in cameras]),
            "azimuth": azimuths, "elevation": elevations, "name": name, "vertices": vertices, "faces": faces})
    if not rows:
        raise ValueError(f"no CGAL mesh left to render among {chosen!r}: {skipped}")
    features = _features(num_views, size)
    info = datasets.DatasetInfo(description=json.dumps({"skipped": skipped}, sort_keys=True), features=features)
    dataset = datasets.Dataset.from_dict({c: [r[c] for r in rows] for c in features}, features=features, info=info)
    # Written to a sibling folder and renamed, so an interrupted save never looks like a complete cache.
    prepared.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=prepared.name + ".", dir=prepared.parent))
    try:
        dataset.save_to_disk(str(staging))
        os.replace(staging, prepared)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (prepared / "dataset_info.json").is_file():  # another process finished the same cache first
            raise
    return datasets.load_from_disk(str(prepared))
