"""Class-conditional image-generation pipelines (diffusers `DiffusionPipeline` subclasses).

Not lazy, unlike the other subpackages: every module here imports diffusers anyway. Importing the pipelines also
imports this package's component modules (the CRATE denoiser and the RAE), so a saved pipeline's components are
found whichever way it is loaded. `import whitebox_hf` does not import this subpackage;
`whitebox_hf.WhiteboxFlowPipeline` does, on first access.
"""

from ..models.autoencoders import rae as _rae  # noqa: F401  (component module for saved pipelines)
from ..models.denoisers import aligned_shape_latent as _aligned_shape_latent  # noqa: F401  (component module)
from ..models.denoisers import crate_denoiser as _crate_denoiser  # noqa: F401  (component module for saved pipelines)
from .class_conditional import decode_latents, encode_to_latents
from .loading import COMPONENT_CLASSES, load_autoencoder
from .pipeline_cupid import CupidPipeline, CupidPipelineOutput
from .pipeline_motion import MotionGenerationPipeline, MotionGenerationPipelineOutput
from .pipeline_shape_generation import (
    ShapeGenerationPipeline,
    ShapeGenerationPipelineOutput,
    default_shape_scheduler,
    training_noise_scheduler,
)
from .pipeline_whitebox_ddpm import WhiteboxDDPMPipeline
from .pipeline_whitebox_flow import WhiteboxFlowPipeline
from .pipeline_world_model import WorldModelPipeline, WorldModelPipelineOutput

__all__ = [
    "COMPONENT_CLASSES",
    "CupidPipeline",
    "CupidPipelineOutput",
    "MotionGenerationPipeline",
    "MotionGenerationPipelineOutput",
    "ShapeGenerationPipeline",
    "ShapeGenerationPipelineOutput",
    "WhiteboxDDPMPipeline",
    "WhiteboxFlowPipeline",
    "WorldModelPipeline",
    "WorldModelPipelineOutput",
    "decode_latents",
    "default_shape_scheduler",
    "encode_to_latents",
    "load_autoencoder",
    "training_noise_scheduler",
]
