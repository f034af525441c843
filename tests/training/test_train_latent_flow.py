"""training/train_latent_flow.py (rectified flow, DiT / CRATE denoiser, pixel or VAE latents) and
training/train_ddpm_unet.py (pixel U-Net DDPM) on a small fake image set."""

import json

import pytest
import torch
from diffusers import AutoencoderKL

from tests.conftest import load_training_script
from whitebox_hf import WhiteboxDDPMPipeline, WhiteboxFlowPipeline

train_latent_flow = load_training_script("train_latent_flow")
train_ddpm_unet = load_training_script("train_ddpm_unet")

COMMON = ["--batch_size", "8", "--learning_rate", "0.003", "--lr_warmup_steps", "1", "--log_every", "1",
          "--num_threads", "1", "--samples_per_class", "1"]
FLOW = COMMON + ["--hidden_size", "32", "--num_layers", "2", "--num_attention_heads", "4", "--patch_size", "2",
                 "--sample_steps", "2"]
UNET = COMMON + ["--block_out_channels", "8,16", "--attention_levels", "0,1", "--layers_per_block", "1",
                 "--norm_num_groups", "4", "--sample_steps", "2"]


def fake_data(n=32, size=8):
    generator = torch.Generator().manual_seed(0)
    return {"train_images": torch.randint(0, 256, (n, 1, size, size), generator=generator, dtype=torch.uint8),
            "train_labels": torch.arange(n) % 3, "class_names": ["top", "trouser", "bag"]}


def sample(pipe, **kwargs):
    pipe.set_progress_bar_config(disable=True)
    return pipe([0, 1, 2], num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="pt",
                **kwargs).images


def check_run(results, output_dir, steps):
    assert results["steps"] == steps
    records = [json.loads(line) for line in (output_dir / "log.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in records if "train_loss" in r]
    assert len(losses) == steps and all(0 < loss < float("inf") for loss in losses)
    for name in ("loss_curve.png", "samples.png", "results.json"):
        assert (output_dir / name).stat().st_size > 0
    card = (output_dir / "pipeline" / "README.md").read_text()  # model card with the training facts and command
    assert "library_name: diffusers" in card and f"{steps} steps of batch 8" in card and "@book{" in card
    assert "training/train_" in card and "docs/results/generation.md" in card


@pytest.mark.parametrize("denoiser", ["dit", "crate"])
def test_flow_three_steps_save_a_loadable_pipeline(tmp_path, denoiser):
    results = train_latent_flow.main(FLOW + ["--denoiser", denoiser, "--max_steps", "3", "--output_dir",
                                             str(tmp_path)], data=fake_data())
    check_run(results, tmp_path, 3)
    pipe = WhiteboxFlowPipeline.from_pretrained(tmp_path / "pipeline")
    assert pipe.autoencoder is None and pipe.config.num_classes == 3 and pipe.config.id2label[2] == "bag"
    # The freshly initialised denoiser outputs exactly 0; the trained (EMA) one does not, and stays finite.
    weights = dict(pipe.transformer.named_parameters())
    assert weights["proj_out_2.weight"].abs().sum() > 0
    assert all(torch.isfinite(p).all() for p in weights.values())
    images = sample(pipe, guidance_scale=2.0)
    assert images.shape == (3, 1, 8, 8) and torch.isfinite(images).all()


def test_flow_in_vae_latent_space(tmp_path):
    vae = AutoencoderKL(in_channels=1, out_channels=1, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
                        latent_channels=2, norm_num_groups=4, sample_size=8, scaling_factor=0.7)
    vae.save_pretrained(tmp_path / "vae")
    results = train_latent_flow.main(FLOW + ["--autoencoder", str(tmp_path / "vae"), "--max_steps", "2",
                                             "--output_dir", str(tmp_path / "run")], data=fake_data())
    assert results["input_shape"] == [2, 4, 4]
    pipe = WhiteboxFlowPipeline.from_pretrained(tmp_path / "run" / "pipeline")
    assert isinstance(pipe.autoencoder, AutoencoderKL) and pipe.transformer.config.in_channels == 2
    assert sample(pipe).shape == (3, 1, 8, 8)


def test_flow_resume_continues_the_step_count_and_the_trajectory(tmp_path):
    args = FLOW + ["--denoiser", "dit", "--checkpoint_every", "1", "--samples_per_class", "0"]
    straight = train_latent_flow.main(args + ["--max_steps", "4", "--output_dir", str(tmp_path / "a")],
                                      data=fake_data())
    first = train_latent_flow.main(args + ["--max_steps", "2", "--output_dir", str(tmp_path / "b")], data=fake_data())
    assert first["steps"] == 2
    resumed = train_latent_flow.main(args + ["--max_steps", "4", "--output_dir", str(tmp_path / "b"),
                                             "--resume_from_checkpoint", "latest"], data=fake_data())
    assert resumed["start_step"] == 2 and resumed["steps"] == 4 and straight["steps"] == 4
    steps = [json.loads(line).get("step") for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [s for s in steps if s is not None][-4:] == [1, 2, 3, 4]
    a = WhiteboxFlowPipeline.from_pretrained(tmp_path / "a" / "pipeline").transformer.state_dict()
    b = WhiteboxFlowPipeline.from_pretrained(tmp_path / "b" / "pipeline").transformer.state_dict()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6, msg=key)
    # At most `checkpoints_total_limit` (2) checkpoints are kept.
    assert len(list((tmp_path / "b" / "checkpoints").iterdir())) == 2


def test_ddpm_unet_three_steps_save_a_loadable_pipeline(tmp_path):
    results = train_ddpm_unet.main(UNET + ["--max_steps", "3", "--output_dir", str(tmp_path)], data=fake_data())
    check_run(results, tmp_path, 3)
    pipe = WhiteboxDDPMPipeline.from_pretrained(tmp_path / "pipeline")
    assert pipe.unet.config.num_class_embeds == 4 and pipe.null_class_id == 3
    images = sample(pipe, guidance_scale=1.5)
    assert images.shape == (3, 1, 8, 8) and torch.isfinite(images).all()


def test_bad_denoiser_raises():
    with pytest.raises(ValueError, match="denoiser"):
        train_latent_flow.parse_args(["--denoiser", "unet"])


def test_dreambooth_lora_adapter_saved_and_loaded_through_the_pipeline(tmp_path):
    # Enough base steps for the adaLN gates to open: with closed gates attention (and its LoRA) has no effect.
    train_latent_flow.main(FLOW + ["--max_steps", "4", "--lr_warmup_steps", "0", "--samples_per_class", "0",
                                   "--output_dir", str(tmp_path / "base")], data=fake_data())
    dreambooth = load_training_script("train_dreambooth_lora")
    results = dreambooth.main(["--pipeline", str(tmp_path / "base" / "pipeline"), "--instance_class", "1",
                               "--num_instance_images", "3", "--num_class_images", "4", "--class_sample_steps", "2",
                               "--max_steps", "3", "--batch_size", "2", "--learning_rate", "0.05",
                               "--comparison_samples", "2", "--comparison_steps", "2", "--num_threads", "1",
                               "--output_dir", str(tmp_path / "lora_run")], data=fake_data())
    assert results["num_instance_images"] == 3 and results["num_class_images"] == 4
    assert results["num_lora_parameters"] > 0 and all(0 < r["loss"] < float("inf") for r in results["log"])
    assert (tmp_path / "lora_run" / "comparison.png").stat().st_size > 0
    pipe = WhiteboxFlowPipeline.from_pretrained(tmp_path / "base" / "pipeline")
    base = sample(pipe)
    pipe.load_lora_weights(tmp_path / "lora_run" / "lora")
    tuned = sample(pipe)
    assert not torch.allclose(tuned, base)
    again = WhiteboxFlowPipeline.from_pretrained(tmp_path / "base" / "pipeline")
    again.load_lora_weights(tmp_path / "lora_run" / "lora")
    torch.testing.assert_close(sample(again), tuned, rtol=0, atol=0)


def test_flow_in_rae_latent_space(tmp_path):
    from whitebox_hf.models.autoencoders import CrateRepresentationAutoencoder

    from whitebox_hf import CrateConfig

    encoder = CrateConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, image_size=8, patch_size=2,
                          num_channels=1)
    rae = CrateRepresentationAutoencoder(encoder_config=encoder.to_dict(), decoder_hidden_size=16,
                                         decoder_num_layers=1, decoder_num_heads=2, latents_mean=[0.1] * 16,
                                         latents_std=[2.0] * 16)
    rae.save_pretrained(tmp_path / "rae")
    results = train_latent_flow.main(FLOW + ["--autoencoder", str(tmp_path / "rae"), "--max_steps", "2",
                                             "--output_dir", str(tmp_path / "run")], data=fake_data())
    assert results["input_shape"] == [16, 4, 4]
    pipe = WhiteboxFlowPipeline.from_pretrained(tmp_path / "run" / "pipeline")
    assert isinstance(pipe.autoencoder, CrateRepresentationAutoencoder)
    assert pipe.autoencoder.config.latents_std == [2.0] * 16
    assert sample(pipe).shape == (3, 1, 8, 8)
