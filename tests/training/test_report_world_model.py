"""training/report_world_model.py end to end on tiny runs: the page quotes the runs' own numbers, draws the strips,
and says what was not run."""

import json

from tests.conftest import load_training_script
from tests.training.test_train_video_inflation import TINY as VIDEO_TINY
from tests.training.test_train_world_model import TINY as WORLD_TINY
from tests.training.test_train_world_model import small
from whitebox_hf.data import record_episodes

report = load_training_script("report_world_model")
train_world_model = load_training_script("train_world_model")
train_video = load_training_script("train_video_inflation")


def test_the_report_tabulates_the_runs_and_draws_the_strips(tmp_path):
    data = small({"train": record_episodes(3, 4, seed=0), "test": record_episodes(3, 4, seed=100)})
    runs = tmp_path / "runs"
    out = tmp_path / "docs" / "conditional_world.md"
    train_world_model.main(WORLD_TINY + ["--max_steps", "2", "--output_dir", str(runs / "diffusion")], data=data)
    summary = report.main(["--runs", str(runs), "--out", str(out)])
    text = out.read_text()
    assert "- `regressor`: not run" in text and "temporal stage: not run" in text
    one = json.loads((runs / "diffusion" / "metrics.json").read_text())["evaluation"]["next_frame"]
    assert f"| {one['true_action']['psnr']:.2f} | {one['wrong_action']['psnr']:.2f} |" in text
    gain = summary["diffusion"]["psnr_gain"]
    assert ("the model uses the action" in text) == (gain > report.ACTION_MARGIN_DB)
    assert f"{gain:+.2f} dB" in text
    assert (out.parent / "conditional_world_rollouts.png").is_file()

    train_world_model.main(WORLD_TINY + ["--model", "regressor", "--max_steps", "2", "--output_dir",
                                         str(runs / "regressor")], data=data)
    train_video.main(VIDEO_TINY + ["--max_steps", "1", "--output_dir", str(runs / "video_image")], data=data)
    train_video.main(VIDEO_TINY + ["--stage", "temporal", "--image_model", str(runs / "video_image" / "unet"),
                                   "--max_steps", "1", "--output_dir", str(runs / "video_temporal")], data=data)
    summary = report.main(["--runs", str(runs), "--out", str(out)])
    text = out.read_text()
    assert "not run" not in text and (out.parent / "conditional_world_video.png").is_file()
    video = summary["video"]["video"]
    assert f"{video['pixel_change']:.4f}" in text
    d, r = summary["diffusion"]["rollout"]["psnr"], summary["regressor"]["rollout"]["psnr"]
    assert f"the {'diffusion' if d[-1] > r[-1] else 'regressor'} rollout is closer" in text
