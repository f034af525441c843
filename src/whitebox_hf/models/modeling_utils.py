"""Behaviour shared by every whitebox_hf `PreTrainedModel`."""

from __future__ import annotations

from transformers import PreTrainedModel
from transformers.modeling_outputs import ImageClassifierOutput

__all__ = ["WhiteboxPreTrainedModel", "image_classifier_output", "run_layers"]


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


def image_classifier_output(model, backbone_outputs, labels, return_dict: bool, **kwargs):
    """Apply ``model.classifier`` to the pooled feature and package loss and logits as transformers does."""
    logits = model.classifier(backbone_outputs.pooler_output)
    loss = model.loss_function(labels, logits, model.config, **kwargs) if labels is not None else None
    if not return_dict:
        output = tuple(v for v in (logits, backbone_outputs.hidden_states, backbone_outputs.attentions) if v is not None)
        return ((loss,) + output) if loss is not None else output
    return ImageClassifierOutput(
        loss=loss, logits=logits, hidden_states=backbone_outputs.hidden_states, attentions=backbone_outputs.attentions
    )


def run_layers(layers, hidden_states, output_hidden_states: bool, output_attentions: bool, **layer_kwargs):
    """Run ``hidden_states`` through ``layers`` (each returning ``(hidden_states, weights)``), collecting every
    layer's output and weights when asked. Returns ``(hidden_states, all_hidden_states or None,
    all_attentions or None)``; ``all_hidden_states`` starts with the input, as in transformers."""
    all_hidden_states = (hidden_states,) if output_hidden_states else None
    all_attentions = () if output_attentions else None
    for layer in layers:
        hidden_states, weights = layer(hidden_states, output_attentions=output_attentions, **layer_kwargs)
        if output_hidden_states:
            all_hidden_states += (hidden_states,)
        if output_attentions:
            all_attentions += (weights,)
    return hidden_states, all_hidden_states, all_attentions
