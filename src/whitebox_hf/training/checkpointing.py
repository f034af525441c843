"""Checkpoints and resumption: every read and write of a training checkpoint goes through this module.

A checkpoint is an Accelerate ``save_state`` folder ``output_dir/checkpoints/checkpoint_<i>`` (numbered by
`whitebox_hf.training.run.create_accelerator`'s project configuration): model, optimiser, LR schedule, RNG states
and every object registered with ``register_for_checkpointing`` — at least a `TrainingProgress`. A resumed run
continues the exact trajectory of an uninterrupted one: `resumable_batches` replays the data order from the step
count, and each script draws its per-step randomness from ``(seed, step)`` or from the restored RNG states.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import torch

__all__ = [
    "INTERRUPT_EXIT_CODE",
    "TrainingProgress",
    "exit_if_interrupt_requested",
    "find_checkpoint",
    "restore_checkpoint",
    "resumable_batches",
    "save_checkpoint_if_due",
    "step_seed",
]

# Exit status of a simulated crash (`--interrupt_after_steps`); the tests check for it.
INTERRUPT_EXIT_CODE = 3


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


def _checkpoint_index(path: Path) -> int:
    return int(path.name.split("_")[-1])


def find_checkpoint(output_dir: str | os.PathLike, spec: str) -> Path | None:
    """The checkpoint ``spec`` names: ``""`` → None, ``"latest"`` → the highest-numbered
    ``output_dir/checkpoints/checkpoint_<i>`` (None if there is none), anything else → that path."""
    if not spec:
        return None
    if spec != "latest":
        return Path(spec)
    candidates = sorted(Path(output_dir, "checkpoints").glob("checkpoint_*"), key=_checkpoint_index)
    return candidates[-1] if candidates else None


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
        accelerator.project_configuration.iteration = _checkpoint_index(checkpoint) + 1
        return checkpoint
    stale = find_checkpoint(output_dir, "latest")
    if stale is not None:
        accelerator.print(f"warning: {output_dir} already holds checkpoints; this fresh run numbers its own after "
                          f"{stale.name} (pass --resume_from_checkpoint latest to continue that run instead)")
        accelerator.project_configuration.iteration = _checkpoint_index(stale) + 1
    return None


def save_checkpoint_if_due(accelerator, step: int, every: int, total_steps: int, at_end: bool = False) -> bool:
    """Save a checkpoint after ``step`` when it is a multiple of ``every`` (> 0) before the last step, and after
    the last step too with ``at_end`` (so a finished run can be extended with a larger budget). Returns whether
    it saved.

    Raises:
        ValueError: ``every`` is not positive.
    """
    if every <= 0:
        raise ValueError(f"`every` must be a positive number of steps, got {every!r}")
    due = (step % every == 0 and step < total_steps) or (at_end and step == total_steps)
    if due:
        accelerator.save_state()
    return due


def step_seed(seed: int, step: int, process_index: int = 0) -> int:
    """The seed of one training step on one process: a function of ``(seed, step, process_index)`` only."""
    return (seed * 1_000_003 + step) * 64 + process_index


def resumable_batches(accelerator, loader, start_step: int, total_steps: int, seed: int | None = None) -> Iterator:
    """Batches of a prepared ``loader``, epoch after epoch, for the global steps ``start_step`` up to (not
    including) ``total_steps``.

    With ``seed``, the global torch RNG is re-seeded with `step_seed` ``(seed, step, process)`` before each batch
    is handed out, so whatever the step draws from it (dropout, VAE posterior samples, masks, noise) depends on
    the step alone. Without it a resumed run would drift: the restored RNG state is the one saved after the
    checkpoint's step, but the resumed run's new data-loader iterator draws from the global RNG first.

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
            if seed is not None:
                torch.manual_seed(step_seed(seed, step, accelerator.process_index))
            yield batch
            step += 1
            if step >= total_steps:
                # Stop before fetching another batch: the next one belongs to no step.
                return


def exit_if_interrupt_requested(accelerator, step: int, interrupt_after_steps: int) -> None:
    """Simulate a crash once ``step`` reaches ``interrupt_after_steps`` (> 0): raise ``SystemExit`` with
    `INTERRUPT_EXIT_CODE` at once, so nothing after the training loop runs (no final model, no results). A
    process exits with that status; a test calling a script's ``main`` in-process catches it and resumes."""
    if interrupt_after_steps and step == interrupt_after_steps:
        accelerator.print(f"simulated crash after step {step}")
        raise SystemExit(INTERRUPT_EXIT_CODE)
