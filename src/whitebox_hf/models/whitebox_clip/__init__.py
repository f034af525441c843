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

__all__ = [
    "MINILM_TEXT_CONFIG",
    "SMALL_TEXT_CONFIG",
    "SMALL_VISION_CONFIG",
    "TEXT_TOWERS",
    "WhiteboxClipConfig",
    "WhiteboxClipModel",
    "WhiteboxClipOutput",
    "WhiteboxClipPreTrainedModel",
    "WhiteboxClipProcessor",
    "load_minilm_text_tower_",
    "masked_mean_pool",
    "minilm_path",
]
