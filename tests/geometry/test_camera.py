"""Projection conventions, pixel/uv units and the de-crop mapping of K (spec threed_and_motion.md §2.3)."""

import pytest
import torch

from whitebox_hf.geometry import (
    crop_intrinsics,
    decrop_intrinsics,
    intrinsics_pixels_to_uv,
    intrinsics_uv_to_pixels,
    pixels_to_uv,
    project_points,
    projection_matrix,
    uv_to_pixels,
    voxel_centers,
    world_to_camera,
)

EYE = torch.eye(3, dtype=torch.float64)
ZERO = torch.zeros(3, dtype=torch.float64)


def test_opencv_axes_x_right_y_down_z_forward():
    K = torch.tensor([[100.0, 0, 50], [0, 100.0, 40], [0, 0, 1]], dtype=torch.float64)
    points = torch.tensor([[0.0, 0, 2], [1.0, 0, 2], [0.0, 1, 2]], dtype=torch.float64)
    uv = project_points(points, K, EYE, ZERO)
    assert torch.allclose(uv[0], torch.tensor([50.0, 40.0], dtype=torch.float64))  # on the axis: the principal point
    assert uv[1, 0] == 100.0 and uv[1, 1] == 40.0  # +x goes right
    assert uv[2, 0] == 50.0 and uv[2, 1] == 90.0  # +y goes down


def test_projection_matrix_projects_like_k_r_t(scene):
    points, K, R, t = scene
    P = projection_matrix(K, R, t)
    image = torch.cat([points, torch.ones_like(points[:, :1])], dim=1) @ P.T
    assert torch.allclose(image[:, :2] / image[:, 2:], project_points(points, K, R, t), atol=1e-12)
    assert torch.allclose(world_to_camera(points, R, t), points @ R.T + t)


def test_points_behind_the_camera_raise():
    K = torch.eye(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="`points` must lie in front of the camera"):
        project_points(torch.tensor([[0.0, 0, -1]], dtype=torch.float64), K, EYE, ZERO)


def test_mismatched_dtype_is_refused_not_cast():
    with pytest.raises(TypeError, match="`intrinsics` must have the dtype and device of `points`"):
        project_points(torch.ones(2, 3, dtype=torch.float64), torch.eye(3), EYE, ZERO)
    with pytest.raises(ValueError, match=r"`points` must have shape \(N, 3\), got \(4, 2\)"):
        project_points(torch.ones(4, 2, dtype=torch.float64), EYE, EYE, ZERO)


def test_pixel_and_uv_units_round_trip(scene):
    points, K_uv, R, t = scene
    size = (640, 480)
    K_px = intrinsics_uv_to_pixels(K_uv, size)
    pixels = project_points(points, K_px, R, t)
    assert torch.allclose(pixels_to_uv(pixels, size), project_points(points, K_uv, R, t), atol=1e-12)
    assert torch.allclose(uv_to_pixels(pixels_to_uv(pixels, size), size), pixels, atol=1e-9)
    assert torch.allclose(intrinsics_pixels_to_uv(K_px, size), K_uv, atol=1e-15)
    with pytest.raises(ValueError, match="`image_size` must be a \\(width, height\\) pair"):
        pixels_to_uv(pixels, (640, 0))


def test_voxel_centers_follow_cupid_convention():
    centres = voxel_centers(torch.tensor([[0, 0, 0], [63, 32, 1]]), 64)
    assert torch.equal(centres, torch.tensor([[0.5 / 64 - 0.5] * 3, [63.5 / 64 - 0.5, 0.5 / 64, 1.5 / 64 - 0.5]],
                                             dtype=torch.float64))
    with pytest.raises(ValueError, match=r"`indices` must lie in \[0, 63\]"):
        voxel_centers(torch.tensor([[0, 0, 64]]), 64)
    with pytest.raises(TypeError, match="`indices` must be an integer tensor"):
        voxel_centers(torch.zeros(2, 3), 64)


def test_decrop_matches_the_spec_formula_and_inverts(scene):
    points, K_crop, R, t = scene
    box, size = (120.0, -30.0, 300.0, 360.0), (640, 480)
    uv_crop = project_points(points, K_crop, R, t)
    K_full = decrop_intrinsics(K_crop, box, size)
    expected = torch.stack([(box[0] + uv_crop[:, 0] * box[2]) / size[0],
                            (box[1] + uv_crop[:, 1] * box[3]) / size[1]], dim=1)
    assert torch.allclose(project_points(points, K_full, R, t), expected, atol=1e-12)
    assert torch.allclose(crop_intrinsics(K_full, box, size), K_crop, atol=1e-12)


def test_decrop_in_pixels_of_a_resized_crop(scene):
    points, K_uv, R, t = scene
    box, size, resolution = (100.0, 50.0, 300.0, 240.0), (640, 480), (256, 256)
    K_resized = intrinsics_uv_to_pixels(K_uv, resolution)  # K in pixels of the 256² network input
    x = project_points(points, K_resized, R, t)
    K_full = decrop_intrinsics(K_resized, box, size, crop_resolution=resolution)
    expected = torch.stack([box[0] + x[:, 0] * box[2] / 256, box[1] + x[:, 1] * box[3] / 256], dim=1)
    assert torch.allclose(project_points(points, K_full, R, t), expected, atol=1e-9)
    # The same camera, whichever units it was de-cropped in.
    assert torch.allclose(intrinsics_pixels_to_uv(K_full, size), decrop_intrinsics(K_uv, box, size), atol=1e-12)
    assert torch.allclose(crop_intrinsics(K_full, box, size, crop_resolution=resolution), K_resized, atol=1e-9)
    with pytest.raises(ValueError, match="`crop_box` must be a crop box"):
        decrop_intrinsics(K_uv, (0, 0, -1, 10), size)
