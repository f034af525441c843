from .configuration_tost import TOST_PRESETS, TOST_VISION_PRESETS, ToSTConfig, ToSTVisionConfig
from .modeling_tost import (
    ToSTBlock,
    ToSTForCausalLM,
    ToSTForImageClassification,
    ToSTModel,
    ToSTVisionModel,
    ToSTVisionPreTrainedModel,
)

__all__ = [
    "TOST_PRESETS",
    "TOST_VISION_PRESETS",
    "ToSTBlock",
    "ToSTConfig",
    "ToSTForCausalLM",
    "ToSTForImageClassification",
    "ToSTModel",
    "ToSTVisionConfig",
    "ToSTVisionModel",
    "ToSTVisionPreTrainedModel",
]
