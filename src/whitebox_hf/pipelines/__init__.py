"""Class-conditional image-generation pipelines (diffusers `DiffusionPipeline` subclasses)."""

from .class_conditional import decode_latents, encode_to_latents, load_autoencoder
from .pipeline_whitebox_ddpm import WhiteboxDDPMPipeline
from .pipeline_whitebox_flow import WhiteboxFlowPipeline

# A saved pipeline may hold this package's RAE; diffusers resolves such a component only if its module is already
# imported (model_index.json names it by module path), so importing the pipelines imports the autoencoders too.
try:
    from ..models import autoencoders as _autoencoders  # noqa: F401
except ImportError:  # pragma: no cover - the autoencoders are optional for pixel-space and VAE pipelines
    _autoencoders = None

__all__ = ["WhiteboxDDPMPipeline", "WhiteboxFlowPipeline", "decode_latents", "encode_to_latents", "load_autoencoder"]
