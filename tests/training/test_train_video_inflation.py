"""Tests of training/train_video_inflation.py on tiny recordings: the image stage, the temporal stage that trains only
the temporal layers and scores consistency, an exact resume, and bad arguments."""

import json

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import load_training_script
from tests.training.test_train_world_model import small
from whitebox_hf.data import record_episodes
from whitebox_hf.training.checkpointing import INTERRUPT_EXIT_CODE

train_video = load_training_script("train_video_inflation")

TINY = ["--block_out_channels", "8,16", "--batch_size", "2", "--sample_steps", "2", "--eval_videos", "2",
        "--num_frames", "3", "--motion_max_seq_length", "4", "--num_threads", "1", "--lr_warmup_steps", "1",
        "--log_every", "1", "--episode_length", "4"]


@pytest.fixture(scope="module")
def data():
    return small({"train": record_episodes(2, 4, seed=0), "test": record_episodes(2, 4, seed=100)})


def test_image_then_temporal_stage(tmp_path, data):
    image = train_video.main(TINY + ["--max_steps", "2", "--output_dir", str(tmp_path / "image")], data=data)
    assert image["steps"] == 2 and image["num_trainable_parameters"] == image["num_parameters"]
    before = load_file(tmp_path / "image" / "unet" / "diffusion_pytorch_model.safetensors")
    results = train_video.main(TINY + ["--stage", "temporal", "--image_model", str(tmp_path / "image" / "unet"),
                                       "--max_steps", "2", "--output_dir", str(tmp_path / "temporal")], data=data)
    assert 0 < results["num_trainable_parameters"] < results["num_parameters"]
    after = load_file(tmp_path / "temporal" / "unet" / "diffusion_pytorch_model.safetensors")
    # The 2D weights are frozen: every tensor of the image model is unchanged in the video model.
    assert before.keys() <= after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    scores = json.loads((tmp_path / "temporal" / "metrics.json").read_text())["evaluation"]
    assert set(scores) == {"video", "independent", "recorded", "shuffled"}
    assert scores["recorded"]["num_frames"] == 3
    assert load_file(tmp_path / "temporal" / "samples.safetensors")["video"].shape == (2, 3, 8, 8, 3)


def test_resumed_image_stage_ends_with_the_uninterrupted_weights(tmp_path, data, capsys):
    argv = TINY + ["--max_steps", "4", "--checkpoint_every", "2"]
    train_video.main(argv + ["--output_dir", str(tmp_path / "straight")], data=data)
    with pytest.raises(SystemExit) as exit_info:
        train_video.main(argv + ["--output_dir", str(tmp_path / "crashed"), "--interrupt_after_steps", "3"], data=data)
    assert exit_info.value.code == INTERRUPT_EXIT_CODE
    capsys.readouterr()
    train_video.main(argv + ["--output_dir", str(tmp_path / "crashed"), "--resume_from_checkpoint", "latest"],
                     data=data)
    assert "at step 2" in capsys.readouterr().out
    path = "unet/diffusion_pytorch_model.safetensors"
    straight, resumed = load_file(tmp_path / "straight" / path), load_file(tmp_path / "crashed" / path)
    assert all(torch.equal(straight[key], resumed[key]) for key in straight)


@pytest.mark.parametrize("argv, needle", [(["--stage", "audio"], "stage"), (["--stage", "temporal"], "image_model"),
                                          (["--num_frames", "20"], "num_frames")])
def test_bad_arguments_name_the_argument(argv, needle):
    with pytest.raises(ValueError, match=f"`{needle}`"):
        train_video.parse_args(argv)
