"""Tests of training/train_world_model.py on tiny recordings: a few steps, the saved pipeline and its card, and an
exact resume after a kill."""

import json

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import load_training_script
from whitebox_hf.data import record_episodes
from whitebox_hf.training.checkpointing import INTERRUPT_EXIT_CODE

train_world_model = load_training_script("train_world_model")

TINY = ["--block_out_channels", "8,16", "--cross_attention_dim", "16", "--attention_head_dim", "8",
        "--batch_size", "4", "--sample_steps", "2", "--eval_transitions", "6", "--rollout_horizon", "3",
        "--episode_length", "4", "--num_threads", "1", "--lr_warmup_steps", "1", "--log_every", "1"]


@pytest.fixture(scope="module")
def data():
    return {"train": record_episodes(3, 4, seed=0), "test": record_episodes(2, 4, seed=100)}


def small(data):
    # 24×24 frames are more than these tests need: crop to 8×8 (still real frames, top-left corner of the room).
    return {split: type(r)(r.frames[:, :, :8, :8].copy(), r.actions, r.seeds, r.env_id) for split, r in data.items()}


@pytest.mark.parametrize("model", ["diffusion", "regressor"])
def test_a_few_steps_evaluate_and_save_a_pipeline_with_a_card(tmp_path, data, model):
    out = tmp_path / "run"
    results = train_world_model.main(TINY + ["--model", model, "--max_steps", "3", "--output_dir", str(out)],
                                     data=small(data))
    assert results["steps"] == 3 and results["num_train_transitions"] == 3 * 3
    evaluation = json.loads((out / "metrics.json").read_text())["evaluation"]
    assert evaluation["next_frame"]["num_transitions"] == 6
    assert len(evaluation["rollout"]["psnr"]) == 3
    rollouts = load_file(out / "rollouts.safetensors")
    assert rollouts["rollout"].shape == (2, 3, 8, 8, 3) and rollouts["truth"].shape == (2, 5, 8, 8, 3)
    card = (out / "pipeline" / "README.md").read_text()
    assert f"{evaluation['next_frame']['true_action']['psnr']:.4f}" in card and model in card
    index = json.loads((out / "pipeline" / "model_index.json").read_text())
    assert index["model"] == ["modeling_world_model", "WorldModel"]


def test_resumed_run_ends_with_the_uninterrupted_weights(tmp_path, data, capsys):
    argv = TINY + ["--max_steps", "4", "--checkpoint_every", "2"]
    train_world_model.main(argv + ["--output_dir", str(tmp_path / "straight")], data=small(data))
    with pytest.raises(SystemExit) as exit_info:
        train_world_model.main(argv + ["--output_dir", str(tmp_path / "crashed"), "--interrupt_after_steps", "3"],
                               data=small(data))
    assert exit_info.value.code == INTERRUPT_EXIT_CODE
    capsys.readouterr()
    results = train_world_model.main(argv + ["--output_dir", str(tmp_path / "crashed"), "--resume_from_checkpoint",
                                             "latest"], data=small(data))
    assert "at step 2" in capsys.readouterr().out and results["steps"] == 4
    path = "pipeline/model/diffusion_pytorch_model.safetensors"
    straight, resumed = load_file(tmp_path / "straight" / path), load_file(tmp_path / "crashed" / path)
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[key], resumed[key]) for key in straight)


@pytest.mark.parametrize("argv, needle", [(["--model", "gan"], "model"), (["--rollout_horizon", "40"],
                                                                          "rollout_horizon"),
                                          (["--block_out_channels", "a,b"], "block_out_channels")])
def test_bad_arguments_name_the_argument(argv, needle):
    with pytest.raises(ValueError, match=f"`{needle}`"):
        train_world_model.parse_args(argv)
