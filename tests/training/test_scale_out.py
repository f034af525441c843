"""Scale-out on accelerate: training/train_image_classification.py unchanged under `accelerate launch` with the
config files in training/accelerate_configs/, two CPU processes over gloo, against one process at the same
global batch (the scripts split every batch across the ranks: ``split_batches=True``).

DDP keeps a full replica per rank and averages gradients; FSDP (FSDP2, ``fully_shard``) keeps a shard of every
parameter, gradient and optimizer state per rank and gathers the full weights layer by layer. Both must give the
one-process weights up to float reduction order. One tiny CRATE, six steps.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "training" / "train_image_classification.py"
CONFIGS = ROOT / "training" / "accelerate_configs"
TINY = ["--dataset", "digits", "--hidden_size", "32", "--num_hidden_layers", "2", "--num_attention_heads", "4",
        "--patch_size", "4", "--batch_size", "64", "--eval_batch_size", "128", "--learning_rate", "0.003",
        "--log_every", "2", "--num_threads", "1", "--warmup_steps", "2", "--epochs", "1", "--max_steps", "6",
        "--test_subset", "100"]


def train(output_dir, config=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    if config is None:
        command = [sys.executable, str(SCRIPT)]
    else:
        env["ACCELERATE_USE_CPU"] = "1"  # torchrun launcher, CPU ranks over gloo (see the config files)
        accelerate = Path(sys.executable).with_name("accelerate")
        command = [str(accelerate), "launch", "--config_file", str(CONFIGS / config), str(SCRIPT)]
    command += [*TINY, "--output_dir", str(output_dir)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT, timeout=300)
    if result.returncode != 0:
        raise AssertionError(f"{command} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    metrics = json.loads((Path(output_dir) / "metrics.json").read_text())
    return metrics, load_file(Path(output_dir) / "model" / "model.safetensors")


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    return train(tmp_path_factory.mktemp("one_process"))


# Both config files against the one process of the fixture: DDP (a replica per rank) and FSDP (shards).
@pytest.mark.parametrize("config", ["cpu_ddp.yaml", "cpu_fsdp.yaml"])
def test_two_processes_match_one_process_at_the_same_global_batch(config, one_process, tmp_path):
    single_metrics, single = one_process
    metrics, weights = train(tmp_path, config)
    assert metrics["num_processes"] == 2 and single_metrics["num_processes"] == 1
    assert metrics["world_batch_size"] == single_metrics["world_batch_size"] == 64
    assert metrics["steps"] == single_metrics["steps"] == 6
    # DDP's rank 0 saves its replica; FSDP the gathered full tensors (FULL_STATE_DICT): the same names and shapes
    # as one process either way.
    assert set(weights) == set(single)
    moved = max((single[name] - weights[name]).abs().max().item() for name in single)
    for name in single:
        torch.testing.assert_close(weights[name], single[name], atol=1e-5, rtol=1e-4, msg=name)
    assert moved < 1e-5
    assert metrics["test_accuracy"] == pytest.approx(single_metrics["test_accuracy"], abs=0.011)  # ≤ 1 of 100 images


def test_the_weights_did_train(one_process):
    """The comparison above means something only if six steps moved the weights far beyond its tolerance: the
    classifier bias starts at zero (the models' init) and must have moved by over 100 × atol."""
    _, trained = one_process
    assert trained["classifier.bias"].abs().max() > 100 * 1e-5


@pytest.mark.parametrize("config", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_accelerate_config_loads(config):
    from accelerate.commands.config.config_args import load_config_from_file

    loaded = load_config_from_file(str(CONFIGS / config))
    raw = yaml.safe_load((CONFIGS / config).read_text())
    assert loaded.distributed_type.value == raw["distributed_type"]
    assert raw["num_processes"] >= 2 and raw["num_processes"] % raw["num_machines"] == 0
    if raw["num_machines"] > 1:
        assert raw.get("main_process_ip") and raw.get("main_process_port")
