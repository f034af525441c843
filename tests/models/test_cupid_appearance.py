"""Cupid's stage-2 appearance flow (`CupidAppearanceModel`) and its targets: the pose-aligned features are read at
each voxel's projection (and only there), the null condition and empty voxels carry nothing, a few steps fit one
example, the shading target is the renderer's, and the voxel renderer draws what it should."""

import math

import numpy as np
import pytest
import torch

from whitebox_hf import CUPID_APPEARANCE_PRESETS, CupidAppearanceConfig, CupidAppearanceModel
from whitebox_hf.data.rendering import look_at_camera, render_sdf
from whitebox_hf.geometry import project_points
from whitebox_hf.models.cupid import (
    camera_from_pose,
    project_voxel_centers,
    render_voxel_colors,
    shaded_voxel_colors,
    voxel_grid_points,
    voxel_view_colors,
)

R = 8


def tiny(**overrides):
    return CupidAppearanceConfig(**{**dict(cube_resolution=R, patch_size=2, hidden_size=32, num_hidden_layers=1,
                                           num_attention_heads=2, pixel_feature_layers=1,
                                           image_encoder_config=dict(image_size=16, patch_size=4, num_channels=3,
                                                                     hidden_size=16, num_hidden_layers=1,
                                                                     num_attention_heads=2)),
                                    **overrides})


def perturbed(config, seed=0):
    """A model whose zero-initialised output and modulation layers are randomised, so the velocity depends on
    every input (at initialisation it is identically zero)."""
    torch.manual_seed(seed)
    model = CupidAppearanceModel(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            if not parameter.abs().gt(0).any():
                parameter.normal_(0, 0.1)
    return model


def camera(batch=2):
    k = torch.tensor([[1.4, 0.0, 0.5], [0.0, 1.4, 0.5], [0.0, 0.0, 1.0]]).repeat(batch, 1, 1)
    return k, torch.eye(3).repeat(batch, 1, 1), torch.tensor([0.0, 0.0, 2.5]).repeat(batch, 1)


def inputs(batch=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    occupancy = torch.zeros(batch, R, R, R, dtype=torch.bool)
    occupancy[:, 2:6, 2:6, 2:6] = True
    return dict(sample=torch.randn(batch, 3, R, R, R, generator=generator), timestep=torch.rand(batch, generator=generator),
                occupancy=occupancy, pixel_values=torch.randn(batch, 3, 16, 16, generator=generator))


def velocity(model, **kwargs):
    k, r, t = camera(kwargs["sample"].shape[0])
    kwargs = {"intrinsics": k, "rotations": r, "translations": t, **kwargs}
    with torch.no_grad():
        return model(**kwargs, return_dict=True).velocity


def test_presets_and_input_channels():
    assert CupidAppearanceConfig.from_preset("cupid-appearance-cpu").input_channels == 3 + 1 + 8 + 3 + 16
    assert CupidAppearanceConfig.from_preset("cupid-appearance-cpu", pose_aligned=False).input_channels == 4
    assert set(CUPID_APPEARANCE_PRESETS) == {"cupid-appearance-cpu", "cupid-appearance-l"}


def test_bad_configs_name_the_argument():
    with pytest.raises(ValueError, match="num_channels"):
        tiny(image_encoder_config=dict(image_size=16, patch_size=4, num_channels=1, hidden_size=16,
                                       num_hidden_layers=1, num_attention_heads=2))
    with pytest.raises(ValueError, match="pixel_feature_layers"):
        tiny(pixel_feature_layers=-1)
    with pytest.raises((TypeError, ValueError), match="pose_aligned"):
        tiny(pose_aligned="yes")


def test_projection_matches_the_geometry_module():
    _, centres = voxel_grid_points(R, 2.0)
    k, r, t = camera(1)
    r = torch.tensor([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])[None]  # a turned camera
    expected = project_points(centres.double(), k[0].double(), r[0].double(), t[0].double()).clamp(0, 1)
    assert torch.allclose(project_voxel_centers(centres.float(), k, r, t)[0].double(), expected, atol=1e-5)


def test_velocity_is_zero_at_empty_voxels_and_the_loss_ignores_them():
    model = perturbed(tiny())
    batch = inputs()
    out = velocity(model, **batch)
    assert out.shape == (2, 3, R, R, R)
    assert out[:, :, ~batch["occupancy"][0]].abs().max() == 0
    assert out[:, :, batch["occupancy"][0]].abs().max() > 0
    target = torch.randn_like(batch["sample"])
    other = target.clone()
    other[:, :, ~batch["occupancy"][0]] = 100.0
    k, r, t = camera()
    with torch.no_grad():
        loss = model(**batch, intrinsics=k, rotations=r, translations=t, target=target).loss
        loss_other = model(**batch, intrinsics=k, rotations=r, translations=t, target=other).loss
    assert torch.allclose(loss, loss_other)


def test_pose_aligned_features_are_read_at_the_voxels_projection():
    """Changing the image where no voxel projects leaves the velocity unchanged only through the local features;
    moving the camera changes the pose-aligned model and not the global-token baseline."""
    aligned, baseline = perturbed(tiny()), perturbed(tiny(pose_aligned=False))
    batch = inputs()
    k, r, t = camera()
    moved = t + torch.tensor([0.3, -0.2, 0.0])
    for model, should_change in ((aligned, True), (baseline, False)):
        a = velocity(model, **batch)
        b = velocity(model, **batch, translations=moved)
        assert (not torch.allclose(a, b)) == should_change
    # The voxel features are zero at empty voxels and depend on the pixels the voxels project to.
    condition = aligned.encode_condition(batch["pixel_values"], batch["occupancy"], k, r, t)
    assert condition.voxel_features.shape == (2, aligned.config.input_channels - 4, R, R, R)
    assert condition.voxel_features[:, :, ~batch["occupancy"][0]].abs().max() == 0
    uv = project_voxel_centers(voxel_grid_points(R, 2.0)[1].float(), k, r, t)[0][batch["occupancy"][0].reshape(-1)]
    low = (uv.min(0).values * 16).floor().long()
    high = (uv.max(0).values * 16).ceil().long()
    changed = batch["pixel_values"].clone()
    changed[:, :, :, : max(int(low[0]) - 2, 0)] += 5.0  # columns left of every projection (and its 3×3 support)
    pixel_part = slice(aligned.config.observed_channels, None)  # the features after the observed ones
    changed_condition = aligned.encode_condition(changed, batch["occupancy"], k, r, t)
    assert int(low[0]) > 3 and int(high[0]) < 16
    assert torch.allclose(changed_condition.voxel_features[:, pixel_part][:, :3],
                          condition.voxel_features[:, pixel_part][:, :3])  # raw RGB sampled only at projections


def test_the_null_condition_ignores_the_image():
    model = perturbed(tiny())
    batch = inputs()
    drop = torch.tensor([True, True])
    a = velocity(model, **batch, drop_condition=drop)
    b = velocity(model, **{**batch, "pixel_values": torch.randn(2, 3, 16, 16)}, drop_condition=drop)
    assert torch.allclose(a, b)
    assert not torch.allclose(a, velocity(model, **batch))


def test_missing_camera_and_bad_occupancy_name_the_argument():
    model = CupidAppearanceModel(tiny())
    batch = inputs()
    with pytest.raises(ValueError, match="intrinsics"):
        model(**batch)
    k, r, t = camera()
    with pytest.raises(TypeError, match="occupancy"):
        model(**{**batch, "occupancy": batch["occupancy"].float()}, intrinsics=k, rotations=r, translations=t)
    # The baseline needs no camera.
    CupidAppearanceModel(tiny(pose_aligned=False))(**batch)


def test_a_few_steps_fit_one_example_and_sampling_gives_colours_in_range():
    torch.manual_seed(0)
    model = CupidAppearanceModel(tiny(freeze_image_encoder=False, condition_dropout_prob=0.0))
    batch = inputs(batch=1)
    colors = torch.full((1, 3, R, R, R), 0.5)
    k, r, t = camera(1)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for step in range(30):
        loss = model.flow_matching_loss(colors, batch["occupancy"], batch["pixel_values"], k, r, t,
                                        generator=torch.Generator().manual_seed(step % 3))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    sampled = model.eval().sample(batch["pixel_values"], batch["occupancy"], k, r, t, num_inference_steps=3,
                                  generator=torch.Generator().manual_seed(0))
    assert sampled.shape == (1, 3, R, R, R)
    assert sampled.min() >= 0 and sampled.max() <= 1
    assert sampled[:, :, ~batch["occupancy"][0]].abs().max() == 0


def sphere(points):
    return np.linalg.norm(points, axis=-1) - 0.6


def test_the_shading_target_is_the_renderers_colour():
    cam = look_at_camera(30.0, 20.0, 2.5, 40.0, size=16)
    rendered = render_sdf(lambda p: torch.from_numpy(sphere(p.numpy())), cam)
    hit = rendered["mask"]
    normals = rendered["normals"][hit].T.reshape(1, 3, -1, 1, 1)
    rotation = cam.pose[:3, :3].T[None]
    colors = shaded_voxel_colors(normals, rotation)[0].reshape(3, -1).T
    assert torch.allclose(colors, rendered["rgb"][hit], atol=1e-5)


def test_visible_voxels_face_the_camera_and_draw_close_to_the_render():
    size = 32
    cam = look_at_camera(0.0, 0.0, 2.5, 40.0, size=size)
    k, r, t = camera_from_pose(cam.intrinsics, cam.pose, (size, size))
    _, centres = voxel_grid_points(16, 2.0)
    occupied = torch.from_numpy(sphere(centres.numpy()) < 0).reshape(16, 16, 16)
    colors, visible = voxel_view_colors(sphere, occupied, r, t)
    assert visible.any() and not visible[~occupied].any()
    eye = -r.T @ t
    facing = (centres[visible.reshape(-1)] @ eye) > 0
    assert bool(facing.all())
    drawn = render_voxel_colors(occupied, colors, k, r, t, size)
    rendered = render_sdf(lambda p: torch.from_numpy(sphere(p.numpy())), cam)
    both = drawn["mask"] & rendered["mask"]
    assert (drawn["mask"] ^ rendered["mask"]).float().mean() < 0.1
    error = (drawn["rgb"][both] - rendered["rgb"][both]).abs().mean()
    assert error < 0.05


def test_the_voxel_renderer_draws_one_voxel_where_it_projects():
    occupied = torch.zeros(4, 4, 4, dtype=torch.bool)
    occupied[1, 2, 1] = True
    colors = torch.zeros(3, 4, 4, 4)
    colors[:, 1, 2, 1] = torch.tensor([0.2, 0.4, 0.6])
    k, r, t = camera(1)
    out = render_voxel_colors(occupied, colors, k[0], r[0], t[0], size=32)
    _, centres = voxel_grid_points(4, 2.0)
    centre = centres[(1 * 4 + 2) * 4 + 1]
    u, v = project_points(centre[None].double(), k[0].double(), r[0].double(), t[0].double())[0] * 32
    assert out["mask"][int(v), int(u)]
    assert torch.allclose(out["rgb"][int(v), int(u)], torch.tensor([0.2, 0.4, 0.6]))
    assert not out["mask"][0, 0] and torch.allclose(out["rgb"][0, 0], torch.ones(3))
    assert 0 < out["mask"].sum() < 32 * 32 / 4
    assert math.isclose(float(out["rgb"][~out["mask"]].min()), 1.0)
    with pytest.raises(ValueError, match="translation"):
        render_voxel_colors(occupied, colors, k[0], r[0], t, size=32)
