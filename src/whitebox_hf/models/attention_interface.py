"""whitebox_hf's attention dispatch as a transformers attention implementation, for transformers' own models.

`register_whitebox_attention()` adds ``"whitebox_sdpa"`` to transformers' `AttentionInterface`. A transformers model
(ViT, ViT-MAE, GPT-2, ...) set to it with ``model.set_attn_implementation("whitebox_sdpa")`` runs the kernel the
white-box models run (`whitebox_hf.nn.attention.attend`): PyTorch SDPA in fp32, and in bf16/fp16 on CPU with few
keys the same matmuls with the softmax in the inputs' precision, which is faster there than PyTorch's CPU flash
kernel. A baseline trained or timed this way differs from its white-box counterpart in its model and not in its
attention kernel.
"""

from __future__ import annotations

import torch

WHITEBOX_ATTENTION = "whitebox_sdpa"


def whitebox_attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                               attention_mask: torch.Tensor | None, scaling: float | None = None,
                               dropout: float = 0.0, **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' calling convention for an attention function (``sdpa_attention_forward``'s): ``query``, ``key``,
    ``value`` are ``(batch, heads, tokens, head_dim)``; returns the context as ``(batch, tokens, heads, head_dim)``
    and no probabilities. Causality comes from ``module.is_causal`` when no mask is given, as in transformers."""
    from ..nn.attention import attend

    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    if attention_mask is not None and attention_mask.dtype == torch.bool:
        # transformers passes SDPA implementations a boolean "may attend" mask; `attend` takes an additive one.
        attention_mask = torch.zeros((), dtype=query.dtype, device=query.device).masked_fill(
            ~attention_mask, torch.finfo(query.dtype).min)
    is_causal = bool(getattr(module, "is_causal", False)) and attention_mask is None
    context, _ = attend(query, key, value, attention_mask, scale, dropout if module.training else 0.0, is_causal,
                        "sdpa", False)
    return context.transpose(1, 2).contiguous(), None


def register_whitebox_attention() -> str:
    """Register ``"whitebox_sdpa"`` with transformers' `AttentionInterface` and `AttentionMaskInterface` (idempotent);
    returns the name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(WHITEBOX_ATTENTION, whitebox_attention_forward)
    # Without a mask function of its own, transformers hands a registered implementation no mask at all (padding
    # lost); SDPA's (boolean, or None where causality alone suffices) is the one `whitebox_attention_forward` reads.
    AttentionMaskInterface.register(WHITEBOX_ATTENTION, sdpa_mask)
    return WHITEBOX_ATTENTION
