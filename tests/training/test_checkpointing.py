"""The checkpoint format of whitebox_hf.training.checkpointing: states without pickle, atomic writes with a manifest,
``latest`` skipping incomplete checkpoints, refusal of other configurations, the resumed epoch, and a run killed
(SIGKILL) in the middle of writing a checkpoint that resumes to the uninterrupted weights."""

from __future__ import annotations

import os
import pickle
import random
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from tests.conftest import load_training_script
from whitebox_hf.training import checkpointing
from whitebox_hf.training.atomic import atomic_directory
from whitebox_hf.training.checkpointing import (
    KILL_DURING_CHECKPOINT_ENV,
    MANIFEST_NAME,
    TrainingProgress,
    find_checkpoint,
    restore_checkpoint,
    resumable_batches,
    save_checkpoint,
    save_checkpoint_if_due,
)
from whitebox_hf.training.run import create_accelerator
from whitebox_hf.training.state import read_state, write_state

REPO = Path(__file__).resolve().parents[2]
CONFIG = {"hidden_size": 16, "seed": 0, "learning_rate": 0.1, "output_dir": "a", "num_threads": 1, "log_every": 5}


class Tied(nn.Module):
    """Two layers sharing one weight, as a language model ties its embeddings and head."""

    def __init__(self):
        super().__init__()
        self.first, self.second = nn.Linear(4, 4), nn.Linear(4, 4)
        self.second.weight = self.first.weight

    def forward(self, x):
        return self.second(torch.tanh(self.first(x)))


def make_run(output_dir: Path, limit: int = 2):
    accelerator = create_accelerator(output_dir, checkpoints_total_limit=limit)
    torch.manual_seed(0)
    model = Tied()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, betas=(0.8, 0.9))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (1 + step))
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    progress = TrainingProgress()
    accelerator.register_for_checkpointing(progress)
    return SimpleNamespace(accelerator=accelerator, model=model, optimizer=optimizer, scheduler=scheduler,
                           progress=progress)


def train(run, steps: int) -> None:
    for _ in range(steps):
        loss = run.model(torch.randn(3, 4)).pow(2).mean()
        run.accelerator.backward(loss)
        run.optimizer.step()
        run.scheduler.step()
        run.optimizer.zero_grad()
        run.progress.step += 1
        run.progress.tokens += 12


def test_a_restored_checkpoint_continues_every_state_and_holds_no_pickle(tmp_path, capsys):
    run = make_run(tmp_path)
    assert restore_checkpoint(run.accelerator, tmp_path, "latest", config=CONFIG) is None
    train(run, 2)
    folder = save_checkpoint(run.accelerator, step=2, config=CONFIG)
    assert folder == tmp_path / "checkpoints" / "checkpoint_0"
    assert {p.suffix for p in folder.iterdir()} == {".json", ".safetensors"}
    after_save = (torch.rand(3), random.random(), np.random.rand())
    train(run, 2)
    expected = {k: v.clone() for k, v in run.model.state_dict().items()}

    resumed = make_run(tmp_path)
    assert restore_checkpoint(resumed.accelerator, tmp_path, "latest", config=CONFIG) == folder
    draws = (torch.rand(3), random.random(), np.random.rand())  # the RNG states saved with the checkpoint
    assert torch.equal(draws[0], after_save[0]) and draws[1:] == after_save[1:]
    assert resumed.progress.step == 2 and resumed.progress.tokens == 24
    assert resumed.scheduler.scheduler.last_epoch == 2
    assert resumed.optimizer.state_dict()["param_groups"][0]["betas"] == (0.8, 0.9)
    train(resumed, 2)
    assert resumed.model.first.weight is resumed.model.second.weight  # loading kept the tie
    for key, value in resumed.model.state_dict().items():
        assert torch.equal(value, expected[key]), key
    # The next checkpoint is numbered after the one resumed from.
    assert save_checkpoint(resumed.accelerator, step=4, config=CONFIG).name == "checkpoint_1"


def test_states_round_trip_through_json_and_safetensors_and_other_types_are_refused(tmp_path):
    shared = torch.arange(6.0)
    state = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": shared}, 1: {"momentum": 0.5}},
             "groups": [{"betas": (0.9, 0.99), "params": [0, 1], "foreach": None, "name": "__x"}],
             "view": shared[2:4], "numpy": np.random.get_state(), "python": random.getstate(), "nan": float("nan")}
    write_state(tmp_path, "s", state)
    loaded = read_state(tmp_path, "s")
    assert set(loaded["state"]) == {0, 1} and loaded["state"][1] == {"momentum": 0.5}
    assert torch.equal(loaded["state"][0]["exp_avg"], shared) and torch.equal(loaded["view"], shared[2:4])
    assert loaded["groups"] == [{"betas": (0.9, 0.99), "params": [0, 1], "foreach": None, "name": "__x"}]
    assert loaded["python"] == random.getstate() and np.isnan(loaded["nan"])
    np.random.set_state(loaded["numpy"])  # accepted as NumPy's own state
    # The device of a process of a multi-process CPU run is "cpu:0", a name safetensors itself refuses.
    assert torch.equal(read_state(tmp_path, "s", device=torch.device("cpu", 0))["view"], shared[2:4])
    with pytest.raises(TypeError, match="cannot store a builtin_function_or_method .at .callback."):
        write_state(tmp_path, "bad", {"callback": print})


def test_latest_skips_incomplete_and_foreign_folders_and_new_ones_never_collide(tmp_path, capsys):
    run = make_run(tmp_path, limit=0)
    restore_checkpoint(run.accelerator, tmp_path, "latest", config=CONFIG)
    first = save_checkpoint(run.accelerator, 1, CONFIG)
    second = save_checkpoint(run.accelerator, 2, CONFIG)
    weights = second / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # half-written
    root = tmp_path / "checkpoints"
    (root / "checkpoint_backup").mkdir()  # a user's copy: not a checkpoint of the run
    (root / ".checkpoint_7.partial").mkdir()
    old = root / "checkpoint_5"  # an Accelerate checkpoint of an older version, or a save killed half-way
    old.mkdir()
    (old / "model.safetensors").write_bytes(b"x")
    (old / "random_states_0.pkl").write_bytes(b"x")
    capsys.readouterr()

    resumed = make_run(tmp_path, limit=0)
    assert restore_checkpoint(resumed.accelerator, tmp_path, "latest", config=CONFIG) == first
    out = capsys.readouterr().out
    assert "skipping the incomplete checkpoint checkpoint_5" in out and "random_states_0.pkl" in out
    assert "skipping the incomplete checkpoint checkpoint_1" in out and "model.safetensors has 100 bytes" in out
    assert save_checkpoint(resumed.accelerator, 2, CONFIG).name == "checkpoint_6"
    assert find_checkpoint(tmp_path, "latest") == root / "checkpoint_6"
    with pytest.raises(ValueError, match="checkpoint_1.*model.safetensors has 100 bytes"):
        restore_checkpoint(make_run(tmp_path).accelerator, tmp_path, str(second), config=CONFIG)


class _WritesMarker:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pickle ran"))


def test_a_checkpoint_with_a_malicious_pickle_is_refused_without_running_it(tmp_path, capsys):
    marker = tmp_path / "marker"
    payload = pickle.dumps(_WritesMarker(marker))
    run = make_run(tmp_path / "run")
    restore_checkpoint(run.accelerator, tmp_path / "run", "latest", config=CONFIG)
    folder = save_checkpoint(run.accelerator, 1, CONFIG)
    (folder / "custom_checkpoint_0.pkl").write_bytes(payload)
    with pytest.raises(ValueError, match="custom_checkpoint_0.pkl"):
        restore_checkpoint(make_run(tmp_path / "run").accelerator, tmp_path, str(folder), config=CONFIG)

    # An Accelerate-style checkpoint (what an older whitebox_hf wrote): its pickles are never opened.
    old = tmp_path / "old" / "checkpoints" / "checkpoint_0"
    old.mkdir(parents=True)
    (old / "random_states_0.pkl").write_bytes(payload)
    (old / "optimizer.bin").write_bytes(payload)
    with pytest.raises(ValueError, match=r"random_states_0\.pkl"):
        restore_checkpoint(make_run(tmp_path / "old").accelerator, tmp_path / "old", str(old), config=CONFIG)
    capsys.readouterr()
    assert restore_checkpoint(make_run(tmp_path / "old").accelerator, tmp_path / "old", "latest",
                              config=CONFIG) is None
    assert "pickle files (optimizer.bin, random_states_0.pkl)" in capsys.readouterr().out

    # Same size, other bytes: caught by the SHA-256 of the manifest.
    tampered = folder / "optimizer.json"
    (folder / "custom_checkpoint_0.pkl").unlink()
    text = tampered.read_text()
    tampered.write_text(text.replace("0.8", "0.7", 1))
    with pytest.raises(ValueError, match="optimizer.json does not match the SHA-256"):
        restore_checkpoint(make_run(tmp_path / "run").accelerator, tmp_path, str(folder), config=CONFIG)
    assert not marker.exists()


def test_a_checkpoint_of_another_configuration_is_refused_naming_the_settings(tmp_path):
    run = make_run(tmp_path)
    restore_checkpoint(run.accelerator, tmp_path, "latest", config=CONFIG)
    save_checkpoint(run.accelerator, 1, CONFIG)
    other = {**CONFIG, "hidden_size": 32, "seed": 1, "output_dir": "b", "num_threads": 4, "log_every": 1}
    with pytest.raises(ValueError) as error:
        restore_checkpoint(make_run(tmp_path).accelerator, tmp_path, "latest", config=other)
    message = str(error.value)
    assert "hidden_size (checkpoint 16, this run 32)" in message and "seed (checkpoint 0, this run 1)" in message
    assert "output_dir" not in message and "num_threads" not in message and "log_every" not in message
    assert "\n" not in message
    # Bookkeeping settings alone may change.
    bookkeeping = {**CONFIG, "output_dir": "b", "num_threads": 4, "log_every": 1, "max_steps": 100}
    assert restore_checkpoint(make_run(tmp_path).accelerator, tmp_path, "latest", config=bookkeeping) is not None


def test_old_checkpoints_are_deleted_only_after_the_new_one_is_complete(tmp_path, monkeypatch):
    run = make_run(tmp_path, limit=2)
    restore_checkpoint(run.accelerator, tmp_path, "latest", config=CONFIG)
    for step in range(3):
        save_checkpoint(run.accelerator, step, CONFIG)
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["checkpoint_1", "checkpoint_2"]

    # A write that fails half-way leaves both old checkpoints (and no new one under its final name).
    def failing(folder, name, state):
        raise OSError("disk full")

    monkeypatch.setattr(checkpointing, "write_state", failing)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(run.accelerator, 3, CONFIG)
    assert {"checkpoint_1", "checkpoint_2"} <= {p.name for p in root.iterdir()}
    assert not (root / "checkpoint_3").exists()
    assert find_checkpoint(tmp_path, "latest") == root / "checkpoint_2"


def test_checkpoints_are_saved_on_the_period_and_at_the_end_only_when_asked(monkeypatch):
    saved = []
    monkeypatch.setattr(checkpointing, "save_checkpoint", lambda accelerator, step, config: saved.append(step))
    due = [step for step in range(1, 7) if save_checkpoint_if_due(None, step, 2, 6, config=CONFIG)]
    assert due == [2, 4] and saved == [2, 4]
    assert save_checkpoint_if_due(None, 6, 4, 6, at_end=True, config=CONFIG) and saved == [2, 4, 6]
    with pytest.raises(ValueError, match="every"):
        save_checkpoint_if_due(None, 1, 0, 6, config=CONFIG)


class _InOrder(Sampler):
    """The indices in order; it has a ``set_epoch``, as `EpochPermutationSampler` has, which changes how
    Accelerate passes the epoch on."""

    def __init__(self, n):
        self.n, self.epoch = n, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return self.n

    def __iter__(self):
        return iter(range(self.n))


class _EpochData(Dataset):
    """Item i of epoch e is (e, i): what the data set was told is visible in every batch."""

    def __init__(self):
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return 6

    def __getitem__(self, index):
        return torch.tensor([self.epoch, index])


def test_a_run_resumed_inside_a_later_epoch_tells_the_data_set_its_epoch(tmp_path):
    accelerator = create_accelerator(tmp_path)
    loader = accelerator.prepare(DataLoader(_EpochData(), batch_size=2, sampler=_InOrder(6)))
    steps = list(range(4, 9))  # resumed at step 4 of 3-batch epochs: inside epoch 1, then epoch 2
    batches = list(resumable_batches(accelerator, loader, steps[0], steps[-1] + 1))
    assert [int(batch[0, 0]) for batch in batches] == [step // 3 for step in steps]
    assert [batch[:, 1].tolist() for batch in batches] == [[2 * (s % 3), 2 * (s % 3) + 1] for s in steps]


def test_atomic_directory_replaces_a_folder_only_when_the_writing_succeeds(tmp_path):
    final = tmp_path / "model"
    with atomic_directory(final) as folder:
        (folder / "weights").write_text("one")
    with pytest.raises(RuntimeError), atomic_directory(final) as folder:
        (folder / "weights").write_text("half")
        raise RuntimeError("killed")
    assert (final / "weights").read_text() == "one"
    with atomic_directory(final) as folder:
        (folder / "weights").write_text("two")
    assert (final / "weights").read_text() == "two" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]


KILLED = ["--dataset", "digits", "--train_subset", "64", "--test_subset", "16", "--hidden_size", "16",
          "--num_hidden_layers", "1", "--num_attention_heads", "2", "--patch_size", "4", "--batch_size", "16",
          "--eval_batch_size", "16", "--warmup_steps", "1", "--epochs", "3", "--max_steps", "6", "--checkpoint_every",
          "2", "--checkpoints_total_limit", "1", "--log_every", "1", "--num_threads", "1"]


def test_a_run_killed_while_writing_a_checkpoint_resumes_to_the_uninterrupted_weights(tmp_path, capsys):
    from tests.training.test_resume import final_weights

    script = load_training_script("train_image_classification")
    script.main(KILLED + ["--output_dir", str(tmp_path / "straight")])
    straight = final_weights(tmp_path / "straight")

    killed = tmp_path / "killed"
    env = {**os.environ, KILL_DURING_CHECKPOINT_ENV: "4", "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    process = subprocess.run([sys.executable, str(REPO / "training" / "train_image_classification.py"), *KILLED,
                              "--output_dir", str(killed)], env=env, cwd=REPO, capture_output=True, text=True,
                             timeout=300)
    assert process.returncode == -signal.SIGKILL, process.stderr[-2000:]
    root = killed / "checkpoints"
    # Killed after the model state of checkpoint 1 was written: checkpoint 0 (step 2) survives the total limit of
    # 1, since old checkpoints are deleted only after a new one is complete.
    assert sorted(p.name for p in root.iterdir()) == [".checkpoint_1.partial", "checkpoint_0"]
    assert (root / ".checkpoint_1.partial" / "model.safetensors").is_file()
    assert not (root / ".checkpoint_1.partial" / MANIFEST_NAME).exists()
    assert not final_weights(killed)

    capsys.readouterr()
    script.main(KILLED + ["--output_dir", str(killed), "--resume_from_checkpoint", "latest"])
    assert "at step 2" in capsys.readouterr().out
    resumed = final_weights(killed)
    assert resumed.keys() == straight.keys()
    assert all(torch.equal(straight[key], resumed[key]) for key in straight)
    assert sorted(p.name for p in root.iterdir()) == ["checkpoint_1"]


def test_a_script_refuses_to_resume_a_run_of_another_model_shape(tmp_path):
    script = load_training_script("train_image_classification")
    argv = KILLED + ["--max_steps", "2", "--checkpoint_every", "1", "--output_dir", str(tmp_path)]
    script.main(argv)
    with pytest.raises(ValueError, match=r"hidden_size \(checkpoint 16, this run 32\)"):
        script.main(argv + ["--hidden_size", "32", "--resume_from_checkpoint", "latest"])
