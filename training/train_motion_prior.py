#!/usr/bin/env python
"""EgoAllo's motion prior (book §8.10): body motion from the head trajectory, trained on the real BVH clips
(Accelerate).

    python training/train_motion_prior.py --config training/configs/motion_prior.yaml
    python training/train_motion_prior.py --config ... --head_conditioning absolute --output_dir runs/motion/absolute
    python training/train_motion_prior.py --config ... --floor_height off --window 128 --objective regression
    python training/train_motion_prior.py --config ... --resume_from_checkpoint latest

Spec ``threed_and_motion.md`` §3.4 and §4. **Data**: the ``train_clips`` of `whitebox_hf.data.load_motion` (default
CMU 01_03 only: 1,128 frames, 37.6 s), cut into windows of ``window`` frames (32-128) every ``stride`` frames, each
clip normalised as the data module does it (floor at z = 0, first pelvis at the origin, first head forward along
+x). That is all the real motion there is (3 clips, 2,737 frames, 91.2 s in all); ``test_clips`` (01_01 and the
boxing clip) are held out for the evaluation.

**Floor height** (Table 8.16). Every training window and every evaluated window is lifted by a random height s,
uniform in ``[-floor_shift, floor_shift]`` metres (drawn per step and window; fixed per evaluation window), so the
floor of the world the model sees is at z = s. ``--floor_height on`` gives the model s (`MotionPriorModel`'s
``floor_height``, subtracted from the head heights: the features are those of a floor at 0); ``off`` does not, so
the head height above the floor is unknown to it. The metrics are computed after lowering the estimate by s.

**Objective.** ``diffusion`` (the prior): t uniform in [0, T), x_t by the cosine schedule, x₀-prediction, EgoAllo's
per-modality and noise-level weights (`motion_prior_training_loss`). ``regression`` (baseline (e)): the same
network regresses the body from the head in one pass (`baselines.motion_prior_regression_loss`). Each step's
randomness (the floor shifts, t, ε) comes from a generator seeded by ``(seed, step, process)``, so a resumed run
continues the exact trajectory.

diffusers training conventions as in ``train_shape_diffusion.py``: AdamW + `get_scheduler` + `EMAModel` with warm-up
(`diffusion_optimization`), gradient clipping, checkpoints (model, optimiser, LR schedule, EMA, RNG, step; JSON +
safetensors) in ``output_dir/checkpoints`` and ``--resume_from_checkpoint``.

**Evaluation** (EMA weights) on non-overlapping windows of the held-out clips (the last one flush with the clip's
end), each on the clip's own skeleton: the prior's estimates come from `sample_motion` (``sample_steps`` DDIM steps,
``sample_eta``, a fixed generator), the regression's from one pass; the pelvis is placed from the head in both.
MPJPE, PA-MPJPE, head error, GND and foot skating (`whitebox_hf.evaluation.motion`), per clip and over all windows.

Outputs in ``output_dir``: ``log.jsonl``, ``loss_curve.png``, ``checkpoints/``, ``metrics.json`` and ``model/``
(``save_pretrained`` of the EMA `MotionPriorModel`, safetensors, with a model card ``README.md`` holding the measured
results; loads with ``AutoModel``).
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

import whitebox_hf  # noqa: F401  (registers the Auto classes)
from whitebox_hf.data import load_motion, load_motion_clip
from whitebox_hf.data.motion import DEFAULT_SPLITS
from whitebox_hf.evaluation.motion import evaluate_motion_windows
from whitebox_hf.models.motion_prior import (
    HEAD_CONDITIONINGS,
    MOTION_PRIOR_PRESETS,
    MotionPriorConfig,
    MotionPriorModel,
    motion_prior_training_loss,
    pack_motion,
    sample_motion,
)
from whitebox_hf.models.motion_prior.baselines import motion_prior_regression_loss, regress_motion
from whitebox_hf.training.atomic import atomic_directory
from whitebox_hf.training.config import RUN_DEFAULTS, parse_config_args, run_script
from whitebox_hf.training.generative import (
    ema_weights,
    finish_training_run,
    start_diffusion_training,
    train_denoiser,
)
from whitebox_hf.training.run import start_run

OBJECTIVES = ("diffusion", "regression")
SWITCH = ("on", "off")
MODEL_FIELDS = ("hidden_size", "intermediate_size", "num_attention_heads", "num_encoder_layers", "num_decoder_layers",
                "noise_embedding_dim")
EVAL_SEED = 1234  # the evaluation's floor shifts and sampling noise: the same for every run, so runs compare

DEFAULTS = {
    "preset": "motion-prior-cpu",  # a MOTION_PRIOR_PRESETS name; the fields below override it when > 0
    "hidden_size": 0,
    "intermediate_size": 0,
    "num_attention_heads": 0,
    "num_encoder_layers": 0,
    "num_decoder_layers": 0,
    "noise_embedding_dim": 0,
    "head_conditioning": "ours",  # one of HEAD_CONDITIONINGS (Table 8.15)
    "objective": "diffusion",  # diffusion (the prior) | regression (baseline (e))
    # data
    "bvh_dir": "",  # "" = the cached / installed assimp clips
    "train_clips": ",".join(DEFAULT_SPLITS["train"]),
    "test_clips": ",".join(DEFAULT_SPLITS["test"]),
    "window": 64,  # frames, 32-128
    "stride": 8,  # frames between training window starts
    "floor_height": "on",  # on | off (Table 8.16)
    "floor_shift": 1.0,  # metres: the world's floor is lifted by U(-floor_shift, floor_shift) per window
    # optimisation (spec §3.4: AdamW lr 1e-4, wd 1e-4, warm-up, clip 1)
    "learning_rate": 3e-4,
    "adam_beta1": 0.9,
    "adam_beta2": 0.999,
    "weight_decay": 1e-4,
    "lr_scheduler": "constant_with_warmup",  # any name of diffusers.optimization.get_scheduler
    "lr_warmup_steps": 100,
    "epochs": 100,
    "max_steps": 0,
    "batch_size": 32,
    "max_grad_norm": 1.0,
    "mixed_precision": "no",
    "seed": 0,
    # EMA (diffusers EMAModel with warm-up)
    "ema_max_decay": 0.999,
    "ema_inv_gamma": 1.0,
    "ema_power": 0.75,
    # evaluation
    "sample_steps": 30,
    "sample_eta": 0.8,
    "eval_max_windows": 0,  # > 0: evaluate only the first n held-out windows (tests)
    # bookkeeping
    "output_dir": "runs/motion/prior",
    **RUN_DEFAULTS,  # checkpoint_every 0 = end of each epoch
}

CARD_HYPERPARAMETERS = ("preset", "head_conditioning", "objective", "window", "stride", "floor_height", "floor_shift",
                        "learning_rate", "weight_decay", "lr_scheduler", "lr_warmup_steps", "batch_size", "epochs",
                        "max_steps", "ema_max_decay", "sample_steps", "sample_eta", "train_clips", "test_clips",
                        "seed")


def clip_list(key: str, text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError(f"`{key}` must name at least one clip (comma-separated), got {text!r}")
    return names


def parse_args(argv=None) -> dict:
    args = parse_config_args(DEFAULTS, argv, __doc__)
    for key, allowed in (("head_conditioning", HEAD_CONDITIONINGS), ("objective", OBJECTIVES),
                         ("floor_height", SWITCH), ("preset", tuple(MOTION_PRIOR_PRESETS))):
        if args[key] not in allowed:
            raise ValueError(f"`{key}` must be one of {allowed}, got {args[key]!r}")
    if isinstance(args["window"], bool) or not isinstance(args["window"], int) or not 32 <= args["window"] <= 128:
        raise ValueError(f"`window` must be an integer in [32, 128] frames, got {args['window']!r}")
    for key in ("stride", "batch_size", "sample_steps"):
        if isinstance(args[key], bool) or not isinstance(args[key], int) or args[key] <= 0:
            raise ValueError(f"`{key}` must be a positive integer, got {args[key]!r}")
    for key in (*MODEL_FIELDS, "eval_max_windows"):
        if isinstance(args[key], bool) or not isinstance(args[key], int) or args[key] < 0:
            raise ValueError(f"`{key}` must be a non-negative integer (0 = the preset's / all), got {args[key]!r}")
    if not 0 <= args["floor_shift"] <= 10:
        raise ValueError(f"`floor_shift` must be in [0, 10] metres, got {args['floor_shift']!r}")
    if not 0 <= args["sample_eta"] <= 1:
        raise ValueError(f"`sample_eta` must be in [0, 1], got {args['sample_eta']!r}")
    if not 0 <= args["ema_max_decay"] < 1:
        raise ValueError(f"`ema_max_decay` must be in [0, 1), got {args['ema_max_decay']!r}")
    train, test = clip_list("train_clips", args["train_clips"]), clip_list("test_clips", args["test_clips"])
    if set(train) & set(test):
        raise ValueError(f"`test_clips` must not share clips with `train_clips` (split by clip), got "
                         f"{sorted(set(train) & set(test))} in both")
    return args


def model_config(args: dict) -> MotionPriorConfig:
    overrides = {key: args[key] for key in MODEL_FIELDS if args[key] > 0}
    return MotionPriorConfig.from_preset(args["preset"], head_conditioning=args["head_conditioning"], **overrides)


def window_tensors(split) -> dict[str, torch.Tensor]:
    """The windows of a `load_motion` split as tensors: local rotations (N, T, 22, 3, 3), positions, head poses,
    contacts (bool), offsets (N, 22, 3), and the clip names."""
    data = split.with_format("numpy")
    rotations = torch.from_numpy(np.asarray(data["local_rotations"]))
    return {"local_rotations": rotations.unflatten(-1, (3, 3)),
            "positions": torch.from_numpy(np.asarray(data["positions"])),
            "head_poses": torch.from_numpy(np.asarray(data["head_poses"])),
            "contacts": torch.from_numpy(np.asarray(data["contacts"])),
            "offsets": torch.from_numpy(np.asarray(data["offsets"])),
            "clip": list(split["clip"])}


def load_windows(args: dict) -> dict[str, dict]:
    """``{"train": ..., "test": ...}`` `window_tensors`: training windows every ``stride`` frames, held-out windows
    every ``window`` frames (non-overlapping, the last flush with the clip's end)."""
    bvh_dir = args["bvh_dir"] or None
    window = args["window"]
    train = load_motion(window=window, stride=args["stride"], bvh_dir=bvh_dir,
                        splits={"train": clip_list("train_clips", args["train_clips"])})["train"]
    test = load_motion(window=window, stride=window, bvh_dir=bvh_dir,
                       splits={"test": clip_list("test_clips", args["test_clips"])})["test"]
    return {"train": window_tensors(train), "test": window_tensors(test)}


def lift(head_poses: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """The head poses (B, T, 4, 4) in a world whose floor is at z = shift (B,)."""
    lifted = head_poses.clone()
    lifted[:, :, 2, 3] += shift[:, None].to(head_poses.dtype)
    return lifted


def floor_shifts(count: int, args: dict, generator: torch.Generator) -> torch.Tensor:
    return (2 * torch.rand(count, generator=generator, device=generator.device) - 1).cpu() * args["floor_shift"]


def predictor(model: MotionPriorModel, args: dict, generator: torch.Generator | None = None):
    """``predict(head_poses, offsets, floor_height) -> positions`` of the trained model (``floor_height`` is given
    to the model only with ``--floor_height on``)."""
    def predict(head_poses, offsets, floor_height):
        floor = floor_height if args["floor_height"] == "on" else None
        if args["objective"] == "regression":
            return regress_motion(model, head_poses, offsets, floor).positions
        return sample_motion(model, head_poses, offsets, num_inference_steps=args["sample_steps"],
                             eta=args["sample_eta"], floor_height=floor, generator=generator).positions
    return predict


def evaluate(model: MotionPriorModel, windows: dict, args: dict) -> dict:
    """The held-out metrics of ``model`` (`evaluate_motion_windows` with the run's floor shift and sampler)."""
    model.eval()
    return evaluate_motion_windows(predictor(model, args, torch.Generator().manual_seed(EVAL_SEED)),
                                   windows["head_poses"], windows["offsets"], windows["positions"], windows["clip"],
                                   floor_shift=args["floor_shift"], seed=EVAL_SEED,
                                   max_windows=args["eval_max_windows"])


def main(argv=None) -> dict:
    args = parse_args(argv)
    accelerator, output_dir = start_run(args)
    device = accelerator.device
    windows = load_windows(args)
    train = windows["train"]
    clean = pack_motion(train["local_rotations"][:, :, 1:], train["contacts"])  # the pelvis is placed from the head

    model = MotionPriorModel(model_config(args))
    train_set = TensorDataset(torch.arange(len(clean)))
    training = start_diffusion_training(accelerator, output_dir, args, model, train_set, "training windows")

    def window_batch(batch, generator):  # the floor shifts come from the step's generator
        index = batch[0].cpu()
        shift = floor_shifts(len(index), args, generator)
        floor = shift.to(device) if args["floor_height"] == "on" else None
        return clean[index].to(device), lift(train["head_poses"][index], shift).to(device), floor

    def step_loss(batch, generator):  # {"body", "contacts", "loss"}: logged as body_loss, contacts_loss, train_loss
        target, head, floor = batch
        if args["objective"] == "diffusion":
            return motion_prior_training_loss(training.model, target, head, floor, generator=generator)
        return motion_prior_regression_loss(training.model, target, head, floor)

    run = train_denoiser(accelerator, args, training, step_loss, prepare_batch=window_batch,
                         description=f"motion-{args['objective']}-{args['head_conditioning']}")

    unwrapped = accelerator.unwrap_model(training.model)
    results = {
        "objective": args["objective"], "head_conditioning": args["head_conditioning"],
        "floor_height": args["floor_height"], "window": args["window"], **run.facts(unwrapped),
        "train_clips": clip_list("train_clips", args["train_clips"]),
        "test_clips": clip_list("test_clips", args["test_clips"]),
        "num_train_windows": len(train_set), "num_train_frames": train_frames(windows["train"], args),
        "batch_size": args["batch_size"], "dataset": "assimp-bvh" if not args["bvh_dir"] else "bvh-folder",
        "command": shlex.join(["python", "training/train_motion_prior.py", *(sys.argv[1:] if argv is None else argv)]),
        "config": dict(args),
    }
    if finish_training_run(accelerator, output_dir, f"{args['objective']} loss (train)"):
        with ema_weights(training.ema, unwrapped):  # the EMA weights are scored and saved
            start = time.time()
            results["evaluation"] = evaluate(unwrapped, windows["test"], args)
            results["eval_seconds"] = time.time() - start
            with atomic_directory(output_dir / "model") as folder:  # never a half-written model
                unwrapped.save_pretrained(folder)
            results["model"] = str(output_dir / "model")
        (output_dir / "metrics.json").write_text(json.dumps(results, indent=2))
        write_card(args, results, unwrapped.config)
        overall = results["evaluation"]["all"]
        accelerator.print(f"step {run.steps}: held-out MPJPE {overall['mpjpe_mm']:.1f} mm, PA-MPJPE "
                          f"{overall['pa_mpjpe_mm']:.1f} mm over {overall['num_windows']} windows")
    return results


def train_frames(train: dict, args: dict) -> int:
    """Distinct training frames the windows cover (clip lengths, not windows × window)."""
    bvh_dir = args["bvh_dir"] or None
    return sum(load_motion_clip(name, bvh_dir=bvh_dir).num_frames for name in sorted(set(train["clip"])))


def write_card(args: dict, results: dict, config) -> Path:
    """``model/README.md``: `motion_prior_model_card` with the run's measured held-out results."""
    from whitebox_hf.hub.model_card import motion_prior_model_card

    overall = results["evaluation"]["all"]
    metrics = {key: overall[key] for key in ("mpjpe_mm", "pa_mpjpe_mm", "head_error_m", "gnd", "foot_skating_m")}
    summary = (f"{results['steps']:,} steps ({results['epochs']:.1f} epochs, {results['train_seconds_total']:.0f} s) "
               f"on {results['num_train_windows']} windows of {args['window']} frames from the clips "
               f"{', '.join(results['train_clips'])} ({results['num_train_frames']:,} frames at 30 fps); objective "
               f"{args['objective']}, floor height {args['floor_height']}. All the real motion there is: 3 clips, "
               f"2,737 frames, 91.2 s; held out: {', '.join(results['test_clips'])}.")
    card = motion_prior_model_card(
        config, metrics, dataset_name=results["dataset"], eval_split="+".join(results["test_clips"]),
        hyperparameters={key: args[key] for key in CARD_HYPERPARAMETERS}, training_summary=summary,
        command=results["command"], repo_path=str(Path(args["output_dir"]) / "model"),
        metrics_source="metrics.json",
        # The regression baseline is the same network without diffusion: its name says so.
        model_name=None if args["objective"] == "diffusion" else
        f"motion-regression-{args['head_conditioning']}-{results['dataset']}".replace("_", "-"))
    path = Path(args["output_dir"]) / "model" / "README.md"
    card.save(str(path))
    return path


if __name__ == "__main__":
    run_script(main)
