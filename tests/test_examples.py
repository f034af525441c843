"""The scripts behind `make demo`, on a tiny model and the bundled digits."""

import os
import subprocess
import sys
from pathlib import Path

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
