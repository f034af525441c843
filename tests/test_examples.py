"""The scripts of examples/: those behind `make demo` on a tiny model and the bundled digits, and the used-by examples
(AutoModel, pipeline, DiffusionPipeline, Trainer + PEFT) with `--tiny`, each in a subprocess, offline."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from whitebox_hf import CrateForImageClassification, CrateImageProcessor

ROOT = Path(__file__).resolve().parents[1]


def test_evaluate_script_reloads_reports_accuracy_and_writes_saliency(tmp_path, tiny_crate_config):
    model_dir = tmp_path / "model"
    config = tiny_crate_config(image_size=16, patch_size=4, num_labels=10, id2label={i: str(i) for i in range(10)})
    CrateForImageClassification(config).save_pretrained(model_dir)
    CrateImageProcessor(num_channels=1, size={"height": 16, "width": 16}, image_mean=[0.3], image_std=[0.4]
                        ).save_pretrained(model_dir)
    png = tmp_path / "saliency.png"
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "evaluate_image_classifier.py"), str(model_dir), "--dataset",
         "digits", "--saliency_png", str(png)],
        capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test accuracy" in result.stdout and "CrateForImageClassification" in result.stdout
    assert png.stat().st_size > 1000


def run_example(name: str, *arguments: str, timeout: int = 300) -> str:
    """Run ``examples/<name>.py`` offline in a fresh interpreter; return its stdout (fails on a non-zero exit)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    result = subprocess.run([sys.executable, str(ROOT / "examples" / f"{name}.py"), *arguments], capture_output=True,
                            text=True, env=env, timeout=timeout, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_automodel_example_prints_pooled_feature_shape():
    out = run_example("automodel_from_pretrained", "--tiny")
    assert "CrateModel: pooled features (4, 32), tokens (4, 50, 32)" in out  # 28/4 = 7×7 patches + cls


def test_pipeline_example_classifies_the_bundled_images():
    out = run_example("pipeline_image_classification", "--tiny")
    lines = [line for line in out.splitlines() if line.endswith(")")]
    assert [line.split(":")[0] for line in lines] == ["ankle_boot.png", "bag.png", "sandal.png", "trouser.png"]
    for line in lines:  # top-2 guesses with scores in [0, 1] and names from id2label
        scores = [float(x) for x in re.findall(r"\((\d\.\d+)\)", line)]
        assert len(scores) == 2 and scores[0] >= scores[1] and all(0 <= x <= 1 for x in scores), line


def test_diffusion_pipeline_example_samples_one_image_per_class(tmp_path):
    out = run_example("diffusion_pipeline_inference", "--tiny", "--steps", "4", "--out", str(tmp_path / "grid.png"))
    assert not out.startswith("skipped:"), out  # WhiteboxFlowPipeline is ours: unavailable is a failure
    assert "3 images of size (16, 16), classes ['shirt', 'sneaker', 'bag']" in out
    from PIL import Image

    assert Image.open(tmp_path / "grid.png").size == (48, 16)


def test_trainer_peft_example_trains_and_saves_an_adapter():
    out = run_example("trainer_peft_finetuning", "--tiny", "--steps", "3", timeout=600)
    match = re.search(r"train loss (\d+\.\d+), test accuracy (\d\.\d+)", out)
    assert match, out
    assert 0 <= float(match.group(2)) <= 1
    adapter = Path(re.search(r"adapter saved to (\S+)", out).group(1))
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
