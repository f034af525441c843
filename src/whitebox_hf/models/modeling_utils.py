"""Behaviour shared by every whitebox_hf `PreTrainedModel`."""

from __future__ import annotations

from transformers import PreTrainedModel

__all__ = ["WhiteboxPreTrainedModel"]


class WhiteboxPreTrainedModel(PreTrainedModel):
    """Base of every whitebox_hf model: safetensors-only loading and the choice of attention kernel."""

    _supports_sdpa = True

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """`PreTrainedModel.from_pretrained` restricted to safetensors: loading never unpickles."""
        if kwargs.get("use_safetensors") is False:
            raise ValueError("whitebox_hf models load safetensors weights only; `use_safetensors=False` is refused")
        kwargs["use_safetensors"] = True
        return super().from_pretrained(*args, **kwargs)

    def _attention_backend(self, output_attentions: bool) -> str:
        if output_attentions:
            return "eager"  # only the eager path returns attention probabilities
        return "eager" if self.config._attn_implementation == "eager" else "sdpa"
