"""Tests of training/train_motion_prior.py (EgoAllo's motion prior) on tiny synthetic BVH clips: a few steps."""

import json

import pytest
import torch
from transformers import AutoModel

from tests.conftest import load_training_script
from tests.training.motion_data import motion_argv

train_motion_prior = load_training_script("train_motion_prior")


@pytest.mark.parametrize("objective, floor_height", [("diffusion", "on"), ("regression", "off")])
def test_a_few_steps_log_the_terms_score_held_out_windows_and_save_a_model_with_a_card(tmp_path, objective,
                                                                                      floor_height):
    out = tmp_path / "run"
    results = train_motion_prior.main(motion_argv(tmp_path) + [
        "--objective", objective, "--floor_height", floor_height, "--head_conditioning", "absolute_relative",
        "--max_steps", "3", "--log_every", "1", "--output_dir", str(out)])
    assert results["steps"] == 3 and results["train_clips"] == ["clip_a", "clip_b"]
    assert results["num_train_windows"] == 9 + 11 and results["num_train_frames"] == 90 + 105
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if "train_loss" in r]
    assert len(steps) == 3
    for record in steps:  # the total is the weighted sum of the terms logged beside it (body 1, contacts 0.1)
        assert record["train_loss"] == pytest.approx(record["body_loss"] + 0.1 * record["contacts_loss"], rel=1e-5)

    evaluation = json.loads((out / "metrics.json").read_text())["evaluation"]
    overall = evaluation["all"]
    assert overall["num_windows"] == 2 and overall["num_frames"] == 64
    assert set(evaluation["per_clip"]) == {"clip_c"}
    # The pelvis is placed from the observed head, so the head joint sits where it should, whatever the floor shift.
    assert overall["head_error_m"] < 0.05
    assert overall["mpjpe_mm"] > overall["pa_mpjpe_mm"] > 0 and overall["gnd"] in (0.0, 0.5, 1.0)

    reloaded, info = AutoModel.from_pretrained(out / "model", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert type(reloaded).__name__ == "MotionPriorModel" and reloaded.config.head_conditioning == "absolute_relative"
    assert (out / "model" / "model.safetensors").is_file()
    card = (out / "model" / "README.md").read_text()
    assert f"{overall['mpjpe_mm']:.4f}" in card and "2,737 frames" in card and objective in card
    assert ("# motion-regression-" in card) == (objective == "regression")
    # The saved weights reproduce the evaluation they were scored with.
    args = train_motion_prior.parse_args(motion_argv(tmp_path) + ["--objective", objective, "--floor_height",
                                                                   floor_height])
    windows = train_motion_prior.load_windows(args)
    again = train_motion_prior.evaluate(reloaded, windows["test"], args)["all"]
    assert again["mpjpe_mm"] == pytest.approx(overall["mpjpe_mm"], rel=1e-5)


def test_the_floor_shift_reaches_the_model_only_with_floor_height_on(monkeypatch):
    seen = {}

    def recording(objective):
        def call(model, head_poses, offsets, floor_height=None, **kwargs):
            seen[objective] = floor_height
            return type("Sample", (), {"positions": torch.zeros(head_poses.shape[0], head_poses.shape[1], 22, 3)})
        return call

    monkeypatch.setattr(train_motion_prior, "sample_motion", recording("diffusion"))
    monkeypatch.setattr(train_motion_prior, "regress_motion", recording("regression"))
    head, offsets, floor = torch.eye(4).expand(2, 3, 4, 4), torch.zeros(2, 22, 3), torch.tensor([0.5, -0.25])
    for objective in ("diffusion", "regression"):
        for switch in ("on", "off"):
            args = train_motion_prior.parse_args(["--floor_height", switch, "--objective", objective])
            train_motion_prior.predictor(None, args)(head, offsets, floor)
            assert (seen[objective] is floor) == (switch == "on") and (seen[objective] is None) == (switch == "off")
    lifted = train_motion_prior.lift(head, floor)
    assert lifted[:, :, 2, 3].tolist() == [[0.5] * 3, [-0.25] * 3]


@pytest.mark.parametrize("argv, needle", [
    (["--head_conditioning", "relative"], "head_conditioning"),
    (["--objective", "flow"], "objective"),
    (["--floor_height", "maybe"], "floor_height"),
    (["--window", "16"], "window"),
    (["--window", "256"], "window"),
    (["--train_clips", "01_01", "--test_clips", "01_01"], "test_clips"),
    (["--train_clips", " , "], "train_clips"),
    (["--preset", "big"], "preset"),
    (["--hidden_size", "-1"], "hidden_size"),
])
def test_bad_settings_are_refused_by_name(argv, needle):
    with pytest.raises(ValueError, match=needle):
        train_motion_prior.parse_args(argv)
