"""The opening of every training run: thread count, the Accelerator and the seed."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .checkpointing import find_checkpoint

__all__ = ["create_accelerator", "start_run"]


def create_accelerator(output_dir: str | os.PathLike, mixed_precision: str = "no", checkpoints_total_limit: int = 2,
                       resuming: bool = False, log_name: str = "log"):
    """An `Accelerator` that logs to ``output_dir/<log_name>.jsonl`` and numbers its checkpoints
    ``output_dir/checkpoints/checkpoint_<i>`` (keeping the last ``checkpoints_total_limit``).

    The batch size of every loader it prepares is the *global* one (``split_batches=True``): each process
    gets an equal share of every batch, so a multi-process run follows the single-process trajectory. A
    fresh (not ``resuming``) run starts a new log.

    Raises:
        ValueError: ``mixed_precision`` is not ``"no"``, ``"bf16"`` or ``"fp16"``.
    """
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration

    from ..utils import JSONLTracker

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


def start_run(args: dict):
    """The opening of every training script: thread count (``num_threads`` > 0), the Accelerator (told whether
    a checkpoint will be resumed, so it does not wipe the log in ``output_dir``) and the seed. Returns
    ``(accelerator, output_dir)``."""
    from accelerate.utils import set_seed

    if args["num_threads"] > 0:
        torch.set_num_threads(args["num_threads"])
    output_dir = Path(args["output_dir"])
    # Sizes only (no hashes, no warnings): `restore_checkpoint` checks the checkpoint fully and reports.
    resuming = find_checkpoint(output_dir, args["resume_from_checkpoint"], check_hashes=False, warn=None) is not None
    accelerator = create_accelerator(output_dir, args["mixed_precision"], args["checkpoints_total_limit"], resuming)
    set_seed(args["seed"])
    return accelerator, output_dir
