from .configuration_crate import CRATE_PRESETS, CrateConfig
from .image_processing_crate import CrateImageProcessor
from .modeling_crate import (
    CrateEmbeddings,
    CrateForImageClassification,
    CrateForMaskedImageModeling,
    CrateLayer,
    CrateMAEDecoderLayer,
    CrateMaskedImageModelingOutput,
    CrateModel,
    CratePreTrainedModel,
)

__all__ = [
    "CRATE_PRESETS",
    "CrateConfig",
    "CrateEmbeddings",
    "CrateForImageClassification",
    "CrateForMaskedImageModeling",
    "CrateImageProcessor",
    "CrateLayer",
    "CrateMAEDecoderLayer",
    "CrateMaskedImageModelingOutput",
    "CrateModel",
    "CratePreTrainedModel",
]
