"""train_controlnet.py on the tiny text-to-image base: it trains only the ControlNet, logs the edge agreement
next to the loss, saves a ControlNet that reloads into `StableDiffusionControlNetPipeline`, and resumes exactly."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import load_training_script
from tests.tiny_text_to_image import caption_data, save_tiny_text_to_image_pipeline
from tests.training.test_resume import final_weights
from whitebox_hf.training.checkpointing import INTERRUPT_EXIT_CODE

ARGS = ["--batch_size", "4", "--learning_rate", "0.01", "--lr_warmup_steps", "0", "--eval_every", "2",
        "--eval_num_images", "2", "--final_eval_num_images", "3", "--eval_inference_steps", "2", "--log_every", "1",
        "--num_threads", "1", "--max_steps", "4", "--checkpoint_every", "2"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return save_tiny_text_to_image_pipeline(tmp_path_factory.mktemp("t2i") / "pipeline")


def test_controlnet_trains_logs_edge_agreement_and_reloads(base, tmp_path):
    from diffusers import ControlNetModel

    script = load_training_script("train_controlnet")
    out = tmp_path / "run"
    results = script.main(ARGS + ["--base", str(base), "--output_dir", str(out)], data=caption_data())
    assert results["steps"] == 4
    for key in ("edge_f1_with_control", "edge_f1_without_control"):
        assert 0.0 <= results[key] <= 1.0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "edge_f1" in r] == [0, 2, 4]
    assert [r["step"] for r in log if "train_loss" in r] == [1, 2, 3, 4]
    controlnet = ControlNetModel.from_pretrained(out / "controlnet")
    # Training moved the zero convolutions off zero: the ControlNet now acts on the base.
    assert torch.count_nonzero(controlnet.controlnet_mid_block.weight) > 0
    assert "edge_f1_with_control" in (out / "controlnet" / "README.md").read_text()
    assert (out / "triples.png").is_file() and (out / "curve.png").is_file()
    # The base stayed frozen: its files are untouched by construction, and the ControlNet is all that was saved.
    assert sorted(p.name for p in (out / "controlnet").iterdir()) == [
        "README.md", "config.json", "diffusion_pytorch_model.safetensors"]


def test_resumed_controlnet_run_ends_with_the_uninterrupted_weights(base, tmp_path, capsys):
    script = load_training_script("train_controlnet")
    argv = ARGS + ["--base", str(base), "--final_eval_num_images", "0"]
    script.main(argv + ["--output_dir", str(tmp_path / "straight")], data=caption_data())
    straight = final_weights(tmp_path / "straight")
    crashed = tmp_path / "crashed"
    with pytest.raises(SystemExit) as exit_info:
        script.main(argv + ["--output_dir", str(crashed), "--interrupt_after_steps", "3"], data=caption_data())
    assert exit_info.value.code == INTERRUPT_EXIT_CODE
    assert not final_weights(crashed)
    capsys.readouterr()
    results = script.main(argv + ["--output_dir", str(crashed), "--resume_from_checkpoint", "latest"],
                          data=caption_data())
    assert "at step 2" in capsys.readouterr().out
    resumed = final_weights(crashed)
    assert resumed.keys() == straight.keys() and straight
    assert not [key for key in straight if not torch.equal(straight[key], resumed[key])]
    assert results["steps"] == 4


def test_prompt_truncation_is_announced_once_and_matches_the_pipeline():
    from tests.tiny_text_to_image import tiny_text_to_image_pipeline
    from whitebox_hf.training.conditioning import encode_prompts

    pipe = tiny_text_to_image_pipeline()
    prompts = ["a star", " ".join(["tree"] * 40)]
    told = []
    embeds = encode_prompts(pipe, prompts, batch_size=1, announce=told.append)
    assert told == [("1 of 2 prompts exceed the tokenizer's 32 tokens and are truncated (as the pipeline truncates "
                     "them at inference)")]
    expected, _ = pipe.encode_prompt(prompts, "cpu", 1, False)
    assert embeds.shape == (2, 32, 16) and torch.equal(embeds, expected)


def test_the_base_must_be_a_saved_ddpm_family_pipeline(tmp_path):
    from diffusers import FlowMatchEulerDiscreteScheduler

    from tests.tiny_text_to_image import tiny_text_to_image_pipeline
    from whitebox_hf.training.conditioning import (
        load_text_to_image_base,
        training_noise_scheduler,
    )

    with pytest.raises(OSError, match="`base` must be a saved StableDiffusionPipeline folder"):
        load_text_to_image_base(str(tmp_path / "missing"))
    pipe = tiny_text_to_image_pipeline()
    assert training_noise_scheduler(pipe).config.num_train_timesteps == 100
    pipe.scheduler = FlowMatchEulerDiscreteScheduler()
    with pytest.raises(ValueError, match="DDPM-family scheduler .* got FlowMatchEulerDiscreteScheduler"):
        training_noise_scheduler(pipe)
