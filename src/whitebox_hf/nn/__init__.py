"""White-box operators, each written once and reused by every model that needs it.

Lazy (transformers' `_LazyModule`): a name is imported from its module on first access; to export one, add it to
`_import_structure` and to the `TYPE_CHECKING` imports."""

from typing import TYPE_CHECKING

_import_structure = {
    "attention": [
        "ATTENTION_IMPLEMENTATIONS",
        "MultiHeadSelfAttention",
        "MultiHeadSubspaceSelfAttention",
        "attend",
        "causal_attention_mask",
        "eager_attention_forward",
    ],
    "rate_distortion": ["coding_rate"],
    "embeddings": [
        "ConvPatchEmbedding",
        "LinearPatchEmbedding",
        "check_pixel_values",
        "interpolate_position_embedding",
        "patchify",
        "sincos_position_embedding_2d",
        "unpatchify",
    ],
    "sparse_coding": ["ISTA", "OvercompleteDictionaryLearning"],
    "token_statistics": ["TokenStatisticsCache", "TokenStatisticsCacheLayer", "TokenStatisticsSelfAttention"],
}

if TYPE_CHECKING:
    from .attention import (
        ATTENTION_IMPLEMENTATIONS,
        MultiHeadSelfAttention,
        MultiHeadSubspaceSelfAttention,
        attend,
        causal_attention_mask,
        eager_attention_forward,
    )
    from .rate_distortion import coding_rate
    from .embeddings import (
        ConvPatchEmbedding,
        LinearPatchEmbedding,
        check_pixel_values,
        interpolate_position_embedding,
        patchify,
        sincos_position_embedding_2d,
        unpatchify,
    )
    from .sparse_coding import ISTA, OvercompleteDictionaryLearning
    from .token_statistics import TokenStatisticsCache, TokenStatisticsCacheLayer, TokenStatisticsSelfAttention
else:
    import sys

    from transformers.utils.import_utils import _LazyModule

    sys.modules[__name__] = _LazyModule(__name__, globals()["__file__"], _import_structure, module_spec=__spec__)
