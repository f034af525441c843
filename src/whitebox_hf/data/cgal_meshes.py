"""CGAL's sample meshes (bunny, armadillo, dragon, elephant, cow, fandisk, …), normalised, for evaluation only.

Debian's ``libcgal-demo`` installs ``/usr/share/doc/libcgal-dev/data.tar.gz``, whose ``data/meshes/*.off`` hold
about 140 meshes, roughly half of them real scanned or CAD shapes and half tiny test primitives. They are far too
few to train on; they serve as real, non-procedural shapes to evaluate a shape model trained on
`whitebox_hf.data.shapes`. `fetch_cgal_meshes` takes an installed copy of the tarball, or else fetches the package
through the package registry (``apt-get download`` + ``dpkg -x``, nothing is installed system-wide), and caches
the OFF files; `load_cgal_mesh` reads one with trimesh and centres and scales it exactly like the procedural
shapes (bounding box's longest side 1.8, inside [-0.9, 0.9]^3).
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from .debian_packages import download_debian_package
from .fashion_mnist import DataUnavailableError, default_cache_dir

logger = logging.getLogger(__name__)

__all__ = ["cgal_mesh_names", "fetch_cgal_meshes", "load_cgal_mesh", "load_cgal_meshes"]

DEBIAN_PACKAGE = "libcgal-demo"
INSTALLED_TARBALL = Path("/usr/share/doc/libcgal-dev/data.tar.gz")
_MESH_FOLDER = "data/meshes/"
_HALF_EXTENT = 0.9  # the same normalisation as whitebox_hf.data.shapes
HOW_TO_GET_IT = (
    "CGAL's sample meshes could not be found. Fetch them with\n"
    "  python -c 'from whitebox_hf.data import fetch_cgal_meshes; fetch_cgal_meshes()'\n"
    "(Debian/Ubuntu: apt-get download libcgal-demo, unpacked into the cache), or install them with\n"
    "  sudo apt-get install libcgal-demo     (the tarball lands in /usr/share/doc/libcgal-dev/data.tar.gz)"
)


def _cache_folder(cache_dir) -> Path:
    return Path(cache_dir or default_cache_dir()) / "cgal-meshes" / "meshes"


def _extract_meshes(tarball: Path, destination: Path) -> int:
    # Extract into a sibling folder and rename, so an interrupted extraction never looks like a complete cache.
    partial = destination.with_name(destination.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    count = 0
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive.getmembers():
            name = member.name.removeprefix("./")
            if member.isfile() and name.startswith(_MESH_FOLDER) and name.endswith(".off") and "/" not in \
                    name[len(_MESH_FOLDER):]:
                with archive.extractfile(member) as source, open(partial / Path(name).name, "wb") as target:
                    shutil.copyfileobj(source, target)
                count += 1
    if count == 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise DataUnavailableError(f"{tarball} holds no {_MESH_FOLDER}*.off files.\n{HOW_TO_GET_IT}")
    shutil.rmtree(destination, ignore_errors=True)
    partial.rename(destination)
    return count


def fetch_cgal_meshes(cache_dir: str | os.PathLike | None = None) -> Path:
    """Make the OFF files available under ``cache_dir/cgal-meshes/meshes`` and return that folder.

    Raises:
        DataUnavailableError: no cached or installed copy, and the package could not be downloaded.
    """
    folder = _cache_folder(cache_dir)
    if any(folder.glob("*.off")):
        return folder
    if INSTALLED_TARBALL.is_file():
        _extract_meshes(INSTALLED_TARBALL, folder)
        return folder
    with tempfile.TemporaryDirectory() as workdir:
        extracted = download_debian_package(DEBIAN_PACKAGE, workdir, HOW_TO_GET_IT)
        tarball = extracted / INSTALLED_TARBALL.relative_to("/")
        if not tarball.is_file():
            raise DataUnavailableError(f"{DEBIAN_PACKAGE} holds no {INSTALLED_TARBALL}.\n{HOW_TO_GET_IT}")
        count = _extract_meshes(tarball, folder)
    logger.info("%d CGAL sample meshes cached in %s", count, folder)
    return folder


def _mesh_folder(mesh_dir, cache_dir, fetch: bool) -> Path:
    if mesh_dir is not None:
        folder = Path(mesh_dir)
        if not any(folder.glob("*.off")):
            raise OSError(f"`mesh_dir` {folder} holds no *.off files")
        return folder
    folder = _cache_folder(cache_dir)
    if any(folder.glob("*.off")):
        return folder
    if not fetch:
        raise DataUnavailableError(f"no CGAL meshes cached in {folder}.\n{HOW_TO_GET_IT}")
    return fetch_cgal_meshes(cache_dir)


def cgal_mesh_names(mesh_dir=None, cache_dir=None, fetch: bool = True) -> list[str]:
    """Sorted names (file stems) of the available meshes."""
    return sorted(p.stem for p in _mesh_folder(mesh_dir, cache_dir, fetch).glob("*.off"))


def load_cgal_mesh(name: str, mesh_dir=None, cache_dir=None, fetch: bool = True):
    """The mesh ``name`` (e.g. ``"bunny00"``) as a `trimesh.Trimesh`, centred and scaled so its bounding box's
    longest side is 1.8 (inside [-0.9, 0.9]^3, like the procedural shapes).

    Raises:
        ValueError: ``name`` is not one of `cgal_mesh_names`.
        OSError: the file holds no triangles.
    """
    import trimesh

    folder = _mesh_folder(mesh_dir, cache_dir, fetch)
    path = folder / f"{name}.off"
    if not isinstance(name, str) or "/" in name or not path.is_file():
        raise ValueError(f"`name` must be one of the meshes in {folder} (see cgal_mesh_names), got {name!r}")
    try:
        mesh = trimesh.load(path, file_type="off", force="mesh", process=True)
    except (ValueError, TypeError, IndexError) as error:
        # trimesh 5.2 fails on a few of the collection's test files (faces of mixed polygon sizes).
        raise OSError(f"{path} could not be read as an OFF mesh: {error}") from error
    if len(mesh.faces) == 0:
        raise OSError(f"{path} holds no faces")
    low, high = mesh.bounds
    extent = float(np.max(high - low))
    if not extent > 0:
        raise OSError(f"{path} is degenerate: its bounding box has no extent")
    mesh.apply_translation(-(low + high) / 2)
    mesh.apply_scale(2 * _HALF_EXTENT / extent)
    return mesh


def load_cgal_meshes(names=None, num_surface_points: int = 4096, seed: int = 0, min_faces: int = 500,
                     mesh_dir=None, cache_dir=None, fetch: bool = True):
    """A `datasets.Dataset` of normalised CGAL meshes for evaluation: ``name``, ``num_faces``, ``watertight``,
    ``surface_points`` [N, 3] (uniform in area) and ``surface_normals`` [N, 3] (the sampled faces' unit normals).

    Args:
        names: the meshes to load (default: every mesh with at least ``min_faces`` faces, which leaves out the
            tiny test primitives).
        num_surface_points: N points per mesh.
        seed: seeds the surface sampling.
        min_faces: the smallest face count kept when ``names`` is not given.
    """
    import datasets
    import trimesh

    if isinstance(num_surface_points, bool) or not isinstance(num_surface_points, int) or num_surface_points <= 0:
        raise ValueError(f"`num_surface_points` must be a positive integer, got {num_surface_points!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"`seed` must be an integer >= 0, got {seed!r}")
    if isinstance(min_faces, bool) or not isinstance(min_faces, int) or min_faces < 0:
        raise ValueError(f"`min_faces` must be an integer >= 0, got {min_faces!r}")
    available = cgal_mesh_names(mesh_dir, cache_dir, fetch)
    if names is not None:
        if isinstance(names, str) or not isinstance(names, (list, tuple)) or not names:
            raise ValueError(f"`names` must be a non-empty list of mesh names, got {names!r}")
        unknown = [n for n in names if n not in available]
        if unknown:
            raise ValueError(f"`names` must name available meshes (see cgal_mesh_names), got unknown {unknown!r}")
    rows = []
    for index, name in enumerate(names if names is not None else available):
        try:
            mesh = load_cgal_mesh(name, mesh_dir, cache_dir, fetch=False)  # the folder is known to exist by now
        except OSError as error:
            if names is not None:
                raise
            # The collection holds a few empty, degenerate or unreadable test files.
            logger.info("skipping CGAL mesh %s: %s", name, error)
            continue
        if names is None and len(mesh.faces) < min_faces:
            continue
        points, faces = trimesh.sample.sample_surface(mesh, num_surface_points, seed=[seed, index])
        rows.append({"name": name, "num_faces": len(mesh.faces), "watertight": bool(mesh.is_watertight),
                     "surface_points": points.astype(np.float32),
                     "surface_normals": mesh.face_normals[faces].astype(np.float32)})
    features = datasets.Features({
        "name": datasets.Value("string"),
        "num_faces": datasets.Value("int64"),
        "watertight": datasets.Value("bool"),
        "surface_points": datasets.Array2D((num_surface_points, 3), "float32"),
        "surface_normals": datasets.Array2D((num_surface_points, 3), "float32"),
    })
    return datasets.Dataset.from_dict({c: [r[c] for r in rows] for c in features}, features=features)
