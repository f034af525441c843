from .configuration_causal_crate import CAUSAL_CRATE_PRESETS, CausalCrateConfig
from .modeling_causal_crate import CausalCrateForCausalLM, CausalCrateLayer, CausalCrateModel

__all__ = ["CAUSAL_CRATE_PRESETS", "CausalCrateConfig", "CausalCrateForCausalLM", "CausalCrateLayer", "CausalCrateModel"]
