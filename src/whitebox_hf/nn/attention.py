"""Softmax self-attention operators: MSSA (the compression step of CRATE) and plain MHSA (the baseline).

Book, Chapter 5 and §8.4.1: each CRATE layer first *compresses* the tokens ``Z`` against ``K`` learned
subspaces ``U_1..U_K`` by a gradient step on the coding rate of the tokens projected onto each subspace.
Unrolled, the step is a self-attention in which query, key and value are all the same projection
``U_kᵀ z``:

    MSSA(Z) = W_out · concat_k [ U_kᵀ Z · softmax((U_kᵀ Z)ᵀ (U_kᵀ Z) / √p) ]  (+ bias)

Following the authors' code (not the idealised book formula, see spec ``crate_family.md`` pitfall 3),
the output goes through a separate learned projection and the scores are scaled by ``1/√p``.

`MultiHeadSelfAttention` is the usual query/key/value attention (GPT-2's block without its MLP is AoT-MHSA).
Both run through one kernel, `attend`, which picks PyTorch's SDPA or an eager path that also returns the
attention probabilities, and both can use a transformers KV cache (`past_key_values`) for generation.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..utils.validation import check_positive_int

__all__ = [
    "ATTENTION_IMPLEMENTATIONS",
    "MultiHeadSelfAttention",
    "MultiHeadSubspaceSelfAttention",
    "attend",
    "LOW_PRECISION_CPU_MATMUL_MAX_KEYS",
    "causal_attention_mask",
    "eager_attention_forward",
    "uses_low_precision_cpu_matmul",
]

ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa")

# PyTorch's CPU flash-attention kernel (what SDPA runs on CPU) is slow in bfloat16/float16 at short sequences: at
# CRATE's shapes (50 tokens, head dim 32; 197 tokens, head dim 64) plain matmul-softmax-matmul in bf16 is 1.4-2.0x
# faster forward and 2.4-6.8x faster forward + backward (one idle thread; `docs/results/benchmark_attention_kernels.md`).
# With more keys the advantage shrinks (about even at 1,024 causal keys, SDPA 3x faster at 4,096) while the
# (q_len, k_len) scores the matmul route forms grow quadratically (SDPA never forms them), so the "sdpa" path takes
# the matmul route only up to this many keys. In fp32 SDPA is faster at every shape measured.
LOW_PRECISION_CPU_MATMUL_MAX_KEYS = 256


def causal_attention_mask(
    query_length: int,
    key_length: int,
    padding_mask: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Additive causal mask ``(batch or 1, 1, query_length, key_length)``: 0 where allowed, the dtype's minimum
    where not.

    The queries are the *last* ``query_length`` positions of the ``key_length`` keys (a KV cache holds the
    earlier ones), so query ``i`` sees keys ``0 .. key_length - query_length + i``. ``padding_mask``
    ``(batch, key_length)`` with 1 for real tokens and 0 for padding additionally hides padded keys.

    A finite minimum rather than ``-inf`` keeps rows with no visible key (left padding) finite: they become a
    uniform average that no real token ever reads.
    """
    if query_length > key_length:
        raise ValueError(f"`query_length` ({query_length}) cannot exceed `key_length` ({key_length})")
    query_positions = torch.arange(key_length - query_length, key_length, device=device)
    allowed = torch.arange(key_length, device=device)[None, :] <= query_positions[:, None]
    allowed = allowed[None, None]
    if padding_mask is not None:
        if padding_mask.shape[-1] != key_length:
            raise ValueError(
                f"`padding_mask` must have {key_length} columns (one per key), got shape {tuple(padding_mask.shape)}"
            )
        allowed = allowed & padding_mask[:, None, None, :].to(device=device, dtype=torch.bool)
    return torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, torch.finfo(dtype).min)


def eager_attention_forward(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    is_causal: bool = False,
    softmax_dtype: torch.dtype | None = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain softmax attention that also returns the attention probabilities.

    Shapes: ``query`` is ``(batch, heads, q_len, head_dim)``, ``key``/``value`` ``(batch, heads, k_len, head_dim)``.
    ``attention_mask`` is additive and broadcast to ``(batch, heads, q_len, k_len)``. With ``is_causal`` the
    queries are taken to be the last ``q_len`` of the ``k_len`` positions. ``softmax_dtype`` is the precision of the
    softmax (float32 by default; ``None``: the scores' own dtype, which PyTorch's CPU softmax still accumulates in
    float32). Returns ``(output (batch, heads, q_len, head_dim), probabilities (batch, heads, q_len, k_len))``.
    """
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if is_causal:
        q_len, k_len = scores.shape[-2:]
        # Query i sits at absolute position (k_len - q_len + i): it may see keys up to that position.
        causal = torch.ones(q_len, k_len, dtype=torch.bool, device=scores.device).tril(k_len - q_len)
        scores = scores.masked_fill(~causal, float("-inf"))
    if attention_mask is not None:
        scores = scores + attention_mask
    probabilities = torch.softmax(scores, dim=-1, dtype=softmax_dtype).to(query.dtype)
    probabilities_dropped = F.dropout(probabilities, p=dropout, training=dropout > 0)
    return torch.matmul(probabilities_dropped, value), probabilities


def uses_low_precision_cpu_matmul(query: torch.Tensor, key: torch.Tensor) -> bool:
    """Whether the "sdpa" path computes this attention as matmul-softmax-matmul in the inputs' precision instead of
    calling SDPA: bfloat16/float16 on CPU with at most `LOW_PRECISION_CPU_MATMUL_MAX_KEYS` keys."""
    return (query.device.type == "cpu" and query.dtype in (torch.bfloat16, torch.float16)
            and key.shape[-2] <= LOW_PRECISION_CPU_MATMUL_MAX_KEYS)


def attend(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float,
    is_causal: bool,
    attn_implementation: str,
    output_attentions: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run softmax attention with SDPA or the eager path; returns ``(context, probabilities or None)``.

    ``attention_mask`` (additive, 4-D) must already encode causality when given; without one, ``is_causal``
    masks the future. The eager path runs whenever probabilities are requested, since SDPA kernels do not
    expose them. In bfloat16/float16 on CPU with few keys "sdpa" runs the same matmuls with the softmax in the
    inputs' precision (`uses_low_precision_cpu_matmul`): faster there than PyTorch's CPU flash kernel.
    """
    if attn_implementation not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(
            f"`attn_implementation` must be one of {ATTENTION_IMPLEMENTATIONS}, got {attn_implementation!r}"
        )
    q_len, k_len = query.shape[-2], key.shape[-2]
    if is_causal and attention_mask is None and q_len not in (1, k_len):
        # SDPA aligns `is_causal` to the top-left corner, which is wrong once a cache holds earlier keys.
        attention_mask = causal_attention_mask(q_len, k_len, dtype=query.dtype, device=query.device)
    # A single query at the end of the sequence may see every cached key: no mask needed.
    causal_flag = is_causal and attention_mask is None and q_len == k_len
    if output_attentions or attn_implementation == "eager":
        return eager_attention_forward(query, key, value, attention_mask, scaling, dropout, causal_flag)
    if uses_low_precision_cpu_matmul(query, key):
        context, _ = eager_attention_forward(query, key, value, attention_mask, scaling, dropout, causal_flag,
                                             softmax_dtype=None)
        return context, None
    context = F.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, is_causal=causal_flag, scale=scaling
    )
    return context, None


class _SelfAttention(nn.Module):
    """What MSSA and MHSA share after their projections: the KV cache, the kernel and the output projection."""

    def _attend_and_project(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        output_attentions: bool,
        attn_implementation: str,
        past_key_values,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``value=None`` means "the value is the key" (MSSA): the cache then stores that tensor only once."""
        if past_key_values is not None:
            if self.layer_idx is None:
                raise ValueError("`layer_idx` must be set on the attention module to use `past_key_values`")
            key, cached_value = past_key_values.update(key, key[..., :0] if value is None else value, self.layer_idx)
            value = None if value is None else cached_value
        context, probabilities = attend(
            query,
            key,
            key if value is None else value,
            attention_mask,
            self.scaling,
            self.attention_dropout if self.training else 0.0,
            self.is_causal,
            attn_implementation,
            output_attentions,
        )
        batch_size, _, num_tokens, _ = query.shape
        context = context.transpose(1, 2).reshape(batch_size, num_tokens, -1)
        output = self.projection_dropout(self.output_projection(context))
        return output, (probabilities if output_attentions else None)


class MultiHeadSubspaceSelfAttention(_SelfAttention):
    """MSSA: one bias-free projection ``U`` shared by query, key and value.

    Args:
        hidden_size (`int`): token width ``d``.
        num_heads (`int`): number of subspaces ``K``.
        head_dim (`int`): subspace dimension ``p``; ``K·p`` need not equal ``d``.
        output_bias (`bool`, defaults to `True`): bias on the output projection (CRATE: yes, CRATE-α: no).
        attention_dropout (`float`, defaults to 0.0): dropout on the attention probabilities.
        projection_dropout (`float`, defaults to 0.0): dropout after the output projection.
        is_causal (`bool`, defaults to `False`): mask future tokens (causal CRATE and AoT for language).
        layer_idx (`int`, *optional*): this layer's slot in a KV cache.

    ``forward(hidden_states, attention_mask=None, output_attentions=False, attn_implementation="sdpa",
    past_key_values=None)`` returns ``(output, attention_probabilities or None)``. With
    ``output_attentions=True`` the eager path runs (SDPA kernels do not expose probabilities); both paths give
    the same output. Because key and value are the same tensor ``U_kᵀ Z``, a KV cache stores it once (its value
    slot holds an empty tensor), half the memory of a standard attention cache of the same width.
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
        layer_idx: int | None = None,
    ):
        super().__init__()
        for name, value in (("hidden_size", hidden_size), ("num_heads", num_heads), ("head_dim", head_dim)):
            check_positive_int(name, value)
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.scaling = head_dim**-0.5
        self.attention_dropout = attention_dropout
        self.is_causal = is_causal
        self.layer_idx = layer_idx
        # U = [U_1, ..., U_K]: the subspace bases, shared by query, key and value (no bias: a subspace
        # projection is linear, not affine).
        self.subspace_projection = nn.Linear(hidden_size, num_heads * head_dim, bias=False)
        self.output_projection = nn.Linear(num_heads * head_dim, hidden_size, bias=output_bias)
        self.projection_dropout = nn.Dropout(projection_dropout)

    @classmethod
    def from_config(cls, config, output_bias: bool, is_causal: bool = False, layer_idx: int | None = None):
        """Build from a model configuration's ``hidden_size``, ``num_attention_heads``, ``head_dim``,
        ``attention_probs_dropout_prob`` and ``hidden_dropout_prob`` (every CRATE-family config has them)."""
        return cls(
            config.hidden_size,
            config.num_attention_heads,
            config.head_dim,
            output_bias=output_bias,
            attention_dropout=config.attention_probs_dropout_prob,
            projection_dropout=config.hidden_dropout_prob,
            is_causal=is_causal,
            layer_idx=layer_idx,
        )

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        attn_implementation: str = "sdpa",
        past_key_values=None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch_size, num_tokens, _ = hidden_states.shape
        # (B, N, K·p) -> (B, K, N, p): the coordinates U_kᵀ z of every token in every subspace.
        projected = self.subspace_projection(hidden_states)
        projected = projected.view(batch_size, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)
        return self._attend_and_project(
            projected, projected, None, attention_mask, output_attentions, attn_implementation, past_key_values
        )


class MultiHeadSelfAttention(_SelfAttention):
    """Standard multi-head self-attention with separate query, key and value projections (GPT-2's ``c_attn``).

    Args:
        hidden_size (`int`): token width ``d``; split into ``num_heads`` heads of ``d / num_heads``.
        num_heads (`int`): number of heads.
        bias (`bool`, defaults to `True`): biases on the projections (GPT-2: yes).
        attention_dropout (`float`, defaults to 0.0): dropout on the attention probabilities.
        projection_dropout (`float`, defaults to 0.0): dropout after the output projection.
        is_causal (`bool`, defaults to `True`): mask future tokens.
        layer_idx (`int`, *optional*): this layer's slot in a KV cache.

    Same call signature and return value as `MultiHeadSubspaceSelfAttention`.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        bias: bool = True,
        attention_dropout: float = 0.0,
        projection_dropout: float = 0.0,
        is_causal: bool = True,
        layer_idx: int | None = None,
    ):
        super().__init__()
        if not isinstance(num_heads, int) or num_heads <= 0 or hidden_size % num_heads:
            raise ValueError(f"`num_heads` must be a positive divisor of `hidden_size` ({hidden_size}), got {num_heads!r}")
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = attention_dropout
        self.is_causal = is_causal
        self.layer_idx = layer_idx
        self.query_key_value = nn.Linear(hidden_size, 3 * hidden_size, bias=bias)
        self.output_projection = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.projection_dropout = nn.Dropout(projection_dropout)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        attn_implementation: str = "sdpa",
        past_key_values=None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch_size, num_tokens, hidden_size = hidden_states.shape
        qkv = self.query_key_value(hidden_states).view(batch_size, num_tokens, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        return self._attend_and_project(
            query, key, value, attention_mask, output_attentions, attn_implementation, past_key_values
        )
