"""Skeleton kinematics in torch (whitebox_hf.data.motion_kinematics): forward kinematics on a hand-computed chain,
SVD projection to SO(3), slerp, foot contacts on a synthetic walk, head poses and the invariances of the
canonicalised head features (spec threed_and_motion.md §3.2), and clear errors on bad input."""

import math

import pytest
import roma
import torch

from whitebox_hf.data import (
    canonical_head_features,
    foot_contacts,
    forward_kinematics,
    head_poses,
    project_to_so3,
    slerp_rotations,
)
from whitebox_hf.data.motion_kinematics import (
    check_rigid_poses,
    matrix_to_9d,
    rotation_9d_to_matrix,
)


def rz(angle: float) -> torch.Tensor:
    return roma.rotvec_to_rotmat(torch.tensor([0.0, 0.0, angle], dtype=torch.float64))


def rx(angle: float) -> torch.Tensor:
    return roma.rotvec_to_rotmat(torch.tensor([angle, 0.0, 0.0], dtype=torch.float64))


def test_forward_kinematics_of_a_hand_computed_chain():
    # Root at (1, 0, 0) turned 90° about z; joint 1 one unit along the root's x; joint 2 one unit along joint 1's x,
    # joint 1 turned another 90° about z; joint 3 branches off the root, 2 units along its z.
    local = torch.stack([rz(math.pi / 2), rz(math.pi / 2), torch.eye(3, dtype=torch.float64),
                         rx(0.3)])[None]
    offsets = torch.tensor([[0.0, 0, 0], [1, 0, 0], [1, 0, 0], [0, 0, 2]], dtype=torch.float64)
    rotations, positions = forward_kinematics(local, offsets, [-1, 0, 1, 0],
                                              torch.tensor([[1.0, 0, 0]], dtype=torch.float64))
    # Root x axis -> world +y: joint 1 at (1, 1, 0); joint 1's x axis -> world -x: joint 2 at (0, 1, 0).
    expected = torch.tensor([[1.0, 0, 0], [1, 1, 0], [0, 1, 0], [1, 0, 2]], dtype=torch.float64)
    torch.testing.assert_close(positions[0], expected)
    torch.testing.assert_close(rotations[0, 2], rz(math.pi))
    torch.testing.assert_close(rotations[0, 3], rz(math.pi / 2) @ rx(0.3))
    # Batched: a (T, B) batch gives the same answer per element.
    _, batched_p = forward_kinematics(local.expand(2, 3, 4, 3, 3), offsets, [-1, 0, 1, 0],
                                              torch.tensor([1.0, 0, 0], dtype=torch.float64).expand(2, 3, 3))
    torch.testing.assert_close(batched_p[1, 2], expected)


def test_forward_kinematics_refuses_bad_input():
    local = torch.eye(3).expand(4, 3, 3, 3).clone()
    offsets, root = torch.zeros(3, 3), torch.zeros(4, 3)
    forward_kinematics(local, offsets, [-1, 0, 1], root)
    bad = local.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="`local_rotations` must be finite"):
        forward_kinematics(bad, offsets, [-1, 0, 1], root)
    with pytest.raises(ValueError, match="`local_rotations` must have shape"):
        forward_kinematics(local[..., :2], offsets, [-1, 0, 1], root)
    with pytest.raises(ValueError, match="`offsets` must have shape"):
        forward_kinematics(local, torch.zeros(2, 3), [-1, 0, 1], root)
    with pytest.raises(ValueError, match="`root_translation` must have shape"):
        forward_kinematics(local, offsets, [-1, 0, 1], torch.zeros(3, 3))
    with pytest.raises(ValueError, match="`parents`"):
        forward_kinematics(local, offsets, [-1, 2, 0], root)
    with pytest.raises(ValueError, match="`parents` must list 3 parents"):
        forward_kinematics(local, offsets, [-1, 0], root)
    with pytest.raises(TypeError, match="`offsets` must have the dtype"):
        forward_kinematics(local, offsets.double(), [-1, 0, 1], root)
    with pytest.raises(TypeError, match="`local_rotations` must be a floating-point"):
        forward_kinematics(local.long(), offsets, [-1, 0, 1], root)


def test_svd_projection_gives_rotations():
    generator = torch.Generator().manual_seed(0)
    matrices = torch.randn(64, 3, 3, generator=generator, dtype=torch.float64)
    matrices[:8] = -torch.eye(3, dtype=torch.float64)  # reflections: det -1, the naive U Vᵀ would stay one
    rotations = project_to_so3(matrices)
    torch.testing.assert_close(rotations.transpose(-1, -2) @ rotations, torch.eye(3, dtype=torch.float64).expand(
        64, 3, 3))
    torch.testing.assert_close(torch.linalg.det(rotations), torch.ones(64, dtype=torch.float64))
    exact = roma.random_rotmat(5, dtype=torch.float64, generator=generator)
    torch.testing.assert_close(project_to_so3(exact + 1e-3 * torch.randn(5, 3, 3, generator=generator,
                                                                           dtype=torch.float64)), exact, atol=3e-3,
                               rtol=0)
    torch.testing.assert_close(rotation_9d_to_matrix(matrix_to_9d(exact)), exact)
    with pytest.raises(ValueError, match="`matrices` must be finite"):
        project_to_so3(torch.full((2, 3, 3), float("inf")))
    with pytest.raises(ValueError, match=r"`matrices` must have shape \(\.\.\., 3, 3\)"):
        project_to_so3(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="`rotations_9d`"):
        rotation_9d_to_matrix(torch.zeros(2, 8))


def test_slerp_rotations():
    start = torch.stack([rz(0.0), rx(0.2)])
    end = torch.stack([rz(1.0), rx(-0.4)])
    torch.testing.assert_close(slerp_rotations(start, end, torch.zeros(2, dtype=torch.float64)), start)
    torch.testing.assert_close(slerp_rotations(start, end, torch.ones(2, dtype=torch.float64)), end)
    middle = slerp_rotations(start, end, torch.tensor([0.25, 0.5], dtype=torch.float64))
    torch.testing.assert_close(middle, torch.stack([rz(0.25), rx(-0.1)]))
    with pytest.raises(ValueError, match="`weights` must have shape"):
        slerp_rotations(start, end, torch.zeros(3, dtype=torch.float64))


def walking_feet(fps: int = 30, seconds: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two toe joints walking along +x at 1 m/s: each is planted on the floor for half a 1 s stride and swings
    (2 m/s forward, lifted up to 10 cm) for the other half, out of phase. Returns (T, 2, 3) and the planted mask."""
    t = torch.arange(int(seconds * fps), dtype=torch.float64) / fps
    positions, planted = [], []
    for phase in (0.0, 0.5):
        cycle = torch.remainder(t + phase, 1.0)
        stride = torch.floor(t + phase)
        swing = cycle >= 0.5
        progress = torch.where(swing, (cycle - 0.5) * 2, torch.zeros_like(cycle))
        x = stride * 1.0 + progress * 1.0
        z = torch.where(swing, 0.1 * torch.sin(math.pi * progress), torch.zeros_like(cycle))
        positions.append(torch.stack([x, torch.full_like(x, 0.1 if phase else -0.1), z], dim=-1))
        planted.append(~swing)
    return torch.stack(positions, dim=1), torch.stack(planted, dim=1)


def test_foot_contacts_on_a_synthetic_walk():
    positions, planted = walking_feet()
    contacts = foot_contacts(positions, fps=30, speed_threshold=0.3, height_threshold=0.05)
    # Away from the lift-off and touch-down frames (where the central difference mixes both phases), the labels
    # are exactly the planted phases.
    boundary = torch.zeros_like(planted)
    boundary[1:] |= planted[1:] != planted[:-1]
    boundary[:-1] |= planted[1:] != planted[:-1]
    assert torch.equal(contacts[~boundary], planted[~boundary])
    assert 0.3 < contacts.float().mean() < 0.6
    # Lifted by 20 cm, nothing touches the floor.
    assert not foot_contacts(positions + torch.tensor([0.0, 0.0, 0.2], dtype=torch.float64), 30).any()
    per_joint = foot_contacts(positions, 30, height_threshold=torch.tensor([0.05, -1.0], dtype=torch.float64))
    assert per_joint[:, 0].any() and not per_joint[:, 1].any()
    with pytest.raises(ValueError, match="`fps`"):
        foot_contacts(positions, 0)
    with pytest.raises(ValueError, match="`positions` must be finite"):
        foot_contacts(positions * float("nan"), 30)
    with pytest.raises(ValueError, match="`positions` must have shape"):
        foot_contacts(positions[..., :2], 30)
    with pytest.raises(ValueError, match="`height_threshold` must have shape"):
        foot_contacts(positions, 30, height_threshold=torch.zeros(3, dtype=torch.float64))


def random_head_trajectory(length: int = 20, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    rotations = roma.rotvec_to_rotmat(0.4 * torch.randn(length, 3, generator=generator, dtype=torch.float64))
    poses = torch.eye(4, dtype=torch.float64).repeat(length, 1, 1)
    poses[:, :3, :3] = rotations
    poses[:, :3, 3] = torch.cumsum(0.05 * torch.randn(length, 3, generator=generator, dtype=torch.float64), 0)
    poses[:, 2, 3] += 1.6
    return poses


def test_head_poses_from_forward_kinematics():
    world = torch.stack([torch.eye(3, dtype=torch.float64), rz(math.pi / 2)])[None].repeat(3, 1, 1, 1)
    positions = torch.tensor([[0.0, 0, 0], [0, 0, 1.5]], dtype=torch.float64).repeat(3, 1, 1)
    cpf_rotation = rx(-math.pi / 2)
    poses = head_poses(world, positions, 1, torch.tensor([0.1, 0.0, 0.1], dtype=torch.float64), cpf_rotation)
    assert poses.shape == (3, 4, 4)
    check_rigid_poses("poses", poses)
    torch.testing.assert_close(poses[0, :3, 3], torch.tensor([0.0, 0.1, 1.6], dtype=torch.float64))
    torch.testing.assert_close(poses[0, :3, :3], rz(math.pi / 2) @ cpf_rotation)
    with pytest.raises(ValueError, match="`head_index`"):
        head_poses(world, positions, 2, torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="`cpf_offset` must have shape"):
        head_poses(world, positions, 1, torch.zeros(2, dtype=torch.float64))


def test_canonical_head_features_are_invariant_to_yaw_and_horizontal_shifts():
    poses = random_head_trajectory()
    features = canonical_head_features(poses)
    assert features.shape == (19, 22)
    moved = torch.eye(4, dtype=torch.float64)
    moved[:3, :3] = rz(1.1)
    moved[:3, 3] = torch.tensor([3.0, -2.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(canonical_head_features(moved @ poses), features)
    # The height is kept: a vertical shift changes feature 12 (h_t) by the shift and nothing else.
    lifted = poses.clone()
    lifted[:, 2, 3] += 0.3
    difference = canonical_head_features(lifted) - features
    torch.testing.assert_close(difference[:, 12], torch.full((19,), 0.3, dtype=torch.float64))
    assert difference[:, torch.arange(22) != 12].abs().max() < 1e-12
    # Pitch relative to gravity is kept: a world pitch changes the features.
    pitched = torch.eye(4, dtype=torch.float64)
    pitched[:3, :3] = rx(0.5)
    assert (canonical_head_features(pitched @ poses) - features).abs().max() > 0.1
    # Bad input: non-rigid and non-finite poses, too short a trajectory.
    scaled = poses.clone()
    scaled[3, :3, :3] *= 1.5
    with pytest.raises(ValueError, match="`head_poses_world` must hold rigid transforms"):
        canonical_head_features(scaled)
    broken = poses.clone()
    broken[2, 0, 3] = float("nan")
    with pytest.raises(ValueError, match="`head_poses_world` must be finite"):
        canonical_head_features(broken)
    with pytest.raises(ValueError, match=r"`head_poses_world` must have shape \(L\+1, 4, 4\)"):
        canonical_head_features(poses[:1])
