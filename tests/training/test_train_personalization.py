"""train_personalization.py (DreamBooth, Custom Diffusion) on the tiny text-to-image base: the rare identifier,
the trained modules of each method, the adapter's round trip through ``pipe.load_lora_weights``, exact resume."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from peft import LoraConfig
from safetensors.torch import load_file

from tests.conftest import load_training_script
from tests.tiny_text_to_image import (
    caption_data,
    save_tiny_text_to_image_pipeline,
    tiny_text_to_image_pipeline,
)
from tests.training.test_resume import final_weights
from whitebox_hf.training.checkpointing import INTERRUPT_EXIT_CODE

ARGS = ["--subject", "red kite", "--num_instance_images", "3", "--class_noun", "kite", "--num_class_images", "4",
        "--class_sample_steps", "2", "--batch_size", "2", "--learning_rate", "0.01", "--eval_samples_per_prompt", "0",
        "--log_every", "1", "--num_threads", "1", "--max_steps", "4", "--checkpoint_every", "2", "--lift_model", ""]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return save_tiny_text_to_image_pipeline(tmp_path_factory.mktemp("t2i") / "pipeline")


def sample(pipe):
    return pipe(["a cmll kite"], num_inference_steps=2, output_type="np",
                generator=torch.Generator().manual_seed(0)).images


def test_the_identifier_must_be_one_rare_wordpiece():
    script = load_training_script("train_personalization")
    tokenizer = tiny_text_to_image_pipeline().tokenizer
    assert script.check_identifier_token(tokenizer, "cmll") == tokenizer.convert_tokens_to_ids("cmll")
    for bad in ("sks", "[SEP]", "two words"):
        with pytest.raises(ValueError, match="`identifier` must be a single WordPiece"):
            script.check_identifier_token(tokenizer, bad)


def test_title_stems_group_a_series():
    script = load_training_script("train_personalization")
    assert {script.title_stem(t) for t in ("BlueMan#106", "BlueMan#207", "blueman 3")} == {"blueman"}


def test_a_lora_adapter_saved_by_the_script_reloads_into_the_pipeline_with_identical_images(tmp_path):
    script = load_training_script("train_personalization")
    pipe = tiny_text_to_image_pipeline()
    base_images = sample(pipe)
    pipe.unet.add_adapter(LoraConfig(r=2, lora_alpha=2, init_lora_weights="gaussian",
                                     target_modules=script.METHODS["custom_diffusion"]))
    with torch.no_grad():
        for name, parameter in pipe.unet.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)  # gaussian init leaves B = 0: make the adapter act
    adapted = sample(pipe)
    assert not np.array_equal(adapted, base_images)
    script.save_lora(pipe, pipe.unet, tmp_path / "lora")
    fresh = tiny_text_to_image_pipeline()
    fresh.load_lora_weights(tmp_path / "lora")
    np.testing.assert_array_equal(sample(fresh), adapted)


@pytest.mark.parametrize("method, trained", [
    ("dreambooth", {"attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q", "attn2.to_k",
                    "attn2.to_v", "attn2.to_out.0"}),
    ("custom_diffusion", {"attn2.to_k", "attn2.to_v"}),
])
def test_each_method_trains_its_modules_and_resumes_exactly(method, trained, base, tmp_path, capsys):
    script = load_training_script("train_personalization")
    argv = ARGS + ["--method", method, "--base", str(base)]
    results = script.main(argv + ["--output_dir", str(tmp_path / "straight")], data=caption_data())
    assert results["num_instance_images"] == 3 and results["num_class_images"] == 4
    assert results["subject_indices"] == [0, 1, 2]
    lora = load_file(tmp_path / "straight" / "lora" / "pytorch_lora_weights.safetensors")
    assert all(key.startswith("unet.") for key in lora)
    assert {re.search(r"\.(attn\d\.to_(?:q|k|v|out\.0))\.lora_[AB]\.weight$", key).group(1) for key in lora} == trained
    assert any(torch.count_nonzero(v) for k, v in lora.items() if "lora_B" in k)  # trained off its zero init
    straight = final_weights(tmp_path / "straight")

    crashed = tmp_path / "crashed"
    with pytest.raises(SystemExit) as exit_info:
        script.main(argv + ["--output_dir", str(crashed), "--interrupt_after_steps", "3"], data=caption_data())
    assert exit_info.value.code == INTERRUPT_EXIT_CODE and not final_weights(crashed)
    capsys.readouterr()
    script.main(argv + ["--output_dir", str(crashed), "--resume_from_checkpoint", "latest"], data=caption_data())
    assert "at step 2" in capsys.readouterr().out
    resumed = final_weights(crashed)
    assert resumed.keys() == straight.keys()
    assert not [key for key in straight if not torch.equal(straight[key], resumed[key])]


def test_the_subject_must_be_a_test_series(base, tmp_path):
    script = load_training_script("train_personalization")
    with pytest.raises(ValueError, match="`subject` must be the title stem"):
        script.main(ARGS + ["--subject", "unicorn", "--base", str(base), "--output_dir", str(tmp_path)],
                    data=caption_data())


def test_the_evaluation_scores_base_and_adapter_and_draws_the_grid(base, tmp_path):
    script = load_training_script("train_personalization")
    out = tmp_path / "eval"
    results = script.main(ARGS + ["--base", str(base), "--output_dir", str(out), "--eval_samples_per_prompt", "2",
                                  "--eval_prompts", "a {};a red {}", "--eval_inference_steps", "2"],
                          data=caption_data())
    for scores in (results["base_scores"], results["scores"]):
        assert set(scores) == {"subject_fidelity_effnet"} and -1.0 <= scores["subject_fidelity_effnet"] <= 1.0
    assert results["scores"] != results["base_scores"]
    card = (out / "lora" / "README.md").read_text()
    assert "subject_fidelity_effnet (adapted)" in card and "`cmll kite`" in card
    from PIL import Image

    assert Image.open(out / "samples.png").size == (3 * 32, 5 * 32)  # subject row + base/adapted per prompt
