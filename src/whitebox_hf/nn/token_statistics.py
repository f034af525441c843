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

from ..utils.validation import check_positive_int

__all__ = [
    "FusedCausalTokenStatistics",
    "TokenStatisticsSelfAttention",
    "TokenStatisticsCache",
    "TokenStatisticsCacheLayer",
    "causal_token_statistics",
]

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
        chunk_size (`int`, defaults to 1024): causal inputs longer than this run in chunks that carry the running
            sums forward (the same recurrence as generation), which bounds the temporaries; results are identical.

    The causal statistics of each chunk run through `FusedCausalTokenStatistics` (in place on three chunk-sized
    float32 buffers; backward recomputes the chunk from its inputs instead of keeping about ten (N, d)
    temporaries), and at inference the chunks are written back into the projection's (B, N, d) output. Its forward
    values are those of the out-of-place formula `causal_token_statistics`, which autograd differentiates in
    the recomputation; with active gate dropout (a recomputation would draw another mask) that formula runs
    directly.

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
        chunk_size: int = 1024,
    ):
        super().__init__()
        check_positive_int("chunk_size", chunk_size)
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
        self.chunk_size = chunk_size

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
        real = None
        if token_mask is not None:
            real = token_mask.to(torch.float32)[:, None, :]  # (B, 1, N)

        if not self.is_causal:
            if past_key_values is not None:
                raise ValueError("`past_key_values` is only meaningful for causal TSSA")
            heads, memberships = self._vision_mixing(self._coordinates(projected, real))
            heads = heads.reshape(batch_size, hidden_size, num_tokens).transpose(1, 2).to(projected.dtype)
        else:
            if position_ids is None:
                raise ValueError("causal TSSA needs `position_ids` for its per-position bias")
            layer_state = past_key_values.layers[self.layer_idx] if past_key_values is not None else None
            carry = None
            if layer_state is not None and layer_state.energy is not None:
                carry = (layer_state.energy, layer_state.weighted_moment, layer_state.mass)
            # Long inputs run chunk by chunk, carrying the running sums exactly as generation does: every float32
            # temporary is the size of one chunk (cache-resident), so time and extra memory grow linearly with N.
            # Without autograd each chunk's heads go straight back into `projected`, whose chunk has already been
            # copied to float32 coordinates and is read no more: no second (B, N, d) tensor, no float32 copy of the
            # whole sequence, no concatenation. (`projected` is this layer's own fresh output.)
            heads = None if torch.is_grad_enabled() else projected
            head_chunks, membership_chunks = [], []
            for start in range(0, num_tokens, self.chunk_size):
                stop = min(start + self.chunk_size, num_tokens)
                chunk_real = None if real is None else real[..., start:stop]
                chunk_heads, memberships, carry = self._causal_mixing(
                    self._coordinates(projected[:, start:stop], chunk_real),
                    chunk_real,
                    position_ids[:, start:stop],
                    carry,
                )
                chunk_heads = chunk_heads.reshape(batch_size, hidden_size, stop - start).transpose(1, 2)
                if heads is None:
                    head_chunks.append(chunk_heads.to(projected.dtype))
                else:
                    heads[:, start:stop] = chunk_heads
                membership_chunks.append(memberships)
            if heads is None:
                heads = head_chunks[0] if len(head_chunks) == 1 else torch.cat(head_chunks, dim=1)
            memberships = membership_chunks[0] if len(membership_chunks) == 1 else torch.cat(membership_chunks, dim=-1)
            if layer_state is not None:
                layer_state.update_statistics(*carry, num_tokens)
        output = self.projection_dropout(self.output_projection(heads))
        return output, (memberships if output_attentions else None)

    def _coordinates(self, projected: torch.Tensor, real: torch.Tensor | None) -> torch.Tensor:
        """``(B, n, d)`` projections → float32 coordinates ``(B, K, p, n)``, padding zeroed.

        Token axis last and contiguous, because the running sums (cumsum) are several times faster along the
        innermost axis. The statistics run in float32 even under bf16 autocast: they are sums over up to N tokens,
        and cheap next to the projections."""
        batch_size, num_tokens, _ = projected.shape
        coordinates = projected.transpose(1, 2).to(torch.float32, memory_format=torch.contiguous_format)
        coordinates = coordinates.view(batch_size, self.num_heads, self.head_dim, num_tokens)
        if real is not None:
            coordinates = coordinates * real[:, :, None, :]
        return coordinates

    def _gate_and_output(self, coordinates, memberships, moment):
        # out_k[j] = −Π_jk · W_k[j] ⊙ ∇f(m_k), with ∇f(x) = 1/(1 + x) (d/ε² = 1).
        gate = self.gate_dropout(1.0 / (1.0 + moment))
        return -(memberships[:, :, None, :] * coordinates * gate)

    def _vision_mixing(self, coordinates):
        """Statistics of all tokens. ``coordinates``: (B, K, p, N) → heads (B, K, p, N), memberships (B, K, N)."""
        squared = coordinates.square()
        energy = squared.sum(dim=-1, keepdim=True).clamp_min(ENERGY_EPS)
        scores = (squared / energy).sum(dim=2)  # (B, K, N)
        memberships = torch.softmax(scores * self.temperature.float()[:, None], dim=1)  # Π: over heads
        share = memberships / (memberships.sum(dim=-1, keepdim=True) + MASS_EPS)
        moment = torch.einsum("bkn,bkpn->bkp", share, squared)[..., None]  # (B, K, p, 1)
        return self._gate_and_output(coordinates, memberships, moment), memberships

    def _causal_mixing(self, coordinates, real, position_ids, carry):
        """Running statistics over positions ≤ t, continuing from ``carry`` = (energy (B, K, p), weighted moment
        (B, K, p), mass (B, K)) of the tokens before this chunk. Returns heads (B, K, p, n), memberships (B, K, n)
        and the new carry.

        Without gate dropout this runs `FusedCausalTokenStatistics`: the same operations in the same order (so the
        same values), done in place on three chunk-sized buffers, and nothing but the inputs kept for backward,
        which recomputes the chunk. With active gate dropout the recomputation would draw another mask, so the
        plain autograd path runs instead."""
        # Rows of βᵀ gathered per position (a row gather is much faster than indexing the position axis).
        bias = self.head_dim * self.position_bias.float().t()[position_ids].transpose(1, 2)  # (B, K, n)
        temperature = self.temperature.float()
        if self.training and self.gate_dropout.p > 0:
            return causal_token_statistics(coordinates, real, bias, temperature, carry, self.gate_dropout)
        if carry is None:
            batch_size, num_heads, head_dim, _ = coordinates.shape
            zeros = coordinates.new_zeros(batch_size, num_heads, head_dim)
            carry = (zeros, zeros, zeros[..., 0])
            # The first chunk has no carry: `has_carry` keeps its additions out so the values match bit for bit.
            has_carry = False
        else:
            has_carry = True
        heads, memberships, *new_carry = FusedCausalTokenStatistics.apply(
            coordinates, real, bias, temperature, *carry, has_carry
        )
        return heads, memberships, tuple(new_carry)


def causal_token_statistics(coordinates, real, bias, temperature, carry, gate_dropout=None):
    """Causal TSSA statistics of one chunk, out of place (the reference that autograd differentiates).

    ``coordinates`` (B, K, p, n) float32, ``real`` (B, 1, n) or None, ``bias`` (B, K, n) = p·β at the chunk's
    positions, ``temperature`` (K,), ``carry`` = (energy (B, K, p), weighted moment (B, K, p), mass (B, K)) of the
    earlier tokens or None. Returns heads (B, K, p, n), memberships (B, K, n) and the new carry."""
    squared = coordinates.square()
    energy = squared.cumsum(dim=-1)
    if carry is not None:
        energy = energy + carry[0][..., None]
    scores = (squared / energy.clamp_min(ENERGY_EPS)).sum(dim=2)  # (B, K, n)
    # Σ over the p channels of (W²/E + β_{k,t}) adds p·β_{k,t}.
    scores = scores + bias
    memberships = torch.softmax(scores * temperature[:, None], dim=1)  # Π: over heads
    if real is not None:
        memberships = memberships * real
    weighted = (memberships[:, :, None, :] * squared).cumsum(dim=-1)
    mass = memberships.cumsum(dim=-1)
    if carry is not None:
        weighted = weighted + carry[1][..., None]
        mass = mass + carry[2][..., None]
    moment = weighted / (mass[:, :, None, :] + MASS_EPS)
    # out_k[j] = −Π_jk · W_k[j] ⊙ ∇f(m_k), with ∇f(x) = 1/(1 + x) (d/ε² = 1).
    gate = 1.0 / (1.0 + moment)
    if gate_dropout is not None:
        gate = gate_dropout(gate)
    heads = -(memberships[:, :, None, :] * coordinates * gate)
    return heads, memberships, (energy[..., -1], weighted[..., -1], mass[..., -1])


class FusedCausalTokenStatistics(torch.autograd.Function):
    """`causal_token_statistics` with an in-place forward and a recomputing backward.

    The out-of-place formula allocates about ten chunk-sized float32 tensors and autograd keeps most of them for
    backward. Here the forward runs the same operations in the same order on three buffers (coordinates,
    energy, squares), so its values are those of the formula, and saves only its inputs; backward re-runs
    `causal_token_statistics` on them under autograd, which costs one more chunk forward. Training memory per
    layer is then the coordinates plus the heads instead of the whole chain of element-wise temporaries.

    ``apply(coordinates, real, bias, temperature, energy0, weighted0, mass0, has_carry)`` →
    ``(heads, memberships, energy, weighted, mass)``.
    """

    @staticmethod
    def forward(ctx, coordinates, real, bias, temperature, energy0, weighted0, mass0, has_carry):
        ctx.has_carry = has_carry
        ctx.save_for_backward(coordinates, real, bias, temperature, energy0, weighted0, mass0)
        # Element-wise ops, cumsums and a softmax on float32 tensors: autocast has nothing to lower here.
        with torch.no_grad():
            squared = coordinates.square()
            energy = squared.cumsum(dim=-1)
            if has_carry:
                energy.add_(energy0[..., None])
            new_energy = energy[..., -1].clone()
            scores = torch.div(squared, energy.clamp_min_(ENERGY_EPS), out=energy).sum(dim=2)
            scores = scores + bias
            memberships = torch.softmax(scores * temperature[:, None], dim=1)
            if real is not None:
                memberships = memberships * real
            # The energy buffer is free again: the running sum goes there (an in-place cumsum is slower).
            weighted = torch.cumsum(squared.mul_(memberships[:, :, None, :]), dim=-1, out=energy)
            mass = memberships.cumsum(dim=-1)
            if has_carry:
                weighted.add_(weighted0[..., None])
                mass = mass + mass0[..., None]
            new_weighted, new_mass = weighted[..., -1].clone(), mass[..., -1].clone()
            gate = weighted.div_(mass[:, :, None, :] + MASS_EPS).add_(1.0).reciprocal_()
            heads = (memberships[:, :, None, :] * coordinates).mul_(gate).neg_()
        return heads, memberships, new_energy, new_weighted, new_mass

    @staticmethod
    def backward(ctx, grad_heads, grad_memberships, grad_energy, grad_weighted, grad_mass):
        coordinates, real, bias, temperature, energy0, weighted0, mass0 = ctx.saved_tensors
        inputs = [coordinates, bias, temperature] + ([energy0, weighted0, mass0] if ctx.has_carry else [])
        wants = [tensor.requires_grad for tensor in inputs]
        with torch.enable_grad():
            leaves = [tensor.detach().requires_grad_(want) for tensor, want in zip(inputs, wants)]
            carry = tuple(leaves[3:]) if ctx.has_carry else None
            heads, memberships, (energy, weighted, mass) = causal_token_statistics(
                leaves[0], real, leaves[1], leaves[2], carry
            )
            differentiable = [leaf for leaf, want in zip(leaves, wants) if want]
            grads = iter(torch.autograd.grad(
                (heads, memberships, energy, weighted, mass),
                differentiable,
                (grad_heads, grad_memberships, grad_energy, grad_weighted, grad_mass),
                allow_unused=True,
            ) if differentiable else ())
        grad_inputs = [next(grads) if want else None for want in wants]
        if not ctx.has_carry:
            grad_inputs += [None, None, None]
        coordinates_grad, bias_grad, temperature_grad, *carry_grads = grad_inputs
        return (coordinates_grad, None, bias_grad, temperature_grad, *carry_grads, None)
