"""The exponential-moving-average teacher shared by DINO and SimDINO (spec §1.1)."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["cosine_momentum", "ema_update_"]


def cosine_momentum(step: int, total_steps: int, base: float = 0.996, final: float = 1.0) -> float:
    """Teacher momentum at ``step``: a cosine from ``base`` (step 0) to ``final`` (step ``total_steps``)."""
    if total_steps <= 0:
        raise ValueError(f"`total_steps` must be positive, got {total_steps!r}")
    if not 0.0 <= base <= final <= 1.0:
        raise ValueError(f"need 0 ≤ base ≤ final ≤ 1, got base={base!r}, final={final!r}")
    progress = min(max(step, 0), total_steps) / total_steps
    return final - (final - base) * (math.cos(math.pi * progress) + 1) / 2


@torch.no_grad()
def ema_update_(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """``teacher ← m·teacher + (1 − m)·student`` for every parameter, in place; buffers are copied.

    Raises:
        ValueError: ``momentum`` outside [0, 1], or the two modules do not have the same parameters.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"`momentum` must be in [0, 1], got {momentum!r}")
    teacher_parameters = dict(teacher.named_parameters())
    student_parameters = dict(student.named_parameters())
    if teacher_parameters.keys() != student_parameters.keys():
        raise ValueError("`teacher` and `student` must have the same parameters (the teacher is a copy)")
    for name, parameter in teacher_parameters.items():
        parameter.lerp_(student_parameters[name].detach(), 1.0 - momentum)
    student_buffers = dict(student.named_buffers())
    for name, buffer in teacher.named_buffers():
        buffer.copy_(student_buffers[name])
