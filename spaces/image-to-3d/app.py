"""Gradio Space: pose-grounded image-to-3D with Cupid (book §8.9).

Upload an image (or pick a held-out render), set the Euler steps, the classifier-free guidance scale, the seed and the
occupancy threshold; `whitebox_hf.pipelines.CupidPipeline` generates the occupancy + UV cube of the object (every
occupied voxel carries the pixel it projects to), recovers the camera ``(K, R, t)`` from those 2D-3D
correspondences by PnP and extracts the mesh in the object's canonical frame. The page shows the input with the
generated object re-projected at the recovered camera (the silhouette, or the coloured voxels when the pipeline has
Cupid's stage-2 appearance model), the camera, and the mesh in 3D with a GLB download. A held-out render's camera
is known (``examples/cameras.json``): picking one also reports the rotation, focal and translation errors.

The pipeline is read from a local folder written by ``CupidPipeline.save_pretrained``, never from the network:
``build_demo(model_path)``, else ``$WHITEBOX_CUPID_PATH``, else the first of ``./model`` beside this file, the
package's bundled ``procedural-shapes-cupid`` and the repository's ``runs/cupid/flow/pipeline``. A stage-2
appearance model (``CupidAppearanceModel``, ``config.json``) is added when the pipeline has none:
``build_demo(appearance_path=...)``, else ``$WHITEBOX_CUPID_APPEARANCE_PATH``, else ``runs/cupid/appearance/model``
if it exists.

    python spaces/image-to-3d/app.py [--model PATH] [--appearance PATH] [--port 7860]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
import warnings
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from PIL import Image
from scipy.spatial.transform import Rotation

import whitebox_hf  # noqa: F401  (imports the pipeline components' modules, which diffusers needs on load)
from whitebox_hf import CupidAppearanceModel
from whitebox_hf.evaluation.cupid import pose_errors
from whitebox_hf.geometry import intrinsics_uv_to_pixels
from whitebox_hf.hub import BUNDLED_DIR, find_model_folder
from whitebox_hf.hub.spaces import (
    CONCURRENCY_ENV,
    QUEUE_SIZE_ENV,
    output_file,
    queue_setting,
    whole_number,
)
from whitebox_hf.pipelines import CupidPipeline

HERE = Path(__file__).resolve().parent
RUNS = HERE.parents[1] / "runs" / "cupid"
ENV_VAR = "WHITEBOX_CUPID_PATH"
APPEARANCE_ENV_VAR = "WHITEBOX_CUPID_APPEARANCE_PATH"
BUNDLE = "procedural-shapes-cupid"
CANDIDATES = (HERE / "model", BUNDLED_DIR / BUNDLE, RUNS / "flow" / "pipeline")
APPEARANCE_CANDIDATES = (RUNS / "appearance" / "model",)
MARKER = "model_index.json"
HINT = ("train one offline with `python training/train_cupid_flow.py --config training/configs/cupid_flow.yaml` "
        "(writes runs/cupid/flow/pipeline; about an hour on a CPU).")
EXAMPLES = HERE / "examples"
MAX_STEPS = 100
EULER_ORDER = "xyz"  # extrinsic x, then y, then z (scipy's lower-case convention)

# A request waits in Gradio's queue while others run; past QUEUE_SIZE waiting ones a new one is refused with
# Gradio's "Queue is full" answer (HTTP 503) instead of piling up. Both can be set per deployment.
QUEUE_SIZE = 16
CONCURRENCY = 1  # one request at a time: the pipeline's scheduler keeps the timesteps of the call in progress


def resolve_model_path(model_path=None) -> Path:
    """The pipeline folder to serve: ``model_path``, else ``$WHITEBOX_CUPID_PATH``, else the first of `CANDIDATES`
    holding model_index.json; `FileNotFoundError` saying where it looked and how to train one otherwise."""
    if model_path is not None and not isinstance(model_path, (str, os.PathLike)):
        raise TypeError(f"`model_path` must be a folder (str or os.PathLike), got {type(model_path).__name__}")
    return find_model_folder(model_path, ENV_VAR, CANDIDATES, marker=MARKER, hint=HINT)


def resolve_appearance_path(appearance_path=None) -> Path | None:
    """The stage-2 model folder to add: ``appearance_path`` (must hold config.json), else
    ``$WHITEBOX_CUPID_APPEARANCE_PATH`` (same), else the first of `APPEARANCE_CANDIDATES` that exists, else None."""
    if appearance_path is not None and not isinstance(appearance_path, (str, os.PathLike)):
        raise TypeError(f"`appearance_path` must be a folder (str or os.PathLike), got "
                        f"{type(appearance_path).__name__}")
    if appearance_path is not None or os.environ.get(APPEARANCE_ENV_VAR):
        return find_model_folder(appearance_path, APPEARANCE_ENV_VAR, (), marker="config.json",
                                 hint="train one with `python training/train_cupid_flow.py --config "
                                      "training/configs/cupid_appearance.yaml`.")
    return next((path for path in APPEARANCE_CANDIDATES if (path / "config.json").is_file()), None)


def load_pipeline(folder, appearance_folder=None, *, require_appearance: bool = True) -> CupidPipeline:
    """The pipeline in float32 whatever dtype its weights are stored in (a bundle stores float16 to fit the package's
    size cap; the up-cast is exact), with the stage-2 model of ``appearance_folder`` added when it has none (the
    pipeline checks that both share the cube, the image size and the canonical cube). A stage-2 model found only by
    the default lookup (``require_appearance=False``) that does not match the pipeline is left out with a warning
    instead of an error: the user asked for neither."""
    pipe = CupidPipeline.from_pretrained(folder, torch_dtype=torch.float32)
    if appearance_folder is not None and pipe.appearance_model is None:
        appearance = CupidAppearanceModel.from_pretrained(appearance_folder, dtype=torch.float32).eval()
        try:
            pipe = CupidPipeline(**{**pipe.components, "appearance_model": appearance},
                                 image_mean=pipe.config.image_mean, image_std=pipe.config.image_std,
                                 extent=pipe.config.extent, background=pipe.config.background)
        except ValueError as error:
            if require_appearance:
                raise
            warnings.warn(f"stage-2 model {appearance_folder} left out: {error}", stacklevel=2)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_held_out_cameras(folder: Path = EXAMPLES) -> dict[bytes, dict]:
    """The true cameras of the example renders (``cameras.json``, written by ``make_examples.py``), keyed by the
    example's RGB pixels, so that a picked example is recognised whatever path Gradio hands it through."""
    path = folder / "cameras.json"
    if not path.is_file():
        return {}
    cameras = {}
    for family, camera in json.loads(path.read_text()).items():
        image = folder / f"{family}.png"
        if image.is_file():
            pixels = np.asarray(Image.open(image).convert("RGB")).tobytes()
            cameras[pixels] = {"family": family, **{key: torch.tensor(camera[key], dtype=torch.float64)
                                                    for key in ("intrinsics", "rotation", "translation")}}
    return cameras


def prepare_image(image, size: int) -> tuple[Image.Image, Image.Image | None, str]:
    """``(RGB image, mask or None, note)`` at the pipeline's size. An image with an alpha channel gives the mask
    (the pipeline puts its white background outside it); other modes are converted to RGB. The pipeline itself never
    resizes (it raises on a wrong size or mode); the Space does it, visibly, so that any upload can be tried."""
    if not isinstance(image, Image.Image):
        raise gr.Error(f"The image must be a picture, got {type(image).__name__}.")
    if image.width < 1 or image.height < 1:
        raise gr.Error(f"The image is empty ({image.width}×{image.height} pixels).")
    changes, mask = [], None
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        alpha = rgba.getchannel("A")
        low, high = alpha.getextrema()
        if high == 0:
            raise gr.Error("The image is fully transparent (its alpha channel is 0 everywhere): there is no object "
                           "to reconstruct.")
        if low < 255:
            mask = alpha
            changes.append(f"masked by its alpha channel ({image.mode})")
        else:
            changes.append(f"converted from {image.mode} to RGB (its alpha channel is opaque everywhere)")
        image = rgba.convert("RGB")
    elif image.mode != "RGB":
        changes.append(f"converted from {image.mode} to RGB")
        image = image.convert("RGB")
    if image.size != (size, size):
        changes.append(f"resized from {image.width}×{image.height} to {size}×{size}")
        image = image.resize((size, size), Image.Resampling.BICUBIC)
        if mask is not None:
            mask = mask.resize((size, size), Image.Resampling.BILINEAR)
    if mask is not None and mask.getextrema()[1] == 0:
        raise gr.Error("The image's mask is empty once resized: there is no object to reconstruct.")
    return image, mask, ("the image was " + " and ".join(changes)) if changes else "the image was used as is"


def describe_camera(intrinsics: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor,
                    reprojection_error: float, size: int, truth: dict | None = None) -> str:
    """The recovered camera as text: K in pixels of the ``size``² input (and its focal length in uv units), R as a
    matrix and as Euler angles, t, PnP's RMS reprojection error, and, for a held-out render, the errors against its
    true camera (`pose_errors`)."""
    k_pixels = intrinsics_uv_to_pixels(intrinsics, (size, size))
    angles = Rotation.from_matrix(rotation.numpy()).as_euler(EULER_ORDER, degrees=True)

    def rows(matrix):
        return "\n".join("  [" + ", ".join(f"{value:9.4f}" for value in row) + "]" for row in matrix.tolist())

    lines = [f"K (pixels of the {size}×{size} input; x right, y down):", rows(k_pixels),
             (f"  focal {k_pixels[0, 0]:.2f} × {k_pixels[1, 1]:.2f} px, principal point "
              f"({k_pixels[0, 2]:.2f}, {k_pixels[1, 2]:.2f}) px"),
             "R (world-to-camera, OpenCV axes: x right, y down, z forward):", rows(rotation),
             f"  Euler angles ({EULER_ORDER}, extrinsic, degrees): "
             + ", ".join(f"{axis} {value:.1f}°" for axis, value in zip(EULER_ORDER, angles)),
             "t (world-to-camera, x_cam = R·x + t; canonical units): "
             + "[" + ", ".join(f"{value:.4f}" for value in translation.tolist()) + "]",
             f"camera centre −Rᵀt: [{', '.join(f'{v:.4f}' for v in (-rotation.T @ translation).tolist())}]",
             f"reprojection error (RMS): {reprojection_error:.4f} uv = {reprojection_error * size:.2f} px"]
    if truth is not None:
        errors = pose_errors(intrinsics[None], rotation[None], translation[None], truth["intrinsics"][None],
                             truth["rotation"][None], truth["translation"][None])
        lines.append(f"against the true camera of the held-out {truth['family']} render: rotation error "
                     f"{errors['rotation_error_deg'].item():.1f}°, focal error "
                     f"{100 * errors['focal_error'].item():.1f} %, translation error "
                     f"{errors['translation_error'].item():.3f}")
    return "\n".join(lines)


def make_reconstruct(pipe: CupidPipeline, output_dir: Path, held_out: dict | None = None):
    """The Space's request handler: ``(image, steps, guidance_scale, seed, occupancy_threshold) -> (overlay, camera
    text, GLB path for the viewer, GLB path for download, status)``; bad input raises `gr.Error` with a message for
    the page."""
    held_out = {} if held_out is None else held_out
    size = pipe.image_size

    def reconstruct(image, steps, guidance_scale, seed, occupancy_threshold):
        if image is None:
            raise gr.Error("Upload an image or pick a held-out render first.")
        steps, seed = whole_number(steps, "Steps"), whole_number(seed, "Seed")
        if not 1 <= steps <= MAX_STEPS:
            raise gr.Error(f"Steps must be in [1, {MAX_STEPS}], got {steps}.")
        if seed < 0:
            raise gr.Error(f"Seed must be ≥ 0, got {seed}.")
        if guidance_scale is None or not math.isfinite(float(guidance_scale)) or float(guidance_scale) < 0:
            raise gr.Error(f"Guidance scale must be a number ≥ 0, got {guidance_scale!r}.")
        if occupancy_threshold is None or not 0 < float(occupancy_threshold) < 1:
            raise gr.Error(f"Occupancy threshold must lie strictly between 0 and 1, got {occupancy_threshold!r}.")
        picture, mask, note = prepare_image(image, size)
        truth = held_out.get(np.asarray(picture).tobytes()) if mask is None else None
        start = time.perf_counter()
        try:
            out = pipe(picture, mask=mask, num_inference_steps=steps, guidance_scale=float(guidance_scale),
                       generator=torch.Generator().manual_seed(seed),
                       occupancy_threshold=float(occupancy_threshold))
        except ValueError as error:  # the pipeline's own checks (e.g. too few occupied voxels for PnP)
            raise gr.Error(f"No reconstruction: {str(error).rstrip('.')}.") from error
        sampled = time.perf_counter() - start
        (mesh,) = out.shapes
        if mesh is None:
            raise gr.Error("The generated cube has no surface at this threshold; try another seed or a lower "
                           "occupancy threshold.")
        start = time.perf_counter()
        path = output_file(output_dir, suffix=".glb")
        mesh.export(path, file_type="glb")
        exported = time.perf_counter() - start
        camera = describe_camera(out.intrinsics[0], out.rotations[0], out.translations[0],
                                 float(out.reprojection_errors[0]), size, truth)
        coloured = out.renderings is not None
        # returned as a file, never a PIL image (see `output_file`: two requests with the same answer would race)
        overlay = output_file(output_dir, suffix=".png")
        (out.renderings[0] if coloured else out.overlays[0]).save(overlay)
        threshold = out.thresholds[0]
        lowered = (f" (lowered from {float(occupancy_threshold):g}: too few voxels passed it for PnP)"
                   if threshold < float(occupancy_threshold) else "")
        occupied = int((out.silhouettes[0]).sum())
        source = f"the held-out {truth['family']} render" if truth is not None else "an upload"
        status = (f"**{source}** ({note}); {steps} Euler steps, guidance {float(guidance_scale):g}, seed {seed}, "
                  f"occupancy threshold {threshold:g}{lowered}: {len(mesh.vertices):,} vertices, "
                  f"{len(mesh.faces):,} faces{', vertex-coloured by stage 2' if coloured else ''}; silhouette "
                  f"{occupied} px. Sampling, PnP and overlay {sampled:.1f} s, GLB {exported:.2f} s.")
        return overlay, camera, path, path, status

    return reconstruct


def build_demo(model_path=None, *, appearance_path=None, max_size: int | None = None,
               concurrency_limit: int | None = None) -> gr.Blocks:
    """The Gradio `Blocks` of this Space, with the pipeline loaded from a local folder (`resolve_model_path`,
    `resolve_appearance_path`).

    At most ``max_size`` requests (else ``$WHITEBOX_SPACE_QUEUE_SIZE``, else 16) wait while
    ``concurrency_limit`` (else ``$WHITEBOX_SPACE_CONCURRENCY``, else `CONCURRENCY`) run; a request beyond them
    gets Gradio's "Queue is full" answer."""
    queue_size = queue_setting(max_size, "max_size", QUEUE_SIZE_ENV, QUEUE_SIZE)
    concurrency = queue_setting(concurrency_limit, "concurrency_limit", CONCURRENCY_ENV, CONCURRENCY)
    pipe = load_pipeline(resolve_model_path(model_path), resolve_appearance_path(appearance_path),
                         require_appearance=appearance_path is not None or bool(os.environ.get(APPEARANCE_ENV_VAR)))
    held_out = load_held_out_cameras()
    output_dir = Path(tempfile.mkdtemp(prefix="cupid_space_"))
    reconstruct = make_reconstruct(pipe, output_dir, held_out)
    config = pipe.flow_model.config
    parameters = sum(p.numel() for p in pipe.flow_model.parameters())
    stage2 = ("with the stage-2 appearance flow (pose-aligned colours)" if pipe.appearance_model is not None
              else "stage 1 only (an uncoloured mesh; no appearance model found)")
    with gr.Blocks(title="White-box image-to-3D (Cupid)") as demo:
        gr.Markdown(
            "# Pose-grounded image-to-3D (Cupid)\n"
            "Give an image; `CupidPipeline` generates, for every occupied voxel of a "
            f"{config.cube_resolution}³ cube, the pixel it projects to, solves for the camera by PnP and extracts the "
            "mesh in the object's canonical frame. The overlay re-projects the generated object at the recovered "
            f"camera. Model: `CupidFlowModel` ({parameters:,} parameters with its CRATE image encoder; "
            f"{config.num_hidden_layers} transformer block(s) of width {config.hidden_size}), {stage2}. Trained on procedural shapes of 8 families rendered grey on "
            f"white at {pipe.image_size}×{pipe.image_size}: other images give arbitrary shapes."
        )
        with gr.Row():
            with gr.Column():
                image = gr.Image(type="pil", image_mode=None, label="Image (RGBA: the alpha channel is the mask)",
                                 elem_id="image-input", height=192)
                examples = sorted(str(path) for path in EXAMPLES.glob("*.png"))
                if examples:  # one test-split render per family (view 0), never seen in training
                    gr.Examples(examples=examples, inputs=image, label="Held-out renders (test split)")
                steps = gr.Slider(1, MAX_STEPS, value=25, step=1, label="Euler steps", elem_id="steps")
                guidance = gr.Slider(0.0, 10.0, value=float(config.guidance_scale), step=0.5,
                                     label="Guidance scale (on the guidance interval)", elem_id="guidance")
                seed = gr.Number(value=0, precision=0, minimum=0, maximum=2**32 - 1, label="Seed", elem_id="seed")
                threshold = gr.Slider(0.05, 0.95, value=0.5, step=0.05, elem_id="threshold",
                                      label="Occupancy threshold (lowered automatically when too few voxels pass)")
                button = gr.Button("Reconstruct", variant="primary", elem_id="reconstruct")
            with gr.Column():
                overlay = gr.Image(label="Input with the generated object at the recovered camera",
                                   elem_id="overlay", type="filepath", height=256, interactive=False)
                camera = gr.Textbox(label="Recovered camera", elem_id="camera", lines=12, interactive=False)
            with gr.Column():
                viewer = gr.Model3D(label="Mesh (canonical frame)", elem_id="mesh", height=320)
                download = gr.File(label="GLB", elem_id="download")
                status = gr.Markdown(elem_id="status")
        button.click(reconstruct, inputs=[image, steps, guidance, seed, threshold],
                     outputs=[overlay, camera, viewer, download, status], api_name="reconstruct")
    return demo.queue(default_concurrency_limit=concurrency, max_size=queue_size)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help=f"pipeline folder (default: ${ENV_VAR} or the built-in list)")
    parser.add_argument("--appearance", default=None,
                        help=f"stage-2 model folder (default: ${APPEARANCE_ENV_VAR} or runs/cupid/appearance/model)")
    parser.add_argument("--port", type=int, default=None)
    arguments = parser.parse_args()
    build_demo(arguments.model, appearance_path=arguments.appearance).launch(server_port=arguments.port)
