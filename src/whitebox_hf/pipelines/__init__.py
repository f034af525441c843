"""Class-conditional image-generation pipelines (diffusers `DiffusionPipeline` subclasses)."""

from .class_conditional import decode_latents, encode_to_latents
from .loading import COMPONENT_CLASSES, load_autoencoder
from .pipeline_whitebox_ddpm import WhiteboxDDPMPipeline
from .pipeline_whitebox_flow import WhiteboxFlowPipeline

__all__ = [
    "COMPONENT_CLASSES",
    "WhiteboxDDPMPipeline",
    "WhiteboxFlowPipeline",
    "decode_latents",
    "encode_to_latents",
    "load_autoencoder",
]
