"""EgoAllo guidance (`whitebox_hf.models.motion_prior.guidance`): the Levenberg-Marquardt solve lowers each residual
it is given, leaves x̂₀ alone when only the prior speaks, stops a sliding planted foot, and its pelvis placement is
`place_root_from_head`'s."""

import roma
import torch

from whitebox_hf.data.motion import FOOT_JOINTS, JOINT_NAMES
from whitebox_hf.models.motion_prior import place_root_from_head
from whitebox_hf.models.motion_prior.guidance import (
    GUIDANCE_TERMS,
    MotionGuidanceConfig,
    _pose_from_head,
    guidance_costs,
    guide_motion,
)

B, T = 2, 10


def skeleton_offsets():
    """A hand-made 22-joint skeleton in metres (z up, facing -y), roughly human."""
    offsets = torch.zeros(len(JOINT_NAMES), 3, dtype=torch.float64)
    table = {
        "pelvis": (0, 0, 0.95), "left_hip": (0.09, 0, -0.06), "right_hip": (-0.09, 0, -0.06),
        "spine1": (0, 0, 0.1), "left_knee": (0, 0, -0.42), "right_knee": (0, 0, -0.42), "spine2": (0, 0, 0.12),
        "left_ankle": (0, 0, -0.4), "right_ankle": (0, 0, -0.4), "spine3": (0, 0, 0.12),
        "left_foot": (0, -0.14, -0.05), "right_foot": (0, -0.14, -0.05), "neck": (0, 0, 0.15),
        "left_collar": (0.05, 0, 0.1), "right_collar": (-0.05, 0, 0.1), "head": (0, 0, 0.1),
        "left_shoulder": (0.12, 0, 0), "right_shoulder": (-0.12, 0, 0), "left_elbow": (0.27, 0, 0),
        "right_elbow": (-0.27, 0, 0), "left_wrist": (0.25, 0, 0), "right_wrist": (-0.25, 0, 0),
    }
    for name, value in table.items():
        offsets[JOINT_NAMES.index(name)] = torch.tensor(value, dtype=torch.float64)
    return offsets


def head_track(batch=B, frames=T, speed=0.03):
    poses = torch.eye(4, dtype=torch.float64).repeat(batch, frames, 1, 1)
    base = torch.tensor([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]], dtype=torch.float64)  # CPF z forward -> +x
    poses[:, :, :3, :3] = base
    poses[:, :, 0, 3] = speed * torch.arange(frames, dtype=torch.float64)
    poses[:, :, 2, 3] = 1.6
    return poses


def noisy_rotations(batch=B, frames=T, scale=0.3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    rotvec = scale * torch.randn(batch, frames, len(JOINT_NAMES) - 1, 3, generator=generator, dtype=torch.float64)
    return roma.rotvec_to_rotmat(rotvec)


def test_pose_from_head_is_place_root_from_head():
    rotations, offsets, head = noisy_rotations(), skeleton_offsets(), head_track()
    local, _, positions = place_root_from_head(rotations, offsets, head)
    from whitebox_hf.data.motion import CPF_OFFSET, CPF_ROTATION
    world, mine = _pose_from_head(rotations, offsets.expand(B, -1, -1)[:, None], head,
                                  torch.tensor(CPF_OFFSET, dtype=torch.float64),
                                  torch.tensor(CPF_ROTATION, dtype=torch.float64))
    torch.testing.assert_close(mine, positions)
    torch.testing.assert_close(world[:, :, 0], local[:, :, 0])


def test_each_residual_falls():
    rotations, offsets, head = noisy_rotations(), skeleton_offsets(), head_track()
    contacts = torch.ones(B, T, len(FOOT_JOINTS), dtype=torch.float64)
    wrists = torch.zeros(B, T, 2, 3, dtype=torch.float64)
    wrists[..., 2] = 1.0
    wrists[:, :, 0, 0], wrists[:, :, 1, 0] = 0.3, -0.3
    wrist_rotations = torch.eye(3, dtype=torch.float64).expand(B, T, 2, 3, 3).contiguous()
    config = MotionGuidanceConfig(cg_iterations=30)
    # Start from the noisy rotations but hold the prior at a smooth pose, so every term, the prior's too, has work.
    prior = noisy_rotations(scale=0.05, seed=1)
    arguments = dict(offsets=offsets, head_poses=head, contacts=contacts, config=config, prior_rotations=prior,
                     wrist_positions=wrists, wrist_rotations=wrist_rotations)
    before = guidance_costs(rotations, **arguments)
    assert set(before) == set(GUIDANCE_TERMS)
    for term in GUIDANCE_TERMS:
        # Each term alone (with the prior rotation term, which keeps the problem well posed): its cost falls.
        weights = {f"{t}_weight": 0.0 for t in GUIDANCE_TERMS}
        weights[f"{term}_weight"] = config.weight(term)
        if term != "prior_rotation":
            weights["prior_rotation_weight"] = 0.01
        alone = MotionGuidanceConfig(**weights, cg_iterations=15)
        guided = guide_motion(rotations, **{**arguments, "config": alone}, iterations=4)
        after = guidance_costs(guided, **{**arguments, "config": alone})[term]
        assert bool((after < 0.5 * before[term]).all()), (term, before[term], after)
    guided = guide_motion(rotations, **arguments, iterations=6)
    total_before = sum(before.values())
    total_after = sum(guidance_costs(guided, **arguments).values())
    assert bool((total_after < 0.5 * total_before).all())
    # The result stays in SO(3).
    identity = torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(guided.transpose(-1, -2) @ guided, identity.expand_as(guided), atol=1e-9, rtol=0)


def test_prior_alone_returns_the_prior():
    rotations, offsets, head = noisy_rotations(), skeleton_offsets(), head_track()
    weights = {f"{t}_weight": 0.0 for t in GUIDANCE_TERMS}
    config = MotionGuidanceConfig(**{**weights, "prior_rotation_weight": 1.0, "prior_position_weight": 5.0})
    contacts = torch.ones(B, T, len(FOOT_JOINTS), dtype=torch.float64)
    guided = guide_motion(rotations, offsets, head, contacts, config, iterations=5)
    assert torch.equal(guided, rotations)


def test_sliding_planted_foot_stops_sliding():
    # The head glides forward at 3 cm a frame with a fixed body pose, so every foot slides with it; the prior marks
    # the left foot as planted. Guidance must swing the left leg back to hold it.
    frames = 12
    rotations = torch.eye(3, dtype=torch.float64).repeat(1, frames, len(JOINT_NAMES) - 1, 1, 1)
    offsets, head = skeleton_offsets(), head_track(1, frames, speed=0.03)
    contacts = torch.zeros(1, frames, len(FOOT_JOINTS), dtype=torch.float64)
    contacts[:, :, [FOOT_JOINTS.index("left_ankle"), FOOT_JOINTS.index("left_foot")]] = 1.0
    config = MotionGuidanceConfig(cg_iterations=20)

    def left_skate(body):
        _, positions = _pose_from_head(body, offsets.expand(1, -1, -1)[:, None], head,
                                       torch.tensor((0.0, -0.08, 0.10), dtype=torch.float64),
                                       torch.tensor(((1.0, 0, 0), (0, 0, -1.0), (0, 1.0, 0)), dtype=torch.float64))
        foot = positions[0, :, JOINT_NAMES.index("left_ankle")]
        return (foot[1:] - foot[:-1]).norm(dim=-1).mean()

    before = left_skate(rotations)
    guided = guide_motion(rotations, offsets, head, contacts, config, iterations=8)
    after = left_skate(guided)
    torch.testing.assert_close(before, torch.tensor(0.03, dtype=torch.float64))
    assert after < 0.3 * before, (before, after)


def test_bad_inputs_name_the_argument():
    rotations, offsets, head = noisy_rotations(), skeleton_offsets(), head_track()
    import pytest

    with pytest.raises(ValueError, match="`contacts` must have shape"):
        guide_motion(rotations, offsets, head, torch.ones(B, T, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="`offsets` must have the dtype"):
        guide_motion(rotations, offsets.float(), head)
    with pytest.raises(ValueError, match="`foot_skate_weight` must be a finite number"):
        MotionGuidanceConfig(foot_skate_weight=float("nan"))
    with pytest.raises(ValueError, match="`iterations` must be an integer"):
        guide_motion(rotations, offsets, head, iterations=-1)
