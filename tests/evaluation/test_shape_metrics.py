"""3D-shape metrics (volumetric IoU, Chamfer distance, F-score, mesh surface sampling) on inputs with exact answers,
a marching-cubes sphere against the analytic sphere, and their input checks."""

import math

import numpy as np
import pytest
import torch

from whitebox_hf.evaluation import (
    chamfer_distance,
    f_score,
    sample_mesh_surface,
    volumetric_iou,
)
from whitebox_hf.models.sita_vae.mesh_extraction import (
    dense_query_grid,
    meshes_from_occupancy_grid,
)


def cloud(n=200, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 3))


def test_volumetric_iou_exact_values():
    a = np.array([True, True, True, False, False, False])
    assert volumetric_iou(a, a) == 1.0
    assert volumetric_iou(a, ~a) == 0.0
    b = np.array([False, True, True, True, False, False])  # 2 shared of 4 in the union
    assert volumetric_iou(a, b) == 0.5
    assert volumetric_iou(torch.from_numpy(a), torch.from_numpy(b)) == 0.5
    grid = np.zeros((4, 4, 4), dtype=bool)
    grid[:2] = True
    other = np.zeros_like(grid)
    other[1:3] = True
    assert volumetric_iou(grid, other) == pytest.approx(1 / 3)


def test_volumetric_iou_rejects_bad_inputs():
    a = np.ones(4, dtype=bool)
    with pytest.raises(ValueError, match="`predicted_occupancy` must have the shape"):
        volumetric_iou(np.ones(5, dtype=bool), a)
    with pytest.raises(TypeError, match="`true_occupancy` must be boolean"):
        volumetric_iou(a, np.ones(4))
    with pytest.raises(ValueError, match="`predicted_occupancy` is empty"):
        volumetric_iou(np.ones(0, dtype=bool), a)
    with pytest.raises(ValueError, match="undefined"):
        volumetric_iou(~a, ~a)
    with pytest.raises(TypeError, match="`predicted_occupancy`"):
        volumetric_iou([True], a)


def test_chamfer_distance_exact_values():
    points = cloud()
    assert chamfer_distance(points, points) == 0.0
    assert chamfer_distance(torch.from_numpy(points), torch.from_numpy(points)) == 0.0
    # Two single points 0.3 apart: each direction's mean is 0.3.
    a, b = np.zeros((1, 3)), np.array([[0.0, 0.3, 0.0]])
    assert chamfer_distance(a, b) == pytest.approx(0.3)
    assert chamfer_distance(a, b, squared=True) == pytest.approx(0.09)
    # A grid spaced 1 apart against itself shifted by 0.1 along x: every nearest neighbour is the shifted twin.
    lattice = np.stack(np.meshgrid(*[np.arange(4.0)] * 3, indexing="ij"), -1).reshape(-1, 3)
    assert chamfer_distance(lattice, lattice + [0.1, 0, 0]) == pytest.approx(0.1)
    # Asymmetric sets: a = {0}, b = {0, 1} on a line -> a->b mean 0, b->a mean 0.5, Chamfer 0.25.
    assert chamfer_distance(np.zeros((1, 3)), np.array([[0.0, 0, 0], [1.0, 0, 0]])) == pytest.approx(0.25)


def test_f_score_exact_values():
    points = cloud()
    assert f_score(points, points, threshold=1e-6) == 1.0
    a = np.array([[0.0, 0, 0], [10.0, 0, 0]])
    b = np.array([[0.0, 0, 0.05]])
    # Precision 1/2 (the far point of a is unmatched), recall 1 -> F = 2/3.
    assert f_score(a, b, threshold=0.1) == pytest.approx(2 / 3)
    assert f_score(a, b, threshold=0.01) == 0.0


def test_point_metrics_reject_bad_inputs():
    points = cloud()
    with pytest.raises(ValueError, match="`points_b` must have shape"):
        chamfer_distance(points, points[:, :2])
    with pytest.raises(ValueError, match="`points_a` is empty"):
        chamfer_distance(np.zeros((0, 3)), points)
    nan = points.copy()
    nan[3, 1] = np.nan
    with pytest.raises(ValueError, match="`points_b` must be finite"):
        f_score(points, nan, threshold=0.1)
    with pytest.raises(TypeError, match="`points_a` must be floating"):
        chamfer_distance(np.zeros((2, 3), dtype=np.int64), points)
    for threshold in (0, -1.0, float("nan"), True):
        with pytest.raises(ValueError, match="`threshold`"):
            f_score(points, points, threshold=threshold)
    with pytest.raises(TypeError, match="`squared`"):
        chamfer_distance(points, points, squared=1)


RADIUS, BOUND, DEPTH = 0.7, 1.25, 5


def sphere_samples(n, seed):
    directions = np.random.default_rng(seed).normal(size=(n, 3))
    return RADIUS * directions / np.linalg.norm(directions, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def sphere_mesh():
    grid = dense_query_grid(DEPTH, BOUND, dtype=torch.float64)
    return meshes_from_occupancy_grid((RADIUS - grid.norm(dim=-1))[None], BOUND)[0]


def test_marching_cubes_sphere_is_close_to_analytic_sphere(sphere_mesh):
    vertices, faces = sphere_mesh
    spacing = 2 * BOUND / 2**DEPTH
    mesh_points = sample_mesh_surface(vertices, faces, 5000, seed=0)
    true_points = sphere_samples(5000, seed=1)
    distance = chamfer_distance(mesh_points, true_points)
    assert distance < spacing
    # A sphere of the wrong radius is far off (the metric can fail).
    assert chamfer_distance(mesh_points, true_points * 1.5) > spacing
    assert f_score(mesh_points, true_points, threshold=spacing) > 0.95


def test_sample_mesh_surface(sphere_mesh):
    vertices, faces = sphere_mesh
    points = sample_mesh_surface(vertices, faces, 1000, seed=3)
    assert points.shape == (1000, 3) and points.dtype == np.float64
    np.testing.assert_array_equal(points, sample_mesh_surface(vertices, faces, 1000, seed=3))
    assert not np.array_equal(points, sample_mesh_surface(vertices, faces, 1000, seed=4))
    # Points lie on the triangles, which lie within a spacing of the sphere.
    assert np.abs(np.linalg.norm(points, axis=1) - RADIUS).max() < 2 * BOUND / 2**DEPTH
    # Uniform in area: a single triangle's samples stay inside it, with mean at the centroid.
    triangle = np.array([[0.0, 0, 0], [1.0, 0, 0], [0.0, 1, 0]])
    samples = sample_mesh_surface(triangle, np.array([[0, 1, 2]]), 20000, seed=0)
    assert (samples[:, :2] >= -1e-12).all() and (samples[:, :2].sum(1) <= 1 + 1e-12).all()
    np.testing.assert_allclose(samples.mean(0), [1 / 3, 1 / 3, 0], atol=0.01)
    assert not math.isnan(samples.sum())


def test_sample_mesh_surface_rejects_bad_inputs(sphere_mesh):
    vertices, faces = sphere_mesh
    with pytest.raises(ValueError, match="`num_points`"):
        sample_mesh_surface(vertices, faces, 0, seed=0)
    with pytest.raises(ValueError, match="`seed`"):
        sample_mesh_surface(vertices, faces, 10, seed=-1)
    with pytest.raises(ValueError, match="`faces` must index"):
        sample_mesh_surface(vertices, faces + len(vertices), 10, seed=0)
    with pytest.raises(ValueError, match="`vertices` is empty"):
        sample_mesh_surface(np.zeros((0, 3)), faces, 10, seed=0)
    with pytest.raises(ValueError, match="zero area"):
        sample_mesh_surface(np.zeros((3, 3)), np.array([[0, 1, 2]]), 10, seed=0)
