"""Gradio Space: text- or image-to-3D with aligned shape latent diffusion (Michelangelo's second stage, book §8.8).

Type a caption or upload an image (or pick a held-out render), set the classifier-free guidance scale, the DDIM steps,
the seed and the grid resolution; `whitebox_hf.pipelines.ShapeGenerationPipeline` denoises a set of SITA-VAE latents
conditioned on the caption's MiniLM tokens or the image's CRATE-tower tokens, decodes them to an occupancy grid and
extracts its surface by marching cubes. The shape is shown in 3D and offered as a GLB file.

The pipelines are read from local folders written by ``pipe.save_pretrained`` (``model_index.json`` plus one
subfolder per component), never from the network: ``build_demo(model_path)`` (one folder or a list, each an image-
or a text-conditioned pipeline), else ``$WHITEBOX_SHAPE_PATH`` (folders separated by ``os.pathsep``), else the
first image-conditioned folder of ``./model`` beside this file, the package's bundled
``procedural-shapes-image-to-3d``, the repository's ``runs/shapes/diffusion_image/pipeline``, together with the
first text-conditioned folder of ``./model-text`` and ``runs/shapes/diffusion_aligned/pipeline``. The text mode is
offered only when a text-conditioned pipeline is found (its MiniLM text encoder, 87 MB, is too large to bundle).

    python spaces/text-to-3d/app.py [--model PATH [PATH ...]] [--port 7860]
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

import gradio as gr
import torch
from PIL import Image

import whitebox_hf  # noqa: F401  (imports the pipeline components' modules, which diffusers needs on load)
from whitebox_hf.hub import BUNDLED_DIR, find_model_folder
from whitebox_hf.hub.spaces import (
    CONCURRENCY_ENV,
    QUEUE_SIZE_ENV,
    output_file,
    queue_setting,
    whole_number,
)
from whitebox_hf.pipelines import ShapeGenerationPipeline

HERE = Path(__file__).resolve().parent
RUNS = HERE.parents[1] / "runs" / "shapes"
ENV_VAR = "WHITEBOX_SHAPE_PATH"
BUNDLE = "procedural-shapes-image-to-3d"
IMAGE_CANDIDATES = (HERE / "model", BUNDLED_DIR / BUNDLE, RUNS / "diffusion_image" / "pipeline")
TEXT_CANDIDATES = (HERE / "model-text", RUNS / "diffusion_aligned" / "pipeline")
MARKER = "model_index.json"
HINT = ("train one offline with `python training/train_shape_diffusion.py --config "
        "training/configs/shape_diffusion_text.yaml` (writes runs/shapes/shape_diffusion_text/pipeline).")
# Captions of held-out (test-split) procedural shapes, in the style the text pipeline was trained on.
EXAMPLE_PROMPTS = (
    "a chair with round legs, a low solid back and armrests",
    "a round table with a single pedestal leg",
    "a lamp with a round base, a bent arm and a cone shade",
    "an airplane with a long fuselage, wide high wings and two engines",
    "a compact hatchback car with large wheels",
    "a short wide mug with a square handle",
)
MIN_DEPTH, MAX_DEPTH = 3, 7  # grids of 9³ to 129³ points

# A request waits in Gradio's queue while others run; past QUEUE_SIZE waiting ones a new one is refused with
# Gradio's "Queue is full" answer (HTTP 503) instead of piling up. Both can be set per deployment.
QUEUE_SIZE = 16
CONCURRENCY = 1  # one request at a time: a pipeline's scheduler keeps the timesteps of the call in progress


def resolve_model_paths(model_path=None) -> list[Path]:
    """The pipeline folders to serve: ``model_path`` (a folder or a list of them), else ``${ENV_VAR}`` (folders
    separated by ``os.pathsep``), else the first image-conditioned and the first text-conditioned default folder
    that exist (at least one must). Each must hold model_index.json."""
    if model_path is None and os.environ.get(ENV_VAR, "").strip():
        model_path = [part for part in os.environ[ENV_VAR].split(os.pathsep) if part.strip()]
    if model_path is not None:
        paths = [model_path] if isinstance(model_path, (str, os.PathLike)) else model_path
        if not isinstance(paths, (list, tuple)) or not all(isinstance(path, (str, os.PathLike)) for path in paths):
            raise TypeError(f"`model_path` must be a folder or a list of folders, got {model_path!r}")
        if not paths:
            raise ValueError("`model_path` must name at least one folder, got []")
        return [find_model_folder(path, ENV_VAR, (), marker=MARKER, hint=HINT) for path in paths]
    found = []
    for candidates in (IMAGE_CANDIDATES, TEXT_CANDIDATES):
        try:
            found.append(find_model_folder(None, ENV_VAR, candidates, marker=MARKER, hint=HINT))
        except FileNotFoundError:
            continue
    if not found:
        raise FileNotFoundError(
            f"no folder with {MARKER} found (looked in {[str(f) for f in IMAGE_CANDIDATES + TEXT_CANDIDATES]}). "
            f"Pass model_path=..., set ${ENV_VAR}, or {HINT}")
    return found


def load_pipelines(folders) -> dict[str, ShapeGenerationPipeline]:
    """``{"image": pipe, "text": pipe}`` (either may be missing) from the folders, computed in float32 whatever
    dtype the weights are stored in (the bundled pipeline stores float16 to fit the package's size cap; the
    up-cast is exact). Two folders of the same condition kind are refused."""
    pipes, sources = {}, {}
    for folder in folders:
        pipe = ShapeGenerationPipeline.from_pretrained(folder, torch_dtype=torch.float32)
        pipe.set_progress_bar_config(disable=True)
        kind = pipe.condition_kind
        if kind in pipes:
            raise ValueError(f"`model_path` must hold at most one {kind}-conditioned pipeline, got two: "
                             f"{sources[kind]!r} and {str(folder)!r}")
        pipes[kind], sources[kind] = pipe, str(folder)
    return pipes


def image_size_and_mode(pipe: ShapeGenerationPipeline) -> tuple[int, str]:
    """The side and the PIL mode of the images the pipeline's image tower takes."""
    vision = getattr(pipe.image_encoder.config, "vision_config", pipe.image_encoder.config)
    return int(vision.image_size), {1: "L", 3: "RGB"}[int(vision.num_channels)]


def prepare_image(image: Image.Image, pipe: ShapeGenerationPipeline) -> tuple[Image.Image, str]:
    """The image in the tower's mode and size, and a note saying what was changed. The pipeline itself never
    resizes (it raises on a wrong size); the Space does it, visibly, so that any upload can be tried."""
    if not isinstance(image, Image.Image):
        raise gr.Error(f"The image must be a picture, got {type(image).__name__}.")
    size, mode = image_size_and_mode(pipe)
    changes = []
    if image.mode != mode:
        changes.append(f"converted from {image.mode} to {mode}")
        image = image.convert(mode)
    if image.size != (size, size):
        changes.append(f"resized from {image.width}×{image.height} to {size}×{size}")
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    return image, ("the image was " + " and ".join(changes)) if changes else "the image was used as is"


def make_generate(pipes: dict[str, ShapeGenerationPipeline], output_dir: Path):
    """The Space's request handler: ``(prompt, image, guidance_scale, steps, seed, octree_depth) -> (GLB path for
    the viewer, GLB path for download, a summary)``; bad input raises `gr.Error` with a message for the page."""

    def generate(prompt, image, guidance_scale, steps, seed, octree_depth):
        prompt = "" if prompt is None else prompt
        if not isinstance(prompt, str):
            raise gr.Error(f"The prompt must be text, got {type(prompt).__name__}.")
        prompt = prompt.strip()
        if not prompt and image is None:
            raise gr.Error("Type a prompt or upload an image first." if "text" in pipes else
                           "Pick a held-out render or upload an image first.")
        if prompt and image is not None:
            raise gr.Error("Give a prompt or an image, not both: clear one of them.")
        kind = "text" if prompt else "image"
        if kind not in pipes:
            raise gr.Error(f"This Space has no {kind}-conditioned pipeline; "
                           + ("upload an image instead." if kind == "text" else "type a prompt instead."))
        if guidance_scale is None or not math.isfinite(float(guidance_scale)) or float(guidance_scale) < 0:
            raise gr.Error(f"Guidance scale must be a number ≥ 0, got {guidance_scale!r}.")
        steps, seed = whole_number(steps, "Steps"), whole_number(seed, "Seed")
        octree_depth = whole_number(octree_depth, "Resolution")
        if steps < 1:
            raise gr.Error(f"Steps must be at least 1, got {steps}.")
        if not MIN_DEPTH <= octree_depth <= MAX_DEPTH:
            raise gr.Error(f"Resolution must be an octree depth in [{MIN_DEPTH}, {MAX_DEPTH}], got {octree_depth}.")
        if seed < 0:
            raise gr.Error(f"Seed must be ≥ 0, got {seed}.")
        pipe = pipes[kind]
        condition = {"prompt": prompt}
        note = f"caption “{prompt}”"
        if kind == "image":
            picture, change = prepare_image(image, pipe)
            condition, note = {"image": picture}, f"an image ({change})"
        start = time.perf_counter()
        try:
            (mesh,) = pipe(**condition, num_inference_steps=steps, guidance_scale=float(guidance_scale),
                           generator=torch.Generator().manual_seed(seed), octree_depth=octree_depth).shapes
        except ValueError as error:  # the pipeline's own checks (e.g. an empty prompt), worded for its arguments
            raise gr.Error(str(error)) from error
        seconds = time.perf_counter() - start
        if mesh is None:
            raise gr.Error("The sampled shape has no surface on this grid (its occupancy is one-signed); try "
                           "another seed or a finer resolution.")
        path = output_file(output_dir, suffix=".glb")
        mesh.export(path, file_type="glb")
        side = 2**octree_depth + 1
        summary = (f"**{kind}-conditioned** on {note}; {steps} DDIM steps, guidance {float(guidance_scale):g}, "
                   f"seed {seed}, a {side}³ grid: {len(mesh.vertices):,} vertices, {len(mesh.faces):,} faces "
                   f"in {seconds:.1f} s.")
        return path, path, summary

    return generate


def build_demo(model_path=None, *, max_size: int | None = None, concurrency_limit: int | None = None) -> gr.Blocks:
    """The Gradio `Blocks` of this Space, with the pipelines loaded from local folders (`resolve_model_paths`).

    At most ``max_size`` requests (else ``$WHITEBOX_SPACE_QUEUE_SIZE``, else 16) wait while
    ``concurrency_limit`` (else ``$WHITEBOX_SPACE_CONCURRENCY``, else `CONCURRENCY`) run; a request beyond them
    gets Gradio's "Queue is full" answer."""
    queue_size = queue_setting(max_size, "max_size", QUEUE_SIZE_ENV, QUEUE_SIZE)
    concurrency = queue_setting(concurrency_limit, "concurrency_limit", CONCURRENCY_ENV, CONCURRENCY)
    pipes = load_pipelines(resolve_model_paths(model_path))
    output_dir = Path(tempfile.mkdtemp(prefix="shape_space_"))
    generate = make_generate(pipes, output_dir)
    loaded = "; ".join(f"{kind}: `{type(pipe.denoiser).__name__}` "
                       f"({sum(p.numel() for p in pipe.denoiser.parameters()) / 1e6:.1f} M parameters, "
                       f"{pipe.denoiser.config.block_type} blocks, {pipe.denoiser.config.conditioning} conditioning)"
                       for kind, pipe in sorted(pipes.items()))
    modes = " or ".join(("a caption",) * ("text" in pipes) + ("an image",) * ("image" in pipes))

    with gr.Blocks(title="White-box text/image-to-3D") as demo:
        gr.Markdown(
            "# Text- and image-to-3D by aligned shape latent diffusion\n"
            f"Give {modes}; `ShapeGenerationPipeline` denoises SITA-VAE latents under classifier-free guidance "
            "(0 ignores the condition, 1 is plain conditional sampling) and extracts the surface by marching cubes. "
            f"Pipelines: {loaded}. Trained on procedural shapes of 8 families only: other inputs give arbitrary "
            "shapes."
        )
        with gr.Row():
            with gr.Column():
                prompt = gr.Textbox(label="Prompt", placeholder=EXAMPLE_PROMPTS[0], lines=2, elem_id="prompt",
                                    visible="text" in pipes)
                if "text" in pipes:
                    gr.Examples(examples=[[text] for text in EXAMPLE_PROMPTS], inputs=prompt,
                                label="Captions of held-out shapes")
                image = gr.Image(type="pil", label="Image (clear the prompt to use it)" if "text" in pipes else "Image",
                                 elem_id="image-input", visible="image" in pipes, height=192)
                examples = sorted(str(path) for path in (HERE / "examples").glob("*.png"))
                if "image" in pipes and examples:  # one test-split render per family (view 0)
                    gr.Examples(examples=examples, inputs=image, label="Held-out renders (test split)")
                guidance = gr.Slider(0.0, 15.0, value=7.5, step=0.5, label="Guidance scale", elem_id="guidance")
                steps = gr.Slider(1, 100, value=25, step=1, label="DDIM steps", elem_id="steps")
                seed = gr.Number(value=0, precision=0, minimum=0, maximum=2**32 - 1, label="Seed", elem_id="seed")
                depth = gr.Slider(MIN_DEPTH, MAX_DEPTH, value=6, step=1, elem_id="resolution",
                                  label="Resolution (octree depth: a (2^depth + 1)³ grid)")
                button = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column():
                viewer = gr.Model3D(label="Shape", elem_id="shape", height=360)
                download = gr.File(label="GLB", elem_id="download")
                summary = gr.Markdown(elem_id="summary")
        button.click(generate, inputs=[prompt, image, guidance, steps, seed, depth],
                     outputs=[viewer, download, summary], api_name="generate")
    return demo.queue(default_concurrency_limit=concurrency, max_size=queue_size)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", default=None,
                        help=f"pipeline folder(s) (default: ${ENV_VAR} or the built-in lists)")
    parser.add_argument("--port", type=int, default=None)
    arguments = parser.parse_args()
    build_demo(arguments.model).launch(server_port=arguments.port)
