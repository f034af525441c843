#!/usr/bin/env python
"""An action-conditioned world model (Genie-style, book §8.7) on MiniGrid recordings (Accelerate): next-frame
diffusion conditioned on the past frames and the action, or the same network as a deterministic regressor.

    python training/train_world_model.py --config training/configs/world_model.yaml
    python training/train_world_model.py --config ... --model regressor --output_dir runs/world/regressor
    python training/train_world_model.py --config ... --resume_from_checkpoint latest

**Data** (`whitebox_hf.data.load_environment_recordings`): ``num_train_episodes`` episodes of ``episode_length``
random actions (left, right, forward) in MiniGrid's 6×6 empty room with a random start, 24×24 RGB frames;
``num_test_episodes`` other episodes (other seeds) are held out. A training item is one transition: the
``num_context_frames`` frames up to t, the action a_t, the frame t+1.

**Model** (`whitebox_hf.models.world_model.WorldModel`): ``--model diffusion`` trains x0-prediction (``prediction_type``: sample, epsilon or v_prediction) on a DDPM
schedule (``num_train_timesteps``, squared-cosine betas); ``--model regressor`` the same U-Net (same parameters)
regressing the next frame by MSE. Each step's t and ε come from a generator seeded by ``(seed, step, process)``, so
a resumed run continues the exact trajectory. AdamW + `get_scheduler` + EMA (`start_diffusion_training`), gradient
clipping, checkpoints (safetensors + JSON) every ``checkpoint_every`` steps and ``--resume_from_checkpoint``.

**Evaluation** (EMA weights, `whitebox_hf.evaluation.world_model`) on the held-out episodes: one-step PSNR/SSIM with
the true and with a wrong action (the first ``eval_transitions`` transitions), and rollout PSNR/SSIM/MSE over
1 .. ``rollout_horizon`` steps from the first k frames of each episode, ``sample_steps`` DDIM steps per frame.

Outputs in ``output_dir``: ``log.jsonl``, ``loss_curve.png``, ``checkpoints/``, ``metrics.json``,
``rollouts.safetensors`` (the rollouts and the recorded frames they follow) and ``pipeline/`` (the
`WorldModelPipeline` with the EMA model and a DDIM scheduler, safetensors, loadable without whitebox_hf by
``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)``, with a model card ``README.md`` holding
the measured results).
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from safetensors.torch import save_file
from torch.utils.data import TensorDataset

from whitebox_hf.data import ENVIRONMENT_ACTIONS, load_environment_recordings
from whitebox_hf.evaluation.world_model import next_frame_metrics, rollout_errors
from whitebox_hf.models.world_model import (
    PREDICTIONS,
    WorldModel,
    frames_to_pixels,
    world_model_loss,
)
from whitebox_hf.pipelines import WorldModelPipeline
from whitebox_hf.training.atomic import atomic_directory
from whitebox_hf.training.config import RUN_DEFAULTS, parse_config_args, run_script
from whitebox_hf.training.generative import (
    ema_weights,
    finish_training_run,
    start_diffusion_training,
    train_denoiser,
)
from whitebox_hf.training.run import start_run

DEFAULTS = {
    "model": "diffusion",  # diffusion | regressor (the same network, predicting the frame)
    # data
    "env_id": "MiniGrid-Empty-Random-6x6-v0",
    "tile_size": 4,  # pixels per grid cell: 6 cells → 24×24 frames
    "num_train_episodes": 200,
    "num_test_episodes": 40,
    "episode_length": 24,
    "data_seed": 0,
    # model
    "num_context_frames": 2,
    "block_out_channels": "32,64",
    "layers_per_block": 1,
    "cross_attention_dim": 64,
    "attention_head_dim": 16,
    "num_train_timesteps": 1000,
    # diffusion only: what the network predicts (diffusers' `prediction_type`): "sample" (x0), "epsilon" or
    # "v_prediction". x0 by default: the next frame is nearly a function of context and action, and ε-prediction
    # at 700 steps sampled 13.8 dB next frames (worse than copying the last frame) where x0 needs no extra capacity.
    "prediction_type": "sample",
    # optimisation
    "learning_rate": 5e-4,
    "adam_beta1": 0.9,
    "adam_beta2": 0.999,
    "weight_decay": 0.0,
    "lr_scheduler": "constant_with_warmup",
    "lr_warmup_steps": 50,
    "epochs": 100,
    "max_steps": 0,
    "batch_size": 32,
    "max_grad_norm": 1.0,
    "mixed_precision": "no",
    "seed": 0,
    "ema_max_decay": 0.999,
    "ema_inv_gamma": 1.0,
    "ema_power": 0.75,
    # evaluation
    "sample_steps": 20,
    "eval_transitions": 256,  # one-step metrics on the first n held-out transitions (0 = all)
    "rollout_horizon": 16,
    "rollout_episodes": 0,  # 0 = every held-out episode
    "output_dir": "runs/world/diffusion",
    **RUN_DEFAULTS,
}

CARD_HYPERPARAMETERS = ("model", "env_id", "num_train_episodes", "episode_length", "num_context_frames",
                        "block_out_channels", "learning_rate", "batch_size", "max_steps", "sample_steps", "seed")


def parse_args(argv=None) -> dict:
    args = parse_config_args(DEFAULTS, argv, __doc__)
    if args["model"] not in PREDICTIONS:
        raise ValueError(f"`model` must be one of {PREDICTIONS}, got {args['model']!r}")
    for key in ("num_train_episodes", "num_test_episodes", "episode_length", "num_context_frames", "batch_size",
                "sample_steps", "rollout_horizon", "tile_size"):
        if isinstance(args[key], bool) or not isinstance(args[key], int) or args[key] <= 0:
            raise ValueError(f"`{key}` must be a positive integer, got {args[key]!r}")
    if args["rollout_horizon"] > args["episode_length"] + 1 - args["num_context_frames"]:
        raise ValueError(f"`rollout_horizon` must be at most episode_length + 1 - num_context_frames = "
                         f"{args['episode_length'] + 1 - args['num_context_frames']}, got {args['rollout_horizon']}")
    try:
        channels = tuple(int(c) for c in str(args["block_out_channels"]).split(","))
    except ValueError:
        raise ValueError(f"`block_out_channels` must be comma-separated integers, got "
                         f"{args['block_out_channels']!r}") from None
    args["block_out_channels"] = ",".join(map(str, channels))
    return args


def build_model(args: dict, sample_size: int) -> WorldModel:
    channels = tuple(int(c) for c in args["block_out_channels"].split(","))
    return WorldModel(sample_size=sample_size, num_context_frames=args["num_context_frames"],
                      num_actions=len(ENVIRONMENT_ACTIONS), prediction=args["model"], block_out_channels=channels,
                      layers_per_block=args["layers_per_block"], cross_attention_dim=args["cross_attention_dim"],
                      attention_head_dim=args["attention_head_dim"])


PREDICTION_TYPES = ("sample", "epsilon", "v_prediction")


def noise_scheduler(args: dict) -> DDPMScheduler:
    # Squared-cosine betas: at 24×24 the linear schedule leaves too little signal in its last quarter.
    if args["prediction_type"] not in PREDICTION_TYPES:
        raise ValueError(f"`prediction_type` must be one of {PREDICTION_TYPES}, got {args['prediction_type']!r}")
    return DDPMScheduler(num_train_timesteps=args["num_train_timesteps"], beta_schedule="squaredcos_cap_v2",
                         prediction_type=args["prediction_type"])


def load_data(args: dict) -> dict:
    return load_environment_recordings(args["num_train_episodes"], args["num_test_episodes"],
                                       episode_length=args["episode_length"], seed=args["data_seed"],
                                       env_id=args["env_id"], tile_size=args["tile_size"])


def transitions(frames: np.ndarray, k: int) -> torch.Tensor:
    """``(N, 2)`` (episode, t) of every transition t → t+1 with k frames of context."""
    episodes, steps = frames.shape[0], frames.shape[1] - 1
    return torch.tensor([(e, t) for e in range(episodes) for t in range(k - 1, steps)], dtype=torch.long)


def make_pipeline(model: WorldModel, args: dict) -> WorldModelPipeline:
    pipe = WorldModelPipeline(model, DDIMScheduler.from_config(noise_scheduler(args).config))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def evaluate(model: WorldModel, test, args: dict) -> dict:
    model.eval()
    pipe = make_pipeline(model, args)
    start = time.time()
    one_step = next_frame_metrics(pipe, test.frames, test.actions, max_transitions=args["eval_transitions"],
                                  num_inference_steps=args["sample_steps"])
    rollout = rollout_errors(pipe, test.frames, test.actions, horizon=args["rollout_horizon"],
                             num_inference_steps=args["sample_steps"], max_episodes=args["rollout_episodes"])
    return {"next_frame": one_step, "rollout": rollout, "eval_seconds": time.time() - start}


def main(argv=None, data: dict | None = None) -> dict:
    args = parse_args(argv)
    accelerator, output_dir = start_run(args)
    device = accelerator.device
    data = data if data is not None else load_data(args)
    train, test = data["train"], data["test"]
    k = args["num_context_frames"]
    pixels = frames_to_pixels(train.frames)  # (E, T + 1, 3, H, W) in [-1, 1]
    actions = torch.from_numpy(train.actions)
    index = transitions(train.frames, k)

    model = build_model(args, train.frames.shape[2])
    scheduler = noise_scheduler(args)
    train_set = TensorDataset(torch.arange(len(index)))
    training = start_diffusion_training(accelerator, output_dir, args, model, train_set, "transitions")
    offsets = torch.arange(-k + 1, 1)

    def transition(batch, generator):
        episode, t = index[batch[0].cpu()].unbind(1)
        context = pixels[episode[:, None], t[:, None] + offsets].to(device)
        return context, actions[episode, t].to(device), pixels[episode, t + 1].to(device)

    def step_loss(batch, generator):  # t and ε come from the step's generator
        context, action, target = batch
        # The prepared model, not the unwrapped one: under DDP its forward is what synchronises the gradients.
        return world_model_loss(training.model, scheduler, context, action, target, generator)

    run = train_denoiser(accelerator, args, training, step_loss, prepare_batch=transition,
                         description=f"world-{args['model']}", log_ema_decay=False)

    unwrapped = accelerator.unwrap_model(training.model)
    results = {
        "model": args["model"], **run.facts(unwrapped),
        "num_train_episodes": int(train.frames.shape[0]), "num_train_transitions": len(index),
        "num_train_frames": int(train.frames.shape[0] * train.frames.shape[1]),
        "num_test_episodes": int(test.frames.shape[0]), "frame_shape": list(train.frames.shape[2:]),
        "env_id": train.env_id, "batch_size": args["batch_size"],
        "command": shlex.join(["python", "training/train_world_model.py", *(sys.argv[1:] if argv is None else argv)]),
        "config": dict(args),
    }
    if finish_training_run(accelerator, output_dir, f"{args['model']} loss (train)"):
        with ema_weights(training.ema, unwrapped):  # the EMA weights are scored and saved
            evaluation = evaluate(unwrapped, test, args)
            rollout_frames = evaluation["rollout"].pop("frames")
            results["evaluation"] = evaluation
            k, horizon = args["num_context_frames"], args["rollout_horizon"]
            episodes = rollout_frames.shape[0]
            save_file({"rollout": torch.from_numpy(np.ascontiguousarray(rollout_frames)),
                       "truth": torch.from_numpy(test.frames[:episodes, :k + horizon].copy()),
                       "actions": torch.from_numpy(test.actions[:episodes, k - 1:k - 1 + horizon].copy())},
                      output_dir / "rollouts.safetensors")
            with atomic_directory(output_dir / "pipeline") as folder:  # never a half-written pipeline
                make_pipeline(unwrapped, args).save_pretrained(folder)
            results["pipeline"] = str(output_dir / "pipeline")
        (output_dir / "metrics.json").write_text(json.dumps(results, indent=2))
        write_card(args, results)
        one = evaluation["next_frame"]
        accelerator.print(f"step {run.steps}: next-frame PSNR {one['true_action']['psnr']:.2f} dB (true action) "
                          f"vs {one['wrong_action']['psnr']:.2f} dB (wrong); rollout PSNR at "
                          f"{horizon} steps {evaluation['rollout']['psnr'][-1]:.2f} dB")
    return results


def write_card(args: dict, results: dict) -> Path:
    """``pipeline/README.md``: the measured held-out results (a huggingface_hub `ModelCard` with a model-index)."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    one = results["evaluation"]["next_frame"]
    rollout = results["evaluation"]["rollout"]
    name = f"world-model-{args['model']}-minigrid"
    metrics = [("psnr_true_action", one["true_action"]["psnr"]), ("psnr_wrong_action", one["wrong_action"]["psnr"]),
               ("ssim_true_action", one["true_action"]["ssim"]), ("ssim_wrong_action", one["wrong_action"]["ssim"]),
               (f"rollout_psnr_{len(rollout['psnr'])}_steps", rollout["psnr"][-1])]
    data = ModelCardData(library_name="diffusers", license="apache-2.0", tags=["world-model", "whitebox_hf"],
                         model_name=name, eval_results=[
                             EvalResult(task_type="video-prediction", dataset_type=results["env_id"],
                                        dataset_name=results["env_id"], dataset_split="test", metric_type=key,
                                        metric_value=round(value, 4)) for key, value in metrics])
    rows = "\n".join(f"| {key} | {value:.4f} |" for key, value in metrics)
    hyper = "\n".join(f"- `{key}`: {args[key]}" for key in CARD_HYPERPARAMETERS)
    kind = (f"next-frame diffusion ({args['prediction_type']} prediction, DDIM sampling)" if args["model"] == "diffusion"
            else "deterministic next-frame regressor (the diffusion model's network, no noise)")
    text = f"""---
{data.to_yaml()}
---

# {name}

An action-conditioned world model of `{results['env_id']}` (whitebox_hf `WorldModelPipeline`): {kind}, from the
past {args['num_context_frames']} frames and the action (left, right, forward) embedded as a cross-attention token.
{results['num_parameters']:,} parameters.

Trained from scratch: {results['steps']:,} steps of batch {results['batch_size']} ({results['epochs']:.1f} epochs,
{results['train_seconds_total'] / 60:.1f} min) on {results['num_train_transitions']:,} transitions of
{results['num_train_episodes']} recorded episodes (random policy); evaluated on {results['num_test_episodes']}
held-out episodes ({one['num_transitions']} one-step transitions; rollouts of {len(rollout['psnr'])} steps).

| metric (held-out) | value |
|---|---|
{rows}

Measured by `training/train_world_model.py` (`metrics.json`); command: `{results['command']}`

## Hyperparameters

{hyper}

## How to use

```python
from diffusers import DiffusionPipeline
pipe = DiffusionPipeline.from_pretrained("path/to/this/folder", trust_remote_code=True)
out = pipe(start_frames, actions)  # uint8 (B, {args['num_context_frames']}, H, W, 3), int (B, T) → out.frames (B, T, H, W, 3)
```
"""
    path = Path(args["output_dir"]) / "pipeline" / "README.md"
    ModelCard(text).save(str(path))
    return path


if __name__ == "__main__":
    run_script(main)
