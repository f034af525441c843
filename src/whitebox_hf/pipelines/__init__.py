"""Class-conditional image-generation pipelines (diffusers `DiffusionPipeline` subclasses).

Not lazy, unlike the other subpackages: every module here imports diffusers, and a saved pipeline names its
components by module path (model_index.json), which diffusers resolves only from modules already in
`sys.modules` (`diffusers.pipelines.pipeline_loading_utils._get_library_or_raise`). So importing the pipelines
imports this package's component modules too, the CRATE denoiser and the RAE, and loading a saved pipeline needs
nothing more than its pipeline class. `import whitebox_hf` does not import this subpackage;
`whitebox_hf.WhiteboxFlowPipeline` does, on first access.
"""

from ..models.autoencoders import rae as _rae  # noqa: F401  (component module for saved pipelines)
from ..models.denoisers import crate_denoiser as _crate_denoiser  # noqa: F401  (component module for saved pipelines)
from .class_conditional import decode_latents, encode_to_latents, load_autoencoder
from .pipeline_whitebox_ddpm import WhiteboxDDPMPipeline
from .pipeline_whitebox_flow import WhiteboxFlowPipeline

__all__ = ["WhiteboxDDPMPipeline", "WhiteboxFlowPipeline", "decode_latents", "encode_to_latents", "load_autoencoder"]
