from typing import TYPE_CHECKING

_import_structure = {
    "configuration_whitebox_clip": [
        "MINILM_TEXT_CONFIG",
        "SMALL_TEXT_CONFIG",
        "SMALL_VISION_CONFIG",
        "TEXT_TOWERS",
        "WhiteboxClipConfig",
    ],
    "modeling_whitebox_clip": [
        "WhiteboxClipModel",
        "WhiteboxClipOutput",
        "WhiteboxClipPreTrainedModel",
        "load_minilm_text_tower_",
        "masked_mean_pool",
        "minilm_path",
    ],
    "processing_whitebox_clip": ["WhiteboxClipProcessor"],
    "text_embeddings": ["cached_text_features", "compute_text_features"],
}

if TYPE_CHECKING:
    from .configuration_whitebox_clip import (
        MINILM_TEXT_CONFIG,
        SMALL_TEXT_CONFIG,
        SMALL_VISION_CONFIG,
        TEXT_TOWERS,
        WhiteboxClipConfig,
    )
    from .modeling_whitebox_clip import (
        WhiteboxClipModel,
        WhiteboxClipOutput,
        WhiteboxClipPreTrainedModel,
        load_minilm_text_tower_,
        masked_mean_pool,
        minilm_path,
    )
    from .processing_whitebox_clip import WhiteboxClipProcessor
    from .text_embeddings import cached_text_features, compute_text_features
else:
    import sys

    from transformers.utils.import_utils import _LazyModule

    sys.modules[__name__] = _LazyModule(__name__, globals()["__file__"], _import_structure, module_spec=__spec__)
