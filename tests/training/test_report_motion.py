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


def fake_run(mpjpe):
    scores = {"mpjpe_mm": mpjpe, "pa_mpjpe_mm": mpjpe / 2, "head_error_m": 0.0, "gnd": 1.0, "foot_skating_m": 0.001,
              "foot_skating_true_m": 0.0005, "num_windows": 2, "num_frames": 128}
    return {"evaluation": {"all": scores, "per_clip": {"clip_c": scores}}, "steps": 10, "epochs": 1.0,
            "train_seconds_total": 60.0, "window": 64, "num_train_windows": 9, "num_parameters": 1000,
            "seconds_per_step": 0.5, "eval_seconds": 1.0, "train_clips": ["clip_a"], "test_clips": ["clip_c"]}


def test_the_claim_and_baseline_verdicts_follow_from_the_numbers_both_ways(tmp_path):
    facts = {"clips": {"clip_a": {"frames": 90, "seconds": 3.0, "skeleton": "boxing", "source_fps": 100.0}},
             "num_clips": 1, "frames": 90, "seconds": 3.0}
    order = report_motion.TABLE_815_ORDER
    baselines = {"nearest_neighbour": fake_run(80.0)["evaluation"], "mean_pose": fake_run(250.0)["evaluation"]}
    as_book = {name: fake_run(100.0 + 10 * i) for i, name in enumerate(order)}
    text = report_motion.write_report(tmp_path, tmp_path / "a.md", facts, as_book, baselines, "skipped", 1.0, [])
    assert "conditioning is best holds here; the ordering is the same as the book's" in text
    assert "beats: mean_pose (250.0 mm); does not beat: nearest_neighbour (80.0 mm)" in text
    reversed_order = {name: fake_run(200.0 - 10 * i) for i, name in enumerate(order)}
    text = report_motion.write_report(tmp_path, tmp_path / "b.md", facts, reversed_order, baselines, "skipped", 1.0,
                                      [])
    assert "conditioning is best does not hold here; the ordering is not the same as the book's" in text
    assert "Ordering by held-out MPJPE, best first: absolute < sequence_canonical" in text
