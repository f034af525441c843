from typing import TYPE_CHECKING

_import_structure = {
    "configuration_tost": ["TOST_PRESETS", "TOST_VISION_PRESETS", "ToSTConfig", "ToSTVisionConfig"],
    "modeling_tost": [
        "ToSTBlock",
        "ToSTForCausalLM",
        "ToSTForImageClassification",
        "ToSTModel",
        "ToSTVisionModel",
        "ToSTVisionPreTrainedModel",
    ],
}

if TYPE_CHECKING:
    from .configuration_tost import TOST_PRESETS, TOST_VISION_PRESETS, ToSTConfig, ToSTVisionConfig
    from .modeling_tost import (
        ToSTBlock,
        ToSTForCausalLM,
        ToSTForImageClassification,
        ToSTModel,
        ToSTVisionModel,
        ToSTVisionPreTrainedModel,
    )
else:
    import sys

    from transformers.utils.import_utils import _LazyModule

    sys.modules[__name__] = _LazyModule(__name__, globals()["__file__"], _import_structure, module_spec=__spec__)
