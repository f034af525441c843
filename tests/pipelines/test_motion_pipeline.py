"""`MotionGenerationPipeline`: head trajectory -> body motion, its outputs, save/load, and its refusals of bad input."""

import pytest
import torch

from whitebox_hf.data.motion import JOINT_NAMES, read_bvh
from whitebox_hf.models.motion_prior import motion_prior_scheduler
from whitebox_hf.pipelines import MotionGenerationPipeline, MotionGenerationPipelineOutput
from tests.models.motion_models import tiny_model
from tests.models.test_motion_guidance import head_track, skeleton_offsets

FRAMES = 12
FAST = dict(num_inference_steps=3, guidance_config=dict(inner_iterations=1, post_iterations=2, cg_iterations=4))


def tiny_pipeline(window=8, overlap=2, min_frames=4):
    prior = tiny_model()
    pipe = MotionGenerationPipeline(prior, motion_prior_scheduler(prior.config, "ddim"),
                                    offsets=skeleton_offsets().tolist(), window=window, overlap=overlap,
                                    min_frames=min_frames)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def head(frames=FRAMES, batch=None):
    poses = head_track(1, frames).float()
    return poses[0] if batch is None else poses.expand(batch, -1, -1, -1).clone()


def test_outputs_of_every_type():
    pipe = tiny_pipeline()
    joints = pipe(head(), generator=torch.Generator().manual_seed(0), **FAST)
    assert isinstance(joints, MotionGenerationPipelineOutput)
    assert joints.joints.shape == (1, FRAMES, len(JOINT_NAMES), 3)
    assert joints.contacts.shape == (1, FRAMES, 4) and joints.contacts.dtype == torch.bool
    assert joints.local_rotations is None and joints.bvh is None
    full = pipe(head(), generator=torch.Generator().manual_seed(0), output_type="bvh", **FAST)
    assert torch.equal(full.joints, joints.joints)  # same generator, same motion
    assert full.local_rotations.shape == (1, FRAMES, len(JOINT_NAMES), 3, 3)
    assert full.root_translation.shape == (1, FRAMES, 3)
    assert len(full.bvh) == 1 and full.bvh[0].startswith("HIERARCHY")
    # The head of the output skeleton sits on the head trajectory (the pelvis is placed from it).
    head_joint = full.joints[0, :, JOINT_NAMES.index("head")]
    assert (head_joint - head()[:, :3, 3]).norm(dim=-1).max() < 0.2
    as_tuple = pipe(head(), generator=torch.Generator().manual_seed(0), output_type="rotations", return_dict=False,
                    **FAST)
    assert len(as_tuple) == 4 and torch.equal(as_tuple[0], joints.joints)


def test_bvh_output_parses_back(tmp_path):
    pipe = tiny_pipeline()
    out = pipe(head(), generator=torch.Generator().manual_seed(1), output_type="bvh", **FAST)
    path = tmp_path / "motion.bvh"
    path.write_text(out.bvh[0])
    bvh = read_bvh(path)
    assert bvh.motion.shape[0] == FRAMES and bvh.fps == 30 and sorted(bvh.names) == sorted(JOINT_NAMES)


def test_long_trajectory_uses_windows_and_guidance_and_floor_change_the_output():
    pipe = tiny_pipeline(window=8, overlap=2)
    poses = head(20, batch=2)
    seed = dict(generator=torch.Generator().manual_seed(0))
    plain = pipe(poses, guidance="off", **seed, **FAST).joints
    assert plain.shape == (2, 20, len(JOINT_NAMES), 3)
    guided = pipe(poses, generator=torch.Generator().manual_seed(0), **FAST).joints
    assert not torch.equal(plain, guided)
    floored = pipe(poses, guidance="off", floor_height=0.3, generator=torch.Generator().manual_seed(0), **FAST).joints
    assert not torch.equal(plain, floored)
    # A floor at z = 0 given explicitly is the same as none.
    zero = pipe(poses, guidance="off", floor_height=torch.zeros(2), generator=torch.Generator().manual_seed(0),
                **FAST).joints
    torch.testing.assert_close(zero, plain)


def test_progress_bar_counts_the_steps(capsys):
    pipe = tiny_pipeline()
    pipe.set_progress_bar_config(disable=False)
    pipe(head(), guidance="off", num_inference_steps=3)
    assert "3/3" in capsys.readouterr().err


def test_save_and_load_round_trip(tmp_path):
    pipe = tiny_pipeline()
    expected = pipe(head(), generator=torch.Generator().manual_seed(0), **FAST).joints
    pipe.save_pretrained(tmp_path / "motion")
    loaded = MotionGenerationPipeline.from_pretrained(tmp_path / "motion")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.config.window == 8 and loaded.config.min_frames == 4
    torch.testing.assert_close(loaded.skeleton_offsets, pipe.skeleton_offsets, rtol=0, atol=0)
    actual = loaded(head(), generator=torch.Generator().manual_seed(0), **FAST).joints
    assert torch.equal(actual, expected)


def test_bad_input_names_the_argument():
    pipe = tiny_pipeline(min_frames=6)
    good = head()
    with pytest.raises(TypeError, match=r"`head_poses` must be a torch.Tensor"):
        pipe(good.numpy())
    with pytest.raises(TypeError, match=r"`head_poses` must be a floating-point tensor.*int64"):
        pipe(good.long())
    with pytest.raises(ValueError, match=r"`head_poses` must have shape \(T, 4, 4\) or \(B, T, 4, 4\), got "
                                         r"\(12, 3, 4\)"):
        pipe(good[:, :3])
    with pytest.raises(ValueError, match=r"`head_poses` must hold at least 6 frames .*got 5"):
        pipe(good[:5])
    stretched = good.clone()
    stretched[3, :3, :3] *= 1.2
    with pytest.raises(ValueError, match=r"`head_poses` must hold rigid transforms"):
        pipe(stretched)
    broken = good.clone()
    broken[2, 0, 3] = float("nan")
    with pytest.raises(ValueError, match=r"`head_poses` must be finite"):
        pipe(broken)
    with pytest.raises(ValueError, match=r"`fps` must be the pipeline's frame rate 30 .*got 60"):
        pipe(good, fps=60)
    with pytest.raises(ValueError, match=r"`output_type` must be one of \('joints', 'rotations', 'bvh'\), got 'mesh'"):
        pipe(good, output_type="mesh")
    with pytest.raises(ValueError, match=r"`guidance` must be one of"):
        pipe(good, guidance=True)
    with pytest.raises(ValueError, match=r"`floor_height` must be a number or a tensor of shape \(1,\)"):
        pipe(good, floor_height=torch.zeros(3))
    with pytest.raises(ValueError, match=r"`floor_height` must be a finite number"):
        pipe(good, floor_height=float("inf"))
    with pytest.raises(ValueError, match=r"`offsets` must have shape \(22, 3\)"):
        pipe(good, offsets=torch.zeros(21, 3))
    with pytest.raises(ValueError, match=r"`guidance_config` has unknown keys \['skate'\]"):
        pipe(good, guidance_config={"skate": 1.0})
    with pytest.raises(TypeError, match=r"`generator` must be a torch.Generator"):
        pipe(good, generator=[torch.Generator()])
    with pytest.raises(ValueError, match=r"`wrist_positions` must have shape \(1, 12, 2, 3\)"):
        pipe(good, wrist_positions=torch.zeros(12, 3))
    with pytest.raises(ValueError, match=r"`offsets` must be the skeleton's"):
        MotionGenerationPipeline(pipe.prior, pipe.scheduler)
    with pytest.raises(TypeError, match=r"`prior` must be a MotionPriorModel"):
        MotionGenerationPipeline(torch.nn.Linear(1, 1), pipe.scheduler, offsets=pipe.config.offsets)


def _world_motion(poses, yaw=0.8, shift=(1.5, -2.0, 0.0)):
    """G·T for a world yaw about +z and a shift G (as a 4x4)."""
    import roma

    transform = torch.eye(4, dtype=poses.dtype)
    transform[:3, :3] = roma.rotvec_to_rotmat(torch.tensor([0.0, 0.0, yaw], dtype=poses.dtype))
    transform[:3, 3] = torch.tensor(shift, dtype=poses.dtype)
    return transform, transform @ poses


def test_output_moves_with_the_world_and_the_floor():
    # "ours" conditioning sees only yaw- and shift-invariant features, the pelvis is placed from the head and every
    # guidance residual is a difference of positions or rotations: a world yaw + horizontal shift of the head
    # trajectory moves the estimated body rigidly with it, and so does a vertical shift when the floor height is
    # shifted alike. float64 so that the guidance's accept/reject decisions do not flip on round-off.
    pipe = tiny_pipeline(window=8, overlap=2).to(torch.float64)
    poses = head_track(1, 14)[0]
    call = dict(guidance="inner_and_post", **FAST)
    base = pipe(poses, generator=torch.Generator().manual_seed(0), **call).joints[0]
    transform, moved = _world_motion(poses)
    out = pipe(moved, generator=torch.Generator().manual_seed(0), **call).joints[0]
    expected = base @ transform[:3, :3].T + transform[:3, 3]
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    lifted = poses.clone()
    lifted[:, 2, 3] += 0.4
    floored = pipe(lifted, floor_height=0.4, generator=torch.Generator().manual_seed(0), **call).joints[0]
    torch.testing.assert_close(floored, base + torch.tensor([0.0, 0.0, 0.4], dtype=torch.float64), atol=1e-6,
                               rtol=0)
    # Without the floor height the same lift is a different input (the prior sees a taller person).
    unfloored = pipe(lifted, generator=torch.Generator().manual_seed(0), **call).joints[0]
    assert (unfloored - floored).abs().max() > 1e-3
