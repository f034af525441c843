#!/usr/bin/env python
"""Text-to-image by cross-attention (book §8.7; Stable Diffusion at CPU scale): a small `UNet2DConditionModel`
conditioned on the frozen all-MiniLM-L6-v2's token embeddings, in the latent space of a saved `AutoencoderKL`,
trained on Openclipart + Noto emoji captions, saved as a plain `StableDiffusionPipeline` folder (Accelerate).

    python training/train_text_to_image.py --config training/configs/text_to_image.yaml \
        --vae runs/autoencoder-vae-captions-l1/autoencoder
    python training/train_text_to_image.py --config ... --resume_from_checkpoint latest

Data: the TRAIN split of `whitebox_hf.data.load_caption_images` (``sources``); the test split is held out for
``training/report_conditional.py``. The VAE latents (posterior mode times ``scaling_factor``, what SD's pipeline
decodes: `whitebox_hf.pipelines.text_to_image.encode_latents`) and the token embeddings of every distinct caption
(padded to 32 tokens, no attention mask: exactly `StableDiffusionPipeline.encode_prompt`, `encode_prompts`) are
computed once; training never runs the VAE or the text encoder.

``--attention mssa`` trains the white-box U-Net: every attention is CRATE's MSSA (one subspace projection for query,
key and value; cross-attention puts the text tokens in the same subspace coordinates,
`whitebox_hf.pipelines.text_to_image.SubspaceAttnProcessor`). The saved pipeline holds the tied weights in a stock
U-Net (`subspace_unet_to_standard`), so it loads with plain diffusers all the same.

Objective: diffusers' `DDPMScheduler` (SD's ``scaled_linear`` betas 0.00085-0.012, 1000 steps), ``epsilon`` or
``v_prediction`` (``prediction_type``), MSE, uniform timesteps. Classifier-free guidance: each caption is replaced by
the empty prompt ``""`` with probability ``class_dropout_prob`` (0.1): the caption index is dropped to the null id,
whose row of the embedding table is the embedding of ``""`` (the unconditional input SD uses).

The loop (EMA, checkpoints, exact resume) is `whitebox_hf.training.generative.run_training`; the "labels" it sees are
caption indices. Outputs in ``output_dir``: ``log.jsonl``, ``loss_curve.png``, ``checkpoints/``, ``results.json``
(with the held-out denoising MSE at fixed timesteps and noise), ``samples.png`` (held-out prompts → samples) and
``pipeline/`` (EMA weights; ``StableDiffusionPipeline.from_pretrained(output_dir/"pipeline")`` with plain
diffusers; a model card ``README.md`` from the measured numbers).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, DDPMScheduler, DPMSolverMultistepScheduler
from torch.nn import functional as F

import whitebox_hf  # noqa: F401
from whitebox_hf.data import load_caption_images
from whitebox_hf.data.fashion_mnist import default_cache_dir
from whitebox_hf.pipelines.text_to_image import (
    ATTENTION_TYPES,
    TEXT_MAX_LENGTH,
    assemble_text_to_image_pipeline,
    build_text_to_image_unet,
    encode_latents,
    encode_prompts,
    generate_images,
    load_minilm_text_encoder,
    subspace_unet_to_standard,
)
from whitebox_hf.training.config import parse_config_args, run_script
from whitebox_hf.training.generative import GENERATIVE_DEFAULTS, run_training
from whitebox_hf.training.run import start_run

PREDICTION_TYPES = ("epsilon", "v_prediction")

DEFAULTS = {
    **GENERATIVE_DEFAULTS,
    "vae": "runs/autoencoder-vae-captions-l1/autoencoder",
    "sources": "openclipart,emoji",
    "image_size": 32,
    # U-Net
    "block_out_channels": "64,128",
    "layers_per_block": 1,
    "attention_head_dim": 8,
    "attention": "mhsa",  # "mssa": the white-box U-Net (CRATE's subspace attention, `SubspaceAttnProcessor`)
    # DDPM
    "num_train_timesteps": 1000,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "prediction_type": "epsilon",
    # caches
    "text_embedding_cache_dir": "",  # "" = ~/.cache/whitebox_hf/t2i_token_embeddings
    "encode_batch_size": 256,
    # final evaluation / samples
    "eval_num_images": 512,  # held-out denoising MSE on the first n test images
    "sample_prompts": 8,
    "sample_steps": 20,
    "samples_per_class": 0,  # the class-grid of run_training does not apply; samples.png is drawn here
    "learning_rate": 2e-4,
    "lr_warmup_steps": 100,
    "batch_size": 64,
    "output_dir": "runs/text-to-image",
}


def parse_args(argv=None) -> dict:
    args = parse_config_args(DEFAULTS, argv, __doc__)
    if args["prediction_type"] not in PREDICTION_TYPES:
        raise ValueError(f"`prediction_type` must be one of {PREDICTION_TYPES}, got {args['prediction_type']!r}")
    if args["attention"] not in ATTENTION_TYPES:
        raise ValueError(f"`attention` must be one of {ATTENTION_TYPES}, got {args['attention']!r}")
    if not 0.0 <= args["class_dropout_prob"] < 1.0:
        raise ValueError(f"`class_dropout_prob` must be in [0, 1), got {args['class_dropout_prob']!r}")
    return args


def noise_scheduler(args: dict) -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=args["num_train_timesteps"], beta_schedule=args["beta_schedule"],
                         beta_start=args["beta_start"], beta_end=args["beta_end"],
                         prediction_type=args["prediction_type"], clip_sample=False,
                         steps_offset=1)  # what SD's pipeline expects of its scheduler (else it warns)


def load_caption_data(args: dict, accelerator, data: dict | None) -> dict:
    """``train_images``/``test_images`` uint8 ``(n, 3, H, W)`` and ``train_captions``/``test_captions``; ``data``
    (tests) replaces the data set with the same keys."""
    if data is not None:
        return data
    sources = [s.strip() for s in args["sources"].split(",") if s.strip()]
    with accelerator.main_process_first():
        dataset = load_caption_images(sources, image_size=args["image_size"])
    out = {"dataset": " + ".join(sources)}
    for split in ("train", "test"):
        part = dataset[split]
        images = part.select_columns(["image"]).with_format("numpy", dtype=np.uint8)[:]["image"]
        out[f"{split}_images"] = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        out[f"{split}_captions"] = list(part["caption"])
    return out


def cached_prompt_embeddings(text_encoder, tokenizer, prompts: list[str], cache_dir: str, batch_size: int):
    """`encode_prompts` of ``prompts``, read from or written to a safetensors file keyed by a hash of the prompts,
    the tokenizer length and the encoder's weights."""
    from safetensors.torch import load_file, save_file

    key = hashlib.sha1()
    key.update(json.dumps([prompts, tokenizer.model_max_length]).encode())
    key.update(text_encoder.embeddings.word_embeddings.weight[:64].numpy().tobytes())
    folder = Path(cache_dir) if cache_dir else default_cache_dir() / "t2i_token_embeddings"
    path = folder / f"{key.hexdigest()[:24]}.safetensors"
    if path.is_file():
        return load_file(str(path))["embeddings"]
    embeddings = encode_prompts(text_encoder, tokenizer, prompts, batch_size)
    folder.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    save_file({"embeddings": embeddings.contiguous()}, str(partial))
    partial.rename(path)
    return embeddings


def diffusion_loss(model, scheduler: DDPMScheduler, table: torch.Tensor, x0: torch.Tensor, caption_ids: torch.Tensor,
                   generator: torch.Generator | None) -> torch.Tensor:
    """MSE of the U-Net's epsilon (or v) prediction at uniform timesteps, conditioned on the token embeddings
    ``table[caption_ids]`` (the null id selects the empty prompt's row)."""
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],), generator=generator,
                              device=x0.device)
    noisy = scheduler.add_noise(x0, noise, timesteps)
    target = noise if scheduler.config.prediction_type == "epsilon" else scheduler.get_velocity(x0, noise, timesteps)
    states = table[caption_ids.cpu()].to(x0.device, x0.dtype)
    prediction = model(noisy, timesteps, encoder_hidden_states=states, return_dict=False)[0]
    return F.mse_loss(prediction.float(), target.float())


@torch.no_grad()
def held_out_loss(model, scheduler, latents: torch.Tensor, states: torch.Tensor, batch_size: int = 128,
                  seed: int = 0) -> float:
    """The denoising MSE on held-out latents at fixed timesteps and noise (seeded), so runs compare."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    for start in range(0, len(latents), batch_size):
        x0, s = latents[start:start + batch_size], states[start:start + batch_size]
        loss = diffusion_loss(model, scheduler, s, x0, torch.arange(len(x0)), generator)
        total, count = total + loss.item() * len(x0), count + len(x0)
    return total / count


def save_sample_grid(images: torch.Tensor, path: Path, per_row: int) -> None:
    """uint8 ``(n, H, W, 3)`` images as one PNG, ``per_row`` per row, 3× nearest upsampled."""
    from PIL import Image

    n, height, width, _ = images.shape
    rows = (n + per_row - 1) // per_row
    grid = Image.new("RGB", (per_row * width, rows * height), "white")
    for index, image in enumerate(images.numpy()):
        row, column = divmod(index, per_row)
        grid.paste(Image.fromarray(image), (column * width, row * height))
    grid.resize((grid.width * 3, grid.height * 3), Image.Resampling.NEAREST).save(path)


def write_card(args: dict, results: dict, folder: Path, argv) -> Path:
    """``pipeline/README.md`` (huggingface_hub `ModelCard`): the measured held-out denoising MSE in its
    model-index, the training facts, and how to load the folder with plain diffusers."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    command = shlex.join(["python", "training/train_text_to_image.py", *(sys.argv[1:] if argv is None else argv)])
    attention = ("diffusers' multi-head attention" if args["attention"] == "mhsa" else
                 "every attention CRATE's MSSA, query = key = value in each subspace, trained with the tied "
                 "parameters counted once and saved with the tied weights copied into the stock key/value slots")
    data = ModelCardData(
        library_name="diffusers", pipeline_tag="text-to-image", license="apache-2.0",
        tags=["text-to-image", "stable-diffusion", "cross-attention", "whitebox_hf"]
        + (["mssa", "white-box"] if args["attention"] == "mssa" else []),
        model_name="text-to-image-minilm-unet",
        eval_results=[EvalResult(task_type="text-to-image", dataset_type=results["dataset"],
                                 dataset_name=results["dataset"], dataset_split="test",
                                 metric_type="mse", metric_name="held-out denoising MSE",
                                 metric_value=round(results["test_denoising_mse"], 5))],
    )
    text = f"""---
{data.to_yaml()}
---

# Text-to-image U-Net (MiniLM cross-attention)

A `StableDiffusionPipeline` at CPU scale: a `UNet2DConditionModel` ({results['num_parameters']:,} parameters,
block channels {args['block_out_channels']}, {attention}) cross-attends to the frozen all-MiniLM-L6-v2 token embeddings
(384-d, prompts padded to {TEXT_MAX_LENGTH} tokens) in the 4×8×8 latent space of a small `AutoencoderKL` on 32 px
RGB images. Trained on the train split of {results['dataset']} ({results['num_train_examples']:,} images) for
{results['steps']:,} steps of batch {results['batch_size']} ({results['train_seconds_total'] / 60:.1f} min),
objective `{args['prediction_type']}`, {args['class_dropout_prob']:.0%} of the captions dropped to "" for
classifier-free guidance; the pipeline holds the EMA weights.

Measured: held-out denoising MSE {results['test_denoising_mse']:.4f} on {results['eval_num_images']} test images
(fixed timesteps and noise; `../results.json`). Text-image alignment, retrieval, FD-EffNet and the guidance sweep
are in `docs/results/conditional.md` (`training/report_conditional.py`).

## How to use

```python
from diffusers import StableDiffusionPipeline
pipe = StableDiffusionPipeline.from_pretrained("path/to/pipeline")   # no whitebox_hf import needed
image = pipe("Grinning face. Keywords: smileys & emotion, face-smiling", guidance_scale=4.0,
             num_inference_steps=20).images[0]
```

## Training command

```
{command}
```
"""
    path = folder / "README.md"
    ModelCard(text).save(str(path))
    return path


def main(argv=None, data: dict | None = None) -> dict:
    """Run training. ``data`` (tests) replaces the data set: ``{"train_images", "test_images"}`` uint8
    ``(n, 3, H, W)`` and ``{"train_captions", "test_captions"}`` lists; ``args["vae"]`` must still name a saved
    `AutoencoderKL` folder."""
    wall_start = time.time()
    args = parse_args(argv)
    accelerator, output_dir = start_run(args)
    torch.manual_seed(args["seed"])

    caption_data = load_caption_data(args, accelerator, data)
    train_images, train_captions = caption_data["train_images"], list(caption_data["train_captions"])
    if args["train_subset"]:
        train_images, train_captions = train_images[:args["train_subset"]], train_captions[:args["train_subset"]]
    vae = AutoencoderKL.from_pretrained(args["vae"]).eval()
    vae.requires_grad_(False)
    text_encoder, tokenizer = load_minilm_text_encoder()

    start = time.time()
    latents = encode_latents(vae, train_images.float() / 127.5 - 1.0, args["encode_batch_size"])
    distinct = sorted(set(train_captions))
    index_of = {caption: i for i, caption in enumerate(distinct)}
    caption_ids = torch.tensor([index_of[c] for c in train_captions])
    # Row len(distinct) is the empty prompt: the null id that classifier-free-guidance dropout selects.
    table = cached_prompt_embeddings(text_encoder, tokenizer, distinct + [""], args["text_embedding_cache_dir"],
                                     args["encode_batch_size"])
    accelerator.print(f"encoded {len(latents)} latents {tuple(latents.shape[1:])} (std {latents.std():.3f}) and "
                      f"{len(distinct)} distinct captions in {time.time() - start:.1f} s")

    unet = build_text_to_image_unet([int(c) for c in args["block_out_channels"].split(",")],
                                    layers_per_block=args["layers_per_block"],
                                    attention_head_dim=args["attention_head_dim"],
                                    cross_attention_dim=text_encoder.config.hidden_size,
                                    sample_size=latents.shape[-1], latent_channels=latents.shape[1],
                                    attention=args["attention"])
    scheduler = noise_scheduler(args)

    def save_pipeline(ema_unet, folder: Path):
        inference = DPMSolverMultistepScheduler.from_config(scheduler.config)
        if args["attention"] == "mssa":  # tied weights written into a stock U-Net: plain diffusers loads it
            ema_unet = subspace_unet_to_standard(ema_unet)
        pipeline = assemble_text_to_image_pipeline(vae, ema_unet, text_encoder, tokenizer, inference)
        pipeline.save_pretrained(folder)
        return pipeline

    results = run_training(
        args, accelerator, latents, caption_ids, unet,
        compute_loss=lambda m, x0, y, g: diffusion_loss(m, scheduler, table, x0, y, g),
        save_pipeline=save_pipeline, sample_kwargs={}, num_classes=len(distinct),
    )
    if accelerator.is_main_process:
        from diffusers import StableDiffusionPipeline

        pipeline_dir = output_dir / "pipeline"
        pipeline = StableDiffusionPipeline.from_pretrained(str(pipeline_dir))  # what a user loads
        test_images, test_captions = caption_data["test_images"], list(caption_data["test_captions"])
        n = min(args["eval_num_images"], len(test_images))
        test_latents = encode_latents(vae, test_images[:n].float() / 127.5 - 1.0, args["encode_batch_size"])
        test_states = encode_prompts(text_encoder, tokenizer, test_captions[:n], args["encode_batch_size"])
        results.update(test_denoising_mse=held_out_loss(pipeline.unet, scheduler, test_latents, test_states,
                                                        seed=args["seed"]),
                       eval_num_images=n, dataset=caption_data.get("dataset", "in-memory"),
                       distinct_train_captions=len(distinct), prediction_type=args["prediction_type"],
                       latent_std=float(latents.std()), latent_mean=float(latents.mean()))
        if args["sample_prompts"] > 0:
            # One prompt per distinct held-out caption, guidance 1 (no CFG) then sample_guidance_scale.
            prompts = list(dict.fromkeys(test_captions))[:args["sample_prompts"]]
            rows = [generate_images(pipeline, prompts, guidance_scale=g, num_inference_steps=args["sample_steps"],
                                    seed=args["seed"]) for g in (1.0, float(args["sample_guidance_scale"]))]
            save_sample_grid(torch.cat(rows), output_dir / "samples.png", per_row=len(prompts))
            results["sample_prompts"] = prompts
        results["wall_seconds"] = time.time() - wall_start
        (output_dir / "results.json").write_text(json.dumps(results, indent=2))
        write_card(args, results, pipeline_dir, argv)
        accelerator.print(json.dumps({k: results[k] for k in ("steps", "test_denoising_mse", "wall_seconds")}))
    return results


if __name__ == "__main__":
    run_script(main)
