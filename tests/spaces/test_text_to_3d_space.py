"""The text-to-3D Space's functions without a browser: where it finds its pipelines, the request handler's answers
(a GLB mesh, or a clear `gr.Error` for bad input), the visible resizing of uploads, and the bundled float16
image-to-3D pipeline it serves offline."""

from __future__ import annotations

import gradio as gr
import pytest
import torch
import trimesh
from PIL import Image
from safetensors import safe_open
from test_spaces_browser import load_app, tiny_shape_pipelines

app = load_app("text-to-3d")
EXAMPLES = sorted((app.HERE / "examples").glob("*.png"))
CALL = dict(guidance_scale=3.0, steps=3, seed=0, octree_depth=4)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return tiny_shape_pipelines(tmp_path_factory.mktemp("pipelines"))


@pytest.fixture(scope="module")
def pipes(folders):
    return app.load_pipelines(folders)


@pytest.fixture
def generate(pipes, tmp_path):
    return app.make_generate(pipes, tmp_path)


def call(generate, prompt=None, image=None, **overrides):
    options = {**CALL, **overrides}
    return generate(prompt, image, options["guidance_scale"], options["steps"], options["seed"],
                    options["octree_depth"])


def test_text_and_image_requests_give_a_glb_mesh(generate):
    viewer, download, summary = call(generate, prompt="a chair with four legs")
    assert viewer == download and viewer.endswith(".glb")
    mesh = trimesh.load(viewer, force="mesh")
    assert len(mesh.faces) > 0 and mesh.bounds.shape == (2, 3)
    assert summary.startswith("**text-conditioned** on caption “a chair with four legs”") and "17³ grid" in summary
    # the same seed gives the same shape, another seed another one
    again = trimesh.load(call(generate, prompt="a chair with four legs")[0], force="mesh")
    assert len(again.vertices) == len(mesh.vertices) and (again.vertices == mesh.vertices).all()
    other = trimesh.load(call(generate, prompt="a chair with four legs", seed=1)[0], force="mesh")
    assert len(other.vertices) != len(mesh.vertices) or not (other.vertices == mesh.vertices).all()

    render = Image.open(EXAMPLES[0])
    viewer, _, summary = call(generate, image=render)
    assert len(trimesh.load(viewer, force="mesh").faces) > 0
    assert "**image-conditioned** on an image (the image was resized from 64×64 to 16×16)" in summary


def test_uploads_are_converted_visibly(pipes):
    image, note = app.prepare_image(Image.new("L", (100, 80), 200), pipes["image"])
    assert image.mode == "RGB" and image.size == (16, 16)
    assert note == "the image was converted from L to RGB and resized from 100×80 to 16×16"
    same, note = app.prepare_image(Image.new("RGB", (16, 16)), pipes["image"])
    assert same.size == (16, 16) and note == "the image was used as is"
    with pytest.raises(gr.Error, match="The image must be a picture, got ndarray"):
        app.prepare_image(torch.zeros(3, 16, 16).numpy(), pipes["image"])


@pytest.mark.parametrize("prompt, use_image, overrides, message", [
    (None, False, {}, "Type a prompt or upload an image first."),
    ("   ", False, {}, "Type a prompt or upload an image first."),
    ("a lamp", True, {}, "Give a prompt or an image, not both: clear one of them."),
    (3, False, {}, "The prompt must be text, got int."),
    ("a lamp", False, {"guidance_scale": -1.0}, "Guidance scale must be a number ≥ 0, got -1.0."),
    ("a lamp", False, {"guidance_scale": float("nan")}, "Guidance scale must be a number ≥ 0, got nan."),
    ("a lamp", False, {"steps": 0}, "Steps must be at least 1, got 0."),
    ("a lamp", False, {"steps": 2.5}, "Steps must be a whole number, got 2.5."),
    ("a lamp", False, {"seed": None}, "Seed must be a whole number, got None."),
    ("a lamp", False, {"seed": -3}, "Seed must be ≥ 0, got -3."),
    ("a lamp", False, {"octree_depth": 2}, "Resolution must be an octree depth in [3, 7], got 2."),
    ("a lamp", False, {"octree_depth": 9}, "Resolution must be an octree depth in [3, 7], got 9."),
])
def test_bad_input_gets_a_clear_message(generate, prompt, use_image, overrides, message):
    image = Image.open(EXAMPLES[0]) if use_image else None
    with pytest.raises(gr.Error) as error:
        call(generate, prompt=prompt, image=image, **overrides)
    assert error.value.message == message


def test_a_space_with_one_kind_names_the_other_as_missing(pipes, tmp_path):
    image_only = app.make_generate({"image": pipes["image"]}, tmp_path)
    with pytest.raises(gr.Error, match="Pick a held-out render or upload an image first."):
        call(image_only)
    with pytest.raises(gr.Error, match="no text-conditioned pipeline; upload an image instead"):
        call(image_only, prompt="a lamp")
    text_only = app.make_generate({"text": pipes["text"]}, tmp_path)
    with pytest.raises(gr.Error, match="no image-conditioned pipeline; type a prompt instead"):
        call(text_only, image=Image.open(EXAMPLES[0]))


def test_model_lookup(folders, monkeypatch, tmp_path):
    monkeypatch.delenv(app.ENV_VAR, raising=False)
    assert app.resolve_model_paths(folders[0]) == [folders[0]]
    assert app.resolve_model_paths([str(f) for f in folders]) == folders
    monkeypatch.setenv(app.ENV_VAR, f"{folders[1]}:{folders[0]}")
    assert app.resolve_model_paths() == [folders[1], folders[0]]
    with pytest.raises(FileNotFoundError, match="no folder with model_index.json found"):
        app.resolve_model_paths(tmp_path)
    with pytest.raises(TypeError, match="`model_path` must be a folder or a list of folders, got 3"):
        app.resolve_model_paths(3)
    with pytest.raises(ValueError, match="`model_path` must name at least one folder, got \\[\\]"):
        app.resolve_model_paths([])
    with pytest.raises(ValueError, match="at most one image-conditioned pipeline, got two"):
        app.load_pipelines([folders[1], folders[1]])
    monkeypatch.delenv(app.ENV_VAR)
    # with nothing given, the bundled image-to-3D pipeline comes first (./model beside app.py does not exist)
    assert app.resolve_model_paths()[0] == app.BUNDLED_DIR / app.BUNDLE


def test_the_bundled_pipeline_is_float16_on_disk_and_runs_in_float32(tmp_path):
    folder = app.BUNDLED_DIR / app.BUNDLE
    for weights in folder.rglob("*.safetensors"):
        with safe_open(weights, "pt") as handle:
            assert {handle.get_slice(key).get_dtype() for key in handle.keys()} == {"F16"}, weights
    (pipe,) = app.load_pipelines([folder]).values()
    assert pipe.condition_kind == "image"
    for component in (pipe.denoiser, pipe.vae, pipe.image_encoder):
        assert {p.dtype for p in component.parameters()} == {torch.float32}
    assert app.image_size_and_mode(pipe) == (64, "RGB")
    assert len(EXAMPLES) == 8 and all(Image.open(path).size == (64, 64) for path in EXAMPLES)
    viewer, _, summary = call(app.make_generate({"image": pipe}, tmp_path), image=Image.open(EXAMPLES[0]),
                              steps=10, octree_depth=5)
    assert len(trimesh.load(viewer, force="mesh").faces) > 0 and "the image was used as is" in summary
