"""White-box operators, each written once and reused by every model that needs it."""

from .attention import ATTENTION_IMPLEMENTATIONS, MultiHeadSubspaceSelfAttention, eager_attention_forward
from .coding_rate import coding_rate
from .embeddings import (
    ConvPatchEmbedding,
    LinearPatchEmbedding,
    check_pixel_values,
    interpolate_position_embedding,
)
from .sparse_coding import ISTA, OvercompleteDictionaryLearning

__all__ = [
    "ATTENTION_IMPLEMENTATIONS",
    "ConvPatchEmbedding",
    "ISTA",
    "LinearPatchEmbedding",
    "MultiHeadSubspaceSelfAttention",
    "OvercompleteDictionaryLearning",
    "check_pixel_values",
    "coding_rate",
    "eager_attention_forward",
    "interpolate_position_embedding",
]
