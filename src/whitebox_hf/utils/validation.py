"""Argument checks shared by every layer (operators, data, models, evaluation), so each rule and its message is
written once. Each raises `ValueError` naming the argument, what it must be and the value it got."""

from __future__ import annotations

__all__ = ["check_positive_int"]


def check_positive_int(name: str, value) -> None:
    """``value`` must be an ``int`` ≥ 1; ``bool`` is refused although it subclasses ``int`` (``True`` as a size
    is a bug, not a 1)."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
