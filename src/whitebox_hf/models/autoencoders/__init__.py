"""Autoencoders for latent generative modelling: `CrateRepresentationAutoencoder` (RAE with a frozen CRATE
encoder). The VAE is diffusers' own `AutoencoderKL` (see ``training/train_autoencoder.py``)."""

from .rae import CrateRepresentationAutoencoder, RAEOutput, sincos_position_embedding_2d

__all__ = ["CrateRepresentationAutoencoder", "RAEOutput", "sincos_position_embedding_2d"]
