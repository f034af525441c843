"""BVH export (`whitebox_hf.data.motion_bvh`) read back by bvhio and by our reader with the same joint positions,
and the skeleton animation (`whitebox_hf.data.motion_animation`)."""

import numpy as np
import pytest
import roma
import torch
from PIL import Image

from whitebox_hf.data import forward_kinematics
from whitebox_hf.data.motion import JOINT_NAMES, JOINT_PARENTS, Y_UP_TO_Z_UP, bvh_local_motion, read_bvh
from whitebox_hf.data.motion_animation import render_motion_frames, save_motion_gif
from whitebox_hf.data.motion_bvh import motion_to_bvh, write_motion_bvh

J = len(JOINT_NAMES)


def random_motion(frames=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    rotations = roma.rotvec_to_rotmat(0.5 * torch.randn(frames, J, 3, generator=generator, dtype=torch.float64))
    translation = torch.randn(frames, 3, generator=generator, dtype=torch.float64) * 0.3
    translation[:, 2] += 0.9
    offsets = 0.15 * torch.randn(J, 3, generator=generator, dtype=torch.float64)
    return rotations, translation, offsets


def bvh_axes(positions):
    """World (z up, metres) -> BVH (y up, centimetres)."""
    return 100.0 * positions @ torch.tensor(Y_UP_TO_Z_UP, dtype=torch.float64)


def test_bvh_round_trip_through_bvhio_and_our_reader(tmp_path):
    bvhio = pytest.importorskip("bvhio")  # a declared test dependency (pyproject [test]); skips only outside it
    rotations, translation, offsets = random_motion()
    _, positions = forward_kinematics(rotations, offsets, JOINT_PARENTS, translation)
    path = write_motion_bvh(tmp_path / "motion.bvh", rotations, translation, offsets, fps=30)
    expected = bvh_axes(positions)

    bvh = read_bvh(path)
    assert sorted(bvh.names) == sorted(JOINT_NAMES) and bvh.fps == 30
    order = [JOINT_NAMES.index(name) for name in bvh.names]
    local, root = bvh_local_motion(bvh)
    _, ours = forward_kinematics(local, torch.from_numpy(bvh.offsets), bvh.parents, root)
    torch.testing.assert_close(ours, expected[:, order], atol=1e-4, rtol=0)  # 6 decimals in the file

    hierarchy = bvhio.readAsHierarchy(str(path))
    for frame in range(rotations.shape[0]):
        hierarchy.loadPose(frame)
        joints = [joint for joint, _, _ in hierarchy.layout()]
        assert [joint.Name for joint in joints] == bvh.names
        reference = torch.tensor([list(joint.PositionWorld) for joint in joints], dtype=torch.float64)
        torch.testing.assert_close(reference, expected[frame, order], atol=2e-3, rtol=0)  # bvhio: float32


def test_bvh_export_refuses_bad_input():
    rotations, translation, offsets = random_motion()
    with pytest.raises(ValueError, match="`root_translation` must have shape"):
        motion_to_bvh(rotations, translation[:-1], offsets)
    with pytest.raises(TypeError, match="`offsets` must be a torch.Tensor"):
        motion_to_bvh(rotations, translation, offsets.numpy())
    with pytest.raises(ValueError, match="`fps` must be a positive finite number"):
        motion_to_bvh(rotations, translation, offsets, fps=0)
    bad = rotations.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="`local_rotations` must be finite"):
        motion_to_bvh(bad, translation, offsets)


def test_animation_frames_and_gif(tmp_path):
    rotations, translation, offsets = random_motion(frames=4)
    _, positions = forward_kinematics(rotations, offsets, JOINT_PARENTS, translation)
    moved = positions + torch.tensor([0.5, 0.0, 0.0], dtype=torch.float64)
    frames = render_motion_frames({"estimate": positions, "ground truth": moved.numpy()}, size=96)
    assert len(frames) == 4 and frames[0].size == (192, 96)
    # Frames differ when the skeleton moves (something is drawn), and the two panels differ from a blank one.
    first, second = np.asarray(frames[0], dtype=float), np.asarray(frames[1], dtype=float)
    assert np.abs(first - second).mean() > 0.1
    assert first[:, :96].std() > 1 and first[:, 96:].std() > 1
    path = save_motion_gif(tmp_path / "motion.gif", {"estimate": positions, "ground truth": moved}, size=64,
                           stride=2)
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 2 and gif.size == (128, 64)
    with pytest.raises(ValueError, match="must all have the same shape"):
        render_motion_frames({"a": positions, "b": positions[:2]})
    with pytest.raises(TypeError, match="must be a torch.Tensor or numpy array"):
        render_motion_frames({"a": positions.tolist()})


def test_unreadable_bvh_names_file_and_line(tmp_path):
    from whitebox_hf.data.motion import BVHParseError

    rotations, translation, offsets = random_motion(frames=2)
    text = motion_to_bvh(rotations, translation, offsets).encode()
    cases = {
        "binary": (b"\xff\xfe\x00HIERARCHY\n", 1),
        "latin1": (text.replace(b"left_hip", b"l\xe9ft_hip"), 6),  # not UTF-8 on line 6 (JOINT left_hip)
        "empty": (b"", 1),
    }
    for name, (content, line) in cases.items():
        path = tmp_path / f"{name}.bvh"
        path.write_bytes(content)
        with pytest.raises(BVHParseError, match=f"{name}.bvh:{line}:"):
            read_bvh(path)
