"""Checks shared by every whitebox_hf configuration: each raises `ValueError` or `TypeError` naming the field, what
it must be and the value it got.

`strict_config` is the decorator every configuration class carries (in place of huggingface_hub's bare
``@strict``): it runs strict's type checks with the errors re-typed as `TypeError` / `ValueError`, refuses non-finite
floats, keyword arguments that are neither fields nor standard `PreTrainedConfig` keys, a ``model_type`` of another
family (a folder of another model loaded into this class) and ``num_labels < 1``.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import typing

from huggingface_hub.dataclasses import strict
from huggingface_hub.errors import StrictDataclassClassValidationError, StrictDataclassFieldValidationError

from ..utils.validation import check_finite_float
from ..utils.validation import check_positive_int as _check_positive_int

__all__ = [
    "ConfigFieldTypeError",
    "ConfigFieldValueError",
    "ConfigValidationError",
    "check_choice",
    "check_config_kwargs",
    "check_positive",
    "check_positive_int",
    "check_probability",
    "resolve_head_dim",
    "standard_config_keys",
    "strict_config",
]


class ConfigFieldTypeError(StrictDataclassFieldValidationError, TypeError):
    """A field of the wrong type (strict's error, also a `TypeError` as the developers' guide asks)."""


class ConfigFieldValueError(StrictDataclassFieldValidationError, ValueError):
    """A field whose value a strict validator refused."""


class ConfigValidationError(StrictDataclassClassValidationError, ValueError):
    """A class-level validator (``validate_*``) refused the configuration."""


# Keys that are not `PreTrainedConfig` fields but that transformers itself reads from a config's keyword arguments
# or writes into config.json files (token ids, remote-code and tokenizer pointers, flags of older versions). The
# fields themselves come from ``PreTrainedConfig().to_dict()`` in `standard_config_keys`.
_STANDARD_EXTRA_KEYS = frozenset({
    "num_labels", "torch_dtype", "name_or_path", "attn_implementation", "experts_implementation",
    "output_attentions", "use_return_dict", "_commit_hash", "per_layer_config", "auto_map", "tokenizer_class",
    "bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "decoder_start_token_id",
    "task_specific_params", "finetuning_task", "prefix", "is_decoder", "add_cross_attention",
    "cross_attention_hidden_size", "tie_encoder_decoder", "torchscript", "use_bfloat16", "pruned_heads",
    "tf_legacy_loss", "_attn_implementation_internal", "_experts_implementation_internal",
})


@functools.cache
def standard_config_keys() -> frozenset:
    """Keys every configuration accepts besides its own fields: `PreTrainedConfig`'s serialised keys, the generation
    parameters transformers pops from a config's kwargs, and `_STANDARD_EXTRA_KEYS`."""
    from transformers import GenerationConfig, PreTrainedConfig

    # transformers drops these itself in `PreTrainedConfig.__post_init__` (old config.json files carry them).
    generation_keys = GenerationConfig._get_default_generation_params().keys()
    return frozenset(PreTrainedConfig().to_dict()) | frozenset(generation_keys) | _STANDARD_EXTRA_KEYS


def check_config_kwargs(config, kwargs: dict) -> None:
    """Refuse keyword arguments that are neither fields of ``config`` nor standard keys (a typo such as
    ``hidden_sise`` would otherwise be kept as a dead attribute), and a ``model_type`` of another family."""
    cls = type(config)
    model_type = kwargs.get("model_type")
    if model_type is not None and model_type != cls.model_type:
        raise ValueError(
            f"`model_type` is {model_type!r}, but {cls.__name__} is for model_type={cls.model_type!r}: this is the "
            f"configuration of another model (load it with its own class, or with AutoConfig / AutoModel)"
        )
    field_names = {field.name for field in dataclasses.fields(cls)}
    allowed = field_names | standard_config_keys() | set(getattr(cls, "sub_configs_defaults", None) or ())
    for key in kwargs:
        if key not in allowed:
            closest = difflib.get_close_matches(key, sorted(field_names), n=1)
            hint = f"; did you mean `{closest[0]}`?" if closest else ""
            raise TypeError(f"{cls.__name__} got an unknown configuration key `{key}` (= {kwargs[key]!r}){hint}")


def strict_config(cls):
    """huggingface_hub's ``@strict`` for a `PreTrainedConfig` subclass, with the whitebox_hf rules (module docstring).

    Every field's annotation is checked by strict at assignment, so a configuration module must not use
    ``from __future__ import annotations``: strict skips annotations it sees as strings.
    """
    cls = strict(cls)
    strict_setattr, strict_validate = cls.__setattr__, cls.validate
    float_fields = {field.name for field in dataclasses.fields(cls)
                    if field.type is float or float in typing.get_args(field.type)}

    def __setattr__(self, name, value):
        if name in float_fields and isinstance(value, int) and not isinstance(value, bool):
            # An integer is a real number (`ista_lambda=1`, `1` in a YAML file): exact as a float, so taken as
            # one; bool, str and other types still fail strict's check below.
            value = float(value)
        try:
            strict_setattr(self, name, value)
        except StrictDataclassFieldValidationError as error:
            if isinstance(error, (TypeError, ValueError)):
                raise
            error_class = ConfigFieldTypeError if isinstance(error.__cause__, TypeError) else ConfigFieldValueError
            raise error_class(field=name, cause=error.__cause__) from error.__cause__

    def validate(self):
        try:
            strict_validate(self)
        except StrictDataclassClassValidationError as error:
            if isinstance(error, ValueError):
                raise
            raise ConfigValidationError(validator=str(error).split("'")[1], cause=error.__cause__) from error.__cause__

    validate.__is_defined_by_strict_decorator__ = True  # lets a subclass carry @strict_config again
    cls.__setattr__, cls.validate = __setattr__, validate

    own_post_init = cls.__post_init__

    @functools.wraps(own_post_init)
    def __post_init__(self, **kwargs):
        check_config_kwargs(self, kwargs)
        if kwargs.get("num_labels") is not None:  # before transformers builds ``id2label`` from it
            _check_positive_int("num_labels", kwargs["num_labels"])
        for field in dataclasses.fields(self):
            check_finite_float(field.name, getattr(self, field.name, None))
        own_post_init(self, **kwargs)
        if self.num_labels is not None:
            _check_positive_int("num_labels", self.num_labels)

    cls.__post_init__ = __post_init__
    return cls


def check_positive_int(config, *names: str) -> None:
    """Each named field of ``config`` must be a positive ``int`` (the one rule, in `whitebox_hf.utils.validation`)."""
    for name in names:
        _check_positive_int(name, getattr(config, name))


def check_positive(config, *names: str) -> None:
    for name in names:
        check_finite_float(name, getattr(config, name))
        if not getattr(config, name) > 0:
            raise ValueError(f"`{name}` must be positive, got {getattr(config, name)!r}")


def check_probability(config, *names: str) -> None:
    for name in names:
        check_finite_float(name, getattr(config, name))
        if not 0.0 <= getattr(config, name) < 1.0:
            raise ValueError(f"`{name}` must be in [0, 1), got {getattr(config, name)!r}")


def check_choice(config, name: str, allowed: tuple) -> None:
    if getattr(config, name) not in allowed:
        raise ValueError(f"`{name}` must be one of {allowed}, got {getattr(config, name)!r}")


def resolve_head_dim(config) -> None:
    """Fill ``head_dim = hidden_size // num_attention_heads`` when unset (which must then divide exactly)."""
    if config.head_dim is None:
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(
                f"`hidden_size` ({config.hidden_size}) must be divisible by `num_attention_heads` "
                f"({config.num_attention_heads}), or set `head_dim` explicitly"
            )
        config.head_dim = config.hidden_size // config.num_attention_heads
    else:
        check_positive_int(config, "head_dim")
