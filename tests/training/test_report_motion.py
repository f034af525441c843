"""training/report_motion.py end to end on tiny synthetic clips: two 2-step runs, the baselines, the page."""

import json

from tests.conftest import load_training_script
from tests.training.motion_data import motion_argv

report_motion = load_training_script("report_motion")
train_motion_prior = load_training_script("train_motion_prior")


def test_the_report_tabulates_the_runs_the_baselines_and_says_what_was_not_run(tmp_path):
    runs = tmp_path / "runs"
    argv = motion_argv(tmp_path) + ["--max_steps", "2"]
    for name, extra in (("ours", []), ("absolute", ["--head_conditioning", "absolute"])):
        train_motion_prior.main(argv + extra + ["--output_dir", str(runs / name)])
    output = tmp_path / "motion.md"
    summary = report_motion.main(["--runs_dir", str(runs), "--output", str(output), "--bvh_dir",
                                  str(tmp_path / "bvh"), "--guidance", "off"])
    text = output.read_text()
    facts = summary["data"]
    assert facts["num_clips"] == 3 and facts["frames"] == 90 + 105 + 120
    assert f"{facts['frames']:,} frames" in text
    ours = json.loads((runs / "ours" / "metrics.json").read_text())["evaluation"]["all"]
    assert f"| {ours['mpjpe_mm']:,.1f} |" in text  # the run's own number, as it measured it
    for name in ("nearest_neighbour", "mean_pose"):
        scores = summary["baselines"][name]["all"]
        assert scores["num_windows"] == ours["num_windows"] and f"{scores['mpjpe_mm']:,.1f}" in text
    assert "| a | sequence canonicalisation | not run |" in text and "not computed: --guidance off" in text
    assert "| clip_c |" in text and "held out" in text and str(tmp_path) not in text
    assert json.loads(output.with_suffix(".json").read_text())["guidance"] == "not computed: --guidance off"


def test_the_guidance_hook_gives_a_predictor_or_the_reason_it_cannot():
    import importlib

    predictor = report_motion.guided_predictor(None, {"floor_height": "on", "sample_steps": 2, "sample_eta": 0.8},
                                               None)
    importable = hasattr(importlib.import_module("whitebox_hf.models.motion_prior"), "sample_motion_windowed")
    assert callable(predictor) == importable
    if not importable:
        assert predictor.startswith("not computed") and "sample_motion_windowed" in predictor
