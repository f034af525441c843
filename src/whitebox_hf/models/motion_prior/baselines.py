"""The baselines EgoAllo's motion prior must beat (issue 16, item 8; spec threed_and_motion.md §4 "EgoAllo"), each
giving body rotations that `place_root_from_head` puts on the observed head, exactly as the prior's samples are:

* (e) `regress_motion` / `motion_prior_regression_loss`: a black-box transformer of the prior's own size that
  regresses the body from the head trajectory in one pass, no diffusion: the same `MotionPriorModel`, always fed
  a zero motion at the top noise level (so its noise token is a constant and its motion input carries nothing), and
  trained on the plain x₀ loss. Same parameters, same conditioning, no sampling.
* (f) `NearestNeighbourMotion`: the training window whose head features (a `head_condition_features` variant,
  flattened over the window) are nearest in Euclidean distance; its body rotations are copied.
* (g) `MeanPoseMotion`: the mean training pose (each joint's mean local rotation projected onto SO(3)), the same in
  every frame, rigidly attached to the head.
"""

from __future__ import annotations

import torch

from ...data.motion_kinematics import project_to_so3
from ...utils.validation import check_finite_tensor, check_floating_tensor, check_tensor
from .head_conditioning import check_head_poses, head_condition_features
from .modeling_motion_prior import (
    MotionPriorModel,
    MotionSample,
    _check_motion,
    _project_motion,
    motion_prior_loss,
    motion_prior_scheduler,
    place_root_from_head,
    unpack_motion,
)

__all__ = ["MeanPoseMotion", "NearestNeighbourMotion", "motion_prior_regression_loss", "regress_motion"]


def _check_body(name: str, value) -> None:
    check_tensor(name, value, ndim=5, shape_doc="(N, T, J-1, 3, 3)")
    check_floating_tensor(name, value)
    check_finite_tensor(name, value)
    if tuple(value.shape[-2:]) != (3, 3):
        raise ValueError(f"`{name}` must have shape (N, T, J-1, 3, 3), got {tuple(value.shape)}")


def _regression_inputs(model: MotionPriorModel, head_poses: torch.Tensor):
    config = model.config
    batch, frames = head_poses.shape[:2]
    parameter = next(model.parameters())
    sample = torch.zeros(batch, frames, config.motion_size, dtype=parameter.dtype, device=parameter.device)
    timestep = torch.full((batch,), config.num_train_timesteps - 1, dtype=torch.long, device=parameter.device)
    return sample, timestep


def motion_prior_regression_loss(model: MotionPriorModel, clean: torch.Tensor, head_poses: torch.Tensor,
                                 floor_height: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Baseline (e)'s loss: the model's output for a zero motion at the top noise level against the clean motion
    ``clean`` (B, T, motion_size), with `motion_prior_loss`'s per-modality weights; every sequence at the same
    step, so the noise-level weight is one constant factor. Returns ``{"body", "contacts", "loss"}``."""
    _check_motion("clean", clean, model.config)
    sample, timestep = _regression_inputs(model, head_poses)
    predicted = model(sample.to(clean.dtype), timestep, head_poses, floor_height).sample
    alphas_cumprod = motion_prior_scheduler(model.config).alphas_cumprod.to(clean.device)
    return motion_prior_loss(predicted, clean, timestep, alphas_cumprod, model.config)


@torch.no_grad()
def regress_motion(model: MotionPriorModel, head_poses: torch.Tensor, offsets: torch.Tensor,
                   floor_height: torch.Tensor | None = None) -> MotionSample:
    """Baseline (e)'s estimate: one forward pass, rotations projected onto SO(3), the pelvis placed from the head."""
    check_head_poses(head_poses, floor_height)
    sample, timestep = _regression_inputs(model, head_poses)
    head = head_poses.to(sample.dtype)
    floor = None if floor_height is None else floor_height.to(sample.dtype)
    clean = _project_motion(model(sample, timestep, head, floor).sample, model.config)
    body, contacts = unpack_motion(clean, model.config)
    local, root, positions = place_root_from_head(body, offsets.to(sample.dtype), head)
    return MotionSample(local_rotations=local, root_translation=root, positions=positions, contacts=contacts,
                        motion=clean)


def _placed(body: torch.Tensor, offsets: torch.Tensor, head_poses: torch.Tensor) -> MotionSample:
    body = body.to(head_poses.dtype)
    local, root, positions = place_root_from_head(body, offsets.to(head_poses.dtype), head_poses)
    return MotionSample(local_rotations=local, root_translation=root, positions=positions)


class MeanPoseMotion:
    """Baseline (g): the mean training pose, rigidly attached to the head.

    Args:
        body_rotations: (N, T, J-1, 3, 3) local rotations of the training windows (joints after the pelvis).
    """

    def __init__(self, body_rotations: torch.Tensor):
        _check_body("body_rotations", body_rotations)
        # The chordal L2 mean of rotations: the SO(3) projection of the arithmetic mean of the matrices.
        self.pose = project_to_so3(body_rotations.double().mean(dim=(0, 1))).float()

    def __call__(self, head_poses: torch.Tensor, offsets: torch.Tensor) -> MotionSample:
        check_head_poses(head_poses)
        batch, frames = head_poses.shape[:2]
        body = self.pose.expand(batch, frames, *self.pose.shape)
        return _placed(body, offsets, head_poses)


class NearestNeighbourMotion:
    """Baseline (f): nearest-neighbour retrieval on the head conditioning features over the training windows.

    Args:
        head_poses: (N, T, 4, 4) world head poses of the training windows.
        body_rotations: (N, T, J-1, 3, 3) their local body rotations.
        head_conditioning: the `head_condition_features` variant compared (default ``"ours"``, the invariant one).
        floor_height: (N,) floors of the training windows (None: z = 0).
    """

    def __init__(self, head_poses: torch.Tensor, body_rotations: torch.Tensor, head_conditioning: str = "ours",
                 floor_height: torch.Tensor | None = None):
        _check_body("body_rotations", body_rotations)
        check_head_poses(head_poses, floor_height)
        if tuple(head_poses.shape[:2]) != tuple(body_rotations.shape[:2]):
            raise ValueError(f"`head_poses` must have the (N, T) of `body_rotations` "
                             f"{tuple(body_rotations.shape[:2])}, got {tuple(head_poses.shape[:2])}")
        self.head_conditioning = head_conditioning
        self.features = head_condition_features(head_poses, head_conditioning, floor_height).flatten(1).double()
        self.body_rotations = body_rotations
        self.frames = head_poses.shape[1]

    def indices(self, head_poses: torch.Tensor, floor_height: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) index of the nearest training window of each query window."""
        check_head_poses(head_poses, floor_height)
        if head_poses.shape[1] != self.frames:
            raise ValueError(f"`head_poses` must hold windows of the training windows' {self.frames} frames, got "
                             f"{head_poses.shape[1]}")
        query = head_condition_features(head_poses, self.head_conditioning, floor_height).flatten(1).double()
        return torch.cdist(query, self.features).argmin(dim=1)

    def __call__(self, head_poses: torch.Tensor, offsets: torch.Tensor,
                 floor_height: torch.Tensor | None = None) -> MotionSample:
        body = self.body_rotations[self.indices(head_poses, floor_height)]
        return _placed(body, offsets, head_poses)

