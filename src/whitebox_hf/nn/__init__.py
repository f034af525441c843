"""White-box operators, each written once and reused by every model that needs it."""

from .attention import (
    ATTENTION_IMPLEMENTATIONS,
    MultiHeadSelfAttention,
    MultiHeadSubspaceSelfAttention,
    attend,
    causal_attention_mask,
    eager_attention_forward,
)
from .coding_rate import coding_rate
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

__all__ = [
    "ATTENTION_IMPLEMENTATIONS",
    "ConvPatchEmbedding",
    "ISTA",
    "LinearPatchEmbedding",
    "MultiHeadSelfAttention",
    "MultiHeadSubspaceSelfAttention",
    "OvercompleteDictionaryLearning",
    "TokenStatisticsCache",
    "TokenStatisticsCacheLayer",
    "TokenStatisticsSelfAttention",
    "attend",
    "causal_attention_mask",
    "check_pixel_values",
    "coding_rate",
    "eager_attention_forward",
    "interpolate_position_embedding",
    "patchify",
    "sincos_position_embedding_2d",
    "unpatchify",
]
