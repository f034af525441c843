"""The scripts of examples/: the one behind `make demo` on a tiny model and the bundled digits, in a fresh interpreter,
and the used-by examples (AutoModel, pipeline, DiffusionPipeline, Trainer + PEFT) with `--tiny`, offline, run as
``__main__`` in this process (a fresh interpreter would spend most of each test importing diffusers again)."""

import contextlib
import io
import re
import runpy
import sys
from pathlib import Path

import pytest

from whitebox_hf import CrateForImageClassification, CrateImageProcessor

ROOT = Path(__file__).resolve().parents[1]


def test_evaluate_script_reloads_reports_accuracy_and_writes_saliency(tmp_path, tiny_crate_config, run_example):
    model_dir = tmp_path / "model"
    config = tiny_crate_config(image_size=16, patch_size=4, num_labels=10, id2label={i: str(i) for i in range(10)})
    CrateForImageClassification(config).save_pretrained(model_dir)
    CrateImageProcessor(num_channels=1, size={"height": 16, "width": 16}, image_mean=[0.3], image_std=[0.4]
                        ).save_pretrained(model_dir)
    png = tmp_path / "saliency.png"
    out = run_example("evaluate_image_classifier", str(model_dir), "--dataset", "digits", "--saliency_png", str(png))
    assert "test accuracy" in out and "CrateForImageClassification" in out
    assert png.stat().st_size > 1000


@pytest.fixture
def run_example(monkeypatch):
    """``run_example(name, *arguments)`` runs ``examples/<name>.py`` as ``__main__`` offline, from the repository
    root, as a script would run (its folder first on ``sys.path``), and returns its stdout (a non-zero ``sys.exit``
    fails the test)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT / "examples"))  # a script's own folder is on its path (tiny_models.py)

    def run(name: str, *arguments: str) -> str:
        path = ROOT / "examples" / f"{name}.py"
        monkeypatch.setattr(sys, "argv", [str(path), *arguments])
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            try:
                runpy.run_path(str(path), run_name="__main__")
            except SystemExit as exit_info:
                assert exit_info.code in (None, 0), f"{name} exited with {exit_info.code}: {out.getvalue()[-2000:]}"
        return out.getvalue()

    return run


def test_automodel_example_prints_pooled_feature_shape(run_example):
    out = run_example("automodel_from_pretrained", "--tiny")
    assert "CrateModel: pooled features (4, 32), tokens (4, 50, 32)" in out  # 28/4 = 7×7 patches + cls


def test_pipeline_example_classifies_the_bundled_images(run_example):
    out = run_example("pipeline_image_classification", "--tiny")
    lines = [line for line in out.splitlines() if line.endswith(")")]
    assert [line.split(":")[0] for line in lines] == ["ankle_boot.png", "bag.png", "sandal.png", "trouser.png"]
    for line in lines:  # top-2 guesses with scores in [0, 1] and names from id2label
        scores = [float(x) for x in re.findall(r"\((\d\.\d+)\)", line)]
        assert len(scores) == 2 and scores[0] >= scores[1] and all(0 <= x <= 1 for x in scores), line


def test_diffusion_pipeline_example_samples_one_image_per_class(run_example, tmp_path):
    out = run_example("diffusion_pipeline_inference", "--tiny", "--steps", "4", "--out", str(tmp_path / "grid.png"))
    assert not out.startswith("skipped:"), out  # WhiteboxFlowPipeline is ours: unavailable is a failure
    assert "3 images of size (16, 16), classes ['shirt', 'sneaker', 'bag']" in out
    from PIL import Image

    assert Image.open(tmp_path / "grid.png").size == (48, 16)


def test_trainer_peft_example_trains_and_saves_an_adapter(run_example):
    out = run_example("trainer_peft_finetuning", "--tiny", "--steps", "3")
    match = re.search(r"train loss (\d+\.\d+), test accuracy (\d\.\d+)", out)
    assert match, out
    assert 0 <= float(match.group(2)) <= 1
    adapter = Path(re.search(r"adapter saved to (\S+)", out).group(1))
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
