"""CupidPipeline (stage 1) with a tiny random flow model: each output type, the camera recovered from a known cube
(the flow forced to land on `build_uv_cube` of a sphere) and the overlay covering that sphere's silhouette, agreement
with `CupidFlowModel.sample`, determinism, save/load with the package's classes, and bad inputs raising ValueError
naming the argument."""

import json
import math

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from whitebox_hf import CupidFlowConfig, CupidFlowModel, CupidPipeline
from whitebox_hf.geometry import intrinsics_uv_to_pixels, rotation_error_degrees
from whitebox_hf.models.cupid import build_uv_cube, denormalize_cube, normalize_cube

SIZE = 32
RESOLUTION = 16
ENCODER = dict(image_size=SIZE, patch_size=8, num_channels=3, hidden_size=16, num_hidden_layers=1,
               num_attention_heads=2)
CALL = dict(num_inference_steps=3, guidance_scale=3.0)
IMAGE = Image.new("RGB", (SIZE, SIZE), (30, 120, 220))


def perturb(model, seed):
    """Random non-zero weights (the zero-initialised output layer would make every velocity 0)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    return model.eval()


def tiny_pipeline(seed=0):
    torch.manual_seed(seed)
    config = CupidFlowConfig(cube_resolution=RESOLUTION, patch_size=4, hidden_size=16, num_hidden_layers=1,
                             num_attention_heads=2, image_encoder_config=dict(ENCODER))
    model = perturb(CupidFlowModel(config), seed)
    pipe = CupidPipeline(model, model.make_scheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def rotation_about(axis, degrees):
    axis = torch.tensor(axis, dtype=torch.float64)
    axis = axis / axis.norm()
    x, y, z = axis.tolist()
    skew = torch.tensor([[0, -z, y], [z, 0, -x], [-y, x, 0]], dtype=torch.float64)
    angle = math.radians(degrees)
    return torch.eye(3, dtype=torch.float64) + math.sin(angle) * skew + (1 - math.cos(angle)) * skew @ skew


# A sphere off the origin, seen by a camera 4 units away, turned about a tilted axis.
CENTRE, RADIUS = torch.tensor([0.15, -0.1, 0.05], dtype=torch.float64), 0.6
K_UV = torch.tensor([[1.3, 0.0, 0.52], [0.0, 1.25, 0.47], [0.0, 0.0, 1.0]], dtype=torch.float64)
R_TRUE = rotation_about([0.3, 1.0, 0.2], 35.0)
T_TRUE = torch.tensor([0.1, -0.05, 4.0], dtype=torch.float64)


def sphere_sdf(points):
    return np.linalg.norm(points - CENTRE.numpy(), axis=1) - RADIUS


def sphere_silhouette():
    """Pixels whose centre ray meets the sphere (exact, no voxels)."""
    k_pixels = intrinsics_uv_to_pixels(K_UV, (SIZE, SIZE))
    axis = torch.arange(SIZE, dtype=torch.float64) + 0.5
    u, v = torch.meshgrid(axis, axis, indexing="xy")
    rays = torch.stack([u, v, torch.ones_like(u)], dim=-1).reshape(-1, 3) @ torch.linalg.inv(k_pixels).T @ R_TRUE
    rays = rays / rays.norm(dim=1, keepdim=True)
    camera_centre = -R_TRUE.T @ T_TRUE
    offset = CENTRE - camera_centre
    along = rays @ offset
    distance = (offset.norm() ** 2 - along**2).clamp_min(0).sqrt()
    return (distance < RADIUS).reshape(SIZE, SIZE)


@pytest.fixture
def forced_sphere(monkeypatch):
    """The pipeline with its flow forced onto the sphere's cube: the velocity ``(x_t − x₀)/t`` makes Euler land on
    ``x₀`` exactly at t = 0, whatever the grid."""
    pipe = tiny_pipeline()
    target = normalize_cube(build_uv_cube(sphere_sdf, K_UV, R_TRUE, T_TRUE, resolution=RESOLUTION)).float()[None]

    def velocity(sample, t, tokens, guidance_scale, interval):
        return (sample - target) / t.reshape(-1, 1, 1, 1, 1)

    monkeypatch.setattr(pipe.flow_model, "guided_velocity", velocity)
    return pipe


def test_known_cube_gives_its_camera_and_the_overlay_covers_the_sphere(forced_sphere):
    out = forced_sphere(IMAGE, num_inference_steps=4, guidance_scale=3.0, output_type="voxels")
    assert rotation_error_degrees(out.rotations[0], R_TRUE).item() < 1e-3
    assert torch.allclose(out.intrinsics[0], K_UV, atol=1e-5)
    assert torch.allclose(out.translations[0], T_TRUE, atol=1e-5)
    assert out.reprojection_errors[0].item() < 1e-6
    expected_voxels = build_uv_cube(sphere_sdf, K_UV, R_TRUE, T_TRUE, resolution=RESOLUTION)[0] > 0.5
    assert torch.equal(out.shapes[0], expected_voxels)
    truth, drawn = sphere_silhouette(), out.silhouettes[0]
    covered = (truth & drawn).sum() / truth.sum()
    iou = (truth & drawn).sum() / (truth | drawn).sum()
    assert covered > 0.97 and iou > 0.8, (covered, iou)
    # The overlay is the input tinted exactly on the silhouette.
    overlay, original = np.asarray(out.overlays[0]).astype(int), np.asarray(IMAGE).astype(int)
    changed = (np.abs(overlay - original).sum(axis=-1) > 0)
    assert np.array_equal(changed, drawn.numpy())


def test_known_cube_mesh_is_the_sphere_in_the_canonical_frame(forced_sphere):
    mesh = forced_sphere(IMAGE, **CALL).shapes[0]
    assert isinstance(mesh, trimesh.Trimesh) and mesh.is_watertight
    distances = np.linalg.norm(mesh.vertices - CENTRE.numpy(), axis=1)
    voxel = 2.0 / RESOLUTION
    assert abs(distances.mean() - RADIUS) < voxel / 2 and distances.max() < RADIUS + voxel


@pytest.mark.parametrize("output_type", ["mesh", "voxels", "latent"])
def test_output_types(output_type):
    pipe = tiny_pipeline()
    out = pipe([IMAGE, IMAGE], generator=[torch.Generator().manual_seed(i) for i in range(2)],
               output_type=output_type, occupancy_threshold=0.5, **CALL)
    if output_type == "mesh":
        assert len(out.shapes) == 2 and all(m is None or isinstance(m, trimesh.Trimesh) for m in out.shapes)
    elif output_type == "voxels":
        assert out.shapes.dtype == torch.bool and out.shapes.shape == (2, RESOLUTION, RESOLUTION, RESOLUTION)
    else:
        assert out.shapes.dtype == torch.float64 and out.shapes.shape == (2, 3, RESOLUTION, RESOLUTION, RESOLUTION)
        assert 0 <= out.shapes.min() and out.shapes.max() <= 1
    assert out.intrinsics.shape == (2, 3, 3) and out.rotations.shape == (2, 3, 3) and out.translations.shape == (2, 3)
    assert torch.allclose(torch.linalg.det(out.rotations), torch.ones(2, dtype=torch.float64), atol=1e-8)
    assert (out.intrinsics[:, 0, 0] > 0).all() and (out.intrinsics[:, 1, 1] > 0).all()
    assert len(out.thresholds) == 2 and len(out.overlays) == 2
    assert all(o.mode == "RGB" and o.size == (SIZE, SIZE) for o in out.overlays)
    assert out.silhouettes.shape == (2, SIZE, SIZE) and out.silhouettes.dtype == torch.bool
    assert len(pipe(IMAGE, output_type=output_type, return_dict=False, **CALL)) == 8


def test_samples_what_the_flow_model_samples_and_is_deterministic():
    pipe = tiny_pipeline()
    tensor_image = torch.from_numpy(np.asarray(IMAGE, dtype=np.float32) / 255).permute(2, 0, 1)
    cube = pipe(tensor_image, output_type="latent", generator=torch.Generator().manual_seed(3), **CALL).shapes
    again = pipe(IMAGE, output_type="latent", generator=torch.Generator().manual_seed(3), **CALL).shapes
    other = pipe(IMAGE, output_type="latent", generator=torch.Generator().manual_seed(4), **CALL).shapes
    assert torch.equal(cube, again) and not torch.allclose(cube, other)
    pixel_values = (tensor_image[None] - 0.5) / 0.5
    expected = pipe.flow_model.sample(pixel_values=pixel_values, generator=torch.Generator().manual_seed(3), **CALL)
    assert torch.allclose(cube, denormalize_cube(expected.double()), atol=1e-6)


def test_mask_sets_the_background_before_encoding():
    pipe = tiny_pipeline()
    mask = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    mask[8:24, 8:24] = True
    seen = {}
    encode = pipe.flow_model.encode_image

    def spy(pixel_values):
        seen["pixels"] = pixel_values
        return encode(pixel_values)

    pipe.flow_model.encode_image = spy
    pipe(IMAGE, mask=Image.fromarray(mask.numpy().astype(np.uint8) * 255, mode="L"), output_type="latent", **CALL)
    pixels = seen["pixels"][0] * 0.5 + 0.5
    assert torch.allclose(pixels[:, 0, 0], torch.ones(3))  # background: white
    assert torch.allclose(pixels[:, 16, 16], torch.tensor([30, 120, 220]) / 255.0)


def test_save_and_load_with_the_package_classes(tmp_path):
    pipe = tiny_pipeline()
    expected = pipe(IMAGE, output_type="latent", generator=torch.Generator().manual_seed(0), **CALL)
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline_cupid", "CupidPipeline"]
    assert index["flow_model"] == ["modeling_cupid_flow", "CupidFlowModel"]
    assert index["scheduler"] == ["diffusers", "FlowMatchEulerDiscreteScheduler"]
    loaded = CupidPipeline.from_pretrained(tmp_path)
    assert type(loaded.flow_model).__module__.startswith("whitebox_hf.")
    state, loaded_state = pipe.flow_model.state_dict(), loaded.flow_model.state_dict()
    assert state.keys() == loaded_state.keys() and all(torch.equal(state[k], loaded_state[k]) for k in state)
    loaded.set_progress_bar_config(disable=True)
    actual = loaded(IMAGE, output_type="latent", generator=torch.Generator().manual_seed(0), **CALL)
    assert torch.equal(actual.shapes, expected.shapes) and torch.equal(actual.rotations, expected.rotations)
    assert loaded.config.extent == 2.0 and loaded.scheduler.config.shift == pipe.flow_model.config.time_shift


@pytest.mark.parametrize("kwargs, name", [
    (dict(image=Image.new("L", (SIZE, SIZE))), "image"),
    (dict(image=Image.new("RGB", (SIZE + 1, SIZE))), "image"),
    (dict(image=torch.rand(1, 3, SIZE, 16)), "image"),
    (dict(mask=torch.ones(SIZE, 16, dtype=torch.bool)), "mask"),
    (dict(mask=Image.new("L", (16, 16), 255)), "mask"),
    (dict(mask=torch.zeros(SIZE, SIZE, dtype=torch.bool)), "mask"),
    (dict(mask=Image.new("RGB", (SIZE, SIZE))), "mask"),
    (dict(num_inference_steps=0), "num_inference_steps"),
    (dict(guidance_scale=-1.0), "guidance_scale"),
    (dict(occupancy_threshold=1.5), "occupancy_threshold"),
    (dict(output_type="pil"), "output_type"),
    (dict(latents=torch.zeros(1, 3, 4, 4, 4)), "latents"),
])
def test_bad_inputs_raise_value_error_naming_the_argument(kwargs, name):
    pipe = tiny_pipeline()
    call = {**dict(image=IMAGE, num_inference_steps=2, output_type="latent"), **kwargs}
    with pytest.raises(ValueError, match=f"`{name}`"):
        pipe(**call)


def test_too_few_occupied_voxels_is_a_clear_error(monkeypatch):
    pipe = tiny_pipeline()
    empty = -torch.ones(1, 3, RESOLUTION, RESOLUTION, RESOLUTION)
    monkeypatch.setattr(pipe.flow_model, "guided_velocity", lambda s, t, *a: (s - empty) / t.reshape(-1, 1, 1, 1, 1))
    with pytest.raises(ValueError, match="`cube` has 0 voxels with occupancy above"):
        pipe(IMAGE, num_inference_steps=2)
