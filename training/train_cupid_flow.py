#!/usr/bin/env python
"""Cupid stage 1 (book §8.9): a rectified flow over the occupancy + UV cube conditioned on one render, saved as a
`CupidPipeline` (Accelerate); with ``--model pose_regression``, the direct pose-regression baseline (the same CRATE
image encoder + an MLP predicting R, t, f), evaluated by the same code; with ``--model appearance``, Cupid's stage 2
(`CupidAppearanceModel`: per-voxel colour given the true voxels and camera, pose-aligned unless
``--pose_aligned false``, Table 8.14's baseline).

    python training/train_cupid_flow.py --config training/configs/cupid_flow.yaml
    python training/train_cupid_flow.py --config training/configs/cupid_pose_regression.yaml
    python training/train_cupid_flow.py --model appearance [--pose_aligned false] --output_dir runs/cupid/appearance
    python training/train_cupid_flow.py --config ... --resume_from_checkpoint latest

Spec ``threed_and_motion.md`` §2.2-2.3. Data: `whitebox_hf.data.shape_renders.load_shape_renders`
(``num_per_category`` / ``data_seed`` / ``num_views`` / ``render_size``); a training example is one (shape, view)
pair. The targets are computed once and cached as safetensors (`whitebox_hf.evaluation.cupid.cupid_targets`, under
``targets_cache_dir``): each shape's exact occupancy at the ``cube_resolution³`` voxel centres of the canonical cube
(side ``extent``) and each view's camera in normalised uv units. A step's target cubes are then assembled by
`build_uv_cube` (occupancy, and the pixel every occupied voxel's centre projects to under that view's camera) and
mapped to [−1, 1] (`normalize_cube`).

Objective (``--model flow``): `CupidFlowModel.flow_matching_loss`: t = sigmoid(1 + n), n ~ N(0, 1) (logit-normal),
``x_t = (1 − t)·x₀ + (σ_min + (1 − σ_min)·t)·ε``, MSE to ``v = (1 − σ_min)·ε − x₀``, the image condition replaced by
zeros with probability ``condition_dropout_prob``. (``--model pose_regression``): ``‖R̂ − R‖²_F + ‖t̂ − t‖² +
(log f̂ − log f)²``. (``--model appearance``): `CupidAppearanceModel.flow_matching_loss` on the colours of
`whitebox_hf.evaluation.cupid.appearance_targets` (cached as safetensors next to the cupid targets): every occupied
voxel's colour as the renderer draws it in that view (the renders are untextured grey, shaded by a light fixed to the
camera, so that shading is the only appearance signal), MSE over occupied voxels. All: AdamW + a diffusers LR schedule + EMA (`diffusion_optimization`); each step's randomness (t,
ε, dropout) comes from a generator seeded by ``(seed, step, process)``, so ``--resume_from_checkpoint latest``
continues the exact trajectory.

The image encoder is a CRATE (``encoder_*`` settings, ``image_size = render_size``), trained jointly by default; with
``--image_encoder FOLDER`` (a saved `CrateModel`, a `WhiteboxClipModel` whose vision tower is taken, e.g. the LIFT
model of the shapes runs, or a saved pose regressor's ``model/``, whose encoder has learnt to read the camera) it
starts from those weights, and ``--freeze_image_encoder`` keeps it fixed as Cupid keeps
DINOv2.

Outputs in ``output_dir``: ``log.jsonl``, ``loss_curve.png``, ``checkpoints/``, ``metrics.json`` (the validation
scores of the EMA weights, `whitebox_hf.evaluation.cupid`, on view 0 of ``eval_num_items`` renders evenly spaced
over ``eval_split``) and ``pipeline/`` (flow: a `CupidPipeline`, loads with ``CupidPipeline.from_pretrained`` or
``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)``) or ``model/`` (pose regression:
``CupidPoseRegressionModel.from_pretrained``; appearance: ``AutoModel.from_pretrained``), each with a model card ``README.md``.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

import whitebox_hf  # noqa: F401  (registers the Auto classes and the pipeline's component modules)
from whitebox_hf.evaluation.cupid import (
    cupid_targets,
    evaluate_cupid_pipeline,
    appearance_targets,
    evaluate_appearance_model,
    evaluate_pose_regressor,
    occupied_items,
    target_colors,
    target_cubes,
)
from whitebox_hf.models.cupid import (
    CupidAppearanceConfig,
    CupidAppearanceModel,
    CupidFlowConfig,
    CupidFlowModel,
    normalize_cube,
)
from whitebox_hf.models.cupid.pose_regression import CupidPoseRegressionModel
from whitebox_hf.training.atomic import atomic_directory
from whitebox_hf.training.config import RUN_DEFAULTS, parse_config_args, run_script
from whitebox_hf.training.generative import (
    ema_weights,
    finish_training_run,
    start_diffusion_training,
    train_denoiser,
)
from whitebox_hf.training.run import start_run

MODELS = ("flow", "pose_regression", "appearance")
EVAL_SPLITS = ("validation", "test")

DEFAULTS = {
    "model": "flow",  # flow (Cupid stage 1) | pose_regression (baseline (c)) | appearance (Cupid stage 2)
    # appearance flow (CupidAppearanceConfig): the projected features, or global image tokens only (Table 8.14)
    "pose_aligned": True,
    "appearance_guidance_scale": 4.0,  # TRELLIS stage 2: w = 3, i.e. g = 1 + w
    # flow transformer (CupidFlowConfig; the cupid-flow-cpu preset's sizes)
    "cube_resolution": 32,
    "patch_size": 4,
    "hidden_size": 128,
    "num_layers": 4,
    "num_attention_heads": 4,
    "condition_dropout_prob": 0.1,
    "dense_uv": False,  # every voxel carries its projection (CupidFlowConfig.dense_uv), not only occupied ones
    # pose-regression head (CupidPoseRegressionConfig)
    "mlp_hidden_size": 256,
    "mlp_num_layers": 2,
    # CRATE image encoder (DEFAULT_IMAGE_ENCODER_CONFIG's sizes), or a saved one
    "image_encoder": "",
    "freeze_image_encoder": False,
    "encoder_patch_size": 8,
    "encoder_hidden_size": 128,
    "encoder_num_layers": 4,
    "encoder_num_attention_heads": 4,
    # data
    "num_per_category": 128,
    "data_seed": 0,
    "num_views": 4,
    "render_size": 64,
    "extent": 2.0,
    "targets_cache_dir": "",  # "" = <whitebox_hf cache>/cupid-targets
    # optimisation
    "learning_rate": 1e-4,
    "adam_beta1": 0.9,
    "adam_beta2": 0.999,
    "weight_decay": 0.0,
    "lr_scheduler": "constant_with_warmup",
    "lr_warmup_steps": 100,
    "epochs": 10,
    "max_steps": 0,
    "batch_size": 16,
    "max_grad_norm": 1.0,
    "mixed_precision": "no",
    "seed": 0,
    "ema_max_decay": 0.9999,
    "ema_inv_gamma": 1.0,
    "ema_power": 0.75,
    # evaluation
    "eval_split": "validation",
    "eval_num_items": 32,  # 0: no pose/geometry evaluation (the flow's held-out loss only)
    "eval_batch_size": 32,
    "sample_steps": 25,
    "sample_guidance_scale": 8.5,  # TRELLIS stage 1: w = 7.5, i.e. g = 1 + w
    # bookkeeping
    "output_dir": "runs/cupid/flow",
    **RUN_DEFAULTS,
}

CARD_HYPERPARAMETERS = ("model", "cube_resolution", "patch_size", "hidden_size", "num_layers", "num_attention_heads",
                        "condition_dropout_prob", "dense_uv", "freeze_image_encoder", "learning_rate", "lr_scheduler",
                        "lr_warmup_steps", "batch_size", "epochs", "max_steps", "ema_max_decay", "num_per_category",
                        "num_views", "data_seed", "seed", "sample_steps", "sample_guidance_scale", "pose_aligned",
                        "appearance_guidance_scale")


def parse_args(argv=None) -> dict:
    args = parse_config_args(DEFAULTS, argv, __doc__)
    for key, allowed in (("model", MODELS), ("eval_split", EVAL_SPLITS)):
        if args[key] not in allowed:
            raise ValueError(f"`{key}` must be one of {allowed}, got {args[key]!r}")
    for key in ("cube_resolution", "patch_size", "hidden_size", "num_layers", "num_attention_heads",
                "mlp_hidden_size", "mlp_num_layers", "encoder_patch_size", "encoder_hidden_size",
                "encoder_num_layers", "encoder_num_attention_heads", "num_per_category", "num_views", "render_size",
                "batch_size", "eval_batch_size", "sample_steps"):
        if isinstance(args[key], bool) or not isinstance(args[key], int) or args[key] <= 0:
            raise ValueError(f"`{key}` must be a positive integer, got {args[key]!r}")
    if args["eval_num_items"] < 0:
        raise ValueError(f"`eval_num_items` must be >= 0, got {args['eval_num_items']!r}")
    if not args["extent"] > 0:
        raise ValueError(f"`extent` must be positive, got {args['extent']!r}")
    if not isinstance(args["pose_aligned"], bool):
        raise ValueError(f"`pose_aligned` must be true or false, got {args['pose_aligned']!r}")
    if args["appearance_guidance_scale"] < 0:
        raise ValueError(f"`appearance_guidance_scale` must be >= 0, got {args['appearance_guidance_scale']!r}")
    if args["sample_guidance_scale"] < 0:
        raise ValueError(f"`sample_guidance_scale` must be >= 0, got {args['sample_guidance_scale']!r}")
    if args["freeze_image_encoder"] and not args["image_encoder"]:
        raise ValueError("`freeze_image_encoder` needs `image_encoder` (a pretrained encoder to keep fixed): a frozen "
                         "random encoder reads nothing, got image_encoder ''")
    return args


def load_image_encoder(folder: str):
    """The `CrateModel` saved in ``folder`` (or the vision tower of a saved `WhiteboxClipModel`, or the encoder of a
    saved `CupidPoseRegressionModel`: an encoder trained to read the camera) and its image normalisation (the
    folder's image processor, else 0.5 / 0.5, what this script trains every encoder with).

    Raises:
        OSError: ``folder`` does not exist.
        TypeError: it holds another model.
    """
    from transformers import AutoImageProcessor, AutoModel

    if not Path(folder).is_dir():
        raise OSError(f"no saved model folder at {folder!r} (`image_encoder`)")
    config_file = Path(folder) / "config.json"
    saved_class = json.loads(config_file.read_text()).get("_class_name") if config_file.is_file() else None
    if saved_class == CupidPoseRegressionModel.__name__:  # a diffusers-style folder: not an Auto-class model
        return CupidPoseRegressionModel.from_pretrained(folder).image_encoder, [0.5] * 3, [0.5] * 3
    model = AutoModel.from_pretrained(folder)
    if type(model).__name__ == "WhiteboxClipModel":
        model = model.vision_model
    if type(model).__name__ != "CrateModel":
        raise TypeError(f"`image_encoder` {folder!r} must hold a CrateModel, a WhiteboxClipModel or a "
                        f"CupidPoseRegressionModel, got "
                        f"{type(model).__name__}")
    try:
        processor = AutoImageProcessor.from_pretrained(folder)
        mean, std = list(processor.image_mean), list(processor.image_std)
    except (OSError, ValueError):
        mean, std = [0.5] * 3, [0.5] * 3
    return model, mean, std


def build_model(args: dict):
    """The model of ``args["model"]`` and its image normalisation ``(mean, std)``."""
    encoder, mean, std = (load_image_encoder(args["image_encoder"]) if args["image_encoder"]
                          else (None, [0.5] * 3, [0.5] * 3))
    if encoder is not None:
        if encoder.config.image_size != args["render_size"] or encoder.config.num_channels != 3:
            raise ValueError(f"`image_encoder` must read {args['render_size']}² RGB images (`render_size`; the "
                             f"pipeline never resizes), got {encoder.config.image_size}² with "
                             f"{encoder.config.num_channels} channels")
        encoder_config = encoder.config.to_dict()
    else:
        encoder_config = dict(image_size=args["render_size"], patch_size=args["encoder_patch_size"], num_channels=3,
                              hidden_size=args["encoder_hidden_size"], num_hidden_layers=args["encoder_num_layers"],
                              num_attention_heads=args["encoder_num_attention_heads"])
    if args["model"] == "flow":
        config = CupidFlowConfig(cube_resolution=args["cube_resolution"], patch_size=args["patch_size"],
                                 hidden_size=args["hidden_size"], num_hidden_layers=args["num_layers"],
                                 num_attention_heads=args["num_attention_heads"],
                                 condition_dropout_prob=args["condition_dropout_prob"],
                                 freeze_image_encoder=args["freeze_image_encoder"], dense_uv=args["dense_uv"],
                                 image_encoder_config=encoder_config)
        model = CupidFlowModel(config)
    elif args["model"] == "appearance":
        config = CupidAppearanceConfig(cube_resolution=args["cube_resolution"], patch_size=args["patch_size"],
                                       hidden_size=args["hidden_size"], num_hidden_layers=args["num_layers"],
                                       num_attention_heads=args["num_attention_heads"],
                                       condition_dropout_prob=args["condition_dropout_prob"],
                                       freeze_image_encoder=args["freeze_image_encoder"],
                                       pose_aligned=args["pose_aligned"], extent=args["extent"],
                                       image_encoder_config=encoder_config)
        model = CupidAppearanceModel(config)
    else:
        model = CupidPoseRegressionModel(
            image_encoder_config=encoder_config, freeze_image_encoder=args["freeze_image_encoder"],
            mlp_hidden_size=args["mlp_hidden_size"], mlp_num_layers=args["mlp_num_layers"])
    if encoder is not None:
        model.image_encoder.load_state_dict(encoder.state_dict())
    if args["freeze_image_encoder"]:
        model.image_encoder.requires_grad_(False)
    return model, mean, std


def split_images(split, mean, std) -> torch.Tensor:
    """Normalised pixel values ``(n, V, 3, S, S)`` of every view of a render split."""
    images = torch.from_numpy(np.asarray(split.with_format("numpy")["images"], dtype=np.float32) / 255.0)
    images = images.permute(0, 1, 4, 2, 3)
    mean = torch.tensor(mean, dtype=torch.float32).reshape(1, 1, -1, 1, 1)
    std = torch.tensor(std, dtype=torch.float32).reshape(1, 1, -1, 1, 1)
    return (images - mean) / std


def step_loss(model, args: dict, targets: dict, pixels: torch.Tensor, pairs: torch.Tensor,
              generator: torch.Generator, device, forward=None) -> torch.Tensor:
    """The loss of one batch of (shape, view) ``pairs`` ``(B, 2)``. ``forward``: what runs the network (the
    accelerate-prepared model, so that DDP synchronises the gradients; default ``model``)."""
    forward = forward or model
    items, views = pairs[:, 0], pairs[:, 1]
    images = pixels[items, views].to(device)
    if args["model"] == "flow":
        cubes = normalize_cube(target_cubes(targets, items, views, args["extent"],
                                            dense=model.config.dense_uv)).to(device)
        return model.flow_matching_loss(cubes, pixel_values=images, generator=generator, forward=forward)
    if args["model"] == "appearance":
        colors = normalize_cube(target_colors(targets, items, views, model.config.color_channels)).to(device)
        cameras = [targets[key][items, views].float().to(device) for key in ("intrinsics", "rotations", "translations")]
        return model.flow_matching_loss(colors, targets["occupancy"][items].bool().to(device), images, *cameras,
                                        generator=generator, forward=forward)
    return forward(pixel_values=images, rotations=targets["rotations"][items, views].float().to(device),
                 translations=targets["translations"][items, views].float().to(device),
                 intrinsics=targets["intrinsics"][items, views].float().to(device), return_dict=True).loss


@torch.no_grad()
def held_out_loss(model, args: dict, targets: dict, pixels: torch.Tensor, batch_size: int, device) -> float:
    """The mean loss over view 0 of every (non-empty) shape of a split, conditioned, with t and ε drawn from ``seed`` (the same
    for every run): no condition dropout (``condition_dropout_prob`` is set to 0 for the call)."""
    generator = torch.Generator().manual_seed(args["seed"])
    items_all = occupied_items(targets)
    config = model.config
    dropout = getattr(config, "condition_dropout_prob", None)
    if dropout is not None:
        config.condition_dropout_prob = 0.0
    total, count = 0.0, len(items_all)
    try:
        for start in range(0, count, batch_size):
            items = items_all[start:start + batch_size]
            pairs = torch.stack([items, torch.zeros_like(items)], dim=1)
            total += step_loss(model, args, targets, pixels, pairs, generator, device).item() * len(items)
    finally:
        if dropout is not None:
            config.condition_dropout_prob = dropout
    return total / count


def main(argv=None, renders=None) -> dict:
    """Run training. ``renders`` (tests) replaces `load_shape_renders`' data set (a `datasets.DatasetDict` with
    its columns); its targets are then not cached."""
    args = parse_args(argv)
    accelerator, output_dir = start_run(args)
    device = accelerator.device
    eval_split = args["eval_split"]
    real_dataset = renders is None

    start = time.time()
    cache_file = None
    if renders is None:
        from whitebox_hf.data import default_cache_dir
        from whitebox_hf.data.shape_renders import load_shape_renders

        renders = load_shape_renders(num_per_category=args["num_per_category"], seed=args["data_seed"],
                                     num_views=args["num_views"], size=args["render_size"])
        cache_root = Path(args["targets_cache_dir"] or Path(default_cache_dir()) / "cupid-targets")
        cache_file = cache_root / (f"n{args['num_per_category']}_seed{args['data_seed']}_views{args['num_views']}_"
                                   f"size{args['render_size']}_res{args['cube_resolution']}_extent{args['extent']}"
                                   ".safetensors")
    for split in ("train", eval_split):
        if split not in renders or len(renders[split]) == 0:
            raise ValueError(f"the renders hold no `{split}` split: raise `num_per_category` "
                             f"(got {args['num_per_category']})")
    renders = {split: renders[split] for split in ("train", eval_split)}
    targets = cupid_targets(renders, args["cube_resolution"], args["extent"], cache_file)
    if args["model"] == "appearance":
        colors_file = None if cache_file is None else cache_file.with_name("appearance_" + cache_file.name)
        colors = appearance_targets(renders, targets, args["extent"], colors_file)
        targets = {split: {**targets[split], "colors": colors[split]["colors"], "visible": colors[split]["visible"]}
                   for split in targets}
    model, image_mean, image_std = build_model(args)
    pixels = {split: split_images(renders[split], image_mean, image_std) for split in renders}
    num_views = pixels["train"].shape[1]
    # Shapes with no occupied voxel at this resolution have no UV cube to learn (`occupied_items`).
    shapes = occupied_items(targets["train"])
    num_shapes, num_empty = len(shapes), len(pixels["train"]) - len(shapes)
    accelerator.print(f"targets of {num_shapes} training shapes × {num_views} views ({num_empty} empty at "
                      f"{args['cube_resolution']}³ left out) and {len(pixels[eval_split])} {eval_split} shapes in "
                      f"{time.time() - start:.1f} s")

    pairs = torch.stack(torch.meshgrid(shapes, torch.arange(num_views), indexing="ij"), dim=-1).reshape(-1, 2)
    train_set = TensorDataset(pairs)
    training = start_diffusion_training(accelerator, output_dir, args, model, train_set, "training (shape, view) pairs")

    def pair_loss(batch, generator):  # t, ε and the condition dropout come from the step's generator
        return step_loss(accelerator.unwrap_model(training.model), args, targets["train"], pixels["train"],
                         batch[0].cpu(), generator, device, forward=training.model)

    run = train_denoiser(accelerator, args, training, pair_loss, description=f"cupid-{args['model']}")

    unwrapped = accelerator.unwrap_model(training.model)
    results = {
        "model": args["model"], **run.facts(unwrapped),
        "num_trainable_parameters": sum(p.numel() for p in unwrapped.parameters() if p.requires_grad),
        "num_train_shapes": int(num_shapes), "num_train_shapes_empty": int(num_empty), "num_train_pairs": len(train_set), "batch_size": args["batch_size"],
        "num_per_category": args["num_per_category"], "data_seed": args["data_seed"], "num_views": num_views,
        "render_size": args["render_size"], "cube_resolution": args["cube_resolution"], "eval_split": eval_split,
        "image_encoder": args["image_encoder"] or None, "freeze_image_encoder": args["freeze_image_encoder"],
        "threads": torch.get_num_threads(), "sample_steps": args["sample_steps"],
        "sample_guidance_scale": args["sample_guidance_scale"],
    }
    if args["model"] == "appearance":
        results.update(pose_aligned=args["pose_aligned"], appearance_guidance_scale=args["appearance_guidance_scale"])
    if args["model"] == "flow":
        results["dense_uv"] = args["dense_uv"]
    if finish_training_run(accelerator, output_dir, "pose loss (train)" if args["model"] == "pose_regression"
                           else "flow-matching MSE (train)"):
        with ema_weights(training.ema, unwrapped):  # the EMA weights are scored and saved
            unwrapped.eval()
            results["val_loss"] = held_out_loss(unwrapped, args, targets[eval_split], pixels[eval_split],
                                                args["eval_batch_size"], device)
            if args["model"] == "flow":
                from whitebox_hf import CupidPipeline

                saved = CupidPipeline(flow_model=unwrapped, scheduler=unwrapped.make_scheduler(),
                                      image_mean=image_mean, image_std=image_std, extent=args["extent"])
                folder_name = "pipeline"
            else:
                saved, folder_name = unwrapped, "model"
            if args["eval_num_items"]:
                eval_start = time.time()
                if args["model"] == "appearance":
                    summary, rows = evaluate_appearance_model(
                        saved, renders[eval_split], targets[eval_split], targets[eval_split], image_mean, image_std,
                        max_items=args["eval_num_items"], num_inference_steps=args["sample_steps"],
                        guidance_scale=args["appearance_guidance_scale"], seed=args["seed"],
                        batch_size=args["eval_batch_size"])
                elif args["model"] == "flow":
                    summary, rows = evaluate_cupid_pipeline(
                        saved, renders[eval_split], targets[eval_split], max_items=args["eval_num_items"],
                        num_inference_steps=args["sample_steps"], guidance_scale=args["sample_guidance_scale"],
                        seed=args["seed"], batch_size=args["eval_batch_size"])
                else:
                    summary, rows = evaluate_pose_regressor(saved, renders[eval_split], targets[eval_split],
                                                            image_mean, image_std, max_items=args["eval_num_items"],
                                                            batch_size=args["eval_batch_size"])
                summary["eval_seconds"] = time.time() - eval_start
                results["evaluation"] = summary
                (output_dir / "eval_items.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
            with atomic_directory(output_dir / folder_name) as folder:  # never a half-written folder
                saved.save_pretrained(folder)
            results["saved_folder"] = str(output_dir / folder_name)
        (output_dir / "metrics.json").write_text(json.dumps(results, indent=2))
        write_card(args, results, unwrapped, output_dir / folder_name, argv, real_dataset)
        evaluation = results.get("evaluation", {})
        accelerator.print(f"step {run.steps}: {eval_split} loss {results['val_loss']:.4f}"
                          + (f", input-view PSNR {evaluation['psnr']:.2f} dB (exact colours "
                             f"{evaluation['oracle_psnr']:.2f}, flat grey {evaluation['flat_psnr']:.2f})"
                             if "psnr" in evaluation else "")
                          + (f", median rotation error {results['evaluation']['pose']['rotation_error_median_deg']:.1f}°"
                             if "pose" in evaluation else ""))
    return results


def card_metrics(results: dict) -> dict:
    """The measured numbers a card reports (`CUPID_METRIC_KEYS`' names)."""
    metrics = {"val_loss": results["val_loss"]}
    evaluation = results.get("evaluation")
    if evaluation and "psnr" in evaluation:
        metrics.update({key: evaluation[key] for key in ("psnr", "oracle_psnr", "flat_psnr", "foreground_psnr",
                                                         "oracle_foreground_psnr", "visible_color_mae")})
    elif evaluation:
        metrics.update({key: value for key, value in evaluation["pose"].items() if key != "failures"})
        metrics.update(evaluation.get("geometry", {}))
    return metrics


def write_card(args: dict, results: dict, model, folder: Path, argv=None, real_dataset: bool = True) -> Path:
    """``folder/README.md``: the flow's `cupid_flow_model_card`, or a short card of the pose regressor, with the
    run's measured validation numbers and exact command."""
    command = shlex.join(["python", "training/train_cupid_flow.py", *(sys.argv[1:] if argv is None else argv)])
    dataset = "procedural-shape-renders" if real_dataset else "in-memory"
    metrics = card_metrics(results)
    summary = (f"{results['steps']:,} steps of batch {results['batch_size']} on {results['num_train_pairs']:,} "
               f"(shape, view) pairs ({results['num_train_shapes']} shapes × {results['num_views']} views), "
               f"{results['train_seconds_total'] / 60:.1f} min on {results['threads']} CPU thread(s); scored on view 0 "
               f"of {results.get('evaluation', {}).get('num_items', 0)} `{results['eval_split']}` renders.")
    hyperparameters = {key: args[key] for key in CARD_HYPERPARAMETERS}
    path = folder / "README.md"
    if args["model"] == "flow":
        from whitebox_hf.hub.model_card import cupid_flow_model_card

        card = cupid_flow_model_card(model.config, metrics, dataset_name=dataset, hyperparameters=hyperparameters,
                                     training_summary=summary, eval_split=results["eval_split"], command=command)
        card.save(str(path))
    elif args["model"] == "appearance":
        variant = "pose-aligned" if args["pose_aligned"] else "global tokens only (Table 8.14's baseline)"
        lines = ["---", "library_name: transformers", "tags:", "- image-to-3d", "- cupid", "---", "",
                 "# cupid-appearance", "",
                 f"Cupid's stage 2 (`CupidAppearanceModel`, conditioning: {variant}): a rectified flow generating a "
                 "colour for every occupied voxel from one render and its camera. Trained on the true voxels and "
                 "cameras; the target is each voxel's colour as the renderer draws it in that view (the renders are "
                 "untextured and grey: shading is their only appearance). Load with `AutoModel.from_pretrained(folder)` "
                 "after `import whitebox_hf`.", "", "## Training", "", summary, "", f"Command: `{command}`", "",
                 "## Measured (EMA weights; input-view PSNR in dB of the voxels drawn at the true camera)", "",
                 "| metric | value |", "|---|---|", *[f"| {key} | {value:.4g} |" for key, value in metrics.items()],
                 "", "Hyperparameters: " + ", ".join(f"{k}={v}" for k, v in hyperparameters.items()), ""]
        path.write_text("\n".join(lines))
    else:
        lines = ["---", "library_name: diffusers", "tags:", "- pose-estimation", "- image-to-3d", "---", "",
                 "# cupid-pose-regression", "",
                 "The direct pose-regression baseline of Cupid's comparison (issue 15, baseline (c)): a CRATE image "
                 "encoder and an MLP predicting the camera (R by the 6D representation, t, f) from one render, "
                 "no geometry, no PnP. Load with `CupidPoseRegressionModel.from_pretrained(folder)` "
                 "(`whitebox_hf.models.cupid.pose_regression`).", "", "## Training", "", summary, "",
                 f"Command: `{command}`", "", "## Measured (EMA weights)", "",
                 "| metric | value |", "|---|---|", *[f"| {key} | {value:.4g} |" for key, value in metrics.items()],
                 "", "Hyperparameters: " + ", ".join(f"{k}={v}" for k, v in hyperparameters.items()), ""]
        path.write_text("\n".join(lines))
    return path


if __name__ == "__main__":
    run_script(main)
