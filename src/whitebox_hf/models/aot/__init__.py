from .configuration_aot import AOT_PRESETS, AoTConfig
from .modeling_aot import AoTForCausalLM, AoTLayer, AoTModel

__all__ = ["AOT_PRESETS", "AoTConfig", "AoTForCausalLM", "AoTLayer", "AoTModel"]
