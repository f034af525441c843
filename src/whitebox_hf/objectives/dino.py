"""The DINO baseline (Caron et al. 2021; spec ``ssl_and_generation.md`` §1.2): prototype head and loss."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["DINOHead", "DINOLoss"]


class DINOHead(nn.Module):
    """MLP (``in → hidden → hidden → bottleneck``, GELU), l2-normalisation, then a weight-normalised linear layer
    onto ``num_prototypes`` without bias. With ``norm_last_layer`` the weight-norm gain is fixed at 1.

    ``num_prototypes`` is 65536 in the paper; CPU runs use fewer (a documented deviation). With
    ``num_prototypes=0`` the head stops at the normalised bottleneck: SimDINO's head.
    """

    def __init__(
        self,
        in_dim: int,
        num_prototypes: int = 65536,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        norm_last_layer: bool = True,
    ):
        super().__init__()
        for name, value in (("in_dim", in_dim), ("hidden_dim", hidden_dim), ("bottleneck_dim", bottleneck_dim)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
        if not isinstance(num_prototypes, int) or num_prototypes < 0:
            raise ValueError(f"`num_prototypes` must be a non-negative integer, got {num_prototypes!r}")
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim), nn.GELU(),
            nn.Linear(hidden_dim, hidden_dim), nn.GELU(),
            nn.Linear(hidden_dim, bottleneck_dim),
        )
        for module in self.mlp:
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        self.last_layer = None
        if num_prototypes:
            self.last_layer = nn.utils.parametrizations.weight_norm(
                nn.Linear(bottleneck_dim, num_prototypes, bias=False)
            )
            self.last_layer.parametrizations.weight.original0.data.fill_(1.0)
            if norm_last_layer:
                self.last_layer.parametrizations.weight.original0.requires_grad_(False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        bottleneck = F.normalize(self.mlp(features), dim=-1)
        return bottleneck if self.last_layer is None else self.last_layer(bottleneck)


class DINOLoss(nn.Module):
    """Cross-entropy between the centred, sharpened teacher and the student over all (teacher view i, student
    view j ≠ i) pairs, with the centre updated by EMA after each call.

    Args:
        num_prototypes: output width of the head (size of the centre).
        student_temperature: τ_s (0.1).
        teacher_temperature: final τ_t (0.04 by default; 0.07 in the "boosted" recipe).
        warmup_teacher_temperature: τ_t at step 0, warmed up linearly over ``warmup_steps``.
        warmup_steps: length of the teacher-temperature warm-up (0: none).
        center_momentum: EMA momentum of the centre (0.9).
    """

    def __init__(
        self,
        num_prototypes: int,
        student_temperature: float = 0.1,
        teacher_temperature: float = 0.04,
        warmup_teacher_temperature: float = 0.04,
        warmup_steps: int = 0,
        center_momentum: float = 0.9,
    ):
        super().__init__()
        for name, value in (("student_temperature", student_temperature), ("teacher_temperature", teacher_temperature),
                            ("warmup_teacher_temperature", warmup_teacher_temperature)):
            if not value > 0:
                raise ValueError(f"`{name}` must be positive, got {value!r}")
        if not 0.0 <= center_momentum < 1.0:
            raise ValueError(f"`center_momentum` must be in [0, 1), got {center_momentum!r}")
        self.student_temperature = student_temperature
        self.teacher_temperature = teacher_temperature
        self.warmup_teacher_temperature = warmup_teacher_temperature
        self.warmup_steps = warmup_steps
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, num_prototypes))

    def teacher_temperature_at(self, step: int) -> float:
        if self.warmup_steps and step < self.warmup_steps:
            fraction = step / self.warmup_steps
            return self.warmup_teacher_temperature + fraction * (self.teacher_temperature - self.warmup_teacher_temperature)
        return self.teacher_temperature

    def forward(self, student_views: list[torch.Tensor], teacher_views: list[torch.Tensor], step: int = 0) -> torch.Tensor:
        if not student_views or not teacher_views:
            raise ValueError("`student_views` and `teacher_views` must be non-empty lists of (batch, prototypes)")
        for view in (*student_views, *teacher_views):
            if view.ndim != 2 or view.shape[-1] != self.center.shape[-1]:
                raise ValueError(
                    f"every view must be (batch, {self.center.shape[-1]}), got {tuple(view.shape)}"
                )
        temperature = self.teacher_temperature_at(step)
        teacher_logits = torch.cat([v.detach() for v in teacher_views]).float()
        teacher_probabilities = F.softmax((teacher_logits - self.center) / temperature, dim=-1)
        teacher_probabilities = teacher_probabilities.chunk(len(teacher_views))
        losses = []
        for i, target in enumerate(teacher_probabilities):
            for j, student in enumerate(student_views):
                if j == i:
                    continue
                log_probabilities = F.log_softmax(student.float() / self.student_temperature, dim=-1)
                losses.append(-(target * log_probabilities).sum(-1).mean())
        with torch.no_grad():
            batch_center = teacher_logits.mean(dim=0, keepdim=True)
            self.center.mul_(self.center_momentum).add_(batch_center, alpha=1 - self.center_momentum)
        return torch.stack(losses).mean()
