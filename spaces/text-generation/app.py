"""Gradio Space: continue a prompt with a white-box causal language model (CRATE-α, ToST, CausalCRATE, AoT).

The model and its tokenizer are read from one local folder (``config.json``, ``model.safetensors``,
``tokenizer.json``), never from the network: ``build_demo(model_path)``, else ``$WHITEBOX_LM_PATH``, else
``./model`` beside this file, else the repository's ``runs/lm-causal-crate-alpha/model`` or ``runs/lm-tost/model``
(small models trained on the Python documentation).

    python spaces/text-generation/app.py [--model PATH] [--port 7860]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import gradio as gr
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import whitebox_hf  # noqa: F401  (registers the causal LMs with the Auto classes)
from whitebox_hf.hub import BUNDLED_DIR, find_model_folder  # noqa: E402  (checkpoints shipped with the package)
from whitebox_hf.hub.spaces import CONCURRENCY_ENV, QUEUE_SIZE_ENV, queue_setting, whole_number  # noqa: E402

HERE = Path(__file__).resolve().parent
ENV_VAR = "WHITEBOX_LM_PATH"
CANDIDATES = (HERE / "model", BUNDLED_DIR / "python-docs-crate-alpha", HERE.parents[1] / "runs" / "lm-causal-crate-alpha" / "model",
              HERE.parents[1] / "runs" / "lm-tost" / "model")
DEFAULT_PROMPT = "The :mod:`os` module"

# A request waits in Gradio's queue while others run; past QUEUE_SIZE waiting ones a new one is refused with
# Gradio's "Queue is full" answer (HTTP 503) instead of piling up. Both can be set per deployment.
QUEUE_SIZE = 16
CONCURRENCY = 1  # one request at a time: sampling seeds torch's global generator, which concurrent requests would share


def resolve_model_path(model_path: str | os.PathLike | None = None) -> Path:
    """The first of: ``model_path``, ``${ENV_VAR}``, the default folders; it must hold config.json."""
    return find_model_folder(model_path, ENV_VAR, CANDIDATES, marker="config.json",
                             hint="point it at a folder holding a whitebox_hf causal LM and its tokenizer (e.g. written by training/train_causal_lm.py).")


def build_demo(model_path: str | os.PathLike | None = None, *, max_size: int | None = None,
               concurrency_limit: int | None = None) -> gr.Blocks:
    """The Gradio `Blocks` of this Space, with the model and tokenizer loaded from a local folder.

    At most ``max_size`` requests (else ``$WHITEBOX_SPACE_QUEUE_SIZE``, else 16) wait while
    ``concurrency_limit`` (else ``$WHITEBOX_SPACE_CONCURRENCY``, else `CONCURRENCY`) run; a request beyond them
    gets Gradio's "Queue is full" answer."""
    queue_size = queue_setting(max_size, "max_size", QUEUE_SIZE_ENV, QUEUE_SIZE)
    concurrency = queue_setting(concurrency_limit, "concurrency_limit", CONCURRENCY_ENV, CONCURRENCY)
    folder = resolve_model_path(model_path)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    context = int(getattr(model.config, "max_position_embeddings", 256))
    parameters = sum(p.numel() for p in model.parameters())

    def generate(prompt: str, max_new_tokens: float, temperature: float, seed: float) -> str:
        if not prompt:
            raise gr.Error("Type a prompt first.")
        max_new_tokens, seed = whole_number(max_new_tokens, "Max new tokens"), whole_number(seed, "Seed")
        input_ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        if input_ids.shape[1] == 0:
            raise gr.Error("The prompt has no tokens.")
        input_ids = input_ids[:, -(context - 1):]
        max_new_tokens = min(max_new_tokens, context - input_ids.shape[1])  # the prompt keeps >= 1 free position
        options = {"do_sample": False}  # temperature 0: greedy
        if float(temperature) > 0:
            options = {"do_sample": True, "temperature": float(temperature), "top_k": 50}
        torch.manual_seed(seed)
        with torch.no_grad():
            output = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=max_new_tokens,
                                    pad_token_id=tokenizer.pad_token_id, **options)
        # Decode prompt and whole sequence the same way, keep what the new tokens add, and show it after the prompt
        # exactly as typed (decoding the prompt ids need not give back the typed text).
        prompt_text = tokenizer.decode(input_ids[0], skip_special_tokens=True)
        full_text = tokenizer.decode(output[0], skip_special_tokens=True)
        continuation = full_text[len(prompt_text):] if full_text.startswith(prompt_text) else \
            tokenizer.decode(output[0, input_ids.shape[1]:], skip_special_tokens=True)
        return prompt + continuation

    with gr.Blocks(title="White-box language model") as demo:
        gr.Markdown(
            f"# Text generation with a white-box language model\n`{type(model).__name__}` "
            f"({parameters / 1e6:.1f} M parameters, {model.config.num_hidden_layers} layers, context {context} "
            "tokens). Temperature 0 decodes greedily."
        )
        with gr.Row():
            with gr.Column():
                prompt = gr.Textbox(value=DEFAULT_PROMPT, label="Prompt", lines=3, elem_id="prompt")
                max_new_tokens = gr.Slider(1, min(256, context - 1), value=40, step=1, label="Max new tokens",
                                           elem_id="max-new-tokens")
                temperature = gr.Slider(0.0, 2.0, value=0.8, step=0.05, label="Temperature", elem_id="temperature")
                seed = gr.Number(value=0, precision=0, minimum=0, maximum=2**32 - 1, label="Seed", elem_id="seed")
                button = gr.Button("Generate", variant="primary", elem_id="generate")
            output = gr.Textbox(label="Generated text", lines=12, elem_id="output")
        button.click(generate, inputs=[prompt, max_new_tokens, temperature, seed], outputs=output, api_name="generate")
    return demo.queue(default_concurrency_limit=concurrency, max_size=queue_size)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help=f"model folder (default: ${ENV_VAR} or the built-in list)")
    parser.add_argument("--port", type=int, default=None)
    arguments = parser.parse_args()
    build_demo(arguments.model).launch(server_port=arguments.port)
