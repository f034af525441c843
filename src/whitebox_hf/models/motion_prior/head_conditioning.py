"""The head-pose conditionings compared in the book's Table 8.15 (EgoAllo, spec threed_and_motion.md §3.2), as
per-frame features of a head (CPF) trajectory, and their Fourier encoding.

Every variant maps world head poses ``(B, T, 4, 4)`` (+Z up; optionally a floor height per sequence, subtracted
from the poses' z first) to ``(B, T, D)`` features, one row per frame, so that the condition tokens line up with
the motion tokens of the same window. Variants that need the previous pose treat frame 0 as following itself
(``T_{-1} = T_0``, so its relative motion is the identity and its deltas zero): the windows of
`whitebox_hf.data.load_motion` carry exactly one head pose per motion frame, and dropping frame 0 (EgoAllo feeds
L+1 poses for L frames) would make the condition one frame shorter than the motion it conditions.

=========================  ====  ===========================================================================
variant                    D     per-frame features (T_t = [R_t | p_t], f = R_t e_z the CPF forward axis)
=========================  ====  ===========================================================================
``ours``                   22    `canonical_head_features`: Δ_t = T_{t-1}⁻¹T_t (3x4), h_t, Rz(-yaw(f))·R_t
``absolute_relative``      24    T_t (3x4) ‖ Δ_t (3x4)
``absolute_global_deltas`` 24    T_t (3x4) ‖ R_t R_{t-1}ᵀ (3x3) ‖ p_t − p_{t-1} (3), both in the world frame
``sequence_canonical``     12    T_c·T_t (3x4), T_c the yaw + horizontal shift taking frame 0's forward to +x
                                 and its position to x = y = 0 (height kept)
``absolute``               12    T_t (3x4)
=========================  ====  ===========================================================================

Only ``ours`` is invariant frame by frame to a world yaw and a horizontal shift; ``sequence_canonical`` is too, but
through the first frame of the window (so a window cut elsewhere in the same sequence sees other features).
"""

from __future__ import annotations

import roma
import torch

from ...data.motion_kinematics import canonical_head_features, check_rigid_poses
from ...utils.validation import check_finite_tensor, check_floating_tensor, check_positive_int, check_tensor
from .configuration_motion_prior import HEAD_CONDITIONING_DIMS, HEAD_CONDITIONINGS

__all__ = [
    "check_head_poses",
    "fourier_encode",
    "head_condition_features",
    "head_condition_size",
]


MIN_HEAD_FRAMES = 2  # a relative motion needs two poses


def head_condition_size(head_conditioning: str, num_frequencies: int) -> int:
    """Width of the Fourier-encoded features: D·(1 + 2·num_frequencies) (``ours`` with 3 frequencies: 154)."""
    if head_conditioning not in HEAD_CONDITIONING_DIMS:
        raise ValueError(f"`head_conditioning` must be one of {HEAD_CONDITIONINGS}, got {head_conditioning!r}")
    check_positive_int("num_frequencies", num_frequencies)
    return HEAD_CONDITIONING_DIMS[head_conditioning] * (1 + 2 * num_frequencies)


def fourier_encode(features: torch.Tensor, num_frequencies: int = 3) -> torch.Tensor:
    """``[x, sin 2^k x, cos 2^k x]`` for k = 0..num_frequencies-1 along the last axis (spec §3.2: k = 0..2, so 22
    numbers become 154), laid out as [x ‖ sin(2⁰x) ‖ … ‖ cos(2⁰x) ‖ …]."""
    check_tensor("features", features)
    check_floating_tensor("features", features)
    check_positive_int("num_frequencies", num_frequencies)
    scales = 2.0 ** torch.arange(num_frequencies, dtype=features.dtype, device=features.device)
    scaled = (features[..., None, :] * scales[:, None]).flatten(-2)
    return torch.cat([features, torch.sin(scaled), torch.cos(scaled)], dim=-1)


def _yaw_rotation(yaw: torch.Tensor) -> torch.Tensor:
    zeros = torch.zeros_like(yaw)
    return roma.rotvec_to_rotmat(torch.stack([zeros, zeros, yaw], dim=-1))


def check_head_poses(head_poses: torch.Tensor, floor_height: torch.Tensor | None = None) -> None:
    """``head_poses`` (B, T, 4, 4) finite rigid transforms with T >= 2; ``floor_height`` None or (B,) finite."""
    check_tensor("head_poses", head_poses, ndim=4, shape_doc="(batch, frames, 4, 4)")
    check_rigid_poses("head_poses", head_poses)
    if head_poses.shape[1] < MIN_HEAD_FRAMES:
        raise ValueError(f"`head_poses` must hold at least {MIN_HEAD_FRAMES} frames (a relative motion needs two "
                         f"poses), got {head_poses.shape[1]}")
    if floor_height is not None:
        check_tensor("floor_height", floor_height, ndim=1, shape_doc=f"({head_poses.shape[0]},)")
        check_floating_tensor("floor_height", floor_height)
        check_finite_tensor("floor_height", floor_height)
        if floor_height.shape[0] != head_poses.shape[0] or floor_height.dtype != head_poses.dtype:
            raise ValueError(f"`floor_height` must have shape ({head_poses.shape[0]},) (one per sequence) and the "
                             f"dtype of `head_poses` ({head_poses.dtype}), got {tuple(floor_height.shape)} "
                             f"{floor_height.dtype}")


def head_condition_features(head_poses: torch.Tensor, head_conditioning: str = "ours",
                            floor_height: torch.Tensor | None = None) -> torch.Tensor:
    """Raw per-frame features ``(B, T, D)`` of world head poses ``(B, T, 4, 4)`` for one of `HEAD_CONDITIONINGS`
    (module docstring), after subtracting ``floor_height`` (B,) from the poses' z (None: the floor is at z = 0)."""
    if head_conditioning not in HEAD_CONDITIONING_DIMS:
        raise ValueError(f"`head_conditioning` must be one of {HEAD_CONDITIONINGS}, got {head_conditioning!r}")
    check_head_poses(head_poses, floor_height)
    if floor_height is not None:
        head_poses = head_poses.clone()
        head_poses[:, :, 2, 3] -= floor_height[:, None]
    # T_{-1} = T_0: frame 0 follows itself (module docstring).
    padded = torch.cat([head_poses[:, :1], head_poses], dim=1)
    previous, current = padded[:, :-1], padded[:, 1:]
    absolute = current[:, :, :3, :].flatten(-2)
    if head_conditioning == "ours":
        return torch.stack([canonical_head_features(sequence) for sequence in padded])
    if head_conditioning == "absolute":
        return absolute
    if head_conditioning == "absolute_relative":
        relative = torch.linalg.solve(previous, current)  # T_{t-1}⁻¹ T_t, exact for rigid transforms
        return torch.cat([absolute, relative[:, :, :3, :].flatten(-2)], dim=-1)
    if head_conditioning == "absolute_global_deltas":
        rotation_delta = current[:, :, :3, :3] @ previous[:, :, :3, :3].transpose(-1, -2)
        translation_delta = current[:, :, :3, 3] - previous[:, :, :3, 3]
        return torch.cat([absolute, rotation_delta.flatten(-2), translation_delta], dim=-1)
    # sequence_canonical: one yaw and horizontal shift per sequence, from its first frame.
    forward = head_poses[:, 0, :3, 2]
    undo_yaw = _yaw_rotation(-torch.atan2(forward[:, 1], forward[:, 0]))
    canonical = torch.zeros_like(head_poses[:, 0])
    canonical[:, :3, :3] = undo_yaw
    origin = head_poses[:, 0, :3, 3].clone()
    origin[:, 2] = 0
    canonical[:, :3, 3] = -(undo_yaw @ origin[..., None])[..., 0]
    canonical[:, 3, 3] = 1
    return (canonical[:, None] @ head_poses)[:, :, :3, :].flatten(-2)
