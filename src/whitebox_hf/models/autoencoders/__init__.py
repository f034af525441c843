"""Autoencoders for latent generative modelling: `CrateRepresentationAutoencoder` (RAE with a frozen CRATE
encoder). The VAE is diffusers' own `AutoencoderKL` (see ``training/train_autoencoder.py``)."""

from typing import TYPE_CHECKING

_import_structure = {
    "rae": ["CrateRepresentationAutoencoder", "RAEOutput"],
}

if TYPE_CHECKING:
    from .rae import CrateRepresentationAutoencoder, RAEOutput
else:
    import sys

    from transformers.utils.import_utils import _LazyModule

    sys.modules[__name__] = _LazyModule(__name__, globals()["__file__"], _import_structure, module_spec=__spec__)
