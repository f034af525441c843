"""Checkpoints and resumption: every read and write of a training checkpoint goes through this module.

A checkpoint is a folder ``output_dir/checkpoints/checkpoint_<i>`` holding the state of everything the
Accelerator prepared or had registered with ``register_for_checkpointing`` (models, optimisers, LR schedules, the
fp16 gradient scaler, at least a `TrainingProgress`, and one RNG state per process), each as a JSON +
safetensors pair (`whitebox_hf.training.state`): reading a checkpoint unpickles nothing, so a tampered one cannot
run code. Its ``manifest.json``, written last, lists every file with its size and SHA-256 and the run's
configuration.

A checkpoint is written under ``checkpoints/.checkpoint_<i>.partial``, flushed to disk and renamed (an atomic
step), and only then are old checkpoints beyond ``checkpoints_total_limit`` deleted: a process killed at any
moment loses at most the steps since the last complete checkpoint. ``--resume_from_checkpoint latest`` takes the
highest-numbered folder whose manifest matches its files, and warns about any it skips.

A resumed run continues the exact trajectory of an uninterrupted one: `resumable_batches` replays the data order
and the epoch from the step count, and each script draws its per-step randomness from ``(seed, step)`` or from
the restored RNG states. It refuses a checkpoint written with another configuration (`config_differences`).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .config import RunSettingsError
from .atomic import fsync_directory, partial_path, publish_directory
from .state import read_state, state_files, write_state

__all__ = [
    "BOOKKEEPING_KEYS",
    "INTERRUPT_EXIT_CODE",
    "MANIFEST_NAME",
    "TrainingProgress",
    "checkpoint_problem",
    "config_differences",
    "exit_if_interrupt_requested",
    "find_checkpoint",
    "load_checkpoint",
    "restore_checkpoint",
    "resumable_batches",
    "save_checkpoint",
    "save_checkpoint_if_due",
    "step_seed",
]

# Exit status of a simulated crash (`--interrupt_after_steps`); the tests check for it.
INTERRUPT_EXIT_CODE = 3

MANIFEST_NAME = "manifest.json"
CHECKPOINT_FORMAT = "whitebox_hf-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1
_CHECKPOINT_NAME = re.compile(r"checkpoint_(\d+)")

# Tests only: a process whose environment sets this to a step number kills itself with SIGKILL while writing
# that step's checkpoint, after its first state is on disk — a crash in the middle of a save.
KILL_DURING_CHECKPOINT_ENV = "WHITEBOX_HF_TEST_SIGKILL_DURING_CHECKPOINT"

# Settings that may change between a run and its resumption: where things are written, how often the run logs,
# evaluates and checkpoints, how long it runs (a finished run can be extended), the threads, and the test hooks.
# Every other setting (model shape, data set, optimiser, seed, ...) must match, or the resumed run would mix two
# trajectories.
BOOKKEEPING_KEYS = frozenset({
    "output_dir", "resume_from_checkpoint", "num_threads", "interrupt_after_steps", "log_every",
    "checkpoint_every", "checkpoints_total_limit", "epochs", "max_steps", "max_tokens", "max_train_seconds",
    "save_model", "data_dir", "text_embedding_cache_dir", "fd_reference_cache",
    "eval_every", "eval_every_epoch", "eval_batch_size", "eval_blocks", "final_eval_blocks", "eval_train_subset",
    "fd_num_images", "fd_image_size", "fd_batch_size", "retrieval_pairs", "sample_prompts",
    "sample_max_new_tokens", "samples_per_class", "sample_steps", "sample_guidance_scale", "comparison_samples",
    "comparison_steps",
})


class TrainingProgress:
    """Counters saved inside every checkpoint (`register_for_checkpointing`): the optimiser step, the training
    tokens consumed and the seconds spent training, so a resumed run reports totals."""

    def __init__(self):
        self.step = 0
        self.tokens = 0
        self.train_seconds = 0.0

    def state_dict(self) -> dict:
        return {"step": self.step, "tokens": self.tokens, "train_seconds": self.train_seconds}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.tokens = int(state["tokens"])
        self.train_seconds = float(state["train_seconds"])


def _checkpoint_index(path: Path) -> int | None:
    match = _CHECKPOINT_NAME.fullmatch(path.name)
    return int(match.group(1)) if match else None


def _numbered_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """The folders ``checkpoints/checkpoint_<i>``, by ``i`` (other names, such as a ``checkpoint_backup`` copy
    or a ``.checkpoint_<i>.partial`` being written, are not checkpoints of this run)."""
    root = Path(output_dir, "checkpoints")
    if not root.is_dir():
        return []
    folders = [p for p in root.iterdir() if p.is_dir() and _checkpoint_index(p) is not None]
    return sorted(folders, key=_checkpoint_index)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    if manifest.get("format") != CHECKPOINT_FORMAT or manifest.get("version") != CHECKPOINT_FORMAT_VERSION:
        raise ValueError(f"{path} is not a {CHECKPOINT_FORMAT} manifest of version {CHECKPOINT_FORMAT_VERSION}")
    return manifest


def checkpoint_problem(folder: str | os.PathLike, check_hashes: bool = True) -> str | None:
    """Why ``folder`` is not a complete checkpoint (a sentence naming the file at fault), or None if it is one:
    its manifest is readable and lists exactly the files the folder holds, with their sizes (and, with
    ``check_hashes``, their SHA-256)."""
    folder = Path(folder)
    if not folder.is_dir():
        return f"{folder} is not a folder"
    if not (folder / MANIFEST_NAME).is_file():
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in (".pkl", ".bin", ".pt"))
        if pickles:
            return (f"{folder} has no {MANIFEST_NAME} and holds pickle files ({', '.join(pickles)}): an Accelerate "
                    f"checkpoint of an older whitebox_hf, which is not read since unpickling can run code")
        return f"{folder} has no {MANIFEST_NAME}: its writing did not finish"
    try:
        manifest = _read_manifest(folder)
        files = manifest["files"]
    except (ValueError, KeyError, TypeError) as error:
        return f"{folder / MANIFEST_NAME} is unreadable: {error}"
    present = {p.name for p in folder.iterdir()} - {MANIFEST_NAME}
    unlisted = sorted(present - set(files))
    if unlisted:
        return f"{folder} holds files its manifest does not list: {', '.join(unlisted)}"
    for name, entry in files.items():
        path = folder / name
        if not path.is_file():
            return f"{path} is missing"
        if path.stat().st_size != entry["bytes"]:
            return f"{path} has {path.stat().st_size} bytes, its manifest says {entry['bytes']}"
        if check_hashes and _sha256(path) != entry["sha256"]:
            return f"{path} does not match the SHA-256 in its manifest"
    return None


def find_checkpoint(output_dir: str | os.PathLike, spec: str, check_hashes: bool = True,
                    warn=print) -> Path | None:
    """The checkpoint ``spec`` names: ``""`` → None, ``"latest"`` → the highest-numbered complete
    ``output_dir/checkpoints/checkpoint_<i>`` (None if there is none; each incomplete one skipped is reported
    through ``warn``), anything else → that path (checked when it is loaded)."""
    if not spec:
        return None
    if spec != "latest":
        return Path(spec)
    for folder in reversed(_numbered_checkpoints(output_dir)):
        problem = checkpoint_problem(folder, check_hashes)
        if problem is None:
            return folder
        if warn is not None:
            warn(f"warning: skipping the incomplete checkpoint {folder.name}: {problem}")
    return None


def config_differences(saved: dict, current: dict, ignore=BOOKKEEPING_KEYS) -> list[str]:
    """The settings (``key (checkpoint X, this run Y)``) on which a checkpoint's configuration and the current
    one differ, bookkeeping keys (``ignore``) aside; a key only one side has is reported as absent."""
    differences = []
    for key in sorted((set(saved) | set(current)) - set(ignore)):
        old, new = saved.get(key, "<absent>"), current.get(key, "<absent>")
        if isinstance(new, tuple):
            new = list(new)  # as JSON stores it
        if old != new:
            differences.append(f"{key} (checkpoint {old!r}, this run {new!r})")
    return differences


def _json_config(config: dict) -> dict:
    try:
        return json.loads(json.dumps(dict(config)))
    except TypeError as error:
        raise TypeError(f"the run configuration must be JSON-serialisable to go into a checkpoint: {error}") from error


def _stateful_objects(accelerator) -> dict:
    """What a checkpoint holds besides the RNG states, by state name: shared by every process."""
    objects = {}
    for i, model in enumerate(accelerator._models):
        objects["model" if i == 0 else f"model_{i}"] = accelerator.unwrap_model(model)
    for i, optimizer in enumerate(accelerator._optimizers):
        objects["optimizer" if i == 0 else f"optimizer_{i}"] = optimizer
    for i, scheduler in enumerate(accelerator._schedulers):
        objects["scheduler" if i == 0 else f"scheduler_{i}"] = scheduler
    for i, obj in enumerate(accelerator._custom_objects):
        objects[f"custom_{i}"] = obj
    if accelerator.scaler is not None:
        objects["scaler"] = accelerator.scaler
    return objects


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _kill_if_requested(step: int) -> None:
    if os.environ.get(KILL_DURING_CHECKPOINT_ENV) == str(step):
        os.kill(os.getpid(), signal.SIGKILL)


def save_checkpoint(accelerator, step: int, config: dict) -> Path:
    """Write the next checkpoint ``output_dir/checkpoints/checkpoint_<i>`` (atomically: see the module) with the
    state of every prepared and registered object, this process's RNG state and, in the manifest, ``step`` and
    the run's ``config``; then delete the oldest complete checkpoints beyond the project's ``total_limit``.
    Every process must call it: the main process writes the shared state, each process its RNG state. Returns
    the checkpoint's path.

    Raises:
        TypeError: a state or ``config`` holds a value that cannot be stored without pickle.
    """
    config = _json_config(config)  # refused before anything is written
    project = accelerator.project_configuration
    root = Path(project.project_dir, "checkpoints")
    index = project.iteration
    final = root / f"checkpoint_{index}"
    partial = partial_path(final)
    main = accelerator.is_main_process
    if main:
        shutil.rmtree(partial, ignore_errors=True)  # left by a run killed while writing it
        partial.mkdir(parents=True)
    accelerator.wait_for_everyone()
    if main:
        for name, obj in _stateful_objects(accelerator).items():
            write_state(partial, name, obj.state_dict())
            _kill_if_requested(step)
    write_state(partial, f"random_states_{accelerator.process_index}", _rng_state())
    accelerator.wait_for_everyone()
    if main:
        files = {p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in sorted(partial.iterdir())}
        manifest = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_FORMAT_VERSION, "step": step,
                    "num_processes": accelerator.num_processes, "accelerator_step": accelerator.step,
                    "files": files, "config": config}
        # Written last: a folder with a manifest that matches its files is complete.
        (partial / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
        publish_directory(partial, final)
        _prune(root, project.total_limit, keep=final)
    accelerator.wait_for_everyone()
    project.iteration = index + 1
    return final


def _prune(root: Path, total_limit: int | None, keep: Path) -> None:
    """Delete complete checkpoints older than the newest ``total_limit`` (None or 0: keep all), never ``keep``.
    Incomplete ones are left for the user to inspect; they are never resumed."""
    if not total_limit:
        return
    complete = [p for p in _numbered_checkpoints(root.parent) if checkpoint_problem(p, check_hashes=False) is None]
    for folder in complete[:-total_limit]:
        if folder != keep:
            shutil.rmtree(folder)
    fsync_directory(root)


def load_checkpoint(accelerator, folder: str | os.PathLike, config: dict | None = None) -> dict:
    """Load the checkpoint ``folder`` into everything prepared and registered with ``accelerator``, after
    checking it is complete (manifest, sizes, SHA-256) and, with ``config``, that it was written with the same
    settings (bookkeeping keys aside). Returns its manifest.

    Raises:
        ValueError: the folder is not a complete checkpoint (the message names the file at fault), its
            configuration differs from ``config`` (the message names the settings), or it holds other states than
            this run has.
    """
    folder = Path(folder)
    problem = checkpoint_problem(folder)
    if problem is not None:
        raise RunSettingsError(f"cannot resume from {folder}: {problem}")
    manifest = _read_manifest(folder)
    if config is not None:
        differences = config_differences(manifest["config"], _json_config(config))
        if differences:
            raise RunSettingsError(f"cannot resume from {folder}: it was written with other settings: "
                             f"{'; '.join(differences)} (start in a new output folder, or pass the checkpoint's "
                             f"settings)")
    objects = _stateful_objects(accelerator)
    expected = {state_files(name)[0] for name in objects}
    held = {name for name in manifest["files"] if name.endswith(".json") and not name.startswith("random_states_")}
    if expected != held:
        raise RunSettingsError(f"cannot resume from {folder}: it holds the states {sorted(held)}, this run has "
                         f"{sorted(expected)}")
    for name, obj in objects.items():
        # Module weights are copied into the parameters wherever they are; other states (EMA shadows, the
        # optimiser's moments after its own casting) are placed on the run's device.
        obj.load_state_dict(read_state(folder, name, device="cpu" if name.startswith("model") else accelerator.device))
    rng_name = f"random_states_{accelerator.process_index}"
    if state_files(rng_name)[0] in manifest["files"]:
        _set_rng_state(read_state(folder, rng_name))
    else:
        accelerator.print(f"warning: {folder} was written by {manifest['num_processes']} processes and has no RNG "
                          f"state for process {accelerator.process_index}; its RNG keeps this run's seed")
    accelerator.step = manifest["accelerator_step"]
    return manifest


def restore_checkpoint(accelerator, output_dir: str | os.PathLike, spec: str, config: dict) -> Path | None:
    """Load the checkpoint ``spec`` names (see `find_checkpoint`) into everything registered with the
    accelerator, after checking that it was written with the same ``config`` (`load_checkpoint`), and return its
    path; ``None`` for a fresh run.

    ``"latest"`` with no complete checkpoint yet starts fresh (so a launcher can always pass it). New checkpoints
    are numbered after every ``checkpoint_<i>`` folder already there (complete or not), so they never collide
    with one; a fresh run in a folder that already holds checkpoints warns.

    Raises:
        FileNotFoundError: ``spec`` is an explicit path that does not exist.
        ValueError: the checkpoint is incomplete or tampered with, or its configuration differs from ``config``.
    """
    checkpoint = find_checkpoint(output_dir, spec, warn=accelerator.print)
    existing = _numbered_checkpoints(output_dir)
    accelerator.project_configuration.iteration = _checkpoint_index(existing[-1]) + 1 if existing else 0
    if checkpoint is not None:
        if not checkpoint.is_dir():
            raise FileNotFoundError(f"checkpoint {str(checkpoint)!r} not found (resume_from_checkpoint={spec!r})")
        load_checkpoint(accelerator, checkpoint, config)
        return checkpoint
    if existing:
        accelerator.print(f"warning: {output_dir} already holds checkpoints; this fresh run numbers its own after "
                          f"{existing[-1].name} (pass --resume_from_checkpoint latest to continue that run instead)")
    return None


def save_checkpoint_if_due(accelerator, step: int, every: int, total_steps: int, at_end: bool = False, *,
                           config: dict) -> bool:
    """Save a checkpoint (`save_checkpoint` with the run's ``config``, which the manifest keeps so that a
    resumption with other settings is refused) after ``step`` when it is a multiple of ``every`` (> 0) before the
    last step, and after the last step too with ``at_end`` (so a finished run can be extended with a larger
    budget). Returns whether it saved.

    Raises:
        ValueError: ``every`` is not positive.
    """
    if every <= 0:
        raise ValueError(f"`every` must be a positive number of steps, got {every!r}")
    due = (step % every == 0 and step < total_steps) or (at_end and step == total_steps)
    if due:
        save_checkpoint(accelerator, step, config)
    return due


def step_seed(seed: int, step: int, process_index: int = 0) -> int:
    """The seed of one training step on one process: a function of ``(seed, step, process_index)`` only."""
    return (seed * 1_000_003 + step) * 64 + process_index


def _set_epoch(epoch_loader, loader, epoch: int) -> None:
    """Tell the epoch to the loader that will run it, and to the sampler and data set themselves.

    Accelerate's ``set_epoch`` reaches the data set only when the batch sampler is not a wrapper: the loader of
    `skip_first_batches` (and a sharded one) passes the epoch to the sampler only, so the rest of a resumed
    epoch would draw epoch-0 augmentations."""
    epoch_loader.set_epoch(epoch)
    parts = [getattr(source, attribute, None) for source in (loader, epoch_loader)
             for attribute in ("dataset", "sampler", "batch_sampler")]
    while parts:  # the samplers nested in (skipping, sharding) batch samplers
        part = parts.pop()
        if part is None:
            continue
        if hasattr(part, "set_epoch"):
            part.set_epoch(epoch)
        parts.extend(getattr(part, attribute, None) for attribute in ("sampler", "batch_sampler"))


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
        _set_epoch(epoch_loader, loader, epoch)
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


def resume_run(accelerator, output_dir, args: dict, *states) -> TrainingProgress:
    """Open a run's checkpointed state: a `TrainingProgress` and ``states`` (objects with ``state_dict`` /
    ``load_state_dict`` outside the prepared model and optimiser: an EMA, a teacher, DINO's centre) registered for
    checkpointing, then the checkpoint ``args["resume_from_checkpoint"]`` (``""``, ``latest`` or a path) of
    ``output_dir`` restored into everything prepared and registered. Call it after ``accelerator.prepare``.

    Returns:
        The run's `TrainingProgress` (step 0 when nothing was restored).
    """
    progress = TrainingProgress()
    for state in (progress, *states):
        accelerator.register_for_checkpointing(state)
    checkpoint = restore_checkpoint(accelerator, output_dir, args["resume_from_checkpoint"], config=args)
    if checkpoint is not None:
        accelerator.print(f"resumed from {checkpoint} at step {progress.step}")
    return progress
