from typing import TYPE_CHECKING

_import_structure = {
    "configuration_tost": ["TOST_PRESETS", "ToSTConfig"],
    "modeling_tost": ["ToSTBlock", "ToSTForCausalLM", "ToSTForImageClassification", "ToSTModel", "ToSTVisionModel"],
}

if TYPE_CHECKING:
    from .configuration_tost import TOST_PRESETS, ToSTConfig
    from .modeling_tost import ToSTBlock, ToSTForCausalLM, ToSTForImageClassification, ToSTModel, ToSTVisionModel
else:
    import sys

    from transformers.utils.import_utils import _LazyModule

    sys.modules[__name__] = _LazyModule(__name__, globals()["__file__"], _import_structure, module_spec=__spec__)
