"""Gradio Space: classify an image with a white-box CRATE classifier and look inside it.

For an uploaded image the demo shows
  * the predicted class with its probabilities,
  * the class token's last-layer attention drawn over the image (CRATE's emergent saliency, book §8.4),
  * the sparsity (fraction of exact zeros) and the coding rate of the tokens after every layer — the two
    quantities each CRATE layer is derived to improve (sparse rate reduction, book Ch. 5).

The model is read from a local folder (``config.json``, ``model.safetensors``, ``preprocessor_config.json``),
never from the network: ``build_demo(model_path)``, else ``$WHITEBOX_CLASSIFIER_PATH``, else ``./model`` beside
this file, else the repository's ``runs/fashion_mnist_crate/model``.

    python spaces/crate-image-classification/app.py [--model PATH] [--port 7860]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForImageClassification

import whitebox_hf  # noqa: F401  (registers CRATE with the Auto classes)
from whitebox_hf.hub import BUNDLED_DIR, find_model_folder  # noqa: E402  (checkpoints shipped with the package)
from whitebox_hf.hub.spaces import CONCURRENCY_ENV, QUEUE_SIZE_ENV, queue_setting, output_file  # noqa: E402
from whitebox_hf.evaluation import attention_saliency, diagnostics_table, layerwise_diagnostics, plot_diagnostics

HERE = Path(__file__).resolve().parent
ENV_VAR = "WHITEBOX_CLASSIFIER_PATH"
CANDIDATES = (HERE / "model", BUNDLED_DIR / "fashion-mnist-crate", HERE.parents[1] / "runs" / "fashion_mnist_crate" / "model")
DISPLAY_SIZE = 224

# A request waits in Gradio's queue while others run; past QUEUE_SIZE waiting ones a new one is refused with
# Gradio's "Queue is full" answer (HTTP 503) instead of piling up. Both can be set per deployment.
QUEUE_SIZE = 16
CONCURRENCY = 2  # the model is only read (always in eval mode), so two requests may share it: one per core of a free CPU Space


def resolve_model_path(model_path: str | os.PathLike | None = None) -> Path:
    """The first of: ``model_path``, ``${ENV_VAR}``, the default folders; it must hold config.json."""
    return find_model_folder(model_path, ENV_VAR, CANDIDATES, marker="config.json",
                             hint="train one offline with `python examples/demo_fashion_mnist.py` (it writes runs/demo/model).")


def overlay(pixel_values: torch.Tensor, saliency: torch.Tensor, alpha: float = 0.5) -> Image.Image:
    """The model's view of the image (grey or RGB, min-max scaled) with the saliency map in the jet colour map."""
    from matplotlib import colormaps

    image = pixel_values.float()
    image = (image - image.min()) / (image.max() - image.min()).clamp_min(1e-8)
    image = image.expand(3, -1, -1).permute(1, 2, 0).numpy()
    heat = colormaps["jet"](saliency.numpy())[..., :3]
    blended = ((1 - alpha) * image + alpha * heat).clip(0, 1)
    picture = Image.fromarray((blended * 255).round().astype(np.uint8))
    return picture.resize((DISPLAY_SIZE, DISPLAY_SIZE), Image.NEAREST)


def build_demo(model_path: str | os.PathLike | None = None, *, max_size: int | None = None,
               concurrency_limit: int | None = None) -> gr.Blocks:
    """The Gradio `Blocks` of this Space, with the model loaded from a local folder.

    At most ``max_size`` requests (else ``$WHITEBOX_SPACE_QUEUE_SIZE``, else 16) wait while
    ``concurrency_limit`` (else ``$WHITEBOX_SPACE_CONCURRENCY``, else `CONCURRENCY`) run; a request beyond them
    gets Gradio's "Queue is full" answer."""
    queue_size = queue_setting(max_size, "max_size", QUEUE_SIZE_ENV, QUEUE_SIZE)
    concurrency = queue_setting(concurrency_limit, "concurrency_limit", CONCURRENCY_ENV, CONCURRENCY)
    folder = resolve_model_path(model_path)
    processor = AutoImageProcessor.from_pretrained(folder)
    model = AutoModelForImageClassification.from_pretrained(folder).eval()
    id2label = {int(k): str(v) for k, v in model.config.id2label.items()}
    plot_dir = Path(tempfile.mkdtemp(prefix="crate_space_"))

    def analyse(image: Image.Image | None):
        if image is None:
            raise gr.Error("Upload an image first.")
        pixel_values = processor(images=image.convert("RGB"), return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            probabilities = model(pixel_values=pixel_values).logits.softmax(-1)[0]
        scores = {id2label.get(i, str(i)): float(p) for i, p in enumerate(probabilities)}
        saliency = attention_saliency(model, pixel_values)[0]
        rows = layerwise_diagnostics(model, pixel_values)
        plot = plot_diagnostics({"uploaded image": rows}, output_file(plot_dir))
        saliency_path = output_file(plot_dir)
        overlay(pixel_values[0], saliency).save(saliency_path)
        return scores, saliency_path, str(plot), diagnostics_table(rows)

    config = model.config
    with gr.Blocks(title="CRATE image classification") as demo:
        gr.Markdown(
            "# CRATE: a white-box transformer classifier\n"
            f"`{type(model).__name__}` ({config.num_hidden_layers} layers, width {config.hidden_size}, "
            f"{config.image_size}×{config.image_size} inputs, {len(id2label)} classes: "
            f"{', '.join(id2label.values())}). "
            "Each layer compresses the tokens (MSSA) and sparsifies them (ISTA); upload an image to see the "
            "prediction, where the class token looks, and how sparse the tokens are after every layer."
        )
        with gr.Row():
            with gr.Column():
                image_input = gr.Image(type="pil", label="Image", image_mode="RGB", height=280, elem_id="image-input")
                button = gr.Button("Classify", variant="primary", elem_id="classify")
                examples = sorted(str(path) for path in (HERE / "examples").glob("*.png"))
                if examples:  # a few Fashion-MNIST test images
                    gr.Examples(examples=examples, inputs=image_input, label="Fashion-MNIST test images")
            prediction = gr.Label(num_top_classes=5, label="Prediction", elem_id="prediction")
        with gr.Row():
            saliency_image = gr.Image(label="Class-token attention (last layer)", type="filepath", height=280,
                                      elem_id="saliency")
            sparsity_plot = gr.Image(label="Sparsity and coding rate per layer", type="filepath", height=280,
                                     elem_id="sparsity-plot")
        table = gr.Markdown(elem_id="diagnostics-table")
        button.click(analyse, inputs=image_input, outputs=[prediction, saliency_image, sparsity_plot, table],
                     api_name="classify")
    return demo.queue(default_concurrency_limit=concurrency, max_size=queue_size)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help=f"model folder (default: ${ENV_VAR} or the built-in list)")
    parser.add_argument("--port", type=int, default=None)
    arguments = parser.parse_args()
    build_demo(arguments.model).launch(server_port=arguments.port)
