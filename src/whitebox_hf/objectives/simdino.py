"""SimDINO's loss (book §8.2; spec ``ssl_and_generation.md`` §1.3, the authors' ``MCRLoss``).

DINO's prototype head, centering and temperatures are replaced by two explicit terms on unit-norm features:
*alignment* (every student view should agree with every other global teacher view) and *expansion* (the coding
rate of the global views should stay high, which rules out collapse without any heuristic).

    loss = −coeff · mean_{i, j≠i} ⟨t_i, s_j⟩  −  γ · mean_i R_ε((s_i + t_i)/2),   γ = 1/B + 1/d

The total is negative by construction; the two terms are returned separately.

About ε: the authors' ``eps`` divides ZᵀZ directly, so it plays the role of the book's ε². This function takes
the code's ``eps`` (default 0.05, the README command) and passes ε = √eps to `coding_rate`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from ..nn.rate_distortion import coding_rate

__all__ = ["SimDINOLossOutput", "simdino_loss"]


@dataclass
class SimDINOLossOutput:
    """``loss`` (to minimise), ``alignment`` (mean cosine, ↑), ``expansion`` (mean coding rate, ↑), ``gamma``."""

    loss: torch.Tensor
    alignment: torch.Tensor
    expansion: torch.Tensor
    gamma: float


def _check_views(name: str, views) -> tuple[int, int]:
    if not isinstance(views, (list, tuple)) or not views or not all(isinstance(v, torch.Tensor) for v in views):
        raise TypeError(f"`{name}` must be a non-empty list of tensors (one (batch, dim) tensor per view)")
    shapes = {tuple(v.shape) for v in views}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"every view in `{name}` must have the same (batch, dim) shape, got {sorted(shapes)}")
    return next(iter(shapes))


def simdino_loss(
    student_views: list[torch.Tensor],
    teacher_views: list[torch.Tensor],
    eps: float = 0.05,
    coeff: float = 1.0,
    expansion_features: str = "average",
) -> SimDINOLossOutput:
    """SimDINO loss for one batch.

    Args:
        student_views: student features of every view, the global views first (``2 + L`` tensors ``(B, d)``).
        teacher_views: teacher features of the global views (``2`` tensors ``(B, d)``); never differentiated.
        eps: the authors' ``eps`` (= the book's ε²); must be positive.
        coeff: weight of the alignment term.
        expansion_features: ``"average"`` (the code's ``expa_type=1``: rate of (student + teacher)/2 per global
            view) or ``"student"`` (``expa_type=0``: the student's global views only).

    Features are l2-normalised here, as the SimDINO head does.
    """
    batch, dim = _check_views("student_views", student_views)
    teacher_shape = _check_views("teacher_views", teacher_views)
    if teacher_shape != (batch, dim):
        raise ValueError(
            f"`teacher_views` must have the students' shape ({batch}, {dim}), got {teacher_shape}"
        )
    if len(student_views) < len(teacher_views):
        raise ValueError("`student_views` must hold every teacher (global) view first, then the local views")
    if batch < 2:
        raise ValueError(f"SimDINO needs at least two samples per batch for the coding rate, got {batch}")
    if not eps > 0:
        raise ValueError(f"`eps` must be positive, got {eps!r}")
    if expansion_features not in ("average", "student"):
        raise ValueError(f"`expansion_features` must be 'average' or 'student', got {expansion_features!r}")

    students = [F.normalize(v, dim=-1) for v in student_views]
    teachers = [F.normalize(v.detach(), dim=-1) for v in teacher_views]
    cosines = [
        (teacher * student).sum(-1).mean()
        for i, teacher in enumerate(teachers)
        for j, student in enumerate(students)
        if j != i
    ]
    alignment = torch.stack(cosines).mean()
    rates = []
    for i, teacher in enumerate(teachers):
        features = (students[i] + teacher) / 2 if expansion_features == "average" else students[i]
        rates.append(coding_rate(features, eps=math.sqrt(eps)))
    expansion = torch.stack(rates).mean().to(alignment.dtype)
    gamma = (dim + batch) / (dim * batch)  # the code's heuristic balance with one process: 1/B + 1/d
    loss = -coeff * alignment - gamma * expansion
    return SimDINOLossOutput(loss=loss, alignment=alignment.detach(), expansion=expansion.detach(), gamma=gamma)
