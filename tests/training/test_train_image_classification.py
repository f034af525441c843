"""End-to-end tests of training/train_image_classification.py on scikit-learn's bundled digits (tiny CRATE)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "training" / "train_image_classification.py"
TINY = ["--dataset", "digits", "--hidden_size", "32", "--num_hidden_layers", "2", "--num_attention_heads", "4",
        "--patch_size", "4", "--batch_size", "64", "--eval_batch_size", "128",
        "--learning_rate", "0.003", "--log_every", "5", "--num_threads", "1", "--warmup_steps", "10"]


def run(args, output_dir):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, str(SCRIPT), *TINY, "--output_dir", str(output_dir), *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT, timeout=600)
    if result.returncode != 0:
        raise AssertionError(f"{command} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def test_training_learns_and_saves_everything(tmp_path):
    # In this process (the script's `main`): the command line's own path is covered by test_scale_out.py's
    # one-process run and the exit-2 tests; a fresh interpreter here would only add its ~10 s of imports.
    from tests.conftest import load_training_script

    load_training_script("train_image_classification").main([*TINY, "--output_dir", str(tmp_path), "--epochs", "5"])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.25  # 10 classes: chance is 0.1 (110 steps of a 2-layer, width-32 CRATE: 0.32)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in records if "train_loss" in r]
    assert losses[-1] < losses[0]
    assert (tmp_path / "loss_curve.png").stat().st_size > 0
    model_dir = tmp_path / "model"
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"} <= {
        p.name for p in model_dir.iterdir()
    }
    card = ModelCard.load(model_dir / "README.md")
    assert card.data.eval_results[0].metric_value == pytest.approx(metrics["test_accuracy"])


@pytest.mark.parametrize("key, value", [("random_erasing", "1.5"), ("label_smoothing", "-0.1")])
def test_a_probability_out_of_range_is_a_usage_error(key, value):
    from tests.conftest import load_training_script

    script = load_training_script("train_image_classification")
    with pytest.raises(ValueError, match=f"`{key}` must be in \\[0, 1\\], got"):
        script.parse_args([f"--{key}", value])
    with pytest.raises(SystemExit):  # not a number at all: argparse's own one-line error
        script.parse_args([f"--{key}", "nan"])


def test_an_unknown_vit_attention_is_a_usage_error():
    from tests.conftest import load_training_script

    script = load_training_script("train_image_classification")
    with pytest.raises(ValueError, match="`vit_attention` must be one of .*got 'flash'"):
        script.parse_args(["--vit_attention", "flash"])
    assert script.parse_args(["--vit_attention", "eager"])["vit_attention"] == "eager"
