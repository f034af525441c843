"""Mesh containment in the data layer: the grid labels of `grid_occupancy` are the winding number's everywhere, and
agree with trimesh's own containment on a watertight mesh."""

import numpy as np
import pytest
import trimesh

from whitebox_hf.data.meshes import grid_occupancy, winding_number


def _grid(depth, bound=1.0):
    axis = np.linspace(-bound, bound, 2**depth + 1)
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1)


def test_grid_labels_equal_the_winding_number_at_every_point():
    # A torus: its hole is a region of unevaluated outside points enclosed by the band, the case the region
    # shortcut must get right.
    mesh = trimesh.creation.torus(major_radius=0.55, minor_radius=0.25, major_sections=24, minor_sections=12)
    labels = grid_occupancy(mesh, 4, 1.0)
    points = _grid(4).reshape(-1, 3)
    full = np.abs(winding_number(mesh.vertices, mesh.faces, points)) > 0.5
    assert labels.shape == (17, 17, 17) and labels.dtype == np.bool_
    np.testing.assert_array_equal(labels.ravel(), full)
    assert 0 < labels.sum() < labels.size
    assert not labels[8, 8, 8]  # the torus's centre is outside


def test_grid_labels_agree_with_the_half_spaces_of_a_convex_watertight_mesh():
    # trimesh's `contains` needs rtree (not a dependency); for a convex mesh, inside is exactly "behind every face
    # plane", which trimesh gives through its face normals.
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.7)
    box = trimesh.creation.box(extents=(0.5, 1.4, 0.3))
    box.apply_translation((0.31, 0.07, 0.01))  # no grid point on a face (there inside is a tie)
    points = _grid(4).reshape(-1, 3)
    for mesh in (sphere, box):
        assert mesh.is_watertight and mesh.is_convex
        offsets = np.einsum("fi,fi->f", mesh.face_normals, mesh.triangles[:, 0])
        behind = np.all(points @ mesh.face_normals.T - offsets < 0, axis=1)
        np.testing.assert_array_equal(grid_occupancy(mesh, 4, 1.0).ravel(), behind)
        assert behind.any()


def test_an_open_mesh_and_bad_settings_are_refused():
    open_mesh = trimesh.creation.icosphere(subdivisions=1)
    open_mesh.update_faces(np.arange(len(open_mesh.faces) - 1))
    with pytest.raises(ValueError, match="`mesh` must be a watertight"):
        grid_occupancy(open_mesh, 3, 1.0)
    closed = trimesh.creation.icosphere(subdivisions=1)
    with pytest.raises(ValueError, match="`grid_depth`"):
        grid_occupancy(closed, 0, 1.0)
    with pytest.raises(ValueError, match="`bound`"):
        grid_occupancy(closed, 3, -1.0)
