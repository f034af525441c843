"""The image-to-3D (Cupid) Space's functions without a browser: where it finds its pipeline, the request handler's
answers (an overlay, the camera, a GLB mesh, or a clear `gr.Error` for bad input), the visible conversion of uploads
(RGBA gives the mask), the held-out renders and their true cameras, and the stage-2 appearance model it adds."""

from __future__ import annotations

import json

import gradio as gr
import numpy as np
import pytest
import torch
import trimesh
from PIL import Image
from test_spaces_browser import load_app, tiny_cupid_pipeline

app = load_app("image-to-3d")
EXAMPLES = sorted(app.EXAMPLES.glob("*.png"))
CALL = dict(steps=3, guidance_scale=3.0, seed=0, occupancy_threshold=0.5)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny_cupid_pipeline(tmp_path_factory.mktemp("pipeline"))


@pytest.fixture(scope="module")
def pipe(folder):
    return app.load_pipeline(folder)


@pytest.fixture
def reconstruct(pipe, tmp_path):
    return app.make_reconstruct(pipe, tmp_path, app.load_held_out_cameras())


def call(reconstruct, image, **overrides):
    options = {**CALL, **overrides}
    return reconstruct(image, options["steps"], options["guidance_scale"], options["seed"],
                       options["occupancy_threshold"])


def test_a_held_out_render_gives_overlay_camera_and_mesh(reconstruct, pipe):
    render = Image.open(app.EXAMPLES / "chair.png")
    overlay, camera, viewer, download, status = call(reconstruct, render)
    picture = Image.open(overlay)
    assert picture.mode == "RGB" and picture.size == (64, 64)
    # the overlay is the input tinted where the generated object projects, and nowhere else
    tinted = np.abs(np.asarray(picture).astype(int) - np.asarray(render.convert("RGB")).astype(int)).sum(-1) > 0
    assert tinted.any()
    assert viewer == download and viewer.endswith(".glb")
    mesh = trimesh.load(viewer, force="mesh")
    assert len(mesh.faces) > 0 and (np.abs(mesh.vertices) <= 1.0 + 2.0 / 16).all()  # inside the canonical cube
    assert status.startswith("**the held-out chair render** (the image was used as is); 3 Euler steps, guidance 3")
    assert f"silhouette {int(tinted.sum())} px" in status and "GLB" in status
    assert "K (pixels of the 64×64 input" in camera and "Euler angles (xyz" in camera
    assert "against the true camera of the held-out chair render: rotation error" in camera
    # the numbers shown are the pipeline's own, for the same seed
    out = pipe(render.convert("RGB"), num_inference_steps=3, guidance_scale=3.0,
               generator=torch.Generator().manual_seed(0))
    assert f"{float(out.reprojection_errors[0]):.4f} uv" in camera
    assert np.array_equal(np.asarray(picture), np.asarray(out.overlays[0]))
    assert np.array_equal(tinted, out.silhouettes[0].numpy())
    assert len(trimesh.load(viewer, force="mesh").vertices) == len(out.shapes[0].vertices)
    euler = app.Rotation.from_matrix(out.rotations[0].numpy()).as_euler("xyz", degrees=True)
    assert f"x {euler[0]:.1f}°" in camera
    # another seed, another shape
    other = trimesh.load(call(reconstruct, render, seed=1)[2], force="mesh")
    assert len(other.vertices) != len(mesh.vertices) or not np.array_equal(other.vertices, mesh.vertices)


def test_the_held_out_cameras_are_the_renders_true_ones():
    cameras = app.load_held_out_cameras()
    assert len(EXAMPLES) == 8 and len(cameras) == 8
    assert sorted(c["family"] for c in cameras.values()) == sorted(p.stem for p in EXAMPLES)
    families = json.loads((app.EXAMPLES / "cameras.json").read_text())
    for camera in cameras.values():
        assert torch.allclose(torch.linalg.det(camera["rotation"]), torch.ones((), dtype=torch.float64))
        assert camera["intrinsics"][0, 0] > 0 and families[camera["family"]]["view"] == 0
    # a known camera scored against itself has no error
    truth = next(iter(cameras.values()))
    text = app.describe_camera(truth["intrinsics"], truth["rotation"], truth["translation"], 0.01, 64, truth)
    assert "rotation error 0.0°, focal error 0.0 %, translation error 0.000" in text
    assert "0.0100 uv = 0.64 px" in text


def test_uploads_are_converted_visibly_and_alpha_is_the_mask(reconstruct):
    image, mask, note = app.prepare_image(Image.new("L", (100, 80), 200), 64)
    assert image.mode == "RGB" and image.size == (64, 64) and mask is None
    assert note == "the image was converted from L to RGB and resized from 100×80 to 64×64"
    rgba = Image.new("RGBA", (32, 32), (200, 30, 30, 0))
    rgba.paste((200, 30, 30, 255), (8, 8, 24, 24))
    image, mask, note = app.prepare_image(rgba, 64)
    assert mask.mode == "L" and mask.size == (64, 64) and image.size == (64, 64)
    assert mask.getpixel((0, 0)) == 0 and mask.getpixel((32, 32)) == 255
    assert note == "the image was masked by its alpha channel (RGBA) and resized from 32×32 to 64×64"
    _, mask, note = app.prepare_image(Image.new("RGBA", (64, 64), (1, 2, 3, 255)), 64)
    assert mask is None and note == "the image was converted from RGBA to RGB (its alpha channel is opaque everywhere)"
    # the masked upload runs, and says so
    status = call(reconstruct, rgba)[4]
    assert status.startswith("**an upload** (the image was masked by its alpha channel (RGBA)")


@pytest.mark.parametrize("image, overrides, message", [
    (None, {}, "Upload an image or pick a held-out render first."),
    (np.zeros((64, 64, 3)), {}, "The image must be a picture, got ndarray."),
    (Image.new("RGBA", (64, 64)), {}, "The image is fully transparent (its alpha channel is 0 everywhere)"),
    ("render", {"steps": 0}, "Steps must be in [1, 100], got 0."),
    ("render", {"steps": 2.5}, "Steps must be a whole number, got 2.5."),
    ("render", {"seed": None}, "Seed must be a whole number, got None."),
    ("render", {"seed": -3}, "Seed must be ≥ 0, got -3."),
    ("render", {"guidance_scale": -1.0}, "Guidance scale must be a number ≥ 0, got -1.0."),
    ("render", {"guidance_scale": float("nan")}, "Guidance scale must be a number ≥ 0, got nan."),
    ("render", {"occupancy_threshold": 1.0}, "Occupancy threshold must lie strictly between 0 and 1, got 1.0."),
    ("render", {"occupancy_threshold": None}, "Occupancy threshold must lie strictly between 0 and 1, got None."),
])
def test_bad_input_gets_a_clear_message(reconstruct, image, overrides, message):
    image = Image.open(EXAMPLES[0]) if isinstance(image, str) else image
    with pytest.raises(gr.Error) as error:
        call(reconstruct, image, **overrides)
    assert error.value.message.startswith(message), error.value.message


def test_a_cube_too_empty_for_pnp_is_a_clear_message(pipe, tmp_path, monkeypatch):
    empty = -torch.ones(1, 3, 16, 16, 16)
    monkeypatch.setattr(pipe.flow_model, "guided_velocity", lambda s, t, *a: (s - empty) / t.reshape(-1, 1, 1, 1, 1))
    with pytest.raises(gr.Error, match="No reconstruction: `cube` has 0 voxels with occupancy above"):
        call(app.make_reconstruct(pipe, tmp_path), Image.open(EXAMPLES[0]))


def test_model_lookup(folder, monkeypatch, tmp_path):
    monkeypatch.delenv(app.ENV_VAR, raising=False)
    monkeypatch.delenv(app.APPEARANCE_ENV_VAR, raising=False)
    assert app.resolve_model_path(folder) == folder
    monkeypatch.setenv(app.ENV_VAR, str(folder))
    assert app.resolve_model_path() == folder
    with pytest.raises(FileNotFoundError, match="no folder with model_index.json found.*train_cupid_flow.py"):
        app.resolve_model_path(tmp_path)
    with pytest.raises(TypeError, match="`model_path` must be a folder .* got int"):
        app.resolve_model_path(3)
    monkeypatch.delenv(app.ENV_VAR)
    # with nothing given, the candidates are tried in order: ./model, the bundle, the training run
    monkeypatch.setattr(app, "CANDIDATES", (tmp_path / "model", folder))
    assert app.resolve_model_path() == folder
    monkeypatch.setattr(app, "CANDIDATES", (tmp_path / "model",))
    with pytest.raises(FileNotFoundError, match="runs/cupid/flow/pipeline"):
        app.build_demo()
    monkeypatch.setattr(app, "APPEARANCE_CANDIDATES", (tmp_path / "appearance",))
    assert app.resolve_appearance_path() is None
    with pytest.raises(FileNotFoundError, match="no folder with config.json found"):
        app.resolve_appearance_path(tmp_path)


def test_a_stage_2_model_is_added_and_colours_the_mesh(folder, tmp_path, monkeypatch):
    colored = tiny_cupid_pipeline(tmp_path / "with-appearance", appearance=True)
    stage2 = tmp_path / "appearance"
    app.CupidPipeline.from_pretrained(colored).appearance_model.save_pretrained(stage2)
    monkeypatch.delenv(app.APPEARANCE_ENV_VAR, raising=False)
    assert app.resolve_appearance_path(stage2) == stage2
    monkeypatch.setenv(app.APPEARANCE_ENV_VAR, str(stage2))
    assert app.resolve_appearance_path() == stage2
    pipe = app.load_pipeline(folder, app.resolve_appearance_path())
    assert pipe.appearance_model is not None and pipe.appearance_model.dtype == torch.float32
    render = Image.open(app.EXAMPLES / "mug.png")
    overlay, _, viewer, _, status = call(app.make_reconstruct(pipe, tmp_path), render)
    assert "vertex-coloured by stage 2" in status
    out = pipe(render, num_inference_steps=3, guidance_scale=3.0, generator=torch.Generator().manual_seed(0))
    assert np.array_equal(np.asarray(Image.open(overlay)), np.asarray(out.renderings[0]))  # the coloured voxels
    mesh = trimesh.load(viewer, force="mesh")
    assert mesh.visual.kind == "vertex" and len(np.unique(mesh.visual.vertex_colors[:, :3], axis=0)) > 1
