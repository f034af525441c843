from .configuration_tost import TOST_PRESETS, ToSTConfig
from .modeling_tost import ToSTBlock, ToSTForCausalLM, ToSTForImageClassification, ToSTModel, ToSTVisionModel

__all__ = [
    "TOST_PRESETS",
    "ToSTBlock",
    "ToSTConfig",
    "ToSTForCausalLM",
    "ToSTForImageClassification",
    "ToSTModel",
    "ToSTVisionModel",
]
