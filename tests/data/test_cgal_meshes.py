"""CGAL's sample meshes (whitebox_hf.data.cgal_meshes): reading, normalisation, sampling and clear errors."""

import numpy as np
import pytest

from whitebox_hf.data import DataUnavailableError, cgal_mesh_names, load_cgal_mesh, load_cgal_meshes

# A closed tetrahedron, 4 vertices and 4 outward-facing triangles, spanning 4 × 2 × 1 before normalisation.
TETRAHEDRON = "OFF\n4 4 0\n0 0 0\n4 0 0\n0 2 0\n0 0 1\n3 0 2 1\n3 0 1 3\n3 0 3 2\n3 1 2 3\n"


@pytest.fixture
def mesh_dir(tmp_path):
    folder = tmp_path / "meshes"
    folder.mkdir()
    (folder / "tetra.off").write_text(TETRAHEDRON)
    (folder / "empty.off").write_text("OFF\n0 0 0\n")
    return folder


def test_mesh_is_read_and_normalised(mesh_dir):
    assert cgal_mesh_names(mesh_dir=mesh_dir) == ["empty", "tetra"]
    mesh = load_cgal_mesh("tetra", mesh_dir=mesh_dir)
    low, high = mesh.bounds
    np.testing.assert_allclose(high - low, [1.8, 0.9, 0.45], atol=1e-12)
    np.testing.assert_allclose((low + high) / 2, 0.0, atol=1e-12)
    assert mesh.is_watertight and mesh.volume > 0


def test_dataset_samples_points_on_the_mesh(mesh_dir):
    dataset = load_cgal_meshes(num_surface_points=256, min_faces=1, mesh_dir=mesh_dir)
    # The empty file is skipped; the tetrahedron is kept.
    assert dataset["name"] == ["tetra"] and dataset["num_faces"] == [4] and dataset["watertight"] == [True]
    points, normals = np.asarray(dataset[0]["surface_points"]), np.asarray(dataset[0]["surface_normals"])
    assert points.shape == normals.shape == (256, 3)
    mesh = load_cgal_mesh("tetra", mesh_dir=mesh_dir)
    # Each point lies on the plane of its face: n·(p - vertex) = 0 for one of the four faces.
    planes = mesh.face_normals @ mesh.vertices[mesh.faces[:, 0]].T
    offsets = np.abs(points @ mesh.face_normals.T - np.diag(planes))
    assert np.all(offsets.min(axis=1) < 1e-5)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-6)
    again = load_cgal_meshes(num_surface_points=256, min_faces=1, mesh_dir=mesh_dir)
    np.testing.assert_array_equal(again[0]["surface_points"], dataset[0]["surface_points"])


def test_bad_inputs_raise(mesh_dir, tmp_path):
    with pytest.raises(ValueError, match="`name`"):
        load_cgal_mesh("bunny", mesh_dir=mesh_dir)
    with pytest.raises(OSError, match="no faces"):
        load_cgal_mesh("empty", mesh_dir=mesh_dir)
    with pytest.raises(ValueError, match="`names`"):
        load_cgal_meshes(names=["tetra", "dragon"], mesh_dir=mesh_dir)
    with pytest.raises(ValueError, match="`num_surface_points`"):
        load_cgal_meshes(num_surface_points=0, mesh_dir=mesh_dir)
    with pytest.raises(OSError, match="`mesh_dir`"):
        cgal_mesh_names(mesh_dir=tmp_path)
    with pytest.raises(DataUnavailableError, match="libcgal-demo"):
        cgal_mesh_names(cache_dir=tmp_path / "empty-cache", fetch=False)


def test_real_meshes_when_cached():
    try:
        names = cgal_mesh_names(fetch=False)
    except DataUnavailableError:
        pytest.skip("CGAL meshes not cached (a data download, outside the install): "
                    "run `python -c 'from whitebox_hf.data import fetch_cgal_meshes; fetch_cgal_meshes()'`")
    assert {"bunny00", "armadillo", "elephant", "cow", "fandisk"} <= set(names)
    dataset = load_cgal_meshes(names=["elephant", "cow"], num_surface_points=128)
    assert dataset["name"] == ["elephant", "cow"] and all(dataset["watertight"])
    for row in dataset:
        assert np.all(np.abs(np.asarray(row["surface_points"])) <= 0.9 + 1e-5)
        low, high = load_cgal_mesh(row["name"]).bounds
        assert np.isclose(np.max(high - low), 1.8) and np.allclose(low + high, 0.0)
