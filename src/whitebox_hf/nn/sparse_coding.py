"""Sparse coding steps: ISTA (CRATE) and overcomplete dictionary learning, ODL (CRATE-α).

After MSSA compresses the tokens, the second half of a white-box layer *sparsifies* them against a learned
dictionary ``D`` by proximal gradient on the non-negative LASSO

    min_{a ≥ 0}  ½‖y − D a‖²₂ + λ‖a‖₁                                  (book Ch. 5; §8.4.1)

whose proximal-gradient step is  ``a ← ReLU(a − η·Dᵀ(D a − y) − η·λ)``.

The threshold ``η·λ`` is *subtracted*: the applications chapter prints ``+βλ``, but Chapter 4/5 and all of
the authors' code subtract it, which is what a proximal step for a non-negative ℓ₁ penalty does
(spec ``crate_family.md`` pitfall 1).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..utils.validation import check_positive_int

__all__ = ["ISTA", "OvercompleteDictionaryLearning"]


def _check_positive_float(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"`{name}` must be a positive float, got {value!r}")


class ISTA(nn.Module):
    """One non-negative ISTA step with a complete ``d×d`` dictionary, warm-started at ``a = y``.

        ISTA(y) = ReLU( y − η·Dᵀ(D y − y) − η·λ )

    The output *is* the sparse code (non-negative, many exact zeros) and replaces the token: the CRATE layer
    adds no residual around it.

    Args:
        hidden_size (`int`): token width ``d``.
        step_size (`float`, defaults to 0.1): ``η``.
        lambd (`float`, defaults to 0.1): ``λ``, the ℓ₁ weight.
    """

    def __init__(self, hidden_size: int, step_size: float = 0.1, lambd: float = 0.1):
        super().__init__()
        check_positive_int("hidden_size", hidden_size)
        _check_positive_float("step_size", float(step_size))
        if lambd < 0:
            raise ValueError(f"`lambd` must be non-negative, got {lambd!r}")
        self.step_size = float(step_size)
        self.lambd = float(lambd)
        # Stored like a Linear weight of shape (d, d): F.linear(a, D) computes D a for token rows a.
        self.dictionary = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self._folded_weight_cache: tuple[tuple, torch.Tensor] | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.dictionary, a=math.sqrt(5))

    def folded_weight(self) -> torch.Tensor:
        """The step is linear in ``y`` before the threshold: ``y − η·Dᵀ(D y − y) = (I + η·Dᵀ − η·DᵀD) y``.
        Returns that ``d×d`` matrix (in the layout `F.linear` expects)."""
        d = self.dictionary
        identity = torch.eye(d.shape[0], dtype=d.dtype, device=d.device)
        return torch.addmm(identity + self.step_size * d.t(), d.t(), d, alpha=-self.step_size)

    def inference_folded_weight(self) -> torch.Tensor:
        """`folded_weight`, formed once and reused while the dictionary is unchanged, when no gradient is taken.

        The folded matrix depends on the parameters only, yet forming it costs ``d³`` multiply-adds per layer and
        forward: at CRATE-T (d 384) with a batch of 8 images that is about 5 % of an inference forward. Under
        autograd (training, or anything needing the gradient of ``D``) and inside a ``torch.compile`` trace (which
        cannot guard on a Python-side cache) it is formed afresh. The cache key holds what changes the result: the
        dictionary's storage and in-place version counter (an optimizer step or ``load_state_dict`` bumps it),
        its dtype and device, the step size and the autocast dtype (under autocast the fold runs in bf16).
        """
        d = self.dictionary
        if torch.is_grad_enabled() or torch.compiler.is_compiling() or d.is_inference():
            return self.folded_weight()  # (an inference tensor has no version counter to key on)
        device_type = d.device.type
        autocast = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
        key = (d.data_ptr(), d._version, d.dtype, d.device, self.step_size, autocast)
        if self._folded_weight_cache is None or self._folded_weight_cache[0] != key:
            self._folded_weight_cache = (key, self.folded_weight())
        return self._folded_weight_cache[1]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_size = self.dictionary.shape[0]
        threshold = self.step_size * self.lambd
        if hidden_states.numel() // hidden_size > hidden_size:
            # Many tokens: one GEMM with the folded matrix (d³ to form it once, then d² per token instead of 2d²).
            # The threshold rides in the GEMM as a bias (added in its epilogue, not in a separate pass over the
            # tokens) and the ReLU runs in place on the GEMM's fresh output: two element-wise passes and one
            # (tokens, d) temporary fewer. ReLU's backward reads its output, which it overwrites by design.
            bias = self.dictionary.new_full((hidden_size,), -threshold)
            return F.relu(F.linear(hidden_states, self.inference_folded_weight(), bias), inplace=True)
        # Few tokens: forming DᵀD would cost more than applying D twice.
        reconstruction = F.linear(hidden_states, self.dictionary)  # D y
        gradient = F.linear(reconstruction - hidden_states, self.dictionary.t())  # Dᵀ(D y − y)
        return F.relu(hidden_states - self.step_size * gradient - threshold)


class OvercompleteDictionaryLearning(nn.Module):
    """ODL, the CRATE-α sparse-coding block with an overcomplete dictionary (book §8 "scaling white-box
    transformers"; UCSC-VLAA/CRATE-alpha).

    ``T`` non-negative ISTA steps from ``a₀ = 0`` against an encoding dictionary ``D ∈ R^{d×s}``, then the
    code is decoded with a *separate* dictionary ``D₁ ∈ R^{d×s}``:

        a₁    = ReLU( η·Dᵀ y − η·λ )
        a_t+1 = ReLU( a_t − η·Dᵀ(D a_t − y) − η·λ )
        ODL(y) = D₁ a_T

    The residual connection around ODL belongs to the layer, not to this block.

    Args:
        hidden_size (`int`): token width ``d``.
        expansion (`int`, defaults to 4): ``s = expansion·d``, the number of dictionary atoms.
        num_steps (`int`, defaults to 2): ``T``.
        step_size (`float`, defaults to 0.1): ``η``.
        lambd (`float`, defaults to 0.1): ``λ``.
    """

    def __init__(
        self, hidden_size: int, expansion: int = 4, num_steps: int = 2, step_size: float = 0.1, lambd: float = 0.1
    ):
        super().__init__()
        check_positive_int("hidden_size", hidden_size)
        check_positive_int("expansion", expansion)
        check_positive_int("num_steps", num_steps)
        _check_positive_float("step_size", float(step_size))
        if lambd < 0:
            raise ValueError(f"`lambd` must be non-negative, got {lambd!r}")
        self.num_steps = num_steps
        self.step_size = float(step_size)
        self.lambd = float(lambd)
        num_atoms = expansion * hidden_size
        # Stored as (s, d), i.e. Dᵀ, so that F.linear(y, encoder) = Dᵀ y and F.linear(a, encoderᵀ) = D a.
        self.encoder_dictionary = nn.Parameter(torch.empty(num_atoms, hidden_size))
        self.decoder_dictionary = nn.Parameter(torch.empty(hidden_size, num_atoms))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.encoder_dictionary, a=math.sqrt(5))
        nn.init.kaiming_uniform_(self.decoder_dictionary, a=math.sqrt(5))

    def sparse_code(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """The non-negative sparse code ``a_T`` of shape ``(..., s)``."""
        threshold = self.step_size * self.lambd
        code = F.relu(self.step_size * F.linear(hidden_states, self.encoder_dictionary) - threshold)
        for _ in range(self.num_steps - 1):
            residual = F.linear(code, self.encoder_dictionary.t()) - hidden_states  # D a − y
            code = F.relu(code - self.step_size * F.linear(residual, self.encoder_dictionary) - threshold)
        return code

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return F.linear(self.sparse_code(hidden_states), self.decoder_dictionary)
