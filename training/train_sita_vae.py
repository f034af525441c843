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
  * ``--kl_weight 0``: no KL bottleneck (a plain autoencoder on the local latents: the posterior mean is decoded);
  * ``--block_type crate``: every self-attention block a CRATE layer (MSSA then ISTA) in place of the transformer's;
  * ``--contrastive_weight``: the weight of L_con (spec: 0.1), against the ``--alignment_model``'s embeddings: a LIFT
    model trained on the shapes' renders (``train_clip.py --dataset shape_renders``) gives the image side (one random
    view per shape and step), the frozen MiniLM it was trained against gives the text side (the captions). With
    an alignment model and weight 0 (the no-alignment ablation) the embeddings score the retrieval only.

Each step draws, per shape, ``num_input_points`` of the stored surface points and ``num_volume_queries`` +
``num_near_queries`` of the stored labelled queries (pools of ``query_pool_size``), from the global RNG that
`resumable_batches` seeds per step: fresh queries every epoch, and a resumed run draws exactly what the
uninterrupted one drew.

Evaluation on ``eval_split`` (validation by default) with the posterior mean: the loss terms; the reported
``volumetric_iou``, ``chamfer_l1`` and ``f_score`` by `whitebox_hf.evaluation.procedural_reconstruction_scores`
(occupancy logit > 0 on the (2^eval_grid_depth + 1)³ grid against the exact SDF; marching-cubes mesh against the exact
surface), per category and overall; ``volume_query_iou``, the IoU on the stored volume queries (cheap, logged to
compare runs); with an alignment model, shape→text and shape→image retrieval (R@1, R@5) and the mean similarity of
the true pairs (ST-S, SI-S) under ``retrieval``.

Outputs in ``output_dir``: ``log.jsonl``, ``loss_curve.png`` (the total), ``loss_terms.png`` (each term),
``checkpoints/``, ``evaluation.json`` and ``model/`` (``save_pretrained``, with a model card ``README.md`` holding
the measured results; loads with ``AutoModel``).
"""

from __future__ import annotations

import json
import sys
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
from whitebox_hf.evaluation import procedural_reconstruction_scores, volumetric_iou  # noqa: E402
from whitebox_hf.data.shapes import load_procedural_shapes  # noqa: E402
from whitebox_hf.hub.model_card import write_model_card  # noqa: E402
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
    "contrastive_weight": 0.0,  # > 0 needs `alignment_model`
    # the alignment space: a LIFT model trained on the shape renders (train_clip.py --dataset shape_renders); its
    # image embeddings of the renders and the frozen MiniLM's of the captions are the L_con targets, and the
    # retrieval evaluation's galleries (also with contrastive_weight 0: the no-alignment ablation)
    "alignment_model": "",
    "num_views": 4,
    "render_size": 64,
    # data (load_procedural_shapes): per shape, a pool of surface points and of labelled queries stored once ...
    "num_per_category": 128,
    "data_seed": 0,
    "num_surface_points": 4096,
    "query_pool_size": 8192,  # volume queries, and as many near-surface queries, stored per shape
    "near_noise_std": 0.015,
    # ... from which every step draws afresh (Michelangelo samples its queries from a larger pool per iteration)
    "num_input_points": 2048,
    "num_volume_queries": 1024,
    "num_near_queries": 1024,
    "eval_split": "validation",
    "eval_grid_depth": 5,  # the reported IoU: on the (2^d + 1)³ grid over [-1, 1]³ (spec §4: 33³ or 65³)
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
    if args["contrastive_weight"] > 0 and not args["alignment_model"]:
        raise ValueError(f"`contrastive_weight` > 0 needs `alignment_model` (the LIFT model whose embeddings L_con "
                         f"aligns to), got contrastive_weight {args['contrastive_weight']!r} and no alignment_model")
    for key in ("batch_size", "eval_batch_size", "num_per_category", "num_surface_points", "query_pool_size",
                "num_input_points", "num_volume_queries", "num_views", "render_size"):
        if args[key] <= 0:
            raise ValueError(f"`{key}` must be a positive integer, got {args[key]!r}")
    if args["num_near_queries"] != args["num_volume_queries"]:
        # The model splits its query points in two equal halves: volume, then near-surface.
        raise ValueError(f"`num_near_queries` must equal `num_volume_queries` ({args['num_volume_queries']}), got "
                         f"{args['num_near_queries']!r}")
    if args["num_input_points"] > args["num_surface_points"]:
        raise ValueError(f"`num_input_points` must be at most `num_surface_points` ({args['num_surface_points']}), "
                         f"got {args['num_input_points']!r}")
    if args["num_volume_queries"] > args["query_pool_size"]:
        raise ValueError(f"`num_volume_queries` must be at most `query_pool_size` ({args['query_pool_size']}), got "
                         f"{args['num_volume_queries']!r}")
    return args


def build_model(args: dict, alignment_dim: int | None = None) -> SitaVaeModel:
    """The preset with the run's block type and loss weights; ``alignment_dim``: the width of the alignment model's
    embeddings, when there is one."""
    overrides = {} if alignment_dim is None else {"alignment_dim": alignment_dim}
    return SitaVaeModel(SitaVaeConfig.from_preset(
        args["preset"], block_type=args["block_type"], kl_loss_weight=args["kl_weight"],
        near_loss_weight=args["near_weight"], contrastive_loss_weight=args["contrastive_weight"], **overrides))


def split_tensors(split) -> dict:
    """One split of `load_procedural_shapes` as tensors: ``surface (n, N, 6)`` (xyz, normals), the pools
    ``volume_queries``/``near_queries (n, P, 3)`` with their ``volume_labels``/``near_labels (n, P)``, and the
    ``categories`` and ``captions`` lists."""
    split = split.with_format("numpy")

    def column(name):
        return torch.from_numpy(np.asarray(split[name]))

    return {
        "surface": torch.cat([column("surface_points"), column("surface_normals")], dim=-1).float(),
        "volume_queries": column("volume_queries").float(), "volume_labels": column("volume_occupancy").float(),
        "near_queries": column("near_queries").float(), "near_labels": column("near_occupancy").float(),
        "categories": list(split["category"]), "captions": list(split["caption"]),
    }


def _draw_rows(count: int, size: int, batch_size: int) -> torch.Tensor:
    """``(batch_size, count)`` indices into ``size`` items, without replacement within a row, from the global RNG
    (which `resumable_batches` seeds per step, so a resumed run draws the same)."""
    return torch.rand(batch_size, size).argsort(dim=1)[:, :count]


def _gather(values: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    index = rows if values.ndim == 2 else rows[..., None].expand(-1, -1, values.shape[-1])
    return torch.gather(values, 1, index)


def step_inputs(tensors: dict, index: torch.Tensor, args: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The encoder input ``(B, num_input_points, 6)``, the query points ``(B, V + Q, 3)`` (volume first) and their
    labels of one step, each drawn afresh from the shapes' stored pools."""
    batch_size = len(index)
    surface = tensors["surface"][index]
    surface = _gather(surface, _draw_rows(args["num_input_points"], surface.shape[1], batch_size))
    queries, labels = [], []
    for kind in ("volume", "near"):
        pool, pool_labels = tensors[f"{kind}_queries"][index], tensors[f"{kind}_labels"][index]
        rows = _draw_rows(args[f"num_{kind}_queries"], pool.shape[1], batch_size)
        queries.append(_gather(pool, rows))
        labels.append(_gather(pool_labels, rows))
    return surface, torch.cat(queries, dim=1), torch.cat(labels, dim=1)


def per_shape_iou(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-shape IoU ``(n,)`` of the occupied sets ``logits > 0`` and ``labels > 0.5`` over the same query points
    ``(n, M)``, by `whitebox_hf.evaluation.volumetric_iou`; a shape whose prediction and labels are both empty
    (where that IoU is undefined) scores 1: the two agree at every query."""
    predicted, occupied = (logits > 0).cpu(), (labels > 0.5).cpu()
    scores = [volumetric_iou(p, t) if bool((p | t).any()) else 1.0 for p, t in zip(predicted, occupied)]
    return torch.tensor(scores, dtype=torch.float64)


@torch.no_grad()
def evaluate(model: SitaVaeModel, tensors: dict, batch_size: int, num_input_points: int) -> dict:
    """With the posterior mean of the first ``num_input_points`` stored surface points (stored in random order, so a
    uniform subset): the loss terms and the IoU on every stored uniform volume query (``volume_query_iou``, a quick
    measure: the reported IoU is `whitebox_hf.evaluation.procedural_reconstruction_scores`' on a grid), per
    category, and the shape embeddings (``shape_embeds``, for the retrieval evaluation)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    totals = dict.fromkeys(LOSS_TERMS, 0.0)
    ious, embeds = [], []
    for start in range(0, len(tensors["surface"]), batch_size):
        window = slice(start, start + batch_size)
        volume_labels = tensors["volume_labels"][window].to(device)
        output = model(surface_points=tensors["surface"][window, :num_input_points].to(device),
                       query_points=torch.cat([tensors["volume_queries"][window], tensors["near_queries"][window]],
                                              dim=1).to(device),
                       occupancy_labels=torch.cat([volume_labels, tensors["near_labels"][window].to(device)], dim=1),
                       sample_posterior=False)
        for term in LOSS_TERMS:
            totals[term] += getattr(output, term).item() * len(volume_labels)
        ious.append(per_shape_iou(output.logits[:, :volume_labels.shape[1]], volume_labels))
        embeds.append(output.shape_embeds.float().cpu())
    model.train(was_training)
    ious = torch.cat(ious)
    count = len(ious)
    by_category = {}
    for category in sorted(set(tensors["categories"])):
        picks = torch.tensor([c == category for c in tensors["categories"]])
        by_category[category] = {"volume_query_iou": ious[picks].mean().item(), "num_shapes": int(picks.sum())}
    return {"volume_query_iou": ious.mean().item(), "volume_query_iou_per_category": by_category,
            **{f"{term}": totals[term] / count for term in LOSS_TERMS}, "num_shapes": count,
            "shape_embeds": torch.cat(embeds)}


def alignment_targets(args: dict, data, splits) -> dict:
    """Per split, the L_con targets of its shapes: ``text (n, d)``, the frozen MiniLM embeddings of the captions
    (LIFT's text side), and ``image (n, V, d)``, the `alignment_model`'s embeddings of the V renders of each shape
    (`whitebox_hf.data.shape_renders`, matched to the rows by instance seed)."""
    from transformers import AutoModel

    from whitebox_hf.data.shape_renders import load_shape_renders
    from whitebox_hf.evaluation.alignment import embed_images, embed_texts

    clip = AutoModel.from_pretrained(args["alignment_model"])
    renders = load_shape_renders(num_per_category=args["num_per_category"], seed=args["data_seed"],
                                 num_views=args["num_views"], size=args["render_size"])
    rows = {seed: (split, row) for split in renders for row, seed in enumerate(renders[split]["instance_seed"])}
    # The column is stored as uint8; datasets' NumPy formatting hands 4-D arrays back widened to int64.
    pixels = {split: torch.from_numpy(np.asarray(renders[split].with_format("numpy")["images"], dtype=np.uint8))
              for split in renders}  # (n, V, H, W, 3)
    targets = {}
    for split in splits:
        seeds = list(data[split]["instance_seed"])
        missing = [seed for seed in seeds if seed not in rows]
        if missing:
            raise ValueError(f"the renders of `num_per_category` {args['num_per_category']} and `data_seed` "
                             f"{args['data_seed']} hold no view of {len(missing)} `{split}` shapes (instance seeds "
                             f"{missing[:3]}...): train on the same shapes the renders were made of")
        images = torch.stack([pixels[rows[seed][0]][rows[seed][1]] for seed in seeds])  # (n, V, H, W, 3)
        image = embed_images(clip, images.flatten(0, 1)).view(len(seeds), images.shape[1], -1)
        targets[split] = {"image": image.float(), "text": embed_texts(list(data[split]["caption"])).float()}
    return targets


def retrieval_scores(shape_embeds: torch.Tensor, targets: dict, captions: list[str]) -> dict:
    """Shape→text retrieval among the split's distinct captions (a shape's caption is the positive; shapes with
    equal captions share it) and shape→image retrieval among the first render of every shape, with the mean
    cosine similarity of the true pairs (ST-S, SI-S), by `whitebox_hf.evaluation.alignment.retrieval_metrics`."""
    from whitebox_hf.evaluation.alignment import retrieval_metrics

    distinct = sorted(set(captions))
    first = {caption: captions.index(caption) for caption in distinct}
    text_gallery = targets["text"][[first[caption] for caption in distinct]]
    text_positives = torch.tensor([[caption == other for other in distinct] for caption in captions])
    image_gallery = targets["image"][:, 0]
    return {
        "shape_to_text": retrieval_metrics(shape_embeds, text_gallery, text_positives),
        "shape_to_image": retrieval_metrics(shape_embeds, image_gallery, torch.eye(len(captions), dtype=torch.bool)),
    }


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
                                      num_volume_queries=args["query_pool_size"],
                                      num_near_queries=args["query_pool_size"], near_noise_std=args["near_noise_std"])
    train, held_out = split_tensors(data["train"]), split_tensors(data[args["eval_split"]])
    if len(held_out["surface"]) == 0:
        raise ValueError(f"the `{args['eval_split']}` split holds no shapes: raise `num_per_category` "
                         f"(got {args['num_per_category']})")
    for name, stored, wanted in (("num_input_points", train["surface"].shape[1], args["num_input_points"]),
                                 ("num_volume_queries", train["volume_queries"].shape[1], args["num_volume_queries"]),
                                 ("num_near_queries", train["near_queries"].shape[1], args["num_near_queries"])):
        if wanted > stored:
            raise ValueError(f"`{name}` must be at most the {stored} stored per shape, got {wanted}")
    alignment = None
    if args["alignment_model"]:
        alignment = alignment_targets(args, data, ("train", args["eval_split"]))
    # Steps draw their points from the stored pools by index, so the loader hands out shape indices.
    train_set = TensorDataset(torch.arange(len(train["surface"])))
    train_loader = DataLoader(train_set, batch_size=args["batch_size"],
                              sampler=EpochPermutationSampler(len(train_set), seed=args["seed"]), drop_last=True)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError(f"`batch_size` ({args['batch_size']}) exceeds the {len(train_set)} training shapes")
    total_steps = steps_per_epoch * args["epochs"]
    if args["max_steps"]:
        total_steps = min(total_steps, args["max_steps"])

    model = build_model(args, None if alignment is None else alignment["train"]["text"].shape[1])
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
    for (index,) in resumable_batches(accelerator, train_loader, progress.step, total_steps, seed=args["seed"]):
        index = index.cpu()
        surface, queries, labels = step_inputs(train, index, args)
        targets = {}
        if alignment is not None and args["contrastive_weight"] > 0:
            # One random view of each shape per step (the global RNG, seeded per step).
            views = torch.randint(alignment["train"]["image"].shape[1], (len(index),))
            targets = {"image_embeds": alignment["train"]["image"][index, views].to(accelerator.device),
                       "text_embeds": alignment["train"]["text"][index].to(accelerator.device)}
        device = accelerator.device
        # Without the KL term nothing keeps the posterior's variance up: decode its mean, a plain autoencoder.
        output = model(surface_points=surface.to(device), query_points=queries.to(device),
                       occupancy_labels=labels.to(device), sample_posterior=args["kl_weight"] > 0, **targets)
        optimizer_step(accelerator, output.loss, model.parameters(), optimizer, scheduler, args["max_grad_norm"],
                       progress.step)
        progress.step += 1
        bar.update(1)
        values = {"train_loss": output.loss, **{term: getattr(output, term) for term in LOSS_TERMS}}
        if output.contrastive_loss is not None:
            values["contrastive_loss"] = output.contrastive_loss
        for key, value in values.items():
            running[key] = running.get(key, 0.0) + value.item()
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

    evaluation = evaluate(unwrapped, held_out, args["eval_batch_size"], args["num_input_points"])
    shape_embeds = evaluation.pop("shape_embeds")
    reconstruction = procedural_reconstruction_scores(unwrapped, data[args["eval_split"]],
                                                      grid_depth=args["eval_grid_depth"], keep_meshes=0)
    evaluation.update({
        "volumetric_iou": reconstruction["overall"]["iou"], "chamfer_l1": reconstruction["overall"]["chamfer_l1"],
        "f_score": reconstruction["overall"]["f_score"],
        "num_without_surface": reconstruction["overall"]["num_without_surface"],
        "volumetric_iou_per_category": {
            category: {"volumetric_iou": summary["iou"], "chamfer_l1": summary["chamfer_l1"],
                       "f_score": summary["f_score"], "num_shapes": summary["num_shapes"]}
            for category, summary in sorted(reconstruction["per_category"].items())},
    })
    if alignment is not None:
        evaluation["retrieval"] = retrieval_scores(shape_embeds, alignment[args["eval_split"]], held_out["captions"])
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
        "num_per_category": args["num_per_category"], "data_seed": args["data_seed"],
        "eval_grid_depth": args["eval_grid_depth"], "contrastive_weight": args["contrastive_weight"],
        "kl_weight": args["kl_weight"], "alignment_model": args["alignment_model"] or None,
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
            write_model_card(output_dir / "model", metrics_file=output_dir / "evaluation.json",
                             dataset_name="procedural-shapes",
                             command=" ".join(["python", "training/train_sita_vae.py", *sys.argv[1:]]))
    return results


if __name__ == "__main__":
    run_script(main)
