"""What the generative training scripts share (``train_latent_flow.py``, ``train_ddpm_unet.py``,
``train_dreambooth_lora.py``): the settings, the training images, classifier-free-guidance label dropout, the
rectified-flow loss, the start of a denoiser's run (`start_diffusion_training`) and its training loop with EMA,
checkpoints and exact resume (`train_denoiser`, the loss a callable; both also used by the world-model, video,
shape, Cupid and motion scripts), the end of a run (`finish_training_run`, `ema_weights`), the whole class-conditional
run (`run_training`), the sample grid and the pipeline's model card."""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import torch
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel, compute_density_for_timestep_sampling
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from ..data import DATASETS, EpochPermutationSampler, dataset_to_tensors, load_image_dataset
from ..hub.model_card import pipeline_model_card
from .atomic import atomic_directory
from .checkpointing import (
    TrainingProgress,
    exit_if_interrupt_requested,
    resume_run,
    resumable_batches,
    save_checkpoint_if_due,
    step_seed,
)
from .config import RUN_DEFAULTS
from .optim import optimizer_step
from .plots import plot_training_curves

__all__ = [
    "CARD_HYPERPARAMETERS",
    "GENERATIVE_DEFAULTS",
    "DenoiserRun",
    "DiffusionTraining",
    "drop_class_labels",
    "ema_weights",
    "finish_training_run",
    "flow_matching_loss",
    "load_training_images",
    "run_training",
    "sample_grid",
    "shift_sigmas",
    "start_diffusion_training",
    "train_denoiser",
    "write_pipeline_card",
]

# The settings shared by the flow and DDPM scripts (each adds its model's).
GENERATIVE_DEFAULTS = {
    "class_dropout_prob": 0.1,  # CFG label dropout (to the null id = num_classes), applied once, here
    # data
    "dataset": "fashion-mnist",
    "data_dir": "",
    "train_subset": 0,  # >0: first n training images
    # optimisation
    "learning_rate": 2e-4,
    "adam_beta1": 0.9,
    "adam_beta2": 0.999,
    "weight_decay": 0.0,
    "lr_scheduler": "constant_with_warmup",  # any name of diffusers.optimization.get_scheduler
    "lr_warmup_steps": 200,
    "epochs": 10,
    "max_steps": 0,
    "batch_size": 128,
    "max_grad_norm": 1.0,
    "mixed_precision": "no",
    "seed": 0,
    # EMA (diffusers EMAModel; train_unconditional.py's warm-up defaults)
    "ema_max_decay": 0.9999,
    "ema_inv_gamma": 1.0,
    "ema_power": 0.75,
    # final samples (drawn with the saved pipeline; 0 disables)
    "samples_per_class": 8,
    "sample_guidance_scale": 2.0,
    # bookkeeping
    "output_dir": "runs/flow",
    **RUN_DEFAULTS,  # checkpoint_every 0 = end of each epoch
}


def load_training_images(args: dict, accelerator, data: dict | None) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``(pixels float (n, C, H, W) in [-1, 1], labels (n,), class names)``. ``data`` (tests) replaces the data
    set: ``{"train_images": uint8 (n, C, H, W), "train_labels": (n,), "class_names": [...]}``."""
    if data is None:
        dataset, info = load_image_dataset(args["dataset"], args["data_dir"] or None, accelerator)
        images, labels = dataset_to_tensors(dataset["train"])
        class_names = list(info["class_names"])
    else:
        images, labels = data["train_images"], data["train_labels"]
        class_names = list(data.get("class_names") or [str(i) for i in range(int(labels.max()) + 1)])
    if args["train_subset"]:
        images, labels = images[: args["train_subset"]], labels[: args["train_subset"]]
    return images.float() / 127.5 - 1.0, labels.long(), class_names


def drop_class_labels(labels: torch.Tensor, probability: float, null_class_id: int,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each label by ``null_class_id`` with probability ``probability`` (classifier-free guidance)."""
    if probability <= 0:
        return labels
    drop = torch.rand(labels.shape, device=labels.device, generator=generator) < probability
    return torch.where(drop, torch.full_like(labels, null_class_id), labels)


def diffusion_optimization(model: nn.Module, args: dict, total_steps: int):
    """diffusers' training recipe for a denoiser: AdamW (``adam_beta1/2``, ``weight_decay``), the
    ``lr_scheduler`` of `diffusers.optimization.get_scheduler` with ``lr_warmup_steps`` over ``total_steps``, and an
    `EMAModel` with warm-up (``ema_max_decay``, ``ema_inv_gamma``, ``ema_power``) that can rebuild the model
    class. Returns ``(optimizer, lr_scheduler, ema)``."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=args["learning_rate"],
                                  betas=(args["adam_beta1"], args["adam_beta2"]), weight_decay=args["weight_decay"])
    lr_scheduler = get_scheduler(args["lr_scheduler"], optimizer, num_warmup_steps=args["lr_warmup_steps"],
                                 num_training_steps=total_steps)
    ema = EMAModel(model.parameters(), decay=args["ema_max_decay"], use_ema_warmup=True,
                   inv_gamma=args["ema_inv_gamma"], power=args["ema_power"], model_cls=type(model),
                   model_config=model.config)
    return optimizer, lr_scheduler, ema


class DiffusionTraining(NamedTuple):
    """What `start_diffusion_training` sets up: the prepared model, optimizer, loader and scheduler, the EMA, the
    resumed `progress`, the steps of an epoch and of the run, and how often a checkpoint is written."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    loader: DataLoader
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler
    ema: EMAModel
    progress: TrainingProgress
    steps_per_epoch: int
    total_steps: int
    checkpoint_every: int


def start_diffusion_training(accelerator, output_dir: Path, args: dict, model: nn.Module, train_set,
                             items: str = "training examples") -> DiffusionTraining:
    """The start of a denoiser's training run: a loader of ``train_set`` in ``batch_size`` batches (a seeded
    `EpochPermutationSampler`, the last short batch dropped), ``epochs`` of it capped at ``max_steps``,
    `diffusion_optimization`, everything passed through ``accelerator.prepare``, the EMA on the device, the run
    resumed from ``output_dir``'s last checkpoint (`resume_run`) and the trackers started. ``items`` names what
    ``train_set`` holds in the error.

    Raises:
        ValueError: ``batch_size`` exceeds the size of ``train_set`` (no full batch).
    """
    loader = DataLoader(train_set, batch_size=args["batch_size"],
                        sampler=EpochPermutationSampler(len(train_set), seed=args["seed"]), drop_last=True)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise ValueError(f"`batch_size` ({args['batch_size']}) exceeds the {len(train_set)} {items}")
    total_steps = steps_per_epoch * args["epochs"]
    if args["max_steps"]:
        total_steps = min(total_steps, args["max_steps"])

    optimizer, lr_scheduler, ema = diffusion_optimization(model, args, total_steps)
    model, optimizer, loader, lr_scheduler = accelerator.prepare(model, optimizer, loader, lr_scheduler)
    ema.to(accelerator.device)
    progress = resume_run(accelerator, output_dir, args, ema)
    accelerator.init_trackers("log", config=dict(args))
    return DiffusionTraining(model, optimizer, loader, lr_scheduler, ema, progress, steps_per_epoch, total_steps,
                             args["checkpoint_every"] or steps_per_epoch)


class DenoiserRun(NamedTuple):
    """What `train_denoiser` measured: the step it started from, the steps reached, the steps of an epoch, the
    training seconds of this run and of the runs it resumed."""

    start_step: int
    steps: int
    steps_per_epoch: int
    train_seconds: float
    earlier_seconds: float

    def facts(self, model: nn.Module) -> dict:
        """The training facts every script's ``metrics.json`` / ``results.json`` holds, in their order."""
        return {
            "steps": self.steps, "start_step": self.start_step, "epochs": self.steps / self.steps_per_epoch,
            "train_seconds_this_run": self.train_seconds,
            "train_seconds_total": self.earlier_seconds + self.train_seconds,
            "seconds_per_step": self.train_seconds / max(self.steps - self.start_step, 1),
            "num_parameters": sum(p.numel() for p in model.parameters()),
        }


def train_denoiser(
    accelerator,
    args: dict,
    training: DiffusionTraining,
    compute_loss: Callable[[object, torch.Generator], torch.Tensor | dict[str, torch.Tensor]],
    *,
    prepare_batch: Callable[[object, torch.Generator], object] | None = None,
    description: str | None = None,
    generator_device=None,
    trainable_only: bool = False,
    log_ema_decay: bool = True,
    extra_log: Callable[[], dict] | None = None,
) -> DenoiserRun:
    """The training loop of a run set up by `start_diffusion_training`, from its resumed step to ``total_steps``.

    Each step draws a generator seeded by `step_seed` ``(seed, step, process)`` (on ``generator_device``, default
    the CPU), so a resumed run draws exactly what the uninterrupted one drew; ``prepare_batch(batch, generator)``
    (optional, outside autocast) turns the loader's batch into what ``compute_loss(batch, generator)`` takes,
    which runs under ``accelerator.accumulate`` and ``accelerator.autocast`` and returns the loss or a dict of
    terms with the loss under ``"loss"``. Then `optimizer_step` (over the parameters that require grad if
    ``trainable_only``), the EMA step, and every ``log_every`` steps a ``log.jsonl`` row: ``train_loss``, the
    other terms' means as ``<term>_loss``, ``learning_rate``, ``ema_decay`` (if ``log_ema_decay``), what
    ``extra_log()`` returns, ``epoch`` and ``elapsed_s``. Checkpoints (`save_checkpoint_if_due`, also at the end)
    and ``interrupt_after_steps`` as every script. ``description`` names a tqdm bar; without it each log row is
    printed."""
    model, optimizer, lr_scheduler, ema, progress = (training.model, training.optimizer, training.lr_scheduler,
                                                     training.ema, training.progress)
    total_steps, steps_per_epoch = training.total_steps, training.steps_per_epoch
    start_step, earlier_seconds = progress.step, progress.train_seconds
    start_time = time.time()
    sums, count = {}, 0
    bar = None if description is None else tqdm(total=total_steps, initial=progress.step, unit="step",
                                                desc=description, disable=not accelerator.is_local_main_process)
    model.train()
    for batch in resumable_batches(accelerator, training.loader, progress.step, total_steps, seed=args["seed"]):
        # The global RNG is also drawn by the data-loader iterator: the step's own randomness comes from here.
        generator = torch.Generator(device=generator_device or "cpu").manual_seed(
            step_seed(args["seed"], progress.step, accelerator.process_index))
        if prepare_batch is not None:
            batch = prepare_batch(batch, generator)
        with accelerator.accumulate(model):
            with accelerator.autocast():
                terms = compute_loss(batch, generator)
            if not isinstance(terms, dict):
                terms = {"loss": terms}
            parameters = [p for p in model.parameters() if p.requires_grad] if trainable_only else model.parameters()
            optimizer_step(accelerator, terms["loss"], parameters, optimizer, lr_scheduler, args["max_grad_norm"],
                           progress.step)
        ema.step(accelerator.unwrap_model(model).parameters())
        progress.step += 1
        if bar is not None:
            bar.update(1)
        for key, value in terms.items():
            sums[key] = sums.get(key, 0.0) + value.item()
        count += 1
        if progress.step % args["log_every"] == 0 or progress.step == total_steps:
            elapsed = time.time() - start_time
            row = {"train_loss": sums["loss"] / count,
                   **{f"{key}_loss": value / count for key, value in sums.items() if key != "loss"},
                   "learning_rate": lr_scheduler.get_last_lr()[0]}
            if log_ema_decay:
                row["ema_decay"] = ema.cur_decay_value
            if extra_log is not None:
                row.update(extra_log())
            row.update(epoch=progress.step / steps_per_epoch, elapsed_s=elapsed)
            accelerator.log(row, step=progress.step)
            if bar is not None:
                bar.set_postfix(loss=f"{sums['loss'] / count:.4f}")
            else:
                accelerator.print(f"step {progress.step}/{total_steps} loss {sums['loss'] / count:.4f} "
                                  f"({elapsed / (progress.step - start_step):.3f} s/step)")
            sums, count = {}, 0
        progress.train_seconds = earlier_seconds + time.time() - start_time
        save_checkpoint_if_due(accelerator, progress.step, training.checkpoint_every, total_steps, at_end=True,
                               config=args)
        exit_if_interrupt_requested(accelerator, progress.step, args["interrupt_after_steps"])
    if bar is not None:
        bar.close()
    train_seconds = time.time() - start_time
    accelerator.wait_for_everyone()
    return DenoiserRun(start_step, progress.step, steps_per_epoch, train_seconds, earlier_seconds)


def finish_training_run(accelerator, output_dir: Path, train_label: str | None = None) -> bool:
    """End the trackers; on the main process also create ``output_dir`` and plot ``log.jsonl``'s training loss
    into ``loss_curve.png`` (``train_label`` names its curve). Returns whether this is the main process (which
    writes the results)."""
    if not accelerator.is_main_process:
        accelerator.end_training()
        return False
    output_dir.mkdir(parents=True, exist_ok=True)
    accelerator.end_training()
    labels = {} if train_label is None else {"train_label": train_label}
    plot_training_curves(output_dir / "log.jsonl", output_dir / "loss_curve.png", train_key="train_loss", **labels)
    return True


@contextmanager
def ema_weights(ema: EMAModel, model: nn.Module):
    """Inside the block ``model`` holds the EMA weights (what is scored and saved); its own come back after."""
    ema.store(model.parameters())
    ema.copy_to(model.parameters())
    try:
        yield model
    finally:
        ema.restore(model.parameters())


def run_training(
    args: dict,
    accelerator,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    model: nn.Module,
    compute_loss: Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor],
    save_pipeline: Callable[[nn.Module, Path], object],
    sample_kwargs: dict,
    num_classes: int,
) -> dict:
    """Train ``model`` on ``(inputs, labels)`` (pixels or precomputed latents) with ``compute_loss(model, x0,
    labels_after_dropout, generator)``; keep an EMA; checkpoint and resume; at the end save the EMA weights with
    ``save_pipeline(ema_model, folder)`` (which returns the pipeline) and sample a grid with it. Returns the
    results written to ``results.json``."""
    output_dir = Path(args["output_dir"])
    train_set = TensorDataset(inputs, labels)
    training = start_diffusion_training(accelerator, output_dir, args, model, train_set)

    def step_loss(batch, generator):
        x0, y = batch
        y = drop_class_labels(y, args["class_dropout_prob"], num_classes, generator)
        return compute_loss(training.model, x0, y, generator)

    run = train_denoiser(accelerator, args, training, step_loss, generator_device=accelerator.device)
    unwrapped = accelerator.unwrap_model(training.model)
    results = {**run.facts(unwrapped), "num_train_examples": len(train_set), "input_shape": list(inputs.shape[1:]),
               "batch_size": args["batch_size"]}
    if finish_training_run(accelerator, output_dir):
        with ema_weights(training.ema, unwrapped):  # the EMA weights go into the pipeline
            unwrapped.eval()
            with atomic_directory(output_dir / "pipeline") as folder:  # never a half-written pipeline
                pipeline = save_pipeline(unwrapped, folder)
            results["pipeline"] = str(output_dir / "pipeline")
            if args["samples_per_class"] > 0:
                start = time.time()
                grid = sample_grid(pipeline, num_classes, args["samples_per_class"], args["sample_guidance_scale"],
                                   seed=args["seed"], **sample_kwargs)
                grid.save(output_dir / "samples.png")
                results["sample_seconds"] = time.time() - start
        (output_dir / "results.json").write_text(json.dumps(results, indent=2))
    return results


# Settings listed in the pipeline's model card (those a script has).
CARD_HYPERPARAMETERS = ("hidden_size", "num_layers", "num_attention_heads", "patch_size", "block_out_channels",
                        "layers_per_block", "attention_levels", "flow_shift", "weighting_scheme",
                        "num_train_timesteps", "beta_schedule", "class_dropout_prob", "learning_rate", "lr_scheduler",
                        "lr_warmup_steps", "batch_size", "epochs", "max_steps", "ema_max_decay", "mixed_precision",
                        "seed")


def write_pipeline_card(args: dict, results: dict, class_names: list[str], script: str, argv=None,
                        autoencoder=None, real_dataset: bool = True) -> Path:
    """``<output_dir>/pipeline/README.md``: `whitebox_hf.hub.model_card.pipeline_model_card` with the training facts
    of ``results`` and the exact command (``python <script> <argv>``; default ``sys.argv``). Training measures no
    sample quality, so the card points to ``docs/results/generation.md`` for FD-EffNet and class accuracy."""
    info = DATASETS.get(args["dataset"], {}) if real_dataset else {}
    card = pipeline_model_card(
        results, info.get("name", "in-memory"), dataset_id=info.get("hub_id"),
        autoencoder_class=type(autoencoder).__name__ if autoencoder is not None else None, class_names=class_names,
        hyperparameters={k: args[k] for k in CARD_HYPERPARAMETERS if k in args},
        command=shlex.join(["python", script, *(sys.argv[1:] if argv is None else argv)]),
    )
    path = Path(args["output_dir"]) / "pipeline" / "README.md"
    card.save(str(path))
    return path


def sample_grid(pipeline, num_classes: int, per_class: int, guidance_scale: float, seed: int = 0, **kwargs):
    """A PIL grid: one row per class, ``per_class`` samples per row."""
    from PIL import Image

    pipeline.set_progress_bar_config(disable=True)
    labels = [c for c in range(num_classes) for _ in range(per_class)]
    images = pipeline(labels, guidance_scale=guidance_scale, generator=torch.Generator().manual_seed(seed),
                      output_type="pil", **kwargs).images
    width, height = images[0].size
    grid = Image.new(images[0].mode, (per_class * width, num_classes * height))
    for index, image in enumerate(images):
        row, column = divmod(index, per_class)
        grid.paste(image, (column * width, row * height))
    return grid


def shift_sigmas(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    """The static time shift of `FlowMatchEulerDiscreteScheduler`: σ ← s·σ / (1 + (s − 1)·σ)."""
    return sigmas if shift == 1.0 else shift * sigmas / (1 + (shift - 1) * sigmas)


def flow_matching_loss(model: nn.Module, x0: torch.Tensor, labels: torch.Tensor, args: dict,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """MSE between the predicted and the true velocity noise − x₀ at σ from the configured density (labels are
    used as given: dropout happens before)."""
    u = compute_density_for_timestep_sampling(args["weighting_scheme"], x0.shape[0], logit_mean=args["logit_mean"],
                                              logit_std=args["logit_std"], mode_scale=args["mode_scale"],
                                              device=x0.device, generator=generator)
    sigma = shift_sigmas(u, args["flow_shift"]).to(x0.dtype)
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    s = sigma.view(-1, *([1] * (x0.ndim - 1)))
    noisy = (1 - s) * x0 + s * noise
    prediction = model(noisy, sigma * 1000.0, class_labels=labels, return_dict=False)[0]
    return F.mse_loss(prediction.float(), (noise - x0).float())
