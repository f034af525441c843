"""Checks shared by every whitebox_hf configuration: each raises `ValueError` naming the field."""

from __future__ import annotations

from ..utils.validation import check_positive_int as _check_positive_int

__all__ = ["check_choice", "check_positive", "check_positive_int", "check_probability", "resolve_head_dim"]


def check_positive_int(config, *names: str) -> None:
    """Each named field of ``config`` must be a positive ``int`` (the one rule, in `whitebox_hf.utils.validation`)."""
    for name in names:
        _check_positive_int(name, getattr(config, name))


def check_positive(config, *names: str) -> None:
    for name in names:
        if not getattr(config, name) > 0:
            raise ValueError(f"`{name}` must be positive, got {getattr(config, name)!r}")


def check_probability(config, *names: str) -> None:
    for name in names:
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
