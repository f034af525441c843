#!/usr/bin/env python
"""Video by temporal inflation (VideoLDM / AnimateDiff, book §8.7) on MiniGrid recordings (Accelerate), in two
stages:

    python training/train_video_inflation.py --config training/configs/video_inflation.yaml --stage image \
        --output_dir runs/world/video_image
    python training/train_video_inflation.py --config ... --stage temporal --image_model runs/world/video_image/unet \
        --output_dir runs/world/video_temporal
    python training/train_video_inflation.py --config ... --resume_from_checkpoint latest

**Stage image**: an unconditional `UNet2DConditionModel` (`whitebox_hf.models.world_model.video.image_unet`) on
single frames of the training episodes (`load_environment_recordings`, as ``train_world_model.py``), ε-prediction on
a squared-cosine DDPM schedule. **Stage temporal**: that model inflated (`inflate_to_video`: diffusers'
`MotionAdapter` + `UNetMotionModel.from_unet2d`, zero output projections, 2D weights frozen) and only its temporal
layers trained on clips of ``num_frames`` consecutive recorded frames (one timestep per clip).

Both stages: AdamW + EMA (`start_diffusion_training`), t and ε from a generator seeded by ``(seed, step, process)``,
checkpoints (safetensors + JSON) and ``--resume_from_checkpoint``. Outputs: ``log.jsonl``, ``loss_curve.png``,
``checkpoints/``, ``unet/`` (``save_pretrained``, EMA weights, safetensors), ``metrics.json``; the temporal stage
also evaluates (`whitebox_hf.evaluation.world_model.temporal_consistency`): ``eval_videos`` clips from the video
model vs as many clips of frames drawn independently from the image model, next to recorded clips and recorded
frames shuffled across clips, and saves them in ``samples.safetensors``.
"""

from __future__ import annotations

import json
import shlex
import sys
import time

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from safetensors.torch import save_file
from torch.utils.data import TensorDataset

from whitebox_hf.data import load_environment_recordings
from whitebox_hf.evaluation.world_model import temporal_consistency
from whitebox_hf.models.world_model import frames_to_pixels, pixels_to_frames
from whitebox_hf.models.world_model.video import (
    check_num_frames,
    image_unet,
    inflate_to_video,
    sample_frames,
    video_loss,
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

STAGES = ("image", "temporal")
EVAL_SEED = 1234

DEFAULTS = {
    "stage": "image",
    "image_model": "",  # stage temporal: the image stage's unet/ folder
    "env_id": "MiniGrid-Empty-Random-6x6-v0",
    "tile_size": 4,
    "num_train_episodes": 200,
    "num_test_episodes": 40,
    "episode_length": 24,
    "data_seed": 0,
    "block_out_channels": "32,64",
    "num_frames": 8,  # frames per training clip (temporal stage)
    "motion_max_seq_length": 16,
    "motion_num_attention_heads": 2,
    "num_train_timesteps": 1000,
    "learning_rate": 1e-3,
    "adam_beta1": 0.9,
    "adam_beta2": 0.999,
    "weight_decay": 0.0,
    "lr_scheduler": "constant_with_warmup",
    "lr_warmup_steps": 50,
    "epochs": 100,
    "max_steps": 0,
    "batch_size": 16,  # frames (image stage) or clips (temporal stage)
    "max_grad_norm": 1.0,
    "mixed_precision": "no",
    "seed": 0,
    "ema_max_decay": 0.999,
    "ema_inv_gamma": 1.0,
    "ema_power": 0.75,
    "sample_steps": 20,
    "eval_videos": 16,
    "output_dir": "runs/world/video_image",
    **RUN_DEFAULTS,
}


def parse_args(argv=None) -> dict:
    args = parse_config_args(DEFAULTS, argv, __doc__)
    if args["stage"] not in STAGES:
        raise ValueError(f"`stage` must be one of {STAGES}, got {args['stage']!r}")
    if args["stage"] == "temporal" and not args["image_model"]:
        raise ValueError("`image_model` must name the image stage's unet/ folder for --stage temporal, got ''")
    for key in ("num_frames", "motion_max_seq_length", "batch_size", "sample_steps", "eval_videos"):
        if isinstance(args[key], bool) or not isinstance(args[key], int) or args[key] <= 0:
            raise ValueError(f"`{key}` must be a positive integer, got {args[key]!r}")
    if args["num_frames"] > args["motion_max_seq_length"]:
        raise ValueError(f"`num_frames` must be at most motion_max_seq_length ({args['motion_max_seq_length']}), "
                         f"got {args['num_frames']}")
    if args["num_frames"] > args["episode_length"] + 1:
        raise ValueError(f"`num_frames` must be at most episode_length + 1 ({args['episode_length'] + 1}), got "
                         f"{args['num_frames']}")
    return args


def noise_scheduler(args: dict) -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=args["num_train_timesteps"], beta_schedule="squaredcos_cap_v2")


def build_model(args: dict, sample_size: int):
    if args["stage"] == "image":
        return image_unet(sample_size=sample_size,
                          block_out_channels=tuple(int(c) for c in args["block_out_channels"].split(",")))
    image = UNet2DConditionModel.from_pretrained(args["image_model"], use_safetensors=True)
    return inflate_to_video(image, motion_max_seq_length=args["motion_max_seq_length"],
                            motion_num_attention_heads=args["motion_num_attention_heads"])


def evaluate(video, image, test, args: dict) -> tuple[dict, dict]:
    """Temporal consistency of the video model's clips, independent frames, recorded and shuffled clips."""
    scheduler = DDIMScheduler.from_config(noise_scheduler(args).config)
    f, n = args["num_frames"], args["eval_videos"]
    video.eval()
    image.eval()
    samples = {
        "video": pixels_to_frames(sample_frames(video, scheduler, n, f, args["sample_steps"],
                                                torch.Generator().manual_seed(EVAL_SEED))).numpy(),
        "independent": pixels_to_frames(sample_frames(image, scheduler, n, f, args["sample_steps"],
                                                      torch.Generator().manual_seed(EVAL_SEED))).numpy(),
    }
    rng = np.random.default_rng(EVAL_SEED)
    episodes = rng.integers(0, test.frames.shape[0], n)
    starts = rng.integers(0, test.frames.shape[1] - f + 1, n)
    samples["recorded"] = np.stack([test.frames[e, s:s + f] for e, s in zip(episodes, starts)])
    # Recorded frames, each from a random episode and time: real frames without temporal coherence.
    samples["shuffled"] = test.frames[rng.integers(0, test.frames.shape[0], (n, f)),
                                      rng.integers(0, test.frames.shape[1], (n, f))]
    reference = test.frames.reshape(-1, *test.frames.shape[2:])
    return {name: temporal_consistency(clips, reference) for name, clips in samples.items()}, samples


def main(argv=None, data: dict | None = None) -> dict:
    args = parse_args(argv)
    accelerator, output_dir = start_run(args)
    device = accelerator.device
    data = data if data is not None else load_environment_recordings(
        args["num_train_episodes"], args["num_test_episodes"], episode_length=args["episode_length"],
        seed=args["data_seed"], env_id=args["env_id"], tile_size=args["tile_size"])
    train, test = data["train"], data["test"]
    pixels = frames_to_pixels(train.frames)  # (E, T + 1, 3, H, W)
    f = args["num_frames"] if args["stage"] == "temporal" else 1
    episodes, length = pixels.shape[:2]
    index = torch.tensor([(e, s) for e in range(episodes) for s in range(length - f + 1)], dtype=torch.long)

    model = build_model(args, train.frames.shape[2])
    if args["stage"] == "temporal":
        check_num_frames(model, f)
    scheduler = noise_scheduler(args)
    train_set = TensorDataset(torch.arange(len(index)))
    training = start_diffusion_training(accelerator, output_dir, args, model, train_set, "clips")
    offsets = torch.arange(f)

    def clip_batch(batch, generator):
        episode, start = index[batch[0].cpu()].unbind(1)
        return pixels[episode[:, None], start[:, None] + offsets].to(device)  # (B, F, 3, H, W)

    def step_loss(clips, generator):
        # The prepared model, not the unwrapped one: under DDP its forward is what synchronises the gradients.
        return video_loss(training.model, scheduler, clips, generator)

    # The temporal stage trains the inflated layers only: the gradient norm is clipped over those.
    run = train_denoiser(accelerator, args, training, step_loss, prepare_batch=clip_batch,
                         description=f"video-{args['stage']}", trainable_only=True, log_ema_decay=False)

    unwrapped = accelerator.unwrap_model(training.model)
    facts = run.facts(unwrapped)
    del facts["seconds_per_step"]  # this script's metrics.json never had it (the reports read its keys)
    results = {
        "stage": args["stage"], **facts,
        "num_trainable_parameters": sum(p.numel() for p in unwrapped.parameters() if p.requires_grad),
        "num_train_episodes": int(train.frames.shape[0]), "num_train_items": len(index),
        "frames_per_item": f, "batch_size": args["batch_size"], "env_id": train.env_id,
        "command": shlex.join(["python", "training/train_video_inflation.py",
                               *(sys.argv[1:] if argv is None else argv)]),
        "config": dict(args),
    }
    if finish_training_run(accelerator, output_dir, f"{args['stage']} stage loss (train)"):
        with ema_weights(training.ema, unwrapped):  # the EMA weights are scored and saved
            with atomic_directory(output_dir / "unet") as folder:
                unwrapped.save_pretrained(folder)
            if args["stage"] == "temporal":
                image = UNet2DConditionModel.from_pretrained(args["image_model"], use_safetensors=True)
                start = time.time()
                results["evaluation"], samples = evaluate(unwrapped, image, test, args)
                results["eval_seconds"] = time.time() - start
                save_file({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in samples.items()},
                          output_dir / "samples.safetensors")
                scores = results["evaluation"]
                accelerator.print("  ".join(f"{name}: sim {s['feature_similarity']:.3f} change "
                                            f"{s['pixel_change']:.3f} FD {s['fd_frames']:.1f}"
                                            for name, s in scores.items()))
        (output_dir / "metrics.json").write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    run_script(main)
