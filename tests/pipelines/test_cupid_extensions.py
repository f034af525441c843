"""CupidPipeline beyond the released code (whitebox_hf.pipelines.cupid_extensions), with the tiny random pipeline of
test_cupid_pipeline.py and flows forced onto known cubes: multi-view (N copies of one view = the single view; views of
different cameras give their own poses and one shared occupancy), known cameras (the UV channels are the given
camera's projection; the returned camera is the given one), scene composition from renderer depth of two procedural
shapes, and bad inputs raising ValueError / TypeError naming the argument."""

import math

import numpy as np
import pytest
import torch
import trimesh

from tests.pipelines.test_cupid_pipeline import (
    CENTRE,
    IMAGE,
    K_UV,
    R_TRUE,
    RESOLUTION,
    T_TRUE,
    rotation_about,
    tiny_pipeline,
)
from whitebox_hf import CupidFlowConfig, CupidFlowModel, CupidPipeline
from whitebox_hf.geometry import project_points, rotation_error_degrees
from whitebox_hf.models.cupid import build_uv_cube, normalize_cube
from whitebox_hf.models.cupid.uv_cube import voxel_grid_points
from whitebox_hf.pipelines.cupid_extensions import (
    MULTI_VIEW_APPROXIMATION,
    compose_cupid_scene,
)

CALL = dict(num_inference_steps=3, guidance_scale=3.0)
R_OTHER = rotation_about([1.0, -0.2, 0.4], -50.0)
T_OTHER = torch.tensor([-0.1, 0.1, 3.5], dtype=torch.float64)


def sphere(radius):
    return lambda points: np.linalg.norm(points - CENTRE.numpy(), axis=1) - radius


def force(pipe, monkeypatch, targets):
    """The flow forced onto the normalised cubes ``targets`` (one per image): Euler lands on them at t = 0."""
    targets = normalize_cube(targets).float()
    monkeypatch.setattr(pipe.flow_model, "guided_velocity",
                        lambda s, t, *a: (s - targets) / t.reshape(-1, 1, 1, 1, 1))


def generators(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


# -- multi-view ---------------------------------------------------------------------------------------------------

def test_copies_of_one_view_give_the_single_view_result():
    pipe = tiny_pipeline()
    single = pipe(IMAGE, output_type="latent", generator=generators(3), **CALL)
    multi = pipe([IMAGE] * 3, output_type="latent", generator=generators(3, 3, 3), multi_view=True, **CALL)
    assert multi.approximation == MULTI_VIEW_APPROXIMATION and single.approximation is None
    for view in range(3):
        assert torch.allclose(multi.shapes[view], single.shapes[0], atol=1e-5)
        assert rotation_error_degrees(multi.rotations[view], single.rotations[0]).item() < 1e-2
    # Different noise per view: the UV channels differ but the occupancy is still shared.
    mixed = pipe([IMAGE] * 2, output_type="latent", generator=generators(3, 4), multi_view=True, **CALL)
    assert torch.equal(mixed.shapes[0, 0], mixed.shapes[1, 0]) and not torch.equal(mixed.shapes[0, 1:],
                                                                                   mixed.shapes[1, 1:])


def test_views_of_different_cameras_share_one_occupancy_and_get_their_own_poses(monkeypatch):
    pipe = tiny_pipeline()
    # The two views' flows "see" concentric spheres of different radii: alone they give two shapes.
    targets = torch.stack([build_uv_cube(sphere(0.6), K_UV, R_TRUE, T_TRUE, resolution=RESOLUTION),
                           build_uv_cube(sphere(0.45), K_UV, R_OTHER, T_OTHER, resolution=RESOLUTION)])
    force(pipe, monkeypatch, targets)
    separate = pipe([IMAGE, IMAGE], output_type="voxels", generator=generators(0, 1), **CALL)
    assert not torch.equal(separate.shapes[0], separate.shapes[1])
    # Above 0.5 only where both are occupied (the average is 0.5 where one is): threshold 0.6 keeps those.
    out = pipe([IMAGE, IMAGE], output_type="latent", generator=generators(0, 1), multi_view=True,
               occupancy_threshold=0.6, **CALL)
    assert torch.equal(out.shapes[0, 0], out.shapes[1, 0])  # one shared object: the average of the two occupancies
    assert torch.allclose(out.shapes[0, 0], targets[:, 0].mean(dim=0), atol=1e-5)
    assert rotation_error_degrees(out.rotations[0], R_TRUE).item() < 1e-3
    assert rotation_error_degrees(out.rotations[1], R_OTHER).item() < 1e-3
    assert torch.allclose(out.translations[1], T_OTHER, atol=1e-5)
    assert out.approximation == MULTI_VIEW_APPROXIMATION


# -- known cameras ------------------------------------------------------------------------------------------------

def _projection_at_occupied(out, k, r, t):
    cube = out.shapes[0]
    occupied = (cube[0] > out.thresholds[0]).reshape(-1)
    _, centres = voxel_grid_points(RESOLUTION, 2.0)
    expected = project_points(centres[occupied], k, r, t).clamp(0, 1)  # the cube's channels live in [0, 1]
    return cube[1:].reshape(2, -1).T[occupied], expected


def test_known_camera_makes_the_uv_channels_its_projection():
    pipe = tiny_pipeline()
    out = pipe(IMAGE, output_type="latent", generator=generators(2), camera=(K_UV, R_TRUE, T_TRUE), **CALL)
    actual, expected = _projection_at_occupied(out, K_UV, R_TRUE, T_TRUE)
    assert actual.shape[0] >= 10 and torch.allclose(actual, expected, atol=1e-5)
    assert torch.equal(out.intrinsics[0], K_UV) and torch.equal(out.rotations[0], R_TRUE)
    assert torch.equal(out.translations[0], T_TRUE)
    free = pipe(IMAGE, output_type="latent", generator=generators(2), **CALL)
    actual_free, expected_free = _projection_at_occupied(free, K_UV, R_TRUE, T_TRUE)
    assert (actual_free - expected_free).abs().max() > 0.05  # without the camera the random flow ignores it


def test_known_camera_with_a_dense_uv_flow_writes_the_projection_at_every_voxel():
    pipe = tiny_pipeline()
    pipe.flow_model.config.dense_uv = True
    out = pipe(IMAGE, output_type="latent", generator=generators(2), camera=(K_UV, R_TRUE, T_TRUE), **CALL)
    _, centres = voxel_grid_points(RESOLUTION, 2.0)
    expected = project_points(centres, K_UV, R_TRUE, T_TRUE).clamp(0, 1)
    uv = out.shapes[0, 1:].reshape(2, -1).T
    assert torch.allclose(uv, expected, atol=1e-5)
    empty = (out.shapes[0, 0] <= out.thresholds[0]).reshape(-1)
    assert int(empty.sum()) > 0 and bool((uv[empty] > 0).all())  # empty voxels too, not Cupid's 0


def test_known_camera_overrides_the_flows_own_uv(monkeypatch):
    pipe = tiny_pipeline()
    force(pipe, monkeypatch, build_uv_cube(sphere(0.6), K_UV, R_TRUE, T_TRUE, resolution=RESOLUTION)[None])
    out = pipe(IMAGE, output_type="latent", generator=generators(0), camera=(K_UV, R_OTHER, T_OTHER), **CALL)
    actual, expected = _projection_at_occupied(out, K_UV, R_OTHER, T_OTHER)
    assert torch.allclose(actual, expected, atol=1e-5) and out.reprojection_errors[0] < 1e-5
    truth = build_uv_cube(sphere(0.6), K_UV, R_TRUE, T_TRUE, resolution=RESOLUTION)[0] > 0.5
    assert torch.equal(out.shapes[0, 0] > out.thresholds[0], truth)  # the geometry is the flow's
    # A batch with one camera per image, in multi-view too.
    batched = (K_UV.expand(2, 3, 3), torch.stack([R_TRUE, R_OTHER]), torch.stack([T_TRUE, T_OTHER]))
    both = pipe([IMAGE, IMAGE], output_type="voxels", generator=generators(0, 1), camera=batched, multi_view=True,
                **CALL)
    assert torch.equal(both.rotations, batched[1]) and torch.equal(both.shapes[0], both.shapes[1])


# -- scene composition --------------------------------------------------------------------------------------------

def test_scene_of_two_procedural_shapes_placed_by_renderer_depth(monkeypatch):
    from whitebox_hf.data.rendering import look_at_camera, render_sdf
    from whitebox_hf.data.shapes import sample_shape
    from whitebox_hf.models.cupid import camera_from_pose

    # 32³ voxels (the package's CPU scale): the fit pairs the voxels' surface with the exact one, within a voxel.
    size, resolution = 64, 32
    torch.manual_seed(0)
    config = CupidFlowConfig(cube_resolution=resolution, patch_size=8, hidden_size=16, num_hidden_layers=1,
                             num_attention_heads=2, image_encoder_config=dict(
                                 image_size=size, patch_size=16, num_channels=3, hidden_size=16,
                                 num_hidden_layers=1, num_attention_heads=2))
    model = CupidFlowModel(config).eval()
    pipe = CupidPipeline(model, model.make_scheduler())
    pipe.set_progress_bar_config(disable=True)

    camera = look_at_camera(azimuth=30.0, elevation=20.0, distance=2.5, fov=40.0, size=size)
    k_uv, r_c, t_c = camera_from_pose(camera.intrinsics, camera.pose, (size, size))
    shapes = [sample_shape("mug", 1), sample_shape("car", 1)]
    placements = [(0.45, rotation_about([0, 1, 0], 25.0), torch.tensor([-0.5, 0.0, 0.1], dtype=torch.float64)),
                  (0.35, rotation_about([0, 1, 0], -60.0), torch.tensor([0.5, 0.1, -0.2], dtype=torch.float64))]
    renders, cubes = [], []
    for shape, (s, r, t) in zip(shapes, placements):
        def world_sdf(points, shape=shape, s=s, r=r, t=t):  # x_world = s·R·x + t
            return s * torch.from_numpy(shape.sdf(((points - t) @ r / s).numpy()))

        renders.append(render_sdf(world_sdf, camera))
        # The canonical object seen by the scene camera: R' = R_c·R, t' = (R_c·t + t_c) / s (P is up to scale).
        cubes.append(build_uv_cube(shape.sdf, k_uv, r_c @ r, (r_c @ t + t_c) / s, resolution=resolution))
    depths = torch.stack([torch.where(x["mask"], x["depth"], torch.full_like(x["depth"], math.inf)) for x in renders])
    nearest = depths.argmin(dim=0)
    hit = torch.isfinite(depths.min(dim=0).values)
    masks = torch.stack([hit & (nearest == j) for j in range(2)])
    depth = torch.where(hit, depths.min(dim=0).values, torch.zeros(size, size))
    image = torch.where(masks[0, ..., None], renders[0]["rgb"], renders[1]["rgb"]).permute(2, 0, 1)
    force(pipe, monkeypatch, torch.stack(cubes))

    out = compose_cupid_scene(pipe, image, masks, depth, camera.intrinsics.float(),
                              depth_source="renderer ground truth (stands in for MoGe)", **CALL)
    assert isinstance(out.scene, trimesh.Scene) and len(out.scene.geometry) == 2
    for j, (s, r, t) in enumerate(placements):
        assert out.num_correspondences[j] >= 50
        assert out.scales[j].item() == pytest.approx(s, rel=0.03)
        assert rotation_error_degrees(out.rotations[j], r_c @ r).item() < 2.0
        assert (out.translations[j] - (r_c @ t + t_c)).norm().item() < 0.02
        assert out.fit_errors[j].item() < 0.03
    # The placed objects sit where the renderer drew them: the scene's vertices project into their masks.
    for j in range(2):
        node = f"object_{j}"
        transform, name = out.scene.graph[node]
        vertices = trimesh.transform_points(out.scene.geometry[name].vertices, transform)
        pixels = project_points(torch.from_numpy(vertices), camera.intrinsics, torch.eye(3, dtype=torch.float64),
                                torch.zeros(3, dtype=torch.float64)).floor().long().clamp(0, size - 1)
        inside = masks[j][pixels[:, 1], pixels[:, 0]].double().mean()
        assert inside > 0.7, inside

    with pytest.raises(ValueError, match="`masks`"):
        compose_cupid_scene(pipe, image, masks[:, :32], depth, camera.intrinsics, **CALL)
    with pytest.raises(ValueError, match="`depth`"):
        compose_cupid_scene(pipe, image, masks, depth[:32], camera.intrinsics, **CALL)
    with pytest.raises(ValueError, match="`intrinsics`"):
        compose_cupid_scene(pipe, image, masks, depth, torch.zeros(3, 3), **CALL)
    with pytest.raises(ValueError, match="`masks` 0: only 0 pixels"):
        compose_cupid_scene(pipe, image, masks, torch.zeros(size, size), camera.intrinsics, **CALL)


# -- bad input (issue 15, item 8) ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, name", [
    (dict(image=IMAGE.convert("RGBA")), ValueError, "image"),
    (dict(image=IMAGE.convert("CMYK")), ValueError, "image"),
    (dict(camera=(K_UV, R_TRUE)), TypeError, "camera"),
    (dict(camera=(K_UV.float(), R_TRUE, torch.tensor([0, 0, 4]))), TypeError, r"camera\[2\] \(t\)"),
    (dict(camera=(K_UV[None].expand(2, 3, 3), R_TRUE[None], T_TRUE[None])), ValueError, r"camera\[0\] \(K\)"),
    (dict(camera=(K_UV, 2 * R_TRUE, T_TRUE)), ValueError, r"camera\[1\] \(R\)"),
    (dict(camera=(K_UV, -R_TRUE, T_TRUE)), ValueError, r"camera\[1\] \(R\)"),
    (dict(camera=(-K_UV, R_TRUE, T_TRUE)), ValueError, r"camera\[0\] \(K\)"),
    (dict(camera=(K_UV, R_TRUE, torch.tensor([0.0, 0.0, 0.5], dtype=torch.float64))), ValueError, "camera"),
    (dict(camera=(K_UV, R_TRUE, torch.tensor([0.0, math.nan, 4.0], dtype=torch.float64))), ValueError, "camera"),
    (dict(multi_view=1), TypeError, "multi_view"),
])
def test_bad_inputs_name_the_argument(kwargs, error, name):
    pipe = tiny_pipeline()
    with pytest.raises(error, match=f"`{name}"):
        pipe(**{**dict(image=IMAGE, num_inference_steps=2, output_type="latent"), **kwargs})


def test_unbatched_camera_for_a_batch_is_refused_not_broadcast():
    pipe = tiny_pipeline()
    with pytest.raises(ValueError, match="`camera` must be batched"):
        pipe([IMAGE, IMAGE], num_inference_steps=2, output_type="latent", camera=(K_UV, R_TRUE, T_TRUE))


def test_coplanar_generated_voxels_are_degenerate_for_pnp(monkeypatch):
    pipe = tiny_pipeline()
    slab = build_uv_cube(lambda p: np.abs(p[:, 0] - 0.0625) - 0.01, K_UV, R_TRUE, T_TRUE, resolution=RESOLUTION)
    force(pipe, monkeypatch, slab[None])
    with pytest.raises(ValueError, match="`cube`: the correspondences of its 256 occupied voxels give no camera"):
        pipe(IMAGE, **CALL)


def test_too_few_voxels_after_lowering_the_threshold(monkeypatch):
    pipe = tiny_pipeline()
    few = torch.zeros(3, RESOLUTION, RESOLUTION, RESOLUTION, dtype=torch.float64)
    few[0, 8, 8, 3:8] = 0.3  # five voxels: the threshold is lowered down to 0.05, still under 10 voxels
    force(pipe, monkeypatch, few[None])
    with pytest.raises(ValueError, match=r"`cube` has 5 voxels with occupancy above .* needs at least 10"):
        pipe(IMAGE, **CALL)
    # With a known camera the same decoding rule applies.
    with pytest.raises(ValueError, match="`cube` has 5 voxels"):
        pipe(IMAGE, camera=(K_UV, R_TRUE, T_TRUE), **CALL)
