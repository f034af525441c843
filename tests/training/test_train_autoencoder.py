"""training/train_autoencoder.py: 3 steps of the VAE and of the RAE on tiny in-memory data."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from diffusers import AutoencoderKL
from huggingface_hub import ModelCard

from whitebox_hf.models.autoencoders import CrateRepresentationAutoencoder
from whitebox_hf.models.crate import CrateModel

SCRIPT = Path(__file__).resolve().parents[2] / "training" / "train_autoencoder.py"


def load_script():
    spec = importlib.util.spec_from_file_location("train_autoencoder", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_data(n_train=24, n_test=8, size=8):
    generator = torch.Generator().manual_seed(0)
    return {
        "train_images": torch.randint(0, 256, (n_train, 1, size, size), dtype=torch.uint8, generator=generator),
        "train_labels": torch.arange(n_train) % 3,
        "test_images": torch.randint(0, 256, (n_test, 1, size, size), dtype=torch.uint8, generator=generator),
        "test_labels": torch.arange(n_test) % 3,
        "image_mean": [0.5], "image_std": [0.5],
    }


COMMON = ["--max_steps", "3", "--epochs", "0", "--batch_size", "8", "--warmup_steps", "0", "--learning_rate", "1e-3",
          "--perceptual_image_size", "16", "--perceptual_stages", "0,1", "--fd_num_images", "6", "--fd_image_size",
          "32", "--fd_batch_size", "6", "--eval_batch_size", "4", "--log_every", "1", "--fd_reference_cache", ""]


def test_vae_three_steps(tmp_path):
    module = load_script()
    out = tmp_path / "vae"
    argv = ["--autoencoder", "vae", "--vae_block_out_channels", "8,8", "--vae_norm_num_groups", "4",
            "--output_dir", str(out), *COMMON]
    torch.manual_seed(0)
    initial = module.build_vae(module.parse_args(argv), 1, 8).decoder.conv_out.weight.clone()
    results = module.main(argv, data=tiny_data())
    assert results["steps"] == 3 and results["latent_shape"] == [4, 4, 4]
    for key in ("test_l1", "test_psnr", "test_rfd_effnet", "wall_seconds"):
        assert math.isfinite(results[key]), key
    vae = AutoencoderKL.from_pretrained(out / "autoencoder")
    assert not torch.equal(vae.decoder.conv_out.weight, initial)
    assert vae.config.scaling_factor != 0.18215 and vae.config.shift_factor is not None
    with torch.no_grad():
        z = vae.encode(torch.zeros(1, 1, 8, 8)).latent_dist.mode()
        assert torch.isfinite(vae.decode(z).sample).all()
    assert json.loads((out / "metrics.json").read_text())["autoencoder"] == "vae"
    card = ModelCard.load(out / "autoencoder" / "README.md")  # model card: model-index from the measured metrics
    assert {r.metric_name: r.metric_value for r in card.data.eval_results} == {
        k: results[k] for k in ("test_l1", "test_psnr", "test_rfd_effnet")}
    assert card.data.library_name == "diffusers" and "training/train_autoencoder.py" in card.content
    assert (out / "reconstructions.png").is_file()


def test_rae_three_steps(tmp_path, tiny_crate_config):
    module = load_script()
    encoder_dir = tmp_path / "encoder"
    CrateModel(tiny_crate_config()).save_pretrained(encoder_dir)
    out = tmp_path / "rae"
    argv = ["--autoencoder", "rae", "--encoder_path", str(encoder_dir), "--decoder_hidden_size", "16",
            "--decoder_num_layers", "1", "--decoder_num_heads", "2", "--output_dir", str(out), *COMMON]
    torch.manual_seed(0)
    initial = CrateRepresentationAutoencoder.from_crate_encoder(
        encoder_dir, decoder_hidden_size=16, decoder_num_layers=1, decoder_num_heads=2).state_dict()
    torch.manual_seed(0)
    results = module.main(argv, data=tiny_data())
    assert results["steps"] == 3 and results["latent_shape"] == [32, 4, 4]
    assert results["num_trainable_parameters"] < results["num_parameters"]
    assert math.isfinite(results["test_l1"]) and math.isfinite(results["test_rfd_effnet"])
    rae = CrateRepresentationAutoencoder.from_pretrained(out / "autoencoder")
    state = rae.state_dict()
    assert not torch.equal(state["decoder_pred.weight"], initial["decoder_pred.weight"])
    for name, value in initial.items():
        if name.startswith("encoder."):
            assert torch.equal(state[name], value), name  # the encoder stayed frozen
    assert rae.config.latents_std is not None and len(rae.config.latents_std) == 32
    assert "CrateRepresentationAutoencoder" in (out / "autoencoder" / "README.md").read_text()
    latents = rae.encode(torch.zeros(2, 1, 8, 8))
    assert torch.isfinite(rae.decode(latents)).all()
