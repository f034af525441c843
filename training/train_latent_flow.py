#!/usr/bin/env python
"""Class-conditional rectified-flow training of a DiT or a CRATE denoiser, in pixel space or in the latent space of
a saved autoencoder (diffusers `AutoencoderKL` or this package's RAE), saved as a `WhiteboxFlowPipeline`.

    python training/train_latent_flow.py --config training/configs/flow_pixel_dit.yaml
    python training/train_latent_flow.py --config training/configs/flow_vae_dit.yaml --autoencoder runs/vae/autoencoder
    python training/train_latent_flow.py --config ... --denoiser crate
    python training/train_latent_flow.py --config ... --resume_from_checkpoint latest

Objective (spec ``ssl_and_generation.md`` §4.3, diffusers' `FlowMatchEulerDiscreteScheduler` convention):
u ~ logit-normal (diffusers `compute_density_for_timestep_sampling`), σ = shift·u / (1 + (shift − 1)·u),
x_σ = (1 − σ)·x₀ + σ·noise, the model sees ``timestep = σ·1000`` and regresses the velocity v = noise − x₀ (MSE).
σ is sampled continuously and the mixture is formed directly (the scheduler's ``scale_noise`` only accepts
on-grid timesteps).

Classifier-free guidance: each label is replaced by the null id ``num_classes`` with probability
``class_dropout_prob`` (0.1) — here and only here. diffusers' `LabelEmbedding` would also drop labels by itself
in training mode, independently in each DiT block; `build_dit_transformer` switches that off
(`disable_builtin_label_dropout`) and the CRATE denoiser has no built-in dropout.

diffusers training conventions: `EMAModel` (warm-up ``inv_gamma``/``power``), `diffusers.optimization.get_scheduler`,
checkpoints ``output_dir/checkpoints/checkpoint_<i>`` (model, optimiser, LR schedule, EMA, RNG, step
counter; at most ``checkpoints_total_limit``) and ``--resume_from_checkpoint latest``.

With an autoencoder, the latents of the whole training set are computed once (posterior mode, normalised as the
pipeline does it, `whitebox_hf.pipelines.encode_to_latents`) and training never touches pixels again; the
autoencoder type comes from ``_class_name`` in its ``config.json`` (`whitebox_hf.pipelines.load_autoencoder`).
No data augmentation (latents are precomputed).

Outputs in ``output_dir``: ``log.jsonl``, ``loss_curve.png``, ``checkpoints/``, ``results.json``, ``pipeline/``
(the EMA weights as a full `WhiteboxFlowPipeline`: ``WhiteboxFlowPipeline.from_pretrained(output_dir/"pipeline")``,
with a model card ``README.md`` of the training facts, `write_pipeline_card`) and ``samples.png`` (a class ×
sample grid drawn with the saved pipeline).

The generic loop (`whitebox_hf.training.generative.run_training`) is shared with ``training/train_ddpm_unet.py``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from torch import nn

import whitebox_hf  # noqa: F401  (imports the component modules diffusers needs to reload the pipeline)
from whitebox_hf.models.denoisers import CrateDenoiserTransformer, build_dit_transformer
from whitebox_hf.pipelines import WhiteboxFlowPipeline, encode_to_latents, load_autoencoder
from whitebox_hf.training.config import parse_config_args, run_script
from whitebox_hf.training.generative import (
    GENERATIVE_DEFAULTS,
    flow_matching_loss,
    load_training_images,
    run_training,
    write_pipeline_card,
)
from whitebox_hf.training.run import start_run

DENOISERS = ("dit", "crate")

DEFAULTS = {
    "denoiser": "dit",  # dit | crate
    "autoencoder": "none",  # none (pixel space) | path to a saved AutoencoderKL or RAE folder
    # denoiser shape (same for both: a comparison varies only the block)
    "hidden_size": 192,
    "num_layers": 6,
    "num_attention_heads": 3,
    "patch_size": 0,  # 0: 4 in pixel space, 2 on an even latent grid, 1 on an odd one
    "ista_step_size": 0.1,  # crate only
    "ista_lambda": 0.1,  # crate only
    # rectified flow
    "weighting_scheme": "logit_normal",  # logit_normal | mode | uniform (diffusers names)
    "logit_mean": 0.0,
    "logit_std": 1.0,
    "mode_scale": 1.29,
    "flow_shift": 1.0,  # static shift of σ, also stored in the pipeline's scheduler
    "sample_steps": 50,
    "encode_batch_size": 500,
    **GENERATIVE_DEFAULTS,
    "output_dir": "runs/flow",
}


def parse_args(argv=None) -> dict:
    args = parse_config_args(DEFAULTS, argv, __doc__)
    if args["denoiser"] not in DENOISERS:
        raise ValueError(f"`denoiser` must be one of {DENOISERS}, got {args['denoiser']!r}")
    return args


def build_denoiser(args: dict, sample_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """A fresh DiT (`build_dit_transformer`) or `CrateDenoiserTransformer` for inputs of ``(C, H, W)``."""
    channels, height, width = sample_shape
    if height != width:
        raise ValueError(f"the denoisers need square inputs, got {height}×{width}")
    # Default patch: 4 on 28×28 pixels (49 tokens); 2 on an even latent grid, 1 on an odd one (the RAE's 7×7).
    patch_size = args["patch_size"] or (4 if args["autoencoder"] == "none" else (2 if height % 2 == 0 else 1))
    shape = dict(hidden_size=args["hidden_size"], num_layers=args["num_layers"],
                 num_attention_heads=args["num_attention_heads"], patch_size=patch_size)
    if args["denoiser"] == "dit":
        return build_dit_transformer(height, channels, num_classes, **shape)
    if args["denoiser"] == "crate":
        return CrateDenoiserTransformer(sample_size=height, in_channels=channels, num_classes=num_classes,
                                        ista_step_size=args["ista_step_size"], ista_lambda=args["ista_lambda"],
                                        **shape)
    raise ValueError(f"`denoiser` must be one of {DENOISERS}, got {args['denoiser']!r}")


@torch.no_grad()
def precompute_latents(autoencoder, pixels: torch.Tensor, batch_size: int, device) -> torch.Tensor:
    """Normalised latents of all ``pixels`` (posterior mode), computed once, on the CPU."""
    autoencoder.to(device).eval()
    chunks = [encode_to_latents(autoencoder, pixels[i: i + batch_size].to(device)).float().cpu()
              for i in range(0, len(pixels), batch_size)]
    return torch.cat(chunks)


def main(argv=None, data: dict | None = None) -> dict:
    """Run training; ``data`` (tests) replaces the data set (see `load_training_images`)."""
    args = parse_args(argv)
    accelerator, output_dir = start_run(args)

    pixels, labels, class_names = load_training_images(args, accelerator, data)
    num_classes = len(class_names)
    autoencoder = None
    if args["autoencoder"] != "none":
        autoencoder = load_autoencoder(args["autoencoder"])
        autoencoder.requires_grad_(False)
        start = time.time()
        inputs = precompute_latents(autoencoder, pixels, args["encode_batch_size"], accelerator.device)
        accelerator.print(f"encoded {len(inputs)} images to latents {tuple(inputs.shape[1:])} in "
                          f"{time.time() - start:.1f} s (std {inputs.std():.3f})")
    else:
        inputs = pixels
    model = build_denoiser(args, tuple(inputs.shape[1:]), num_classes)

    def save_pipeline(ema_model, folder: Path):
        pipeline = WhiteboxFlowPipeline(
            transformer=ema_model, scheduler=FlowMatchEulerDiscreteScheduler(shift=args["flow_shift"]),
            autoencoder=autoencoder, num_classes=num_classes, id2label=dict(enumerate(class_names)))
        pipeline.save_pretrained(folder)
        return pipeline

    results = run_training(
        args, accelerator, inputs, labels, model,
        compute_loss=lambda m, x0, y, g: flow_matching_loss(m, x0, y, args, g),
        save_pipeline=save_pipeline, sample_kwargs={"num_inference_steps": args["sample_steps"]},
        num_classes=num_classes,
    )
    results.update(denoiser=args["denoiser"], autoencoder=args["autoencoder"])
    if accelerator.is_main_process:
        (output_dir / "results.json").write_text(json.dumps(results, indent=2))
        write_pipeline_card(args, results, class_names, "training/train_latent_flow.py", argv, autoencoder,
                            real_dataset=data is None)
    return results


if __name__ == "__main__":
    run_script(main)
