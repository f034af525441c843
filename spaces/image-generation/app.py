"""Gradio Space: class-conditional image generation with a white-box flow-matching pipeline.

Pick a class, a classifier-free guidance scale, a number of Euler steps and a seed; `WhiteboxFlowPipeline`
(a diffusers `DiffusionPipeline` whose denoiser is a CRATE or a DiT) integrates the learned velocity field from
noise to images. Guidance ``g`` mixes the class-conditional and the unconditional velocity,
``v = v_uncond + g·(v_cond − v_uncond)``: 0 ignores the class, 1 is plain conditional sampling, larger values
push the samples towards the class.

The pipeline is read from a local folder written by ``pipe.save_pretrained`` (``model_index.json`` plus one
subfolder per component), never from the network: ``build_demo(model_path)``, else ``$WHITEBOX_FLOW_PATH``,
else ``./model`` beside this file, else the repository's ``runs/flow_pixel_crate/pipeline``, ``runs/flow/pipeline``
or ``runs/flow_demo/pipeline`` (written by ``training/train_latent_flow.py``).

    python spaces/image-generation/app.py [--model PATH] [--port 7860]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import gradio as gr
import torch

import whitebox_hf  # noqa: F401  (imports the pipeline components' modules, which diffusers needs on load)
from whitebox_hf.hub import BUNDLED_DIR, find_model_folder  # noqa: E402  (checkpoints shipped with the package)
from whitebox_hf.hub.spaces import CONCURRENCY_ENV, QUEUE_SIZE_ENV, queue_setting, whole_number, output_file  # noqa: E402
from whitebox_hf.pipelines import WhiteboxFlowPipeline

HERE = Path(__file__).resolve().parent
RUNS = HERE.parents[1] / "runs"
ENV_VAR = "WHITEBOX_FLOW_PATH"
CANDIDATES = (HERE / "model", BUNDLED_DIR / "fashion-mnist-flow-vae-dit", RUNS / "gen-vae-dit" / "pipeline",
              RUNS / "flow_pixel_crate" / "pipeline", RUNS / "flow" / "pipeline",
              RUNS / "flow_demo" / "pipeline")
DISPLAY_SIZE = 128

# A request waits in Gradio's queue while others run; past QUEUE_SIZE waiting ones a new one is refused with
# Gradio's "Queue is full" answer (HTTP 503) instead of piling up. Both can be set per deployment.
QUEUE_SIZE = 16
CONCURRENCY = 1  # one request at a time: the pipeline's scheduler keeps the timesteps of the call in progress


def resolve_model_path(model_path: str | os.PathLike | None = None) -> Path:
    """The first of: ``model_path``, ``${ENV_VAR}``, the default folders; it must hold model_index.json."""
    return find_model_folder(model_path, ENV_VAR, CANDIDATES, marker="model_index.json",
                             hint="train one offline with `python training/train_latent_flow.py --config training/configs/flow_demo.yaml` (writes runs/flow_demo/pipeline).")


def build_demo(model_path: str | os.PathLike | None = None, *, max_size: int | None = None,
               concurrency_limit: int | None = None) -> gr.Blocks:
    """The Gradio `Blocks` of this Space, with the pipeline loaded from a local folder.

    At most ``max_size`` requests (else ``$WHITEBOX_SPACE_QUEUE_SIZE``, else 16) wait while
    ``concurrency_limit`` (else ``$WHITEBOX_SPACE_CONCURRENCY``, else `CONCURRENCY`) run; a request beyond them
    gets Gradio's "Queue is full" answer."""
    queue_size = queue_setting(max_size, "max_size", QUEUE_SIZE_ENV, QUEUE_SIZE)
    concurrency = queue_setting(concurrency_limit, "concurrency_limit", CONCURRENCY_ENV, CONCURRENCY)
    folder = resolve_model_path(model_path)
    pipe = WhiteboxFlowPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    output_dir = Path(tempfile.mkdtemp(prefix="flow_space_"))
    num_classes = int(pipe.config.num_classes)
    names = {int(k): str(v) for k, v in (pipe.config.id2label or {}).items()}
    choices = [(names.get(i, f"class {i}"), i) for i in range(num_classes)]
    transformer = type(pipe.transformer).__name__
    channels, height, width = pipe.latent_shape
    space = "pixel space" if pipe.autoencoder is None else f"the latent space of a {type(pipe.autoencoder).__name__}"

    def generate(class_id, guidance_scale: float, steps: float, seed: float, num_images: float):
        if class_id is None:
            raise gr.Error("Pick a class first.")
        steps, num_images, seed = whole_number(steps, "Steps"), whole_number(num_images, "Images"), whole_number(seed, "Seed")
        generator = torch.Generator().manual_seed(seed)
        images = pipe([int(class_id)] * num_images, num_inference_steps=steps,
                      guidance_scale=float(guidance_scale), generator=generator, output_type="pil").images
        label = names.get(int(class_id), f"class {class_id}")
        paths = [output_file(output_dir) for _ in images]
        for image, path in zip(images, paths):
            image.resize((DISPLAY_SIZE, DISPLAY_SIZE)).save(path)
        return [(path, label) for path in paths]

    with gr.Blocks(title="White-box class-conditional generation") as demo:
        gr.Markdown(
            "# Class-conditional image generation with a white-box flow model\n"
            f"`WhiteboxFlowPipeline` with a `{transformer}` denoiser in {space} ({channels}×{height}×{width}), "
            f"{num_classes} classes. Guidance 0 ignores the class, 1 is plain conditional sampling."
        )
        with gr.Row():
            with gr.Column():
                class_id = gr.Dropdown(choices=choices, value=0, label="Class", elem_id="class")
                guidance = gr.Slider(0.0, 10.0, value=3.0, step=0.5, label="Guidance scale", elem_id="guidance")
                steps = gr.Slider(1, 100, value=20, step=1, label="Steps", elem_id="steps")
                seed = gr.Number(value=0, precision=0, minimum=0, maximum=2**32 - 1, label="Seed", elem_id="seed")
                num_images = gr.Slider(1, 8, value=4, step=1, label="Images", elem_id="num-images")
                button = gr.Button("Generate", variant="primary", elem_id="generate")
            gallery = gr.Gallery(label="Samples", columns=4, height=360, elem_id="gallery")
        button.click(generate, inputs=[class_id, guidance, steps, seed, num_images], outputs=gallery,
                     api_name="generate")
    return demo.queue(default_concurrency_limit=concurrency, max_size=queue_size)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help=f"pipeline folder (default: ${ENV_VAR} or the built-in list)")
    parser.add_argument("--port", type=int, default=None)
    arguments = parser.parse_args()
    build_demo(arguments.model).launch(server_port=arguments.port)
