"""Autoencoders for latent generative modelling: `CrateRepresentationAutoencoder` (RAE with a frozen CRATE
encoder). The VAE is diffusers' own `AutoencoderKL` (see ``training/train_autoencoder.py``)."""

from .rae import CrateRepresentationAutoencoder, RAEOutput

__all__ = ["CrateRepresentationAutoencoder", "RAEOutput"]
