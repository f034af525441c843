from typing import TYPE_CHECKING

_import_structure = {
    "configuration_causal_crate": ["CAUSAL_CRATE_PRESETS", "CausalCrateConfig"],
    "modeling_causal_crate": ["CausalCrateForCausalLM", "CausalCrateLayer", "CausalCrateModel"],
}

if TYPE_CHECKING:
    from .configuration_causal_crate import CAUSAL_CRATE_PRESETS, CausalCrateConfig
    from .modeling_causal_crate import CausalCrateForCausalLM, CausalCrateLayer, CausalCrateModel
else:
    import sys

    from transformers.utils.import_utils import _LazyModule

    sys.modules[__name__] = _LazyModule(__name__, globals()["__file__"], _import_structure, module_spec=__spec__)
