"""Skeleton kinematics in torch for the motion prior (EgoAllo, book §8.10; spec threed_and_motion.md §3.1-3.2, 3.7).

- `forward_kinematics`: world joint rotations and positions from local rotations (3x3 matrices, the 9D
  representation of spec §3.1), bone offsets in the parent's frame and a root translation.
- `project_to_so3`: the SVD projection U·diag(1, 1, det(UVᵀ))·Vᵀ of predicted 9D rotations onto SO(3) (roma's
  `special_procrustes`), applied at sampling, not in training.
- `slerp_rotations`: element-wise spherical interpolation of rotation matrices (resampling).
- `foot_contacts`: contact labels from joint speeds and heights above the floor.
- `head_poses`: the T x 4 x 4 head (CPF-like) pose from forward kinematics and a fixed offset in the head frame.
- `canonical_head_features`: the per-timestep canonicalised head conditioning of spec §3.2 (22 numbers per frame).

It lives in the data layer (not `whitebox_hf.geometry`, which sits above data) because `whitebox_hf.data.motion`
needs forward kinematics to map the BVH skeletons onto one joint set; models and pipelines import it from here.
It imports only torch, roma and ``whitebox_hf.utils``. World frames are +Z up with the floor at z = 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import roma
import torch

from whitebox_hf.utils.validation import (
    check_finite_tensor,
    check_floating_tensor,
    check_tensor,
)

__all__ = [
    "canonical_head_features",
    "check_parents",
    "check_rigid_poses",
    "foot_contacts",
    "forward_kinematics",
    "head_poses",
    "matrix_to_9d",
    "project_to_so3",
    "rotation_9d_to_matrix",
    "slerp_rotations",
]

HEAD_FEATURE_DIM = 22  # 12 (relative motion, top 3x4) + 1 (height) + 9 (yaw-canonical rotation)


def _check_real(name: str, value, ndim: int | None = None, shape_doc: str | None = None) -> None:
    check_tensor(name, value, ndim=ndim, shape_doc=shape_doc)
    check_floating_tensor(name, value)
    check_finite_tensor(name, value)


def _check_rotations(name: str, value, min_ndim: int = 2) -> None:
    check_tensor(name, value)
    if value.ndim < min_ndim or tuple(value.shape[-2:]) != (3, 3):
        raise ValueError(f"`{name}` must have shape (..., 3, 3), got {tuple(value.shape)}")
    check_floating_tensor(name, value)
    check_finite_tensor(name, value)


def check_parents(name: str, parents, num_joints: int | None = None) -> tuple[int, ...]:
    """A topologically ordered parent list: ``parents[0] == -1`` and ``0 <= parents[j] < j`` for every other j."""
    if isinstance(parents, (str, bytes)) or not isinstance(parents, Sequence) or len(parents) == 0:
        raise ValueError(f"`{name}` must be a non-empty sequence of parent indices, got {parents!r}")
    values = tuple(parents)
    if any(isinstance(p, bool) or not isinstance(p, int) for p in values) or values[0] != -1 or any(
            not 0 <= p < j for j, p in enumerate(values) if j > 0):
        raise ValueError(f"`{name}` must start with -1 and list for each joint j > 0 a parent index in [0, j), got "
                         f"{values!r}")
    if num_joints is not None and len(values) != num_joints:
        raise ValueError(f"`{name}` must list {num_joints} parents (one per joint), got {len(values)}")
    return values


def rotation_9d_to_matrix(rotations_9d: torch.Tensor) -> torch.Tensor:
    """(..., 9) row-major flattened matrices -> (..., 3, 3), unprojected (see `project_to_so3`)."""
    _check_real("rotations_9d", rotations_9d)
    if rotations_9d.shape[-1] != 9:
        raise ValueError(f"`rotations_9d` must have shape (..., 9), got {tuple(rotations_9d.shape)}")
    return rotations_9d.reshape(*rotations_9d.shape[:-1], 3, 3)


def matrix_to_9d(rotations: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 9), row-major."""
    _check_rotations("rotations", rotations)
    return rotations.reshape(*rotations.shape[:-2], 9)


def project_to_so3(matrices: torch.Tensor) -> torch.Tensor:
    """The nearest rotation (Frobenius norm) to each (..., 3, 3) matrix: U·diag(1, 1, det(UVᵀ))·Vᵀ from the SVD,
    so the result is orthonormal with determinant +1 even for a reflection-like input."""
    _check_rotations("matrices", matrices)
    return roma.special_procrustes(matrices)


def slerp_rotations(rotations0: torch.Tensor, rotations1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Element-wise slerp between rotation matrices: ``weights`` (shape = the batch shape of ``rotations0``, or
    broadcastable leading dims given explicitly by the caller) 0 gives ``rotations0``, 1 gives ``rotations1``.

    Computed as R0·exp(w·log(R0ᵀR1)) in unit quaternions along the shortest arc (roma), one weight per element;
    roma's `unitquat_slerp` instead takes one list of steps shared by the whole batch.
    """
    _check_rotations("rotations0", rotations0)
    _check_rotations("rotations1", rotations1)
    if rotations0.shape != rotations1.shape:
        raise ValueError(f"`rotations1` must have the shape of `rotations0` {tuple(rotations0.shape)}, got "
                         f"{tuple(rotations1.shape)}")
    _check_real("weights", weights)
    if tuple(weights.shape) != tuple(rotations0.shape[:-2]):
        raise ValueError(f"`weights` must have shape {tuple(rotations0.shape[:-2])} (one per rotation), got "
                         f"{tuple(weights.shape)}")
    q0 = roma.rotmat_to_unitquat(rotations0)
    q1 = roma.rotmat_to_unitquat(rotations1)
    delta = roma.unitquat_to_rotvec(roma.quat_product(roma.quat_conjugation(q0), q1), shortest_arc=True)
    step = roma.rotvec_to_unitquat(delta * weights.unsqueeze(-1))
    return roma.unitquat_to_rotmat(roma.quat_product(q0, step))


def forward_kinematics(local_rotations: torch.Tensor, offsets: torch.Tensor, parents: Sequence[int],
                       root_translation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """World rotations and positions of a skeleton.

    Args:
        local_rotations: (..., J, 3, 3) rotation of each joint relative to its parent; joint 0's is the root's
            world orientation.
        offsets: (J, 3) or (..., J, 3) position of each joint in its parent's frame (joint 0's is added to the root
            translation).
        parents: J parent indices, topologically ordered (see `check_parents`).
        root_translation: (..., 3) world position of the root's frame origin.

    Returns:
        ``(world_rotations (..., J, 3, 3), positions (..., J, 3))``: p_j = p_parent + R_parent·offset_j and
        R_j = R_parent·local_j.
    """
    _check_rotations("local_rotations", local_rotations, min_ndim=3)
    num_joints = local_rotations.shape[-3]
    parents = check_parents("parents", parents, num_joints)
    _check_real("offsets", offsets)
    if offsets.ndim < 2 or tuple(offsets.shape[-2:]) != (num_joints, 3):
        raise ValueError(f"`offsets` must have shape (J, 3) or (..., J, 3) with J = {num_joints}, got "
                         f"{tuple(offsets.shape)}")
    _check_real("root_translation", root_translation)
    batch = tuple(local_rotations.shape[:-3])
    if tuple(root_translation.shape) != batch + (3,):
        raise ValueError(f"`root_translation` must have shape {batch + (3,)}, got {tuple(root_translation.shape)}")
    for name, value in (("offsets", offsets), ("root_translation", root_translation)):
        if value.dtype != local_rotations.dtype or value.device != local_rotations.device:
            raise TypeError(f"`{name}` must have the dtype and device of `local_rotations` ({local_rotations.dtype}, "
                            f"{local_rotations.device}), got ({value.dtype}, {value.device})")
    offsets = offsets.expand(*batch, num_joints, 3)
    rotations: list[torch.Tensor] = []
    positions: list[torch.Tensor] = []
    for joint, parent in enumerate(parents):
        if parent < 0:
            rotations.append(local_rotations[..., joint, :, :])
            positions.append(root_translation + offsets[..., joint, :])
        else:
            rotations.append(rotations[parent] @ local_rotations[..., joint, :, :])
            positions.append(positions[parent] + (rotations[parent] @ offsets[..., joint, :, None])[..., 0])
    return torch.stack(rotations, dim=-3), torch.stack(positions, dim=-2)


def foot_contacts(positions: torch.Tensor, fps: float, speed_threshold: float = 0.3,
                  height_threshold: float | torch.Tensor = 0.1) -> torch.Tensor:
    """Contact labels (T, F) bool of F foot joints from their (T, F, 3) world positions (metres, +Z up, floor z=0):
    a joint is in contact when its speed is below ``speed_threshold`` m/s and its height below ``height_threshold``
    (a number, or one per joint: ankles sit higher than toes).

    The speed at frame t is |p_{t+1} - p_{t-1}| / (2 dt) (one-sided at the ends), so a foot planted for one frame
    between two moving frames is not labelled as planted by a forward difference alone.
    """
    _check_real("positions", positions, ndim=3, shape_doc="(T, F, 3)")
    if positions.shape[-1] != 3:
        raise ValueError(f"`positions` must have shape (T, F, 3), got {tuple(positions.shape)}")
    if positions.shape[0] < 2:
        raise ValueError(f"`positions` must hold at least 2 frames to measure speeds, got {positions.shape[0]}")
    for name, value in (("fps", fps), ("speed_threshold", speed_threshold)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"`{name}` must be a positive finite number, got {value!r}")
    if isinstance(height_threshold, torch.Tensor):
        _check_real("height_threshold", height_threshold, ndim=1, shape_doc=f"({positions.shape[1]},)")
        if height_threshold.shape[0] != positions.shape[1]:
            raise ValueError(f"`height_threshold` must have shape ({positions.shape[1]},), one per foot joint, got "
                             f"{tuple(height_threshold.shape)}")
    elif isinstance(height_threshold, bool) or not isinstance(height_threshold, (int, float)) or not math.isfinite(
            height_threshold):
        raise ValueError(f"`height_threshold` must be a finite number or a (F,) tensor, got {height_threshold!r}")
    velocity = torch.gradient(positions, spacing=1.0 / fps, dim=0)[0]
    speed = velocity.norm(dim=-1)
    return (speed < speed_threshold) & (positions[..., 2] < height_threshold)


def head_poses(world_rotations: torch.Tensor, positions: torch.Tensor, head_index: int,
               cpf_offset: torch.Tensor, cpf_rotation: torch.Tensor | None = None) -> torch.Tensor:
    """(T, 4, 4) world poses of the CPF-like head frame: the head joint's frame moved by ``cpf_offset`` (3,) in the
    head frame and turned by ``cpf_rotation`` (3, 3), the fixed map from CPF axes to head-joint axes (identity when
    None)."""
    _check_rotations("world_rotations", world_rotations, min_ndim=4)
    if world_rotations.ndim != 4:
        raise ValueError(f"`world_rotations` must have shape (T, J, 3, 3), got {tuple(world_rotations.shape)}")
    _check_real("positions", positions, ndim=3, shape_doc="(T, J, 3)")
    if tuple(positions.shape) != tuple(world_rotations.shape[:2]) + (3,):
        raise ValueError(f"`positions` must have shape {tuple(world_rotations.shape[:2]) + (3,)}, got "
                         f"{tuple(positions.shape)}")
    if isinstance(head_index, bool) or not isinstance(head_index, int) or not 0 <= head_index < positions.shape[1]:
        raise ValueError(f"`head_index` must be a joint index in [0, {positions.shape[1]}), got {head_index!r}")
    _check_real("cpf_offset", cpf_offset, ndim=1, shape_doc="(3,)")
    if cpf_offset.shape[0] != 3:
        raise ValueError(f"`cpf_offset` must have shape (3,), got {tuple(cpf_offset.shape)}")
    rotation = world_rotations[:, head_index]
    if cpf_rotation is not None:
        _check_rotations("cpf_rotation", cpf_rotation)
        if cpf_rotation.ndim != 2:
            raise ValueError(f"`cpf_rotation` must have shape (3, 3), got {tuple(cpf_rotation.shape)}")
        cpf_rotation_world = rotation @ cpf_rotation
    else:
        cpf_rotation_world = rotation
    pose = torch.zeros(rotation.shape[0], 4, 4, dtype=rotation.dtype, device=rotation.device)
    pose[:, :3, :3] = cpf_rotation_world
    pose[:, :3, 3] = positions[:, head_index] + rotation @ cpf_offset
    pose[:, 3, 3] = 1
    return pose


def check_rigid_poses(name: str, poses, tolerance: float = 1e-4) -> None:
    """(..., 4, 4) finite rigid transforms: an orthonormal rotation block with determinant +1 and a last row
    (0, 0, 0, 1)."""
    check_tensor(name, poses)
    if poses.ndim < 2 or tuple(poses.shape[-2:]) != (4, 4):
        raise ValueError(f"`{name}` must have shape (..., 4, 4), got {tuple(poses.shape)}")
    check_floating_tensor(name, poses)
    check_finite_tensor(name, poses)
    rotation = poses[..., :3, :3]
    identity = torch.eye(3, dtype=poses.dtype, device=poses.device)
    orthonormal_error = (rotation.transpose(-1, -2) @ rotation - identity).abs().amax().item()
    determinant = torch.linalg.det(rotation)
    last_row = torch.tensor([0, 0, 0, 1], dtype=poses.dtype, device=poses.device)
    if orthonormal_error > tolerance or bool((determinant < 0).any()) or bool(
            ((poses[..., 3, :] - last_row).abs() > tolerance).any()):
        raise ValueError(f"`{name}` must hold rigid transforms (rotation block orthonormal with det +1, last row "
                         f"0 0 0 1), got a rotation block off orthonormal by {orthonormal_error:.3g}, a minimum "
                         f"determinant of {determinant.min().item():.3g}")


def canonical_head_features(head_poses_world: torch.Tensor) -> torch.Tensor:
    """The per-timestep invariant head conditioning of spec §3.2 for L+1 world CPF poses (L+1, 4, 4) in a +Z-up
    world with the floor at z = 0: (L, 22) features for frames 1..L, each
    [Δ_t = T_{t-1}⁻¹T_t top 3x4 rows (12) ‖ height h_t (1) ‖ R_can·R_t (9)] with f = R_t·e_z (the CPF forward axis)
    and R_can = Rz(-atan2(f_y, f_x)). They do not change under a world yaw or a horizontal shift.
    """
    check_rigid_poses("head_poses_world", head_poses_world)
    if head_poses_world.ndim != 3 or head_poses_world.shape[0] < 2:
        raise ValueError(f"`head_poses_world` must have shape (L+1, 4, 4) with L >= 1, got "
                         f"{tuple(head_poses_world.shape)}")
    previous, current = head_poses_world[:-1], head_poses_world[1:]
    relative = torch.linalg.solve(previous, current)  # T_{t-1}^{-1} T_t, exact for rigid transforms
    rotation = current[:, :3, :3]
    forward = rotation[:, :, 2]
    yaw = torch.atan2(forward[:, 1], forward[:, 0])
    zeros = torch.zeros_like(yaw)
    undo_yaw = roma.rotvec_to_rotmat(torch.stack([zeros, zeros, -yaw], dim=-1))
    return torch.cat([relative[:, :3, :].reshape(-1, 12), current[:, 2, 3, None],
                      (undo_yaw @ rotation).reshape(-1, 9)], dim=-1)
