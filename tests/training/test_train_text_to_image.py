"""training/train_text_to_image.py on a few fake image-caption pairs with a tiny VAE and U-Net (the real
all-MiniLM-L6-v2 encodes the captions): a saved folder that plain diffusers loads, and exact resume."""

import json

import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline

from tests.conftest import load_training_script

train_text_to_image = load_training_script("train_text_to_image")

CAPTIONS = ["Grinning face. Keywords: smileys & emotion", "Red apple. Keywords: food", "Blue car. Keywords: car"]


def fake_data(n=12):
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=generator, dtype=torch.uint8)
    captions = [CAPTIONS[i % 3] for i in range(n)]
    return {"train_images": images, "train_captions": captions, "test_images": images[:4],
            "test_captions": captions[:4]}


def save_vae(folder):
    AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
                  up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(8, 8, 8), layers_per_block=1,
                  latent_channels=4, norm_num_groups=4, sample_size=32, scaling_factor=0.5).save_pretrained(folder)


def args_for(tmp_path, output, steps):
    return ["--vae", str(tmp_path / "vae"), "--block_out_channels", "32,32", "--attention_head_dim", "4",
            "--batch_size", "4", "--max_steps", str(steps), "--lr_warmup_steps", "1", "--learning_rate", "0.003",
            "--log_every", "1", "--num_threads", "1", "--checkpoint_every", "1", "--sample_prompts", "2",
            "--sample_steps", "2", "--eval_num_images", "4", "--text_embedding_cache_dir", str(tmp_path / "emb"),
            "--output_dir", str(tmp_path / output)]


def test_three_steps_save_a_plain_stable_diffusion_folder(tmp_path):
    save_vae(tmp_path / "vae")
    results = train_text_to_image.main(args_for(tmp_path, "run", 3), data=fake_data())
    assert results["steps"] == 3 and results["distinct_train_captions"] == 3
    assert 0 < results["test_denoising_mse"] < float("inf")
    losses = [json.loads(line)["train_loss"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()
              if "train_loss" in line]
    assert len(losses) == 3 and all(0 < loss < float("inf") for loss in losses)
    assert (tmp_path / "run" / "samples.png").stat().st_size > 0
    card = (tmp_path / "run" / "pipeline" / "README.md").read_text()
    assert "pipeline_tag: text-to-image" in card and "3 steps of batch 4" in card
    assert f"{results['test_denoising_mse']:.4f}" in card and "training/train_text_to_image.py" in card
    pipe = StableDiffusionPipeline.from_pretrained(tmp_path / "run" / "pipeline")
    assert type(pipe.text_encoder).__name__ == "BertModel" and pipe.tokenizer.model_max_length == 32
    assert type(pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert pipe.unet.config.cross_attention_dim == 384


def test_resume_continues_the_exact_trajectory(tmp_path):
    save_vae(tmp_path / "vae")
    data = fake_data()
    straight = train_text_to_image.main(args_for(tmp_path, "a", 4) + ["--sample_prompts", "0"], data=data)
    train_text_to_image.main(args_for(tmp_path, "b", 2) + ["--sample_prompts", "0"], data=data)
    resumed = train_text_to_image.main(args_for(tmp_path, "b", 4) + ["--sample_prompts", "0",
                                                                     "--resume_from_checkpoint", "latest"], data=data)
    assert resumed["start_step"] == 2 and resumed["steps"] == straight["steps"] == 4
    a = StableDiffusionPipeline.from_pretrained(tmp_path / "a" / "pipeline").unet.state_dict()
    b = StableDiffusionPipeline.from_pretrained(tmp_path / "b" / "pipeline").unet.state_dict()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6, msg=key)


def test_bad_prediction_type_raises():
    import pytest

    with pytest.raises(ValueError, match="prediction_type"):
        train_text_to_image.parse_args(["--prediction_type", "sample"])


def test_mssa_unet_trains_resumes_exactly_and_saves_a_plain_folder(tmp_path):
    """--attention mssa: fewer trained parameters, exact resume, and a saved folder that plain diffusers loads
    into a stock U-Net whose self-attention key/value weights are the query weights."""
    save_vae(tmp_path / "vae")
    data = fake_data()
    mssa = ["--attention", "mssa", "--sample_prompts", "0"]
    straight = train_text_to_image.main(args_for(tmp_path, "a", 4) + mssa, data=data)
    train_text_to_image.main(args_for(tmp_path, "b", 2) + mssa, data=data)
    resumed = train_text_to_image.main(args_for(tmp_path, "b", 4) + mssa + ["--resume_from_checkpoint", "latest"],
                                       data=data)
    assert resumed["start_step"] == 2
    a = StableDiffusionPipeline.from_pretrained(tmp_path / "a" / "pipeline").unet
    b = StableDiffusionPipeline.from_pretrained(tmp_path / "b" / "pipeline").unet.state_dict()
    for key, value in a.state_dict().items():
        torch.testing.assert_close(b[key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert straight["num_parameters"] < sum(p.numel() for p in a.parameters())
    attn1 = a.down_blocks[0].attentions[0].transformer_blocks[0].attn1
    assert torch.equal(attn1.to_k.weight, attn1.to_q.weight) and torch.equal(attn1.to_v.weight, attn1.to_q.weight)
    attn2 = a.down_blocks[0].attentions[0].transformer_blocks[0].attn2
    assert torch.equal(attn2.to_v.weight, attn2.to_k.weight)
    assert "MSSA" in (tmp_path / "a" / "pipeline" / "README.md").read_text()


def test_bad_attention_type_raises():
    import pytest

    with pytest.raises(ValueError, match="attention"):
        train_text_to_image.parse_args(["--attention", "linear"])
