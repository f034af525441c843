#!/usr/bin/env python
"""Train the autoencoder of a latent generative model on Fashion-MNIST (Accelerate): a small diffusers
`AutoencoderKL` (VAE) or a `CrateRepresentationAutoencoder` (RAE: frozen CRATE encoder, trained ViT decoder).
``--dataset openclipart+emoji`` (or ``openclipart``, ``emoji``; VAE only, config
``training/configs/autoencoder_vae_captions.yaml``) trains the VAE on the 32 px RGB caption images of
`whitebox_hf.data.load_caption_images` instead: the latent space of the text-to-image model.

    python training/train_autoencoder.py --config training/configs/autoencoder_vae.yaml
    python training/train_autoencoder.py --config training/configs/autoencoder_rae.yaml
    python training/train_autoencoder.py --config ... --resume_from_checkpoint latest

Pixels are in [-1, 1], native 28 × 28 × 1. Losses (spec ``ssl_and_generation.md`` §3, §5):

* VAE: ``L1 + kl_weight·KL + perceptual_weight·P`` with KL summed over latent elements and averaged over the
  batch (diffusers' ``train_autoencoderkl.py`` convention), ``kl_weight`` = 1e-6.
* RAE: ``L1 + perceptual_weight·P`` on the decoder only, the decoder fed noise-augmented tokens (τ = 0.8).
  No GAN term (the RAE recipe adds one from epoch 8 of 16): a discriminator would double the CPU cost of a
  12-minute run, and adversarial training needs far more steps than such a budget allows to help rather
  than destabilise.

``P`` = `whitebox_hf.evaluation.EffNetPerceptualLoss`: LPIPS-style distance (channel-unit-normalised squared
differences, uniform weights) between frozen EfficientNet-Lite0 feature maps of stages 0-2 (16/24/40 channels)
of the images upsampled to 56 px (the stride-2 stem then works on the native 28² grid; 112 px costs 5× more on
CPU for no extra image content), the offline stand-in for LPIPS; ``perceptual_weight`` = 1.0, RAE's LPIPS weight.

After training, the VAE's ``shift_factor``/``scaling_factor`` are set to the mean and 1/std of the latents
(posterior mode) of ``latent_stats_images`` training images, so the pipeline's
``(z − shift_factor)·scaling_factor`` latents have zero mean and unit variance (SD sets only the scale, SD3 both).
The RAE's per-channel ``latents_mean``/``latents_std`` are computed before training (the encoder is frozen).

Outputs in ``output_dir``: ``autoencoder/`` (``save_pretrained`` and a model card ``README.md`` whose `model-index`
holds the test metrics; loads with ``AutoencoderKL.from_pretrained`` or
``CrateRepresentationAutoencoder.from_pretrained``), ``metrics.json`` (test L1 and PSNR over the test split,
reconstruction FD-EffNet on its first ``fd_num_images`` images vs their reconstructions, wall times),
``reconstructions.png`` (top: test originals, bottom: reconstructions; two per class), ``log.jsonl``,
``loss_curve.png``, ``checkpoints/``.
"""

from __future__ import annotations

import json
import math
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from transformers import get_cosine_schedule_with_warmup

import whitebox_hf  # noqa: F401  (registers the Auto classes)
from whitebox_hf.data import EpochPermutationSampler
from whitebox_hf.data import DATASETS, load_caption_images, load_image_tensors
from whitebox_hf.evaluation import (
    EffNetPerceptualLoss,
    FrechetEffNetDistance,
    frechet_distance,
)
from whitebox_hf.hub.model_card import autoencoder_model_card
from whitebox_hf.models.autoencoders import CrateRepresentationAutoencoder
from whitebox_hf.training.atomic import atomic_directory
from whitebox_hf.training.checkpointing import (
    exit_if_interrupt_requested,
    resume_run,
    resumable_batches,
    save_checkpoint_if_due,
)
from whitebox_hf.training.config import RUN_DEFAULTS, parse_config_args, run_script
from whitebox_hf.training.optim import optimizer_step
from whitebox_hf.training.plots import plot_training_curves
from whitebox_hf.training.run import start_run

AUTOENCODERS = ("vae", "rae")
# The image-caption data sets (32 px RGB on white, `whitebox_hf.data.load_caption_images`), besides DATASETS.
CAPTION_DATASETS = {"openclipart": ["openclipart"], "emoji": ["emoji"], "openclipart+emoji": ["openclipart", "emoji"]}
# Measured numbers of metrics.json that go into the model card's model-index, and the settings it lists.
CARD_METRICS = ("test_l1", "test_psnr", "test_rfd_effnet")
CARD_HYPERPARAMETERS = ("kl_weight", "perceptual_weight", "noise_tau", "learning_rate", "weight_decay", "warmup_steps",
                        "epochs", "max_steps", "batch_size", "mixed_precision", "seed")

DEFAULTS = {
    "autoencoder": "vae",  # vae | rae
    # VAE (diffusers AutoencoderKL)
    "vae_block_out_channels": "32,64,64",  # 3 blocks -> 2 downsamplings: 28 -> 7
    "vae_layers_per_block": 1,
    "vae_latent_channels": 4,
    "vae_norm_num_groups": 32,
    "kl_weight": 1e-6,
    # RAE
    "encoder_path": "runs/fashion_mnist_crate_long/model",
    "decoder_hidden_size": 192,
    "decoder_num_layers": 4,
    "decoder_num_heads": 6,
    "decoder_mlp_ratio": 4.0,
    "noise_tau": 0.8,
    # both
    "latent_stats_images": 10000,
    "perceptual_weight": 1.0,
    "perceptual_image_size": 56,
    "perceptual_stages": "0,1,2",
    # data
    "dataset": "fashion-mnist",  # fashion-mnist | digits | openclipart | emoji | openclipart+emoji
    "caption_image_size": 32,  # the caption data sets' side
    "data_dir": "",
    "train_subset": 0,
    "test_subset": 0,
    # optimisation
    "learning_rate": 5e-4,
    "weight_decay": 0.0,
    "adam_beta2": 0.95,
    "warmup_steps": 50,
    "epochs": 1,
    "max_steps": 0,  # >0: caps the number of steps
    "max_train_seconds": 0.0,  # >0: stop training early once this run has trained this long (a wall-time guard)
    "batch_size": 64,
    "max_grad_norm": 1.0,
    "mixed_precision": "no",
    "seed": 0,
    # evaluation
    "eval_batch_size": 250,
    "fd_num_images": 5000,  # reconstruction FD-EffNet on the first n test images (0: all)
    "fd_image_size": 224,
    "fd_batch_size": 25,
    "fd_reference_cache": "runs/fd_effnet_reference",  # "" disables caching the test-image features
    # bookkeeping
    "output_dir": "runs/autoencoder-vae",
    **RUN_DEFAULTS,
    "checkpoints_total_limit": 1,  # autoencoder checkpoints are large next to these runs
}


def parse_args(argv=None) -> dict:
    args = parse_config_args(DEFAULTS, argv, __doc__)
    if args["autoencoder"] not in AUTOENCODERS:
        raise ValueError(f"`autoencoder` must be one of {AUTOENCODERS}, got {args['autoencoder']!r}")
    known = (*DATASETS, *CAPTION_DATASETS)
    if args["dataset"] not in known:
        raise ValueError(f"`dataset` must be one of {known}, got {args['dataset']!r}")
    if args["dataset"] in CAPTION_DATASETS and args["autoencoder"] != "vae":
        raise ValueError(f"`autoencoder` must be 'vae' for the caption data set {args['dataset']!r} (the RAE's "
                         f"encoder is a Fashion-MNIST CRATE), got {args['autoencoder']!r}")
    return args


def load_caption_tensors(args: dict, accelerator=None) -> dict:
    """The caption images of ``args["dataset"]`` as `load_image_tensors` returns them: uint8 ``(n, 3, 32, 32)``
    RGB, labels = the index of the source (Openclipart 0, emoji 1), for the picture grid."""
    import numpy as np

    sources = CAPTION_DATASETS[args["dataset"]]
    if accelerator is not None:
        with accelerator.main_process_first():  # the main process renders and caches first
            dataset = load_caption_images(sources, image_size=args["caption_image_size"])
    else:
        dataset = load_caption_images(sources, image_size=args["caption_image_size"])
    tensors = {"image_mean": None, "image_std": None, "horizontal_flip_ok": False,
               "dataset_name": " + ".join({"openclipart": "Openclipart", "emoji": "Noto emoji"}[s] for s in sources)}
    for split in ("train", "test"):
        part = dataset[split]
        images = part.select_columns(["image"]).with_format("numpy", dtype=np.uint8)[:]["image"]
        tensors[f"{split}_images"] = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        tensors[f"{split}_labels"] = torch.tensor([sources.index(s) for s in part["source"]])
        subset = args.get(f"{split}_subset")
        if subset:
            tensors[f"{split}_images"], tensors[f"{split}_labels"] = (tensors[f"{split}_images"][:subset],
                                                                      tensors[f"{split}_labels"][:subset])
    return tensors


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in str(text).split(",") if v.strip())


def to_pixels(images: torch.Tensor) -> torch.Tensor:
    """uint8 (n, C, H, W) → float32 in [-1, 1]."""
    return images.float() / 127.5 - 1.0


# ----------------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------------


def build_vae(args: dict, num_channels: int, image_size: int):
    from diffusers import AutoencoderKL

    channels = _ints(args["vae_block_out_channels"])
    return AutoencoderKL(
        in_channels=num_channels, out_channels=num_channels,
        down_block_types=("DownEncoderBlock2D",) * len(channels), up_block_types=("UpDecoderBlock2D",) * len(channels),
        block_out_channels=channels, layers_per_block=args["vae_layers_per_block"],
        latent_channels=args["vae_latent_channels"], norm_num_groups=args["vae_norm_num_groups"],
        sample_size=image_size,
    )


def build_autoencoder(args: dict, num_channels: int, image_size: int):
    if args["autoencoder"] == "vae":
        return build_vae(args, num_channels, image_size)
    return CrateRepresentationAutoencoder.from_crate_encoder(
        args["encoder_path"], decoder_hidden_size=args["decoder_hidden_size"],
        decoder_num_layers=args["decoder_num_layers"], decoder_num_heads=args["decoder_num_heads"],
        decoder_mlp_ratio=args["decoder_mlp_ratio"], noise_tau=args["noise_tau"])


@torch.no_grad()
def reconstruct(kind: str, model, pixels: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Deterministic reconstructions (VAE: posterior mode; RAE: no noise), clamped to [-1, 1]."""
    model.eval()
    outputs = []
    for start in range(0, pixels.shape[0], batch_size):
        batch = pixels[start:start + batch_size]
        if kind == "vae":
            outputs.append(model(batch, sample_posterior=False).sample)
        else:
            outputs.append(model.decode(model.encode(batch)))
    return torch.cat(outputs).clamp(-1, 1)


@torch.no_grad()
def set_vae_latent_scale(vae, pixels: torch.Tensor, batch_size: int) -> dict:
    """Set ``shift_factor`` = mean and ``scaling_factor`` = 1/std of the VAE posterior-mode latents of
    ``pixels`` (one scalar each, over all latent elements, float64)."""
    vae.eval()
    total, total_sq, count = 0.0, 0.0, 0
    for start in range(0, pixels.shape[0], batch_size):
        z = vae.encode(pixels[start:start + batch_size]).latent_dist.mode().double()
        total += z.sum().item()
        total_sq += (z ** 2).sum().item()
        count += z.numel()
    mean = total / count
    std = math.sqrt(max(total_sq / count - mean ** 2, 1e-12))
    vae.register_to_config(shift_factor=mean, scaling_factor=1.0 / std)
    return {"latent_mean": mean, "latent_std": std}


# ----------------------------------------------------------------------------------------------------------------
# Loss
# ----------------------------------------------------------------------------------------------------------------


def compute_loss(args: dict, kind: str, model, perceptual, pixels: torch.Tensor) -> dict:
    if kind == "vae":
        posterior = model.encode(pixels).latent_dist
        reconstruction = model.decode(posterior.sample()).sample
        kl = posterior.kl().sum() / pixels.shape[0]
    else:
        reconstruction = model(pixels).sample
        kl = torch.zeros((), device=pixels.device)
    l1 = (reconstruction - pixels).abs().mean()
    loss = l1 + args["kl_weight"] * kl if kind == "vae" else l1
    out = {"l1": l1.item(), "kl": kl.item()}
    if args["perceptual_weight"] > 0:
        p = perceptual(reconstruction, pixels)
        loss = loss + args["perceptual_weight"] * p
        out["perceptual"] = p.item()
    out["loss"] = loss
    return out


# ----------------------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------------------


def psnr(reconstructions: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean over images of ``10·log10(1/MSE)`` on the [0, 1] scale."""
    mse = ((reconstructions - targets) / 2).pow(2).flatten(1).mean(dim=1).clamp_min(1e-10)
    return float((10 * torch.log10(1.0 / mse)).mean())


def reference_features(metric: FrechetEffNetDistance, images: torch.Tensor, cache: Path | None) -> torch.Tensor:
    if cache is None:
        return metric.features(to_pixels(images))
    return metric.cached_features(to_pixels(images), cache)


def evaluate(args: dict, kind: str, model, test_images: torch.Tensor, real_dataset: bool, dataset_name: str) -> dict:
    """Test L1 (pixels in [-1, 1]) and PSNR on all test images, reconstruction FD-EffNet on the first
    ``fd_num_images``."""
    start = time.time()
    pixels = to_pixels(test_images)
    reconstructions = reconstruct(kind, model, pixels, args["eval_batch_size"])
    results = {"test_l1": float((reconstructions - pixels).abs().mean()), "test_psnr": psnr(reconstructions, pixels),
               "num_test_images": int(pixels.shape[0])}
    n = args["fd_num_images"] or pixels.shape[0]
    n = min(n, pixels.shape[0])
    metric = FrechetEffNetDistance(image_size=args["fd_image_size"], batch_size=args["fd_batch_size"])
    cache = None
    if real_dataset and args["fd_reference_cache"] and not args["test_subset"]:
        slug = dataset_name.lower().replace(" ", "-").replace("/", "-")
        cache = Path(args["fd_reference_cache"]) / f"{slug}-test-first{n}-{args['fd_image_size']}px.pt"
    fd_start = time.time()
    real = reference_features(metric, test_images[:n], cache)
    fake = metric.features(reconstructions[:n])
    results.update(test_rfd_effnet=frechet_distance(real, fake), fd_num_images=int(n),
                   fd_image_size=args["fd_image_size"], fd_seconds=time.time() - fd_start,
                   eval_seconds=time.time() - start)
    return results, reconstructions


def save_grid(test_images: torch.Tensor, test_labels: torch.Tensor, reconstructions: torch.Tensor, path: Path,
              per_class: int = 2, scale: int = 3) -> None:
    """Two test images per class (top row) and their reconstructions (bottom row)."""
    from torchvision.utils import save_image

    indices = []
    for label in sorted(set(test_labels.tolist())):
        indices += (test_labels == label).nonzero().flatten()[:per_class].tolist()
    indices = torch.tensor(indices)
    originals = to_pixels(test_images[indices])
    grid = torch.cat([originals, reconstructions[indices]])
    grid = F.interpolate(grid, scale_factor=scale, mode="nearest")
    save_image((grid + 1) / 2, path, nrow=len(indices), padding=2, pad_value=1.0)


# ----------------------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------------------


def main(argv=None, data: dict | None = None) -> dict:
    """Run training. ``data`` (tests) replaces the data set: ``{"train_images", "train_labels", "test_images",
    "test_labels", "image_mean", "image_std"}`` with uint8 ``(n, C, H, W)`` images."""
    wall_start = time.time()
    args = parse_args(argv)
    kind = args["autoencoder"]
    accelerator, output_dir = start_run(args)

    if data is None and args["dataset"] in CAPTION_DATASETS:
        tensors = load_caption_tensors(args, accelerator)
    else:
        tensors = load_image_tensors(args, accelerator, data)
    train_images, test_images, test_labels = tensors["train_images"], tensors["test_images"], tensors["test_labels"]
    image_size, num_channels = train_images.shape[-1], train_images.shape[1]

    model = build_autoencoder(args, num_channels, image_size)
    stats_pixels = to_pixels(train_images[: args["latent_stats_images"] or len(train_images)])
    if kind == "rae":
        model.compute_latent_statistics(stats_pixels, batch_size=args["eval_batch_size"])
    perceptual = None
    if args["perceptual_weight"] > 0:
        perceptual = EffNetPerceptualLoss(image_size=args["perceptual_image_size"],
                                          stages=_ints(args["perceptual_stages"])).to(accelerator.device)

    sampler = EpochPermutationSampler(len(train_images), seed=args["seed"])
    train_loader = DataLoader(TensorDataset(train_images), batch_size=args["batch_size"], sampler=sampler,
                              drop_last=True)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError(f"`batch_size` ({args['batch_size']}) exceeds the {len(train_images)} training images")
    total_steps = steps_per_epoch * args["epochs"]
    if args["max_steps"]:
        total_steps = min(total_steps, args["max_steps"]) if args["epochs"] > 0 else args["max_steps"]

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args["learning_rate"], betas=(0.9, args["adam_beta2"]),
                                  weight_decay=args["weight_decay"])
    scheduler = get_cosine_schedule_with_warmup(optimizer, args["warmup_steps"], total_steps)
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    progress = resume_run(accelerator, output_dir, args)
    accelerator.init_trackers("log", config=dict(args))

    checkpoint_every = args["checkpoint_every"] or steps_per_epoch
    start_time = time.time()
    start_step = progress.step
    sums: dict[str, float] = {}
    count = 0
    stopped_early = False
    model.train()
    for (batch,) in resumable_batches(accelerator, train_loader, progress.step, total_steps, seed=args["seed"]):
        pixels = to_pixels(batch)
        out = compute_loss(args, kind, model, perceptual, pixels)
        optimizer_step(accelerator, out["loss"], trainable, optimizer, scheduler, args["max_grad_norm"], progress.step)
        progress.step += 1
        out["loss"] = out["loss"].item()
        for key, value in out.items():
            sums[key] = sums.get(key, 0.0) + value
        count += 1
        if progress.step % args["log_every"] == 0 or progress.step == total_steps:
            record = {f"train_{key}": value / count for key, value in sums.items()}
            record.update(learning_rate=scheduler.get_last_lr()[0], epoch=progress.step / steps_per_epoch,
                          elapsed_s=time.time() - start_time)
            accelerator.log(record, step=progress.step)
            sums, count = {}, 0
        save_checkpoint_if_due(accelerator, progress.step, checkpoint_every, total_steps, config=args)
        exit_if_interrupt_requested(accelerator, progress.step, args["interrupt_after_steps"])
        if args["max_train_seconds"] and time.time() - start_time > args["max_train_seconds"]:
            accelerator.print(f"stopping at step {progress.step}: max_train_seconds reached")
            stopped_early = True
            break
    train_seconds = time.time() - start_time
    progress.train_seconds += train_seconds
    accelerator.wait_for_everyone()

    model = accelerator.unwrap_model(model)
    model.eval()
    scale = {}
    if kind == "vae":
        scale = set_vae_latent_scale(model, stats_pixels, args["eval_batch_size"])
    evaluation, reconstructions = evaluate(args, kind, model, test_images, data is None, tensors["dataset_name"])
    if kind == "vae":
        latent_shape = (model.config.latent_channels, image_size // 2 ** (len(model.config.block_out_channels) - 1),
                        image_size // 2 ** (len(model.config.block_out_channels) - 1))
    else:
        latent_shape = model.latent_shape
    results = {
        "autoencoder": kind, "class": type(model).__name__,
        "latent_shape": list(latent_shape),
        "num_trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        **evaluation, **scale,
        "steps": progress.step, "planned_steps": total_steps, "stopped_early": stopped_early,
        "epochs": progress.step / steps_per_epoch, "batch_size": args["batch_size"],
        "train_seconds": progress.train_seconds, "train_seconds_this_run": train_seconds,
        "seconds_per_step": train_seconds / max(progress.step - start_step, 1),
        "loss": {"kl_weight": args["kl_weight"] if kind == "vae" else 0.0,
                 "perceptual_weight": args["perceptual_weight"],
                 "perceptual_image_size": args["perceptual_image_size"],
                 "perceptual_stages": list(_ints(args["perceptual_stages"])),
                 "noise_tau": args["noise_tau"] if kind == "rae" else None},
        "encoder_path": args["encoder_path"] if kind == "rae" else None,
        "dataset": tensors["dataset_name"], "num_train_images": len(train_images),
        "torch_num_threads": torch.get_num_threads(),
        "command": shlex.join(["python", "training/train_autoencoder.py", *(sys.argv[1:] if argv is None else argv)]),
    }
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        with atomic_directory(output_dir / "autoencoder") as folder:  # never a half-written model
            model.save_pretrained(folder)
        # Caption data: 8 images of each source instead of 2 of each class.
        save_grid(test_images, test_labels, reconstructions, output_dir / "reconstructions.png",
                  per_class=8 if args["dataset"] in CAPTION_DATASETS else 2)
        accelerator.end_training()
        plot_training_curves(output_dir / "log.jsonl", output_dir / "loss_curve.png", train_key="train_loss",
                             train_label=f"{kind} training loss")
        results["wall_seconds"] = time.time() - wall_start
        (output_dir / "metrics.json").write_text(json.dumps(results, indent=2))
        write_card(args, results, model, real_dataset=data is None)
        accelerator.print(json.dumps({k: results[k] for k in ("test_l1", "test_psnr", "test_rfd_effnet", "steps",
                                                               "wall_seconds")}))
    else:
        accelerator.end_training()
    return results


def write_card(args: dict, results: dict, model, real_dataset: bool) -> Path:
    """``<output_dir>/autoencoder/README.md``: `autoencoder_model_card` with the test metrics of ``results``."""
    hyperparameters = {k: args[k] for k in CARD_HYPERPARAMETERS
                       if not (k == "kl_weight" and args["autoencoder"] == "rae")
                       and not (k == "noise_tau" and args["autoencoder"] == "vae")}
    card = autoencoder_model_card(
        model.config, {k: results[k] for k in CARD_METRICS if isinstance(results.get(k), (int, float))},
        results["dataset"], type(model).__name__, latent_shape=results["latent_shape"],
        dataset_id=DATASETS[args["dataset"]]["hub_id"] if real_dataset and args["dataset"] in DATASETS else None, hyperparameters=hyperparameters,
        training_summary=(f"Trained for {results['steps']:,} steps of batch {results['batch_size']} "
                          f"({results['epochs']:.2f} epochs, {results['train_seconds'] / 60:.1f} min); "
                          f"{results['num_trainable_parameters']:,} trainable of {results['num_parameters']:,} "
                          "parameters."),
        command=results["command"], metrics_source="../metrics.json",
    )
    path = Path(args["output_dir"]) / "autoencoder" / "README.md"
    card.save(str(path))
    return path


if __name__ == "__main__":
    run_script(main)
