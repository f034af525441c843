"""training/report_control.py: the sudden-convergence verdict follows from the curve (each way), and the page is
written from real (tiny) runs of train_controlnet.py and train_personalization.py."""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_training_script
from tests.tiny_text_to_image import caption_data, save_tiny_text_to_image_pipeline


@pytest.mark.parametrize("curve, verdict", [
    ([(0, 0.10), (100, 0.11), (200, 0.12), (300, 0.45), (400, 0.46)], "sudden"),
    ([(0, 0.10), (100, 0.18), (200, 0.26), (300, 0.34), (400, 0.42)], "gradual"),
    ([(0, 0.10), (100, 0.11), (200, 0.12)], "no convergence"),
])
def test_sudden_convergence_verdict_follows_the_curve(curve, verdict):
    report = load_training_script("report_control")
    judged = report.sudden_convergence(curve)
    assert judged["verdict"] == verdict
    if verdict == "sudden":
        assert (judged["jump_start"], judged["jump_end"]) == (200, 300)
        assert judged["share"] == pytest.approx(0.33 / 0.36)


def test_sudden_convergence_needs_three_evaluations():
    with pytest.raises(ValueError, match="at least 3 evaluations"):
        load_training_script("report_control").sudden_convergence([(0, 0.1), (10, 0.5)])


def test_the_page_is_written_from_the_runs(tmp_path):
    base = save_tiny_text_to_image_pipeline(tmp_path / "base")
    runs = tmp_path / "runs"
    common = ["--base", str(base), "--num_threads", "1", "--log_every", "1"]
    load_training_script("train_controlnet").main(common + [
        "--batch_size", "4", "--max_steps", "2", "--eval_every", "1", "--eval_num_images", "2",
        "--final_eval_num_images", "2", "--eval_inference_steps", "2", "--output_dir", str(runs / "controlnet")],
        data=caption_data())
    for method in ("dreambooth", "custom_diffusion"):
        load_training_script("train_personalization").main(common + [
            "--method", method, "--subject", "red kite", "--class_noun", "kite", "--num_class_images", "2",
            "--class_sample_steps", "1", "--batch_size", "2", "--max_steps", "1", "--eval_samples_per_prompt", "1",
            "--eval_prompts", "a {}", "--eval_inference_steps", "1", "--lift_model", "",
            "--output_dir", str(runs / "personalization" / method)], data=caption_data())
    report = load_training_script("report_control")
    page = report.main(["--runs", str(runs), "--output", str(tmp_path / "docs" / "conditional_control.md")])
    text = page.read_text()
    control = json.loads((runs / "controlnet" / "results.json").read_text())
    assert f"| with ControlNet | {control['edge_f1_with_control']:.3f} |" in text
    assert "| step | held-out edge F1 |" in text and "| 2 |" in text
    assert "| DreamBooth | `to_q`, `to_k`, `to_v`, `to_out.0` |" in text
    assert "| Custom Diffusion | `attn2.to_k`, `attn2.to_v` |" in text
    for picture in ("conditional_control_triples.png", "conditional_control_curve.png",
                    "conditional_control_dreambooth.png", "conditional_control_custom_diffusion.png"):
        assert f"({picture})" in text and (tmp_path / "docs" / picture).is_file()
