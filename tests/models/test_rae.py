"""CrateRepresentationAutoencoder: frozen encoder, shapes, exact latent normalisation, save/load, noise."""

import pytest
import torch

from whitebox_hf.models.autoencoders import CrateRepresentationAutoencoder
from whitebox_hf.models.crate import CrateModel


@pytest.fixture
def encoder_dir(tmp_path, tiny_crate_config):
    CrateModel(tiny_crate_config()).save_pretrained(tmp_path / "encoder")
    return tmp_path / "encoder"


@pytest.fixture
def rae(encoder_dir):
    return CrateRepresentationAutoencoder.from_crate_encoder(
        encoder_dir, image_mean=[0.3], image_std=[0.4], decoder_hidden_size=16, decoder_num_layers=1,
        decoder_num_heads=2, noise_tau=0.8)


def pixels(n=3):
    return torch.rand(n, 1, 8, 8) * 2 - 1


def test_encoder_is_the_trained_crate_and_frozen(rae, encoder_dir):
    reference = CrateModel.from_pretrained(encoder_dir)
    for (name, a), b in zip(rae.encoder.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), name
    assert not any(p.requires_grad for p in rae.encoder.parameters())
    assert all(p.requires_grad for n, p in rae.named_parameters() if not n.startswith("encoder."))
    rae.train()
    assert rae.training and not rae.encoder.training
    rae(pixels()).sample.pow(2).mean().backward()
    assert all(p.grad is None for p in rae.encoder.parameters())
    assert rae.decoder_embed.weight.grad is not None


def test_shapes(rae):
    x = pixels()
    latents = rae.encode(x)
    assert rae.latent_shape == (32, 4, 4) and latents.shape == (3, 32, 4, 4)
    assert rae.decode(latents).shape == (3, 1, 8, 8)
    # per-token standardisation without affine: each token has zero mean, unit variance over channels
    raw = rae.encode_raw(x)
    torch.testing.assert_close(raw.mean(dim=1), torch.zeros(3, 4, 4), atol=1e-5, rtol=0)
    with pytest.raises(ValueError):
        rae.decode(torch.zeros(1, 32, 3, 3))
    with pytest.raises(ValueError):
        rae.encode(torch.zeros(1, 1, 9, 9))


def test_latent_statistics_applied_and_inverted_exactly(rae):
    x = pixels(20)
    raw = rae.encode_raw(x)
    mean, std = rae.compute_latent_statistics(x, batch_size=7)
    torch.testing.assert_close(mean, raw.mean(dim=(0, 2, 3)), atol=1e-5, rtol=0)
    assert rae.config.latents_mean == pytest.approx(mean.tolist()) and len(rae.config.latents_std) == 32
    latents = rae.encode(x)
    torch.testing.assert_close(latents, (raw - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1))
    torch.testing.assert_close(latents.mean(dim=(0, 2, 3)), torch.zeros(32), atol=1e-4, rtol=0)
    torch.testing.assert_close(rae.denormalize_latents(latents), raw, atol=1e-5, rtol=0)
    # decode un-normalises: decoding normalised latents == the decoder on raw tokens
    rae.eval()
    torch.testing.assert_close(rae.decode(latents), rae(x).sample, atol=1e-5, rtol=1e-5)


def test_save_load_round_trip(rae, tmp_path):
    x = pixels()
    rae.compute_latent_statistics(x)
    rae.eval()
    rae.save_pretrained(tmp_path / "rae")
    loaded = CrateRepresentationAutoencoder.from_pretrained(tmp_path / "rae")
    assert loaded.config.latents_std == rae.config.latents_std
    assert not any(p.requires_grad for p in loaded.encoder.parameters())
    for (name, a), b in zip(rae.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    assert torch.equal(loaded.encode(x), rae.encode(x))
    assert torch.equal(loaded.decode(rae.encode(x)), rae.decode(rae.encode(x)))


def test_noise_only_in_training_mode(rae):
    x = pixels()
    rae.eval()
    assert torch.equal(rae(x).sample, rae(x).sample)
    assert torch.equal(rae.encode(x), rae.encode(x))
    rae.train()
    assert not torch.equal(rae(x).sample, rae(x).sample)
    assert torch.equal(rae.encode(x), rae.encode(x))  # encode never adds noise
    rae.register_to_config(noise_tau=0.0)
    assert torch.equal(rae(x).sample, rae(x).sample)


def _row_first_sincos(dim: int, height: int, width: int) -> torch.Tensor:
    """The RAE's table before the shared helper existed (rows in the first half of the channels): the layout
    saved decoders were trained with, written out independently as the reference."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                                indexing="ij")

    def encode(positions):
        angles = positions.reshape(-1, 1) * omega.view(1, -1)
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(rows), encode(cols)], dim=1).float()


def test_decoder_positions_keep_the_row_first_layout(rae):
    # The buffer is not saved (recomputed on load), so a saved decoder reproduces its outputs only if the
    # table is bit-for-bit the one it was trained with.
    width, grid = rae.config.decoder_hidden_size, rae.grid_size
    table = rae.decoder_position_embeddings
    assert table.shape == (1, 1 + grid * grid, width)
    assert torch.equal(table[0, 0], torch.zeros(width))  # the class-token slot
    assert torch.equal(table[0, 1:], _row_first_sincos(width, grid, grid))
    assert "decoder_position_embeddings" not in rae.state_dict()


