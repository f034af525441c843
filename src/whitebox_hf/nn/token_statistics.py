"""Token Statistics Self-Attention (TSSA), the linear-time compression operator of ToST.

Book §8.4 (ToST): a variational upper bound on the coding rate replaces the token-token Gram matrix by
per-head *second moments* of the tokens. A soft assignment ``Π`` of tokens to heads and a gradient step on
the bound give (spec ``crate_family.md`` §3.1)

    TSSA(Z) = −(τ/N) Σ_k U_k · Diag(∇f[(U_kᵀZ)^{∘2} π_k / ⟨π_k, 1⟩]) · U_kᵀ Z · Diag(π_k),
    f(x) = log(1 + (d/ε²)x),

so no N×N matrix is ever formed. Following the authors' code (RobinWu218/ToST), ``W = U_kᵀZ`` is a learned
linear projection, d/ε² = 1 (so ∇f(x) = 1/(1 + x)), τ/N is folded into the learned output projection, and the
memberships come from each channel's share of its energy across tokens:

    score_jk = τ_k · Σ_i W_k[j,i]² / E_k[i]            E_k[i] = Σ_j W_k[j,i]²    (vision: all tokens)
    Π_j      = softmax_k(score_jk)
    m_k      = Σ_j Π_jk W_k[j]² / Σ_j Π_jk                                         (per-channel moment)
    out_k[j] = −Π_jk · W_k[j] ⊙ 1/(1 + m_k)

The causal (language) variant replaces every sum over tokens by a running sum over positions ≤ t and adds a
learned per-head, per-position bias ``β_{k,t}`` to the scores (``tost_lang/model_TSSA.py``). Running sums make
generation recurrent: a cache holding three sums per layer (energy, weighted moment, membership mass) lets
each new token cost O(d), independent of the context length. That bias is also why the causal model cannot
run past ``max_position_embeddings``.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.cache_utils import Cache, CacheLayerMixin

__all__ = ["TokenStatisticsSelfAttention", "TokenStatisticsCache", "TokenStatisticsCacheLayer"]

# Clamp on the channel energies, as in the authors' causal code; keeps 0/0 (padding, all-zero channels) at 0.
ENERGY_EPS = 1e-12
# Added to the membership mass before dividing, as in the authors' code.
MASS_EPS = 1e-8


class TokenStatisticsCacheLayer(CacheLayerMixin):
    """Recurrent state of one causal TSSA layer: the running sums of its token statistics.

    ``energy`` ``(batch, heads, head_dim)``: Σ_{j≤t} W_j²; ``weighted_moment`` ``(batch, heads, head_dim)``:
    Σ_{j≤t} Π_j W_j²; ``mass`` ``(batch, heads)``: Σ_{j≤t} Π_j; ``seen_tokens``: t + 1 (padding included, so it
    matches the attention mask's length as `generate` expects). The state never grows with the context.
    """

    is_compileable = False
    is_croppable = False

    def __init__(self, **kwargs):
        super().__init__()
        self.energy: torch.Tensor | None = None
        self.weighted_moment: torch.Tensor | None = None
        self.mass: torch.Tensor | None = None
        self.seen_tokens = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.is_initialized = True

    def update(self, key_states, value_states, *args, **kwargs):
        raise NotImplementedError("A TSSA layer keeps running sums, not keys and values; use `update_statistics`")

    def update_statistics(
        self, energy: torch.Tensor, weighted_moment: torch.Tensor, mass: torch.Tensor, num_new_tokens: int
    ) -> None:
        self.energy, self.weighted_moment, self.mass = energy, weighted_moment, mass
        self.seen_tokens += num_new_tokens
        self.is_initialized = True

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.seen_tokens + query_length, 0

    def get_seq_length(self) -> int:
        return self.seen_tokens

    def get_max_length(self) -> int:
        return -1

    def reset(self) -> None:
        self.energy = self.weighted_moment = self.mass = None
        self.seen_tokens = 0
        self.is_initialized = False

    def _apply_to_state(self, function) -> None:
        if self.energy is not None:
            self.energy, self.weighted_moment, self.mass = (
                function(self.energy), function(self.weighted_moment), function(self.mass)
            )

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self._apply_to_state(lambda state: state.index_select(0, beam_idx.to(state.device)))

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._apply_to_state(lambda state: state.repeat_interleave(repeats, dim=0))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._apply_to_state(lambda state: state[indices])

    def offload(self):
        self._apply_to_state(lambda state: state.to("cpu", non_blocking=True))

    def prefetch(self):
        pass


class TokenStatisticsCache(Cache):
    """The `generate()` cache of a causal ToST model: one `TokenStatisticsCacheLayer` per layer.

    Its memory is ``num_layers × batch × (2d + K)`` numbers whatever the context length, where a KV cache grows
    by ``2d`` numbers per token and layer.
    """

    def __init__(self, num_hidden_layers: int):
        super().__init__(layers=[TokenStatisticsCacheLayer() for _ in range(num_hidden_layers)])

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.layers[layer_idx].get_seq_length() if layer_idx < len(self.layers) else 0


class TokenStatisticsSelfAttention(nn.Module):
    """TSSA with ``K`` heads; O(N·d) time and memory in the number of tokens N.

    Args:
        hidden_size (`int`): token width ``d``; split into ``num_heads`` heads of ``p = d / K`` channels.
        num_heads (`int`): number of heads ``K`` (subspaces the tokens are softly assigned to).
        is_causal (`bool`, defaults to `False`): running statistics over positions ≤ t (language) instead of
            statistics of all tokens (vision).
        max_position_embeddings (`int`, *optional*): required when causal: the length of the per-position
            score bias ``β`` and so the longest sequence the layer accepts.
        projection_bias (`bool`, defaults to `False`): bias on the projection ``W`` (vision code: yes).
        output_bias (`bool`, defaults to `True`): bias on the output projection.
        attention_dropout (`float`, defaults to 0.0): dropout on the gate ``1/(1 + m)``.
        projection_dropout (`float`, defaults to 0.0): dropout after the output projection.
        layer_idx (`int`, *optional*): this layer's slot in a `TokenStatisticsCache`.

    ``forward(hidden_states, token_mask=None, position_ids=None, past_key_values=None, output_attentions=False)``
    returns ``(output, memberships Π (batch, heads, tokens) or None)``. ``token_mask`` ``(batch, tokens)`` marks
    real tokens with 1 and padding with 0; padding contributes nothing to any statistic, so a left-padded
    sequence gives the same outputs as the unpadded one.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        is_causal: bool = False,
        max_position_embeddings: int | None = None,
        projection_bias: bool = False,
        output_bias: bool = True,
        attention_dropout: float = 0.0,
        projection_dropout: float = 0.0,
        layer_idx: int | None = None,
    ):
        super().__init__()
        if not isinstance(num_heads, int) or num_heads <= 0 or hidden_size % num_heads:
            raise ValueError(f"`num_heads` must be a positive divisor of `hidden_size` ({hidden_size}), got {num_heads!r}")
        if is_causal and (not isinstance(max_position_embeddings, int) or max_position_embeddings <= 0):
            raise ValueError(
                f"causal TSSA needs a positive integer `max_position_embeddings`, got {max_position_embeddings!r}"
            )
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.is_causal = is_causal
        self.max_position_embeddings = max_position_embeddings
        self.layer_idx = layer_idx
        self.projection = nn.Linear(hidden_size, hidden_size, bias=projection_bias)
        # τ_k: per-head temperature of the memberships (init 1, kept out of weight decay by the training scripts).
        self.temperature = nn.Parameter(torch.ones(num_heads))
        # β_{k,t}: per-head, per-position score bias of the causal code (init 0).
        self.position_bias = nn.Parameter(torch.zeros(num_heads, max_position_embeddings)) if is_causal else None
        self.gate_dropout = nn.Dropout(attention_dropout)
        self.output_projection = nn.Linear(hidden_size, hidden_size, bias=output_bias)
        self.projection_dropout = nn.Dropout(projection_dropout)

    def forward(
        self,
        hidden_states: torch.Tensor,
        token_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: TokenStatisticsCache | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch_size, num_tokens, hidden_size = hidden_states.shape
        projected = self.projection(hidden_states)
        # (B, N, d) -> (B, K, N, p). The statistics run in float32 even under bf16 autocast: they are sums over
        # up to N tokens, and cheap (O(N·d)) next to the projections.
        projected = projected.view(batch_size, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)
        coordinates = projected.float()
        if token_mask is not None:
            real = token_mask.to(coordinates.dtype)
            coordinates = coordinates * real[:, None, :, None]
        squared = coordinates.square()

        state = None
        if past_key_values is not None:
            if not self.is_causal:
                raise ValueError("`past_key_values` is only meaningful for causal TSSA")
            state = past_key_values.layers[self.layer_idx]
        has_past = state is not None and state.energy is not None

        if self.is_causal:
            energy = squared.cumsum(dim=2)
            if has_past:
                energy = energy + state.energy[:, :, None, :]
        else:
            energy = squared.sum(dim=2, keepdim=True)
        scores = (squared / energy.clamp_min(ENERGY_EPS)).sum(dim=-1)  # (B, K, N)
        if self.is_causal:
            if position_ids is None:
                raise ValueError("causal TSSA needs `position_ids` for its per-position bias")
            # Σ over the p channels of (W²/E + β_{k,t}) adds p·β_{k,t}.
            bias = self.position_bias.float()[:, position_ids].permute(1, 0, 2)  # (B, K, N)
            scores = scores + self.head_dim * bias
        memberships = torch.softmax(scores * self.temperature.float()[None, :, None], dim=1)  # Π: over heads
        if token_mask is not None:
            memberships = memberships * real[:, None, :]

        if self.is_causal:
            weighted = (memberships[..., None] * squared).cumsum(dim=2)
            mass = memberships.cumsum(dim=2)
            if has_past:
                weighted = weighted + state.weighted_moment[:, :, None, :]
                mass = mass + state.mass[:, :, None]
            if state is not None:
                state.update_statistics(energy[:, :, -1], weighted[:, :, -1], mass[:, :, -1], num_tokens)
            moment = weighted / (mass[..., None] + MASS_EPS)
        else:
            share = memberships / (memberships.sum(dim=-1, keepdim=True) + MASS_EPS)
            moment = torch.matmul(share[:, :, None, :], squared)  # (B, K, 1, p)
        gate = self.gate_dropout(1.0 / (1.0 + moment))
        heads = -(memberships[..., None] * coordinates * gate)
        heads = heads.to(projected.dtype).transpose(1, 2).reshape(batch_size, num_tokens, hidden_size)
        output = self.projection_dropout(self.output_projection(heads))
        return output, (memberships if output_attentions else None)
