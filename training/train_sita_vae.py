#!/usr/bin/env python
"""SITA-VAE (Michelangelo's shape autoencoder, book §8.8) on the procedural shapes (Accelerate).

    python training/train_sita_vae.py --config training/configs/sita_vae_demo.yaml
    python training/train_sita_vae.py --config ... --block_type crate --output_dir runs/sita_vae_crate
    python training/train_sita_vae.py --config ... --resume_from_checkpoint latest

Spec ``threed_and_motion.md`` §1.2-1.3. Each training item is a shape's surface points with normals ``(N, 6)`` and
its query points: the uniform volume queries in ``[-1, 1]³`` first, then as many near-surface queries, with their
occupancy labels (`whitebox_hf.data.shapes.load_procedural_shapes`). The loss is the model's
``BCE_vol + near_loss_weight·BCE_near + kl_weight·KL + contrastive_weight·L_con``; each term is logged separately.

Ablations of the issue:
  * ``--kl_weight 0``: no KL bottleneck (a plain autoencoder on the local latents);
  * ``--block_type crate``: every self-attention block a CRATE layer (MSSA then ISTA) in place of the transformer's;
  * ``--contrastive_weight``: the weight of L_con. The procedural shapes come without image or text embeddings yet,
    so no L_con term can be computed: the script refuses a positive weight rather than train without it silently.

Evaluation on ``eval_split`` (validation by default) with the posterior mean: the three loss terms, and the volumetric
IoU of ``occupancy logit > 0`` against the labels of the uniform volume queries, per shape, averaged per category
and over all shapes.

Outputs in ``output_dir``: ``log.jsonl``, ``loss_curve.png`` (the total), ``loss_terms.png`` (each term),
``checkpoints/``, ``evaluation.json`` and ``model/`` (``save_pretrained``; loads with ``AutoModel``). No model card:
the card builder (`whitebox_hf.hub.model_card`) does not know the shape-autoencoder family yet.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402
from transformers import get_cosine_schedule_with_warmup  # noqa: E402

import whitebox_hf  # noqa: F401,E402  (registers the Auto classes)
from whitebox_hf.data import EpochPermutationSampler  # noqa: E402
from whitebox_hf.evaluation import volumetric_iou  # noqa: E402
from whitebox_hf.data.shapes import load_procedural_shapes  # noqa: E402
from whitebox_hf.models.sita_vae import SITA_VAE_PRESETS, SitaVaeConfig, SitaVaeModel  # noqa: E402
from whitebox_hf.training.atomic import atomic_directory  # noqa: E402
from whitebox_hf.training.checkpointing import (  # noqa: E402
    exit_if_interrupt_requested,
    resume_run,
    resumable_batches,
    save_checkpoint_if_due,
)
from whitebox_hf.training.config import RUN_DEFAULTS, parse_config_args, run_script  # noqa: E402
from whitebox_hf.training.optim import optimizer_step  # noqa: E402
from whitebox_hf.training.plots import plot_training_curves  # noqa: E402
from whitebox_hf.training.run import start_run  # noqa: E402
from whitebox_hf.utils.tracking import read_jsonl  # noqa: E402

BLOCK_TYPES = ("transformer", "crate")
EVAL_SPLITS = ("validation", "test")
LOSS_TERMS = ("volume_loss", "near_loss", "kl_loss")

DEFAULTS = {
    "preset": "sita-vae-cpu",
    "block_type": "transformer",  # transformer | crate
    "kl_weight": 0.001,  # 0 = no KL bottleneck
    "near_weight": 0.1,
    "contrastive_weight": 0.0,  # L_con needs image/text embeddings, which the procedural shapes do not have yet
    # data (load_procedural_shapes)
    "num_per_category": 64,
    "data_seed": 0,
    "num_surface_points": 1024,
    "num_volume_queries": 512,
    "num_near_queries": 512,
    "eval_split": "validation",
    # optimisation (AdamW, warm-up + cosine)
    "learning_rate": 1e-4,
    "weight_decay": 0.0,
    "warmup_steps": 50,
    "epochs": 10,
    "max_steps": 0,
    "batch_size": 8,
    "eval_batch_size": 16,
    "max_grad_norm": 1.0,
    "mixed_precision": "no",
    "seed": 0,
    # bookkeeping
    "output_dir": "runs/sita_vae",
    "save_model": True,
    **RUN_DEFAULTS,
}


def parse_args(argv=None) -> dict:
    args = parse_config_args(DEFAULTS, argv, __doc__)
    if args["preset"] not in SITA_VAE_PRESETS:
        raise ValueError(f"`preset` must be one of {sorted(SITA_VAE_PRESETS)}, got {args['preset']!r}")
    if args["block_type"] not in BLOCK_TYPES:
        raise ValueError(f"`block_type` must be one of {BLOCK_TYPES}, got {args['block_type']!r}")
    if args["eval_split"] not in EVAL_SPLITS:
        raise ValueError(f"`eval_split` must be one of {EVAL_SPLITS}, got {args['eval_split']!r}")
    for key in ("kl_weight", "near_weight", "contrastive_weight"):
        if args[key] < 0:
            raise ValueError(f"`{key}` must be non-negative, got {args[key]!r}")
    if args["contrastive_weight"] > 0:
        raise ValueError(f"`contrastive_weight` must be 0: the procedural shapes have no image or text embeddings "
                         f"for the contrastive term yet, got {args['contrastive_weight']!r}")
    for key in ("batch_size", "eval_batch_size", "num_per_category", "num_surface_points", "num_volume_queries"):
        if args[key] <= 0:
            raise ValueError(f"`{key}` must be a positive integer, got {args[key]!r}")
    if args["num_near_queries"] != args["num_volume_queries"]:
        # The model splits its query points in two equal halves: volume, then near-surface.
        raise ValueError(f"`num_near_queries` must equal `num_volume_queries` ({args['num_volume_queries']}), got "
                         f"{args['num_near_queries']!r}")
    return args


def build_model(args: dict) -> SitaVaeModel:
    return SitaVaeModel(SitaVaeConfig.from_preset(
        args["preset"], block_type=args["block_type"], kl_loss_weight=args["kl_weight"],
        near_loss_weight=args["near_weight"], contrastive_loss_weight=args["contrastive_weight"]))


def split_tensors(split) -> dict:
    """One split of `load_procedural_shapes` as tensors: ``surface (n, N, 6)``, ``queries (n, V + Q, 3)`` (volume
    first), ``labels (n, V + Q)`` and the ``categories`` list."""
    split = split.with_format("numpy")

    def column(name):
        return torch.from_numpy(np.asarray(split[name]))

    surface = torch.cat([column("surface_points"), column("surface_normals")], dim=-1).float()
    queries = torch.cat([column("volume_queries"), column("near_queries")], dim=1).float()
    labels = torch.cat([column("volume_occupancy"), column("near_occupancy")], dim=1).float()
    return {"surface": surface, "queries": queries, "labels": labels, "categories": list(split["category"])}


def per_shape_iou(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-shape IoU ``(n,)`` of the occupied sets ``logits > 0`` and ``labels > 0.5`` over the same query points
    ``(n, M)``, by `whitebox_hf.evaluation.volumetric_iou`; a shape whose prediction and labels are both empty
    (where that IoU is undefined) scores 1: the two agree at every query."""
    predicted, occupied = (logits > 0).cpu(), (labels > 0.5).cpu()
    scores = [volumetric_iou(p, t) if bool((p | t).any()) else 1.0 for p, t in zip(predicted, occupied)]
    return torch.tensor(scores, dtype=torch.float64)


@torch.no_grad()
def evaluate(model: SitaVaeModel, tensors: dict, batch_size: int) -> dict:
    """The loss terms (posterior mean) and the volumetric IoU on the uniform volume queries, per category."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    half = tensors["queries"].shape[1] // 2
    totals = dict.fromkeys(LOSS_TERMS, 0.0)
    ious = []
    for start in range(0, len(tensors["surface"]), batch_size):
        stop = start + batch_size
        labels = tensors["labels"][start:stop].to(device)
        output = model(surface_points=tensors["surface"][start:stop].to(device),
                       query_points=tensors["queries"][start:stop].to(device), occupancy_labels=labels,
                       sample_posterior=False)
        for term in LOSS_TERMS:
            totals[term] += getattr(output, term).item() * len(labels)
        ious.append(per_shape_iou(output.logits[:, :half], labels[:, :half]))
    model.train(was_training)
    ious = torch.cat(ious)
    count = len(ious)
    by_category = {}
    for category in sorted(set(tensors["categories"])):
        picks = torch.tensor([c == category for c in tensors["categories"]])
        by_category[category] = {"volumetric_iou": ious[picks].mean().item(), "num_shapes": int(picks.sum())}
    return {"volumetric_iou": ious.mean().item(), "volumetric_iou_per_category": by_category,
            **{f"{term}": totals[term] / count for term in LOSS_TERMS}, "num_shapes": count}


def plot_loss_terms(log_path: Path, png_path: Path) -> None:
    """Each training loss term on its own log-scale panel."""
    records = [r for r in read_jsonl(log_path) if "volume_loss" in r]
    figure, axes = plt.subplots(1, len(LOSS_TERMS), figsize=(4 * len(LOSS_TERMS), 3))
    for axis, term in zip(axes, LOSS_TERMS):
        axis.plot([r["step"] for r in records], [r[term] for r in records])
        axis.set_title(term, fontsize=9)
        axis.set_xlabel("step")
        if records and min(r[term] for r in records) > 0:
            axis.set_yscale("log")
    figure.tight_layout()
    figure.savefig(png_path, dpi=110)
    plt.close(figure)


def main(argv=None, data=None) -> dict:
    """Run training. ``data`` (tests) replaces the data set: a `datasets.DatasetDict` shaped like
    `load_procedural_shapes`'s."""
    args = parse_args(argv)
    accelerator, output_dir = start_run(args)

    if data is None:
        data = load_procedural_shapes(num_per_category=args["num_per_category"], seed=args["data_seed"],
                                      num_surface_points=args["num_surface_points"],
                                      num_volume_queries=args["num_volume_queries"],
                                      num_near_queries=args["num_near_queries"])
    train, held_out = split_tensors(data["train"]), split_tensors(data[args["eval_split"]])
    if len(held_out["surface"]) == 0:
        raise ValueError(f"the `{args['eval_split']}` split holds no shapes: raise `num_per_category` "
                         f"(got {args['num_per_category']})")
    train_set = TensorDataset(train["surface"], train["queries"], train["labels"])
    train_loader = DataLoader(train_set, batch_size=args["batch_size"],
                              sampler=EpochPermutationSampler(len(train_set), seed=args["seed"]), drop_last=True)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError(f"`batch_size` ({args['batch_size']}) exceeds the {len(train_set)} training shapes")
    total_steps = steps_per_epoch * args["epochs"]
    if args["max_steps"]:
        total_steps = min(total_steps, args["max_steps"])

    model = build_model(args)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args["learning_rate"], weight_decay=args["weight_decay"])
    scheduler = get_cosine_schedule_with_warmup(optimizer, args["warmup_steps"], total_steps)
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    progress = resume_run(accelerator, output_dir, args)
    accelerator.init_trackers("log", config=dict(args))
    unwrapped = accelerator.unwrap_model(model)

    checkpoint_every = args["checkpoint_every"] or steps_per_epoch
    start_step = progress.step
    start_time = time.time()
    running, count = dict.fromkeys(("train_loss", *LOSS_TERMS), 0.0), 0
    bar = tqdm(total=total_steps, initial=progress.step, unit="step", desc="sita-vae",
               disable=not accelerator.is_local_main_process)
    model.train()
    for surface, queries, labels in resumable_batches(accelerator, train_loader, progress.step, total_steps,
                                                      seed=args["seed"]):
        output = model(surface_points=surface, query_points=queries, occupancy_labels=labels)
        optimizer_step(accelerator, output.loss, model.parameters(), optimizer, scheduler, args["max_grad_norm"],
                       progress.step)
        progress.step += 1
        bar.update(1)
        values = {"train_loss": output.loss, **{term: getattr(output, term) for term in LOSS_TERMS}}
        for key, value in values.items():
            running[key] += value.item()
        count += 1
        if progress.step % args["log_every"] == 0 or progress.step == total_steps:
            means = {key: total / count for key, total in running.items()}
            bar.set_postfix(loss=f"{means['train_loss']:.4f}")
            accelerator.log({**means, "learning_rate": scheduler.get_last_lr()[0],
                             "epoch": progress.step / steps_per_epoch, "elapsed_s": time.time() - start_time},
                            step=progress.step)
            running, count = dict.fromkeys(running, 0.0), 0
        save_checkpoint_if_due(accelerator, progress.step, checkpoint_every, total_steps, config=args)
        exit_if_interrupt_requested(accelerator, progress.step, args["interrupt_after_steps"])
    bar.close()
    train_seconds = time.time() - start_time

    evaluation = evaluate(unwrapped, held_out, args["eval_batch_size"])
    accelerator.log({f"eval_{key}": value for key, value in evaluation.items() if isinstance(value, float)},
                    step=progress.step)
    accelerator.print(f"step {progress.step}: {args['eval_split']} volumetric IoU {evaluation['volumetric_iou']:.4f}")
    accelerator.wait_for_everyone()
    results = {
        "block_type": args["block_type"], "eval_split": args["eval_split"], **evaluation,
        "steps": progress.step, "epochs": progress.step / steps_per_epoch,
        "train_seconds_this_run": train_seconds,
        "seconds_per_epoch": train_seconds / max(progress.step - start_step, 1) * steps_per_epoch,
        "num_parameters": sum(p.numel() for p in unwrapped.parameters() if p.requires_grad),
        "dataset": "procedural-shapes", "num_train_shapes": len(train_set), "batch_size": args["batch_size"],
        "contrastive_loss": "off (no image/text embeddings)",
    }
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "evaluation.json").write_text(json.dumps(results, indent=2))
        accelerator.end_training()
        plot_training_curves(output_dir / "log.jsonl", output_dir / "loss_curve.png", train_key="train_loss",
                             train_label="SITA-VAE loss (train)")
        plot_loss_terms(output_dir / "log.jsonl", output_dir / "loss_terms.png")
        if args["save_model"]:
            with atomic_directory(output_dir / "model") as folder:  # never a half-written model
                unwrapped.save_pretrained(folder)
    return results


if __name__ == "__main__":
    run_script(main)
