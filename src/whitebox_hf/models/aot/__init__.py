from typing import TYPE_CHECKING

_import_structure = {
    "configuration_aot": ["AOT_PRESETS", "AoTConfig"],
    "modeling_aot": ["AoTForCausalLM", "AoTLayer", "AoTModel"],
}

if TYPE_CHECKING:
    from .configuration_aot import AOT_PRESETS, AoTConfig
    from .modeling_aot import AoTForCausalLM, AoTLayer, AoTModel
else:
    import sys

    from transformers.utils.import_utils import _LazyModule

    sys.modules[__name__] = _LazyModule(__name__, globals()["__file__"], _import_structure, module_spec=__spec__)
