"""Pieces shared by the Accelerate training scripts (``training/train_image_classification.py``,
``training/train_causal_lm.py``): configuration parsing, the Accelerator, checkpoints and resumption, the
resumable batch stream, the optimiser and the loss-curve plot.

Every script follows the same pattern::

    args = parse_config_args(DEFAULTS, argv, __doc__)              # DEFAULTS < YAML file < --key value
    accelerator = create_accelerator(output_dir, ...)              # JSONL log, numbered checkpoints
    model, optimizer, loader, ... = accelerator.prepare(...)
    progress = TrainingProgress(); accelerator.register_for_checkpointing(progress)
    restore_checkpoint(accelerator, output_dir, args["resume_from_checkpoint"])
    for batch in resumable_batches(accelerator, loader, progress.step, total_steps):
        ...; progress.step += 1
        exit_if_interrupt_requested(accelerator, progress.step, args["interrupt_after_steps"])
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Iterator

import torch
import yaml

__all__ = [
    "TrainingProgress",
    "build_optimizer",
    "create_accelerator",
    "exit_if_interrupt_requested",
    "find_checkpoint",
    "parse_config_args",
    "plot_training_curves",
    "restore_checkpoint",
    "resumable_batches",
]

# Exit status of a simulated crash (`--interrupt_after_steps`); the tests check for it.
INTERRUPT_EXIT_CODE = 3


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    # A typo such as `--save_model ture` must not silently mean False.
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false), got {text!r}")


def parse_config_args(defaults: dict, argv=None, description: str | None = None) -> dict:
    """The run's settings: ``defaults``, overridden by a YAML file (``--config``), overridden by ``--key value``.

    Every key of ``defaults`` becomes a command-line option of the default's type (booleans read
    ``true/false/1/0/yes/no``). Unknown keys in the YAML file are an error, so a misspelt key never
    silently falls back to its default.

    Raises:
        ValueError: the YAML file holds keys that ``defaults`` does not know.
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default="")
    known, rest = pre.parse_known_args(argv)
    config = dict(defaults)
    if known.config:
        with open(known.config) as handle:
            from_file = yaml.safe_load(handle) or {}
        unknown = set(from_file) - set(defaults)
        if unknown:
            raise ValueError(f"unknown keys in {known.config}: {sorted(unknown)}; known keys: {sorted(defaults)}")
        config.update(from_file)
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=known.config, help="YAML file with any of the keys below")
    for key, default in defaults.items():
        kind = _parse_bool if isinstance(default, bool) else type(default)
        parser.add_argument(f"--{key}", type=kind, default=config[key], help=f"(default: {config[key]!r})")
    args = vars(parser.parse_args(rest))
    args.pop("config")
    return args


class TrainingProgress:
    """Counters saved inside every Accelerate checkpoint (`register_for_checkpointing`): the optimiser step,
    the training tokens consumed and the seconds spent training, so a resumed run reports totals."""

    def __init__(self):
        self.step = 0
        self.tokens = 0
        self.train_seconds = 0.0

    def state_dict(self) -> dict:
        return {"step": self.step, "tokens": self.tokens, "train_seconds": self.train_seconds}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        # Checkpoints written before these counters existed hold only the step.
        self.tokens = int(state.get("tokens", 0))
        self.train_seconds = float(state.get("train_seconds", 0.0))


def find_checkpoint(output_dir: str | os.PathLike, spec: str) -> Path | None:
    """The checkpoint ``spec`` names: ``""`` → None, ``"latest"`` → the highest-numbered
    ``output_dir/checkpoints/checkpoint_<i>`` (None if there is none), anything else → that path."""
    if not spec:
        return None
    if spec != "latest":
        return Path(spec)
    candidates = sorted(Path(output_dir, "checkpoints").glob("checkpoint_*"), key=lambda p: int(p.name.split("_")[-1]))
    return candidates[-1] if candidates else None


def create_accelerator(output_dir: str | os.PathLike, mixed_precision: str = "no", checkpoints_total_limit: int = 2,
                       resuming: bool = False, log_name: str = "log"):
    """An `Accelerator` that logs to ``output_dir/<log_name>.jsonl`` and numbers its checkpoints
    ``output_dir/checkpoints/checkpoint_<i>``.

    The batch size of every loader it prepares is the *global* one (``split_batches=True``): each process
    gets an equal share of every batch, so a multi-process run follows the single-process trajectory. A
    fresh (not ``resuming``) run starts a new log.

    Raises:
        ValueError: ``mixed_precision`` is not ``"no"``, ``"bf16"`` or ``"fp16"``.
    """
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration

    from .utils import JSONLTracker

    if mixed_precision not in ("no", "bf16", "fp16"):
        raise ValueError(f"`mixed_precision` must be 'no', 'bf16' or 'fp16', got {mixed_precision!r}")
    output_dir = Path(output_dir)
    log_path = output_dir / f"{log_name}.jsonl"
    if not resuming and log_path.exists() and int(os.environ.get("RANK", "0")) == 0:
        # A fresh run in a used folder: start a new log (its checkpoints are numbered after the old ones).
        log_path.unlink()
    return Accelerator(
        mixed_precision=mixed_precision,
        dataloader_config=DataLoaderConfiguration(split_batches=True),
        log_with=[JSONLTracker(log_name, str(output_dir))],
        project_config=ProjectConfiguration(
            project_dir=str(output_dir),
            automatic_checkpoint_naming=True,
            total_limit=checkpoints_total_limit,
        ),
    )


def restore_checkpoint(accelerator, output_dir: str | os.PathLike, spec: str) -> Path | None:
    """Load the checkpoint ``spec`` names (see `find_checkpoint`) into everything registered with the
    accelerator, and return its path; ``None`` for a fresh run.

    ``"latest"`` with no checkpoint yet starts fresh (so a launcher can always pass it). A fresh run in a
    folder that already holds checkpoints warns and numbers its own after them instead of overwriting.

    Raises:
        FileNotFoundError: ``spec`` is an explicit path that does not exist.
    """
    checkpoint = find_checkpoint(output_dir, spec)
    if checkpoint is not None:
        if not checkpoint.is_dir():
            raise FileNotFoundError(f"checkpoint {str(checkpoint)!r} not found (resume_from_checkpoint={spec!r})")
        accelerator.load_state(str(checkpoint))
        # Continue the automatic numbering after the loaded checkpoint instead of colliding with it.
        accelerator.project_configuration.iteration = int(checkpoint.name.split("_")[-1]) + 1
        return checkpoint
    stale = find_checkpoint(output_dir, "latest")
    if stale is not None:
        accelerator.print(f"warning: {output_dir} already holds checkpoints; this fresh run numbers its own after "
                          f"{stale.name} (pass --resume_from_checkpoint latest to continue that run instead)")
        accelerator.project_configuration.iteration = int(stale.name.split("_")[-1]) + 1
    return None


def resumable_batches(accelerator, loader, start_step: int, total_steps: int) -> Iterator:
    """Batches of a prepared ``loader``, epoch after epoch, for the global steps ``start_step`` up to (not
    including) ``total_steps``.

    The epoch of a step is ``step // len(loader)``: it is forwarded to the loader's sampler (data order) and
    dataset (augmentation seeds) with ``set_epoch``, rather than left to the loader's own iteration counter,
    which a resumed run does not restore. A resumed run skips the batches its epoch already consumed, so it
    sees exactly the batches an uninterrupted run would have.

    Raises:
        ValueError: the loader yields no batch (fewer samples than one batch).
    """
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise ValueError("the training loader yields no batch: the data set is smaller than one batch")
    step = start_step
    while step < total_steps:
        epoch, step_in_epoch = divmod(step, steps_per_epoch)
        epoch_loader = accelerator.skip_first_batches(loader, step_in_epoch) if step_in_epoch else loader
        epoch_loader.set_epoch(epoch)
        for batch in epoch_loader:
            yield batch
            step += 1
            if step >= total_steps:
                # Stop before fetching another batch: the next one belongs to no step.
                return


def exit_if_interrupt_requested(accelerator, step: int, interrupt_after_steps: int) -> None:
    """Simulate a crash: exit at once, saving nothing, once ``step`` reaches ``interrupt_after_steps`` (> 0).
    Used by the resumption tests."""
    if interrupt_after_steps and step == interrupt_after_steps:
        accelerator.print(f"simulated crash after step {step}")
        os._exit(INTERRUPT_EXIT_CODE)


def build_optimizer(name: str, parameter_groups: list[dict], learning_rate: float, betas: tuple[float, float]):
    """``torch.optim.AdamW`` (``name="adamw"``) or Lion (``"lion"``, needs ``pip install lion-pytorch``) over
    ``parameter_groups`` (each with its own ``weight_decay``).

    Raises:
        ValueError: an unknown ``name``.
        ImportError: ``"lion"`` without lion-pytorch installed.
    """
    if name == "adamw":
        return torch.optim.AdamW(parameter_groups, lr=learning_rate, betas=betas)
    if name == "lion":
        try:
            from lion_pytorch import Lion
        except ImportError as error:
            raise ImportError("optimizer=lion needs `pip install lion-pytorch`") from error
        return Lion(parameter_groups, lr=learning_rate, betas=betas)
    raise ValueError(f"`optimizer` must be 'adamw' or 'lion', got {name!r}")


def plot_training_curves(
    log_path: str | os.PathLike,
    png_path: str | os.PathLike,
    train_key: str = "train_loss",
    train_label: str = "train loss",
    eval_key: str | None = None,
    eval_label: str | None = None,
    same_axis: bool = False,
    x_key: str = "step",
    x_label: str = "step",
    title: str | None = None,
) -> None:
    """Plot the training curve ``train_key`` (and the evaluation curve ``eval_key``, on the same axis or on
    a second y axis) of a JSONL log written by `whitebox_hf.utils.JSONLTracker`, against ``x_key``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .utils.tracking import read_jsonl

    records = [r for r in read_jsonl(str(log_path)) if r.get("type") == "metrics" and x_key in r]
    train = [(r[x_key], r[train_key]) for r in records if train_key in r]
    evals = [(r[x_key], r[eval_key]) for r in records if eval_key and eval_key in r]
    fig, train_axis = plt.subplots(figsize=(6, 3.5))
    if train:
        train_axis.plot(*zip(*train), label=train_label, color="tab:blue")
    train_axis.set_xlabel(x_label)
    train_axis.set_ylabel(train_label)
    if evals:
        eval_axis = train_axis if same_axis else train_axis.twinx()
        eval_axis.plot(*zip(*evals), "o-", color="tab:orange", label=eval_label or eval_key)
        if same_axis:
            train_axis.set_ylabel(f"{train_label} / {eval_label or eval_key}")
            train_axis.legend()
        else:
            eval_axis.set_ylabel(eval_label or eval_key)
    if title:
        train_axis.set_title(title)
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)


def start_run(args: dict):
    """The opening of every training script: thread count, the Accelerator (told whether a checkpoint will be
    resumed, so it does not wipe ``output_dir``) and the seed. Returns ``(accelerator, output_dir)``."""
    import torch
    from accelerate.utils import set_seed

    if args["num_threads"] > 0:
        torch.set_num_threads(args["num_threads"])
    output_dir = Path(args["output_dir"])
    resuming = find_checkpoint(output_dir, args["resume_from_checkpoint"]) is not None
    accelerator = create_accelerator(output_dir, args["mixed_precision"], args["checkpoints_total_limit"], resuming)
    set_seed(args["seed"])
    return accelerator, output_dir


# The run-management options every training script accepts (merged into each script's DEFAULTS).
RUN_DEFAULTS = {
    "log_every": 20,
    "checkpoint_every": 0,  # steps; 0 = end of each epoch
    "checkpoints_total_limit": 2,
    "resume_from_checkpoint": "",  # a checkpoint folder, or "latest"
    "num_threads": 0,  # 0 = torch's default
    "interrupt_after_steps": 0,  # tests: stop as if interrupted after this many steps
}


def optimizer_step(accelerator, loss, parameters, optimizer, scheduler, max_grad_norm: float, step: int) -> None:
    """One update as every training script does it: refuse a non-finite loss (naming the step), backward through
    the Accelerator, clip the gradient norm (``max_grad_norm`` > 0), step the optimiser and the LR schedule, and
    clear the gradients."""
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite loss {loss.item()} at step {step}")
    accelerator.backward(loss)
    if max_grad_norm > 0:
        accelerator.clip_grad_norm_(parameters, max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
