"""What the scripts that train on top of the text-to-image base share (``train_controlnet.py``,
``train_personalization.py``; the base is a diffusers `StableDiffusionPipeline` folder): the image–caption data,
the frozen encoders run once (latents, prompt embeddings), the noise-prediction loss, and the personalisation loop
with prior preservation that ``train_dreambooth_lora.py`` shares too."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch.nn import functional as F

from .checkpointing import exit_if_interrupt_requested, save_checkpoint_if_due
from .optim import optimizer_step

__all__ = [
    "CAPTION_DATA_DOC",
    "denoising_loss",
    "encode_images",
    "encode_prompts",
    "image_grid",
    "load_caption_images",
    "load_text_to_image_base",
    "personalization_loop",
    "training_noise_scheduler",
]

CAPTION_DATA_DOC = ('``{"train_images": uint8 (n, 3, H, W), "train_captions": [...], "train_titles": [...], '
                    '"test_images": ..., "test_captions": ..., "test_titles": ...}``')


def load_caption_images(args: dict, data: dict | None) -> dict:
    """Image–caption pairs: Openclipart (`whitebox_hf.data.load_openclipart` from ``args["data_dir"]``, default its
    system folder) or, in tests, ``data`` = `CAPTION_DATA_DOC`. Returns that layout; ``train_subset`` > 0 keeps the
    first n training pairs."""
    if data is None:
        from ..data import load_openclipart

        dataset = load_openclipart(args["data_dir"] or None, image_size=args.get("image_size", 32), progress=False)
        data = {}
        for split in ("train", "test"):
            part = dataset[split]
            data[f"{split}_images"] = torch.from_numpy(
                np.stack([np.asarray(image.convert("RGB")) for image in part["image"]])).permute(0, 3, 1, 2).contiguous()
            data[f"{split}_captions"], data[f"{split}_titles"] = list(part["caption"]), list(part["title"])
    data = dict(data)
    if args.get("train_subset"):
        for key in ("train_images", "train_captions", "train_titles"):
            data[key] = data[key][: args["train_subset"]]
    for split in ("train", "test"):
        images = data[f"{split}_images"]
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"`data['{split}_images']` must be a uint8 (n, 3, H, W) tensor, got "
                             f"{getattr(images, 'dtype', type(images).__name__)} {tuple(getattr(images, 'shape', ()))}")
        if len(data[f"{split}_captions"]) != len(images):
            raise ValueError(f"`data['{split}_captions']` must have one caption per image ({len(images)}), got "
                             f"{len(data[f'{split}_captions'])}")
    return data


def load_text_to_image_base(path: str):
    """The frozen base `StableDiffusionPipeline` (no safety checker), every component in eval mode without
    gradients, its progress bar off.

    Raises:
        OSError: ``path`` is not a saved pipeline folder.
    """
    from pathlib import Path

    from diffusers import StableDiffusionPipeline

    if not (Path(path) / "model_index.json").is_file():
        raise OSError(f"`base` must be a saved StableDiffusionPipeline folder (with model_index.json), got {path!r}")
    pipe = StableDiffusionPipeline.from_pretrained(path, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        module.requires_grad_(False).eval()
    return pipe


def training_noise_scheduler(pipe):
    """A `DDPMScheduler` with the base scheduler's noise schedule and prediction type (diffusers' training
    examples do the same: training needs ``add_noise``, whatever scheduler samples).

    Raises:
        ValueError: the base's scheduler has no DDPM noise schedule (a flow-matching scheduler).
    """
    from diffusers import DDPMScheduler

    config = pipe.scheduler.config
    if "beta_schedule" not in config or "num_train_timesteps" not in config:
        # A flow-matching scheduler has no noise schedule: DDPMScheduler would silently fall back to its defaults.
        raise ValueError(f"the base's scheduler must be a DDPM-family scheduler (with `beta_schedule`), got "
                         f"{type(pipe.scheduler).__name__}")
    return DDPMScheduler.from_config(config)


@torch.no_grad()
def encode_images(pipe, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Scaled VAE latents (posterior mode × ``scaling_factor``) of uint8 ``(n, 3, H, W)`` images, float32 on the
    CPU: computed once, so that training never runs the frozen VAE (and draws no posterior noise)."""
    device = pipe.vae.device
    chunks = []
    for start in range(0, len(images), batch_size):
        pixels = images[start: start + batch_size].to(device, torch.float32) / 127.5 - 1.0
        chunks.append(pipe.vae.encode(pixels).latent_dist.mode().float().cpu() * pipe.vae.config.scaling_factor)
    return torch.cat(chunks)


@torch.no_grad()
def encode_prompts(pipe, prompts: list[str], batch_size: int = 256, announce=print) -> torch.Tensor:
    """The frozen text encoder's token embeddings ``(n, model_max_length, width)`` of ``prompts``, exactly as the
    pipeline computes them at inference (`StableDiffusionPipeline.encode_prompt`), float32 on the CPU.

    Prompts longer than the tokenizer's ``model_max_length`` are truncated, as at inference; ``announce`` (when not
    None) is told once how many were, instead of diffusers' per-batch warning listing every cut token."""
    from diffusers.utils import logging as diffusers_logging

    limit = pipe.tokenizer.model_max_length
    lengths = [len(ids) for ids in pipe.tokenizer(list(prompts), truncation=False, verbose=False)["input_ids"]]
    truncated = sum(length > limit for length in lengths)
    if truncated and announce is not None:
        announce(f"{truncated} of {len(prompts)} prompts exceed the tokenizer's {limit} tokens and are truncated "
                 f"(as the pipeline truncates them at inference)")
    chunks = []
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # the truncation was announced above
    try:
        for start in range(0, len(prompts), batch_size):
            embeds, _ = pipe.encode_prompt(list(prompts[start: start + batch_size]), pipe.text_encoder.device, 1,
                                           False)
            chunks.append(embeds.float().cpu())
    finally:
        diffusers_logging.set_verbosity(verbosity)
    return torch.cat(chunks)


def denoising_loss(predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], latents: torch.Tensor, scheduler,
                   generator: torch.Generator) -> torch.Tensor:
    """The DDPM objective of the base: t ~ U{0, …, T−1}, x_t = ``scheduler.add_noise(latents, ε, t)``, MSE between
    ``predict(x_t, t)`` and ε (``prediction_type`` epsilon) or the velocity (v_prediction). Noise and timesteps come
    from ``generator``, so a step's loss depends on its seed alone."""
    noise = torch.randn(latents.shape, generator=generator).to(latents.device)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(latents),),
                              generator=generator).to(latents.device)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        target = noise
    elif kind == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)
    else:
        raise ValueError(f"the base scheduler's `prediction_type` must be 'epsilon' or 'v_prediction', got {kind!r}")
    return F.mse_loss(predict(noisy, timesteps).float(), target.float())


def personalization_loop(accelerator, args: dict, progress, trainable: list, optimizer,
                         losses: Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor | None]]) -> tuple[list, float]:
    """DreamBooth's loop: per step ``losses(step, generator)`` gives the instance loss and the prior-preservation
    loss (None without it); the loss is instance + ``prior_loss_weight`` × prior. The generator is seeded by
    ``(seed, step)``, so a resumed run draws what the uninterrupted one did. Checkpoints every
    ``checkpoint_every`` steps (default: at the end only), ``interrupt_after_steps`` for the resume tests.

    Returns:
        ``(log, train_seconds)``: one ``{"step", "loss", "instance_loss", "prior_loss"}`` per step of this run.
    """
    log, start = [], time.time()
    while progress.step < args["max_steps"]:
        step = progress.step
        generator = torch.Generator().manual_seed(args["seed"] * 1_000_003 + step)
        instance_loss, prior_loss = losses(step, generator)
        loss = instance_loss
        if prior_loss is None:
            prior_loss = torch.zeros(())
        else:
            loss = loss + args["prior_loss_weight"] * prior_loss
        optimizer_step(accelerator, loss, trainable, optimizer, None, args["max_grad_norm"], step)
        progress.step += 1
        entry = {"step": progress.step, "loss": loss.item(), "instance_loss": instance_loss.item(),
                 "prior_loss": prior_loss.item()}
        log.append(entry)
        if progress.step % args["log_every"] == 0 or progress.step == args["max_steps"]:
            accelerator.print(f"step {progress.step}/{args['max_steps']} loss {entry['loss']:.4f} "
                              f"(instance {entry['instance_loss']:.4f}, prior {entry['prior_loss']:.4f})")
        save_checkpoint_if_due(accelerator, progress.step, args["checkpoint_every"] or args["max_steps"],
                               args["max_steps"], config=args)
        exit_if_interrupt_requested(accelerator, progress.step, args["interrupt_after_steps"])
    return log, time.time() - start


def image_grid(rows: list[list], mode: str = "RGB"):
    """A PIL grid of equally sized PIL images, one list per row (rows may be shorter), converted to ``mode``."""
    from PIL import Image

    width, height = rows[0][0].size
    columns = max(len(row) for row in rows)
    grid = Image.new(mode, (columns * width, len(rows) * height), "white" if mode == "RGB" else 0)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            grid.paste(image.convert(mode), (c * width, r * height))
    return grid
