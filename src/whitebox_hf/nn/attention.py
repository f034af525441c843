"""Multi-head subspace self-attention (MSSA), the compression step of CRATE.

Book, Chapter 5 and §8.4.1: each layer first *compresses* the tokens ``Z`` against ``K`` learned
subspaces ``U_1..U_K`` by a gradient step on the coding rate of the tokens projected onto each subspace.
Unrolled, the step is a self-attention in which query, key and value are all the same projection
``U_kᵀ z``:

    MSSA(Z) = W_out · concat_k [ U_kᵀ Z · softmax((U_kᵀ Z)ᵀ (U_kᵀ Z) / √p) ]  (+ bias)

Following the authors' code (not the idealised book formula, see spec ``crate_family.md`` pitfall 3),
the output goes through a separate learned projection and the scores are scaled by ``1/√p``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["MultiHeadSubspaceSelfAttention", "eager_attention_forward", "ATTENTION_IMPLEMENTATIONS"]

ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa")


def eager_attention_forward(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    is_causal: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain softmax attention that also returns the attention probabilities.

    Shapes: ``query``/``key``/``value`` are ``(batch, heads, tokens, head_dim)``. ``attention_mask`` is
    additive (0 where allowed, ``-inf`` where not) and broadcast to ``(batch, heads, q_len, k_len)``.
    Returns ``(output (batch, heads, q_len, head_dim), probabilities (batch, heads, q_len, k_len))``.
    """
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if is_causal:
        q_len, k_len = scores.shape[-2:]
        # Query i sits at absolute position (k_len - q_len + i): it may see keys up to that position.
        causal = torch.ones(q_len, k_len, dtype=torch.bool, device=scores.device).tril(k_len - q_len)
        scores = scores.masked_fill(~causal, float("-inf"))
    if attention_mask is not None:
        scores = scores + attention_mask
    probabilities = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    probabilities_dropped = F.dropout(probabilities, p=dropout, training=dropout > 0)
    return torch.matmul(probabilities_dropped, value), probabilities


class MultiHeadSubspaceSelfAttention(nn.Module):
    """MSSA: one bias-free projection ``U`` shared by query, key and value.

    Args:
        hidden_size (`int`): token width ``d``.
        num_heads (`int`): number of subspaces ``K``.
        head_dim (`int`): subspace dimension ``p``; ``K·p`` need not equal ``d``.
        output_bias (`bool`, defaults to `True`): bias on the output projection (CRATE: yes, CRATE-α: no).
        attention_dropout (`float`, defaults to 0.0): dropout on the attention probabilities.
        projection_dropout (`float`, defaults to 0.0): dropout after the output projection.
        is_causal (`bool`, defaults to `False`): mask future tokens (causal CRATE for language).

    ``forward(hidden_states, attention_mask=None, output_attentions=False, attn_implementation="sdpa")``
    returns ``(output, attention_probabilities or None)``. With ``output_attentions=True`` the eager path
    runs (SDPA kernels do not expose probabilities); both paths give the same output.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        head_dim: int,
        output_bias: bool = True,
        attention_dropout: float = 0.0,
        projection_dropout: float = 0.0,
        is_causal: bool = False,
    ):
        super().__init__()
        for name, value in (("hidden_size", hidden_size), ("num_heads", num_heads), ("head_dim", head_dim)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.scaling = head_dim**-0.5
        self.attention_dropout = attention_dropout
        self.is_causal = is_causal
        # U = [U_1, ..., U_K]: the subspace bases, shared by query, key and value (no bias: a subspace
        # projection is linear, not affine).
        self.subspace_projection = nn.Linear(hidden_size, num_heads * head_dim, bias=False)
        self.output_projection = nn.Linear(num_heads * head_dim, hidden_size, bias=output_bias)
        self.projection_dropout = nn.Dropout(projection_dropout)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        attn_implementation: str = "sdpa",
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if attn_implementation not in ATTENTION_IMPLEMENTATIONS:
            raise ValueError(
                f"`attn_implementation` must be one of {ATTENTION_IMPLEMENTATIONS}, got {attn_implementation!r}"
            )
        batch_size, num_tokens, _ = hidden_states.shape
        # (B, N, K·p) -> (B, K, N, p): the coordinates U_kᵀ z of every token in every subspace.
        projected = self.subspace_projection(hidden_states)
        projected = projected.view(batch_size, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)
        dropout = self.attention_dropout if self.training else 0.0

        if output_attentions or attn_implementation == "eager":
            context, probabilities = eager_attention_forward(
                projected, projected, projected, attention_mask, self.scaling, dropout, self.is_causal
            )
        else:
            context = F.scaled_dot_product_attention(
                projected,
                projected,
                projected,
                attn_mask=attention_mask,
                dropout_p=dropout,
                # SDPA's is_causal aligns the mask to the top-left; only use it when q_len == k_len.
                is_causal=self.is_causal,
                scale=self.scaling,
            )
            probabilities = None

        context = context.transpose(1, 2).reshape(batch_size, num_tokens, self.num_heads * self.head_dim)
        output = self.projection_dropout(self.output_projection(context))
        return output, (probabilities if output_attentions else None)
