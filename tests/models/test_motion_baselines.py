"""The baselines of the motion prior (`whitebox_hf.models.motion_prior.baselines`) on hand-made windows."""

import pytest
import roma
import torch

from whitebox_hf.data.motion import CPF_OFFSET, CPF_ROTATION, HEAD_INDEX, JOINT_PARENTS
from whitebox_hf.data.motion_kinematics import forward_kinematics, head_poses
from whitebox_hf.models.motion_prior import MotionPriorConfig, MotionPriorModel, pack_motion
from whitebox_hf.models.motion_prior.baselines import (
    MeanPoseMotion,
    NearestNeighbourMotion,
    motion_prior_regression_loss,
    regress_motion,
)
from tests.models.motion_models import TINY


def offsets():
    generator = torch.Generator().manual_seed(0)
    values = 0.1 * torch.randn(22, 3, generator=generator)
    values[0] = 0
    return values


def cpf_poses(local, root):
    """(N, T, 4, 4) head (CPF) poses of bodies by forward kinematics."""
    world, positions = forward_kinematics(local, offsets(), JOINT_PARENTS, root)
    return torch.stack([head_poses(w, p, HEAD_INDEX, torch.tensor(CPF_OFFSET), torch.tensor(CPF_ROTATION))
                        for w, p in zip(world, positions)])


def windows(count=3, frames=6, seed=0):
    """Bodies with random rotations, and their own head poses."""
    torch.manual_seed(seed)
    local = roma.random_rotmat((count, frames, 22))
    return local, cpf_poses(local, torch.randn(count, frames, 3))


def assert_on_the_head(estimate, heads):
    torch.testing.assert_close(cpf_poses(estimate.local_rotations, estimate.root_translation), heads, atol=1e-4,
                               rtol=0)


def test_mean_pose_of_identical_poses_is_that_pose_and_it_follows_the_head():
    local, heads = windows()
    same = local[:1, :1, 1:].expand(3, 6, 21, 3, 3)
    baseline = MeanPoseMotion(same)
    torch.testing.assert_close(baseline.pose, local[0, 0, 1:], atol=1e-5, rtol=0)
    estimate = baseline(heads, offsets())
    assert estimate.positions.shape == (3, 6, 22, 3)
    assert_on_the_head(estimate, heads)
    assert torch.allclose(roma.rotmat_geodesic_distance(estimate.local_rotations[:, :, 1:], same),
                          torch.zeros(3, 6, 21), atol=1e-3)


def test_nearest_neighbour_retrieves_the_training_window_of_the_same_head_motion_under_a_world_yaw():
    local, heads = windows()
    baseline = NearestNeighbourMotion(heads, local[:, :, 1:])
    turn = torch.eye(4).expand(3, 1, 4, 4).clone()
    turn[:, 0, :3, :3] = roma.rotvec_to_rotmat(torch.tensor([0.0, 0.0, 1.0]))
    turn[:, 0, :3, 3] = torch.tensor([2.0, -1.0, 0.0])
    moved = turn @ heads  # yaw and horizontal shift: the invariant features do not change
    assert baseline.indices(moved).tolist() == [0, 1, 2]
    assert baseline.indices(moved.flip(0)).tolist() == [2, 1, 0]
    estimate = baseline(moved, offsets())
    torch.testing.assert_close(estimate.local_rotations[:, :, 1:], local[:, :, 1:])
    assert_on_the_head(estimate, moved)
    with pytest.raises(ValueError, match="frames"):
        baseline.indices(moved[:, :4])


def test_the_regression_baseline_trains_one_pass_and_places_the_root_from_the_head():
    local, heads = windows(count=2)
    model = MotionPriorModel(MotionPriorConfig(**TINY))
    clean = pack_motion(local[:, :, 1:], torch.zeros(2, 6, 4))
    terms = motion_prior_regression_loss(model, clean, heads)
    terms["loss"].backward()
    assert torch.isfinite(terms["loss"]) and model.body_decoder[-1].weight.grad.abs().sum() > 0
    estimate = regress_motion(model.eval(), heads, offsets())
    assert estimate.positions.shape == (2, 6, 22, 3)
    assert_on_the_head(estimate, heads)  # the pelvis is solved from the observed head
    again = regress_motion(model, heads, offsets())
    torch.testing.assert_close(again.positions, estimate.positions)  # deterministic: no sampling
