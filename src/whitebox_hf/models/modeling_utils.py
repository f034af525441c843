"""Behaviour shared by every whitebox_hf `PreTrainedModel`."""

from __future__ import annotations

from pathlib import Path

from transformers import PreTrainedModel
from transformers.modeling_outputs import ImageClassifierOutput

from ..utils.validation import check_finite_tensor, check_index_tensor, check_tensor

__all__ = ["WhiteboxPreTrainedModel", "check_classification_labels", "image_classifier_output", "run_layers"]


class WhiteboxPreTrainedModel(PreTrainedModel):
    """Base of every whitebox_hf model: safetensors-only loading and the choice of attention kernel."""

    _supports_sdpa = True

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """`PreTrainedModel.from_pretrained` restricted to safetensors (loading never unpickles) and to checkpoints
        of this class's ``model_type``: transformers only warns when, e.g., a causal-LM folder is loaded into an
        image classifier, and returns a randomly initialised model."""
        if kwargs.get("use_safetensors") is False:
            raise ValueError("whitebox_hf models load safetensors weights only; `use_safetensors=False` is refused")
        kwargs["use_safetensors"] = True
        if args and kwargs.get("config") is None:
            _check_checkpoint_model_type(cls, args[0], kwargs)
        from safetensors import SafetensorError

        try:
            return super().from_pretrained(*args, **kwargs)
        except SafetensorError as error:
            # safetensors' message names no file: a truncated or corrupt download must say which one.
            location = args[0] if args else kwargs.get("pretrained_model_name_or_path")
            files = sorted(path.name for path in Path(location).glob("*.safetensors")) if location else []
            raise OSError(f"cannot read the safetensors weights in {location} ({', '.join(files) or 'from the Hub'}): "
                          f"{error}") from error

    def _attention_backend(self, output_attentions: bool) -> str:
        if output_attentions:
            return "eager"  # only the eager path returns attention probabilities
        return "eager" if self.config._attn_implementation == "eager" else "sdpa"


def check_classification_labels(labels, batch_size: int, num_labels: int) -> None:
    """Labels as transformers' classification loss reads them: integer class ids ``(batch,)`` in
    ``[0, num_labels)`` (single label), or floats ``(batch,)`` for a 1-label regression head or
    ``(batch, num_labels)`` for multi-label targets. Values are read on CPU only (see `whitebox_hf.utils.validation`)."""
    check_tensor("labels", labels)
    if labels.is_floating_point():
        expected = (batch_size,) if num_labels == 1 else (batch_size, num_labels)
        if tuple(labels.shape) not in {expected, (batch_size, num_labels)}:
            raise ValueError(f"float `labels` must have shape {expected}, got {tuple(labels.shape)}")
        check_finite_tensor("labels", labels)
        return
    if tuple(labels.shape) != (batch_size,):
        raise ValueError(f"`labels` must hold one class id per image, shape ({batch_size},), got {tuple(labels.shape)}")
    check_index_tensor("labels", labels, num_labels, "num_labels", long_only=True)


_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies")


def _check_checkpoint_model_type(cls, pretrained_model_name_or_path, kwargs) -> None:
    from transformers import PreTrainedConfig

    expected = getattr(cls.config_class, "model_type", None)
    if not expected or pretrained_model_name_or_path is None:
        return
    hub_kwargs = {key: kwargs[key] for key in _HUB_KWARGS if key in kwargs}
    config_dict, _ = PreTrainedConfig.get_config_dict(pretrained_model_name_or_path, **hub_kwargs)
    found = config_dict.get("model_type")
    if found is not None and found != expected:
        raise ValueError(
            f"{pretrained_model_name_or_path!s} holds a checkpoint of `model_type`={found!r}, but {cls.__name__} "
            f"loads model_type={expected!r}: load it with its own class or with an Auto class"
        )


def image_classifier_output(model, backbone_outputs, labels, return_dict: bool, **kwargs):
    """Apply ``model.classifier`` to the pooled feature and package loss and logits as transformers does."""
    if labels is not None:
        check_classification_labels(labels, backbone_outputs.pooler_output.shape[0], model.config.num_labels)
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
