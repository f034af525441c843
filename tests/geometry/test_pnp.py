"""PnP by normalised DLT + RQ, and its Gauss-Newton refinement (spec threed_and_motion.md §2.4, tests of §2.7)."""

import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.geometry._synthetic import (
    angle_degrees,
    primitive_voxels,
    random_camera,
    random_rotation,
)
from whitebox_hf.geometry import (
    decompose_projection_matrix,
    intrinsics_uv_to_pixels,
    project_points,
    projection_matrix,
    refine_pose,
    solve_pnp_dlt,
    voxel_centers,
)


def relative(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("normalize", [True, False])
def test_noise_free_recovery(seed, normalize):
    generator = torch.Generator().manual_seed(seed)
    points = voxel_centers(primitive_voxels(generator=generator), 64)
    K, R, t = random_camera(generator)
    solution = solve_pnp_dlt(points, project_points(points, K, R, t), normalize=normalize)
    assert angle_degrees(solution.rotation, R) < 1e-4
    assert relative(solution.translation, t) < 1e-5
    assert abs(solution.intrinsics[0, 0] / K[0, 0] - 1) < 1e-5 and abs(solution.intrinsics[1, 1] / K[1, 1] - 1) < 1e-5
    assert torch.allclose(solution.intrinsics, K, atol=1e-6)
    assert solution.rmse < 1e-9


def noisy_scene(seed, shape):
    generator = torch.Generator().manual_seed(seed)
    points = voxel_centers(primitive_voxels(generator=generator, shape=shape), 64)
    K, R, t = random_camera(generator)
    uv = project_points(points, K, R, t)
    return points, uv + 1e-3 * torch.randn(uv.shape, dtype=uv.dtype, generator=generator), K, R, t


@pytest.mark.parametrize("seed", range(100, 110))
def test_rotation_error_below_one_degree_at_1e3_uv_noise(seed):
    """Spec §2.7 with all of K unknown, on 200 voxel centres of a box filling the cube."""
    points, noisy, _, R, _ = noisy_scene(seed, "box")
    dlt = solve_pnp_dlt(points, noisy)
    refined = solve_pnp_dlt(points, noisy, refine_steps=10)
    assert angle_degrees(dlt.rotation, R) < 1.0
    assert angle_degrees(refined.rotation, R) < 1.0
    # Gauss-Newton minimises the reprojection error itself, the DLT only an algebraic proxy of it.
    assert refined.rmse <= dlt.rmse
    assert refined.rmse < 2e-3  # ≈ √2 · 1e-3, the noise level


@pytest.mark.parametrize("seed", [101, 104])
def test_a_known_principal_point_fixes_compact_objects(seed):
    """On a flattish ellipsoid (0.9 × 0.6 × 0.4) with all of K free, a principal-point shift trades against a
    rotation and the error exceeds 1° on these seeds; imposing c = (0.5, 0.5) brings it well below."""
    points, noisy, K, R, _ = noisy_scene(seed, "ellipsoid")
    free = solve_pnp_dlt(points, noisy, refine_steps=10)
    known = solve_pnp_dlt(points, noisy, refine_steps=10, principal_point=(0.5, 0.5))
    assert angle_degrees(free.rotation, R) > 1.0
    assert angle_degrees(known.rotation, R) < 0.5
    assert known.intrinsics[0, 1] == 0 and known.intrinsics[0, 2] == 0.5 and known.intrinsics[1, 2] == 0.5
    assert abs(known.intrinsics[0, 0] / K[0, 0] - 1) < 0.05  # f trades against the distance: a few % at 1e-3
    with pytest.raises(ValueError, match="`principal_point` needs `refine_steps` >= 1"):
        solve_pnp_dlt(points, noisy, principal_point=(0.5, 0.5))


def test_uv_cube_round_trip_recovers_the_pose():
    """Occupancy + (u, v) channels of a 32³ UV cube → occupied voxels → PnP → the camera that made the cube."""
    generator = torch.Generator().manual_seed(3)
    K, R, t = random_camera(generator)
    resolution = 32
    axis = (torch.arange(resolution, dtype=torch.float64) + 0.5) / resolution - 0.5
    x, y, z = torch.meshgrid(axis, axis, axis, indexing="ij")
    occupancy = (x.abs() < 0.3) & (y.abs() < 0.2) & (z.abs() < 0.4) & ~((x > 0) & (y > 0))  # an L-shaped block
    cube = torch.zeros(3, resolution, resolution, resolution, dtype=torch.float64)
    indices = occupancy.nonzero()
    cube[0][occupancy] = 1
    uv = project_points(voxel_centers(indices, resolution), K, R, t)
    cube[1][occupancy], cube[2][occupancy] = uv[:, 0], uv[:, 1]
    occupied = (cube[0] > 0.5).nonzero()
    solution = solve_pnp_dlt(voxel_centers(occupied, resolution), cube[1:, occupied[:, 0], occupied[:, 1],
                                                                        occupied[:, 2]].T)
    assert angle_degrees(solution.rotation, R) < 1e-4
    assert relative(solution.translation, t) < 1e-5


def test_weights_remove_outliers(scene):
    points, K, R, t = scene
    uv = project_points(points, K, R, t).clone()
    outliers = torch.zeros(points.shape[0], dtype=torch.bool)
    outliers[::5] = True
    uv[outliers] += 0.2
    plain = solve_pnp_dlt(points, uv)
    weights = torch.where(outliers, 1e-8, 1.0).to(torch.float64)
    weighted = solve_pnp_dlt(points, uv, weights)
    assert angle_degrees(plain.rotation, R) > 1.0  # the outliers do hurt, so the weights have something to fix
    assert angle_degrees(weighted.rotation, R) < 1e-3
    zero = solve_pnp_dlt(points, uv, (~outliers).to(torch.float64))
    assert angle_degrees(zero.rotation, R) < 1e-4
    assert zero.rmse < 1e-9  # the rmse is weighted too: outliers of weight 0 do not count


def test_fewer_than_six_points_raise(scene):
    points, K, R, t = scene
    uv = project_points(points, K, R, t)
    with pytest.raises(ValueError, match="`points` must hold at least 6 correspondences of positive weight.*got 5"):
        solve_pnp_dlt(points[:5], uv[:5])
    weights = torch.zeros(10, dtype=torch.float64)
    weights[:5] = 1
    with pytest.raises(ValueError, match="got 5"):
        solve_pnp_dlt(points[:10], uv[:10], weights)


@pytest.mark.parametrize("shape", ["plane", "line", "nearly flat"])
def test_coplanar_points_raise(shape):
    generator = torch.Generator().manual_seed(0)
    K, R, t = random_camera(generator)
    flat = torch.rand(50, 3, dtype=torch.float64, generator=generator) - 0.5
    if shape == "plane":
        flat[:, 2] = 0
    elif shape == "line":
        flat[:, 1:] = 0.3 * flat[:, :1]
    else:
        flat[:, 2] *= 1e-6
    tilted = flat @ random_rotation(generator).T  # not axis-aligned, so the check is not reading a coordinate
    with pytest.raises(ValueError, match="`points` must not be coplanar"):
        solve_pnp_dlt(tilted, project_points(tilted, K, R, t))


def test_bad_arguments_name_themselves(scene):
    points, K, R, t = scene
    uv = project_points(points, K, R, t)
    with pytest.raises(ValueError, match="`uv` must have one row per point"):
        solve_pnp_dlt(points, uv[:-1])
    with pytest.raises(TypeError, match="`uv` must have the dtype and device of `points`"):
        solve_pnp_dlt(points, uv.float())
    with pytest.raises(ValueError, match="`weights` must be non-negative"):
        solve_pnp_dlt(points, uv, -torch.ones(points.shape[0], dtype=torch.float64))
    with pytest.raises(ValueError, match="`uv` must be finite"):
        solve_pnp_dlt(points, torch.full_like(uv, float("nan")))
    with pytest.raises(ValueError, match="`refine_steps` must be a non-negative integer"):
        solve_pnp_dlt(points, uv, refine_steps=-1)


def test_float32_inputs_give_float32_results(scene):
    points, K, R, t = scene
    solution = solve_pnp_dlt(points.float(), project_points(points, K, R, t).float())
    assert all(v.dtype == torch.float32 for v in solution)
    assert angle_degrees(solution.rotation.double(), R) < 1e-2  # computed in float64, so float32 only rounds


def test_known_intrinsics_refinement_from_a_perturbed_pose(scene):
    points, K, R, t = scene
    uv = project_points(points, K, R, t)
    R0 = random_rotation(torch.Generator().manual_seed(5))
    R0 = torch.linalg.matrix_exp(0.05 * (R0 - R0.T)) @ R  # a few degrees off
    start = angle_degrees(R0, R)
    solution = refine_pose(points, uv, K, R0, t + 0.05, steps=15, refine_intrinsics="none")
    assert start > 1.0
    assert angle_degrees(solution.rotation, R) < 1e-6
    assert relative(solution.translation, t) < 1e-8
    assert torch.equal(solution.intrinsics, K)  # fixed, not refined
    assert abs(torch.linalg.det(solution.rotation).item() - 1) < 1e-12


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), scale=st.floats(-10, 10).filter(lambda s: abs(s) > 1e-2))
def test_rq_gives_positive_focals_and_a_proper_rotation(seed, scale):
    """Any finite camera λ·K·[R | t] (λ of either sign) factors back into the same K (positive diagonal), R, t."""
    generator = torch.Generator().manual_seed(seed)
    K = torch.triu(torch.rand(3, 3, dtype=torch.float64, generator=generator))
    K.diagonal().add_(0.5)
    K = K / K[2, 2]
    R = random_rotation(generator)
    t = torch.randn(3, dtype=torch.float64, generator=generator)
    P = scale * projection_matrix(K, R, t)
    K_hat, R_hat, t_hat = decompose_projection_matrix(P)
    assert bool((torch.diagonal(K_hat) > 0).all())
    assert abs(torch.linalg.det(R_hat).item() - 1) < 1e-9
    assert torch.allclose(K_hat, K, atol=1e-9) and torch.allclose(R_hat, R, atol=1e-9)
    assert torch.allclose(t_hat, t, atol=1e-8)
    # P → (K, R, t) → P up to scale, and the sign flip: −P is the same camera.
    assert torch.allclose(projection_matrix(K_hat, R_hat, t_hat) * scale, P, atol=1e-8 * abs(scale))
    assert all(torch.allclose(a, b) for a, b in zip(decompose_projection_matrix(-P), (K_hat, R_hat, t_hat)))


def test_rq_agrees_with_scipy(scene):
    _, K, R, t = scene
    P = 3.0 * projection_matrix(K, R, t)
    upper, orthogonal = scipy.linalg.rq(P[:, :3].numpy())
    signs = torch.sign(torch.diagonal(torch.from_numpy(upper)))
    K_ref = torch.from_numpy(upper) * signs[None, :]
    K_hat, R_hat, _ = decompose_projection_matrix(P)
    assert torch.allclose(K_hat, K_ref / K_ref[2, 2], atol=1e-12)
    assert torch.allclose(R_hat, signs[:, None] * torch.from_numpy(orthogonal), atol=1e-12)


def test_singular_projection_raises():
    with pytest.raises(ValueError, match="`projection` must have an invertible left 3×3 block"):
        decompose_projection_matrix(torch.zeros(3, 4, dtype=torch.float64))


def test_hartley_normalisation_helps_in_pixel_units():
    """Pixels (~10²) and world points far from the origin (~10²) make the unnormalised DLT ill-conditioned
    (H&Z §4.4.4); Cupid's O(1) inputs hide this. Over 20 cameras the normalised DLT is more accurate."""
    normalised, raw = [], []
    for seed in range(100, 120):
        generator = torch.Generator().manual_seed(seed)
        points = voxel_centers(primitive_voxels(generator=generator, shape="box"), 64) * 100 + 300
        K, R, t = random_camera(generator)
        t = 100 * t - R @ torch.full((3,), 300.0, dtype=torch.float64)
        K = intrinsics_uv_to_pixels(K, (640, 480))
        uv = project_points(points, K, R, t)
        uv = uv + 0.64 * torch.randn(uv.shape, dtype=uv.dtype, generator=generator)  # 1e-3 of the width
        normalised.append(angle_degrees(solve_pnp_dlt(points, uv).rotation, R))
        raw.append(angle_degrees(solve_pnp_dlt(points, uv, normalize=False).rotation, R))
    assert max(normalised) < 1.0
    assert sorted(normalised)[10] < sorted(raw)[10] and max(normalised) < max(raw)
