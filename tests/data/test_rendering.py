"""The sphere tracer of whitebox_hf.data.rendering: cameras follow the stated conventions, a sphere's silhouette
and depth match the analytic ones, the mask and depth agree with exact occupancy along rays, and bad inputs are
refused naming the argument."""

import math

import numpy as np
import pytest
import torch

from whitebox_hf.data import look_at_camera, render_sdf, render_views, sample_shape
from whitebox_hf.data.rendering import camera_rays


def sphere_sdf(radius, centre=(0.0, 0.0, 0.0)):
    centre = torch.tensor(centre, dtype=torch.float64)
    return lambda points: (points - centre).norm(dim=-1) - radius


def test_look_at_camera_conventions():
    camera = look_at_camera(azimuth=0.0, elevation=0.0, distance=3.0, fov=90.0, size=64)
    # At azimuth 0 the camera sits on +z and looks down -z; OpenCV axes: x right (= world +x), y down (= -y).
    torch.testing.assert_close(camera.pose[:3, 3], torch.tensor([0.0, 0.0, 3.0], dtype=torch.float64))
    torch.testing.assert_close(camera.pose[:3, 2], torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64))
    torch.testing.assert_close(camera.pose[:3, 0], torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(camera.pose[:3, 1], torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64))
    # fov 90: the focal length is half the image side.
    torch.testing.assert_close(camera.intrinsics, torch.tensor([[32.0, 0, 32], [0, 32.0, 32], [0, 0, 1]],
                                                               dtype=torch.float64))
    tilted = look_at_camera(azimuth=90.0, elevation=30.0, distance=2.0, fov=40.0, size=32)
    rotation = tilted.pose[:3, :3]
    torch.testing.assert_close(rotation.T @ rotation, torch.eye(3, dtype=torch.float64))
    assert torch.det(rotation) == pytest.approx(1.0)
    expected = 2.0 * torch.tensor([math.cos(math.radians(30)), math.sin(math.radians(30)), 0.0], dtype=torch.float64)
    torch.testing.assert_close(tilted.pose[:3, 3], expected)
    # The optical axis points at the origin.
    torch.testing.assert_close(tilted.pose[:3, 2], -expected / 2)


@pytest.mark.parametrize("azimuth,elevation,size", [(0.0, 0.0, 64), (137.0, 25.0, 96)])
def test_sphere_silhouette_and_depth_are_analytic(azimuth, elevation, size):
    radius, distance, fov = 0.6, 3.0, 40.0
    camera = look_at_camera(azimuth, elevation, distance, fov, size)
    out = render_sdf(sphere_sdf(radius), camera)
    assert out["rgb"].shape == (size, size, 3) and out["mask"].shape == (size, size)
    focal = (size / 2) / math.tan(math.radians(fov / 2))
    analytic_radius = focal * math.tan(math.asin(radius / distance))  # the silhouette cone's image radius
    measured_radius = math.sqrt(out["mask"].sum().item() / math.pi)
    assert abs(measured_radius - analytic_radius) < 1.0
    columns = out["mask"][size // 2].nonzero().squeeze(1)
    assert abs((columns.max() - columns.min() + 1).item() - 2 * analytic_radius) < 2.0
    # The four pixels around the image centre see the sphere's nearest point, at z-depth distance - r (their rays
    # are half a pixel off the axis, which moves the depth by far less than 1e-3).
    centre = out["depth"][size // 2 - 1:size // 2 + 1, size // 2 - 1:size // 2 + 1]
    torch.testing.assert_close(centre, torch.full((2, 2), distance - radius), atol=1e-3, rtol=0)
    assert (out["depth"][~out["mask"]] == 0).all() and (out["rgb"][~out["mask"]] == 1.0).all()
    # Lit pixels are shaded between the ambient floor and the albedo.
    lit = out["rgb"][out["mask"]]
    assert lit.min() >= 0.25 * 0.8 - 1e-6 and lit.max() <= 0.8 + 1e-6 and lit.std() > 0.05


def test_mask_and_depth_agree_with_occupancy_along_rays():
    shape = sample_shape("chair", 3)
    camera = look_at_camera(35.0, 20.0, 2.5, 40.0, 32)
    out = render_sdf(lambda p: torch.from_numpy(shape.sdf(p.numpy())), camera)
    assert 0.05 < out["mask"].float().mean() < 0.9
    origin, directions, cosines = camera_rays(camera)
    steps = np.linspace(0.5, 4.5, 4001)  # the scene [-1, 1]^3 lies between 2.5 - √3 and 2.5 + √3 of the camera
    for pixel in [32 * 16 + 16, *range(0, 32 * 32, 37)]:
        points = origin.numpy() + steps[:, None] * directions[pixel].numpy()
        occupied = shape.occupancy(points).astype(bool)
        row, column = divmod(pixel, 32)
        assert bool(out["mask"][row, column]) == occupied.any(), (row, column)
        if occupied.any():
            first = steps[occupied.argmax()] * cosines[pixel].item()
            assert out["depth"][row, column].item() == pytest.approx(first, abs=2e-3)


def test_render_views_stores_each_camera():
    shape = sample_shape("mug", 1)
    views = render_views(shape, num_views=3, size=32, seed=5)
    assert views["rgb"].shape == (3, 32, 32, 3) and views["mask"].shape == (3, 32, 32)
    assert views["intrinsics"].shape == (3, 3, 3) and views["poses"].shape == (3, 4, 4)
    for index in range(3):
        camera = look_at_camera(views["azimuth"][index].item(), views["elevation"][index].item(), 2.5, 40.0, 32)
        torch.testing.assert_close(views["poses"][index], camera.pose)
        torch.testing.assert_close(views["intrinsics"][index], camera.intrinsics)
    assert views["mask"].any(dim=(1, 2)).all()
    again = render_views(shape, num_views=3, size=32, seed=5)
    assert torch.equal(again["rgb"], views["rgb"])
    assert not torch.equal(render_views(shape, num_views=3, size=32, seed=6)["poses"], views["poses"])


@pytest.mark.parametrize("kwargs,name", [
    ({"elevation": 90.0}, "elevation"), ({"distance": 0.0}, "distance"), ({"fov": 180.0}, "fov"),
    ({"fov": float("nan")}, "fov"), ({"size": 4}, "size"), ({"size": 64.0}, "size"), ({"size": True}, "size"),
])
def test_bad_camera_raises_naming_the_argument(kwargs, name):
    arguments = {"azimuth": 0.0, "elevation": 0.0, "distance": 3.0, "fov": 40.0, "size": 32} | kwargs
    with pytest.raises(ValueError, match=f"`{name}`"):
        look_at_camera(**arguments)


def test_bad_render_arguments_raise():
    camera = look_at_camera(0.0, 0.0, 3.0, 40.0, 16)
    with pytest.raises(TypeError, match="`camera`"):
        render_sdf(sphere_sdf(0.5), camera.pose)
    with pytest.raises(TypeError, match="`sdf_fn`"):
        render_sdf(None, camera)
    with pytest.raises(ValueError, match="`sdf_fn`"):
        render_sdf(lambda p: p.norm(dim=-1, keepdim=True), camera)
    with pytest.raises(ValueError, match="`max_steps`"):
        render_sdf(sphere_sdf(0.5), camera, max_steps=0)
    with pytest.raises(ValueError, match="`num_views`"):
        render_views(sample_shape("mug", 1), num_views=0)
    with pytest.raises(ValueError, match="`size`"):
        render_views(sample_shape("mug", 1), num_views=1, size=2000)
