from typing import TYPE_CHECKING

_import_structure = {
    "configuration_crate": ["CRATE_PRESETS", "CrateConfig"],
    "image_processing_crate": ["CrateImageProcessor"],
    "modeling_crate": [
        "CrateEmbeddings",
        "CrateForImageClassification",
        "CrateForMaskedImageModeling",
        "CrateLayer",
        "CrateMAEDecoderLayer",
        "CrateMaskedImageModelingOutput",
        "CrateModel",
        "CratePreTrainedModel",
    ],
}

if TYPE_CHECKING:
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
else:
    import sys

    from transformers.utils.import_utils import _LazyModule

    sys.modules[__name__] = _LazyModule(__name__, globals()["__file__"], _import_structure, module_spec=__spec__)
