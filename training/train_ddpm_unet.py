#!/usr/bin/env python
"""The pixel-space baseline: a class-conditional diffusers `UNet2DModel` trained with DDPM (ε-prediction), saved
as a `WhiteboxDDPMPipeline`.

    python training/train_ddpm_unet.py --config training/configs/ddpm_unet.yaml
    python training/train_ddpm_unet.py --config ... --resume_from_checkpoint latest

Objective (Ho et al.; diffusers' train_unconditional.py): t ~ U{0..T−1}, x_t = `DDPMScheduler.add_noise`(x₀, ε, t),
MSE between the predicted and the true noise ε. The U-Net is class-conditional through ``num_class_embeds =
num_classes + 1`` (the last id is the null class); labels are dropped to it with probability
``class_dropout_prob`` for classifier-free guidance (the U-Net never drops labels itself).

Everything else — data, EMA, optimiser, LR schedule, checkpoints, resume, the final pipeline and sample grid —
is the loop `whitebox_hf.training.generative.run_training` shared with ``training/train_latent_flow.py``; the
outputs are the same
(``pipeline/`` loads with ``WhiteboxDDPMPipeline.from_pretrained`` and has a model card ``README.md``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import DDPMScheduler, UNet2DModel
from torch import nn
from torch.nn import functional as F

from whitebox_hf.pipelines import WhiteboxDDPMPipeline
from whitebox_hf.training.config import parse_config_args, run_script
from whitebox_hf.training.generative import GENERATIVE_DEFAULTS, load_training_images, run_training, write_pipeline_card
from whitebox_hf.training.run import start_run

DEFAULTS = {
    # U-Net: one level per entry of `block_out_channels`, halving the resolution between levels
    "block_out_channels": "32,64,64",
    "layers_per_block": 2,
    "attention_levels": "0,0,1",  # 1: self-attention blocks at that level (14×14 attention costs ~2× a step)
    "norm_num_groups": 8,
    # DDPM
    "num_train_timesteps": 1000,
    "beta_schedule": "linear",
    "sample_steps": 100,  # DDPM steps of the final sample grid (a subsequence of the 1000)
    **GENERATIVE_DEFAULTS,
    "learning_rate": 2e-4,
    "output_dir": "runs/ddpm_unet",
}


def _int_list(text: str) -> list[int]:
    return [int(part) for part in str(text).split(",") if part.strip()]


def build_unet(args: dict, sample_shape: tuple[int, int, int], num_classes: int) -> UNet2DModel:
    """A class-conditional `UNet2DModel` (``num_class_embeds = num_classes + 1``) for ``(C, H, W)`` inputs.

    Raises:
        ValueError: ``attention_levels`` and ``block_out_channels`` differ in length, or the input side is not
            divisible by 2^(levels − 1).
    """
    channels, height, width = sample_shape
    widths, attention = _int_list(args["block_out_channels"]), _int_list(args["attention_levels"])
    if len(widths) != len(attention):
        raise ValueError(f"`attention_levels` ({attention}) needs one entry per level of `block_out_channels` "
                         f"({widths})")
    if height % 2 ** (len(widths) - 1) or width % 2 ** (len(widths) - 1):
        raise ValueError(f"inputs of {height}×{width} cannot be halved {len(widths) - 1} times")
    down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention)
    up = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention))
    return UNet2DModel(sample_size=height, in_channels=channels, out_channels=channels,
                       block_out_channels=tuple(widths), layers_per_block=args["layers_per_block"],
                       down_block_types=down, up_block_types=up, norm_num_groups=args["norm_num_groups"],
                       num_class_embeds=num_classes + 1)


def ddpm_loss(model: nn.Module, x0: torch.Tensor, labels: torch.Tensor, scheduler: DDPMScheduler,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """ε-prediction MSE at a uniformly drawn timestep."""
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],), device=x0.device,
                              generator=generator)
    noisy = scheduler.add_noise(x0, noise, timesteps)
    prediction = model(noisy, timesteps, class_labels=labels, return_dict=False)[0]
    return F.mse_loss(prediction.float(), noise.float())


def main(argv=None, data: dict | None = None) -> dict:
    """Run training; ``data`` (tests) replaces the data set (see
    `whitebox_hf.training.generative.load_training_images`)."""
    args = parse_config_args(DEFAULTS, argv, __doc__)
    accelerator, output_dir = start_run(args)

    pixels, labels, class_names = load_training_images(args, accelerator, data)
    num_classes = len(class_names)
    model = build_unet(args, tuple(pixels.shape[1:]), num_classes)
    scheduler = DDPMScheduler(num_train_timesteps=args["num_train_timesteps"], beta_schedule=args["beta_schedule"])

    def save_pipeline(ema_model, folder: Path):
        pipeline = WhiteboxDDPMPipeline(unet=ema_model, scheduler=scheduler, num_classes=num_classes,
                                        id2label=dict(enumerate(class_names)))
        pipeline.save_pretrained(folder)
        return pipeline

    results = run_training(
        args, accelerator, pixels, labels, model,
        compute_loss=lambda m, x0, y, g: ddpm_loss(m, x0, y, scheduler, g),
        save_pipeline=save_pipeline, sample_kwargs={"num_inference_steps": args["sample_steps"]},
        num_classes=num_classes,
    )
    results.update(denoiser="unet", autoencoder="none")
    if accelerator.is_main_process:
        (output_dir / "results.json").write_text(json.dumps(results, indent=2))
        write_pipeline_card(args, results, class_names, "training/train_ddpm_unet.py", argv,
                                   real_dataset=data is None)
    return results


if __name__ == "__main__":
    run_script(main)
