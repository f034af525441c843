"""Cupid's occupancy + UV cube (spec threed_and_motion.md §2.3, §2.7 "UV cube → PnP → GT pose"): built from a
procedural shape's exact SDF and a render's camera, it round-trips to that camera, agrees with the renderer's
silhouette, and a cube with too few occupied voxels is refused with a clear error after the threshold is lowered."""

import pytest
import torch

from whitebox_hf.data.rendering import look_at_camera, render_sdf
from whitebox_hf.data.shapes import SHAPE_CATEGORIES, sample_shape
from whitebox_hf.geometry import project_points, rotation_error_degrees
from whitebox_hf.models.cupid.uv_cube import (
    build_uv_cube,
    camera_from_pose,
    camera_from_uv_cube,
    decode_uv_cube,
    denormalize_cube,
    normalize_cube,
    uv_cube_from_shape,
    voxel_grid_points,
)

SIZE = 64


@pytest.fixture(scope="module")
def shape_and_camera():
    shape = sample_shape(SHAPE_CATEGORIES[0], 3)
    # Far enough that the whole table is in view (at the renders' 2.5 its corners can leave the image).
    camera = look_at_camera(azimuth=37.0, elevation=21.0, distance=3.5, fov=40.0, size=SIZE)
    return shape, camera


def test_uv_cube_layout_occupancy_is_exact_and_uv_is_zero_outside(shape_and_camera):
    shape, camera = shape_and_camera
    cube = uv_cube_from_shape(shape, camera.intrinsics, camera.pose, (SIZE, SIZE), resolution=16)
    assert cube.shape == (3, 16, 16, 16) and cube.dtype == torch.float64
    occupancy = cube[0]
    assert set(occupancy.unique().tolist()) == {0.0, 1.0}
    # Voxel (i, j, k) has the centre 2·((i, j, k) + 0.5)/16 − 1: compare with the SDF there directly.
    i, j, k = 3, 8, 11
    centre = torch.tensor([[2 * (i + 0.5) / 16 - 1, 2 * (j + 0.5) / 16 - 1, 2 * (k + 0.5) / 16 - 1]])
    assert occupancy[i, j, k].item() == float(shape.sdf(centre.numpy())[0] < 0)
    assert bool((cube[1:, occupancy == 0] == 0).all())
    assert bool(((cube[1:, occupancy == 1] > 0) & (cube[1:, occupancy == 1] < 1)).all())  # in view


def test_dense_uv_cube_projects_every_voxel_and_keeps_the_occupied_ones(shape_and_camera):
    shape, camera = shape_and_camera
    K, R, t = camera_from_pose(camera.intrinsics, camera.pose, (SIZE, SIZE))
    sparse = build_uv_cube(shape.sdf, K, R, t, resolution=32)
    dense = build_uv_cube(shape.sdf, K, R, t, resolution=32, dense=True)
    occupied = sparse[0] == 1
    assert torch.equal(dense[0], sparse[0]) and torch.equal(dense[1:, occupied], sparse[1:, occupied])
    _, centres = voxel_grid_points(32, 2.0)
    torch.testing.assert_close(dense[1:].reshape(2, -1).T, project_points(centres, K, R, t).double())
    # PnP reads the occupied voxels, so both layouts give the same camera.
    solution, _ = camera_from_uv_cube(dense)
    assert rotation_error_degrees(solution.rotation, R) < 1e-4
    with pytest.raises(TypeError, match="`dense`"):
        build_uv_cube(shape.sdf, K, R, t, resolution=32, dense=1)


def test_occupied_voxels_project_onto_the_rendered_silhouette(shape_and_camera):
    # The cube's camera convention is the renderer's: the voxels' uv fall on the object's pixels.
    shape, camera = shape_and_camera
    cube = uv_cube_from_shape(shape, camera.intrinsics, camera.pose, (SIZE, SIZE), resolution=24)
    mask = render_sdf(lambda p: torch.from_numpy(shape.sdf(p.numpy())), camera)["mask"]
    uv = cube[1:, cube[0] == 1].T
    pixels = (uv * SIZE).floor().long().clamp(0, SIZE - 1)
    on_mask = mask[pixels[:, 1], pixels[:, 0]].double().mean().item()
    assert on_mask > 0.97, on_mask


def test_uv_cube_round_trips_to_the_camera_by_pnp(shape_and_camera):
    shape, camera = shape_and_camera
    K, R, t = camera_from_pose(camera.intrinsics, camera.pose, (SIZE, SIZE))
    cube = build_uv_cube(shape.sdf, K, R, t, resolution=32)
    solution, correspondences = camera_from_uv_cube(cube)
    assert correspondences.points.shape[0] == int(cube[0].sum()) >= 100
    assert correspondences.threshold == 0.5
    assert rotation_error_degrees(solution.rotation, R) < 1e-4
    torch.testing.assert_close(solution.intrinsics, K, atol=1e-7, rtol=1e-6)
    torch.testing.assert_close(solution.translation, t, atol=1e-6, rtol=1e-6)
    # The normalised form of the cube (what the flow denoises) maps back exactly.
    torch.testing.assert_close(denormalize_cube(normalize_cube(cube)), cube)


def test_low_occupancy_lowers_the_threshold_then_raises_with_too_few_voxels(shape_and_camera):
    shape, camera = shape_and_camera
    cube = uv_cube_from_shape(shape, camera.intrinsics, camera.pose, (SIZE, SIZE), resolution=16)
    faint = cube.clone()
    faint[0] *= 0.32  # a generated cube whose occupancy never reaches 0.5
    correspondences = decode_uv_cube(faint)
    assert correspondences.threshold < 0.32 and correspondences.points.shape[0] == int(cube[0].sum())

    sparse = cube.clone()
    occupied = torch.nonzero(sparse[0] == 1)
    for index in occupied[5:]:
        sparse[0, index[0], index[1], index[2]] = 0.0  # 5 voxels left
    with pytest.raises(ValueError, match=r"`cube` has 5 voxels.*at least 10 \(`min_voxels`\)"):
        camera_from_uv_cube(sparse)


def test_coplanar_voxels_and_bad_cubes_raise_naming_the_argument(shape_and_camera):
    shape, camera = shape_and_camera
    cube = uv_cube_from_shape(shape, camera.intrinsics, camera.pose, (SIZE, SIZE), resolution=16)
    flat = cube.clone()
    flat[0] = 0.0
    flat[0, :, :, 8] = 1.0  # one slab of voxels: coplanar centres
    with pytest.raises(ValueError, match="`cube`.*give no camera"):
        camera_from_uv_cube(flat)
    with pytest.raises(ValueError, match="`cube` must have shape"):
        decode_uv_cube(cube[:2])
    with pytest.raises(TypeError, match="`cube` must be a floating tensor"):
        decode_uv_cube(cube.long())
    with pytest.raises(ValueError, match="`min_voxels`"):
        decode_uv_cube(cube, min_voxels=5)
    with pytest.raises(ValueError, match="`threshold`"):
        decode_uv_cube(cube, threshold=1.5)
    with pytest.raises(ValueError, match="`resolution`"):
        build_uv_cube(shape.sdf, *camera_from_pose(camera.intrinsics, camera.pose, (SIZE, SIZE)), resolution=1)
    with pytest.raises(ValueError, match="`sdf` is nowhere negative"):
        build_uv_cube(lambda p: p[:, 0] * 0 + 1, *camera_from_pose(camera.intrinsics, camera.pose, (SIZE, SIZE)),
                resolution=8)
    with pytest.raises(ValueError, match="`pose`"):
        camera_from_pose(camera.intrinsics, camera.pose[:3], (SIZE, SIZE))
