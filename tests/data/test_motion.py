"""Real human motion (whitebox_hf.data.motion): the BVH reader and its errors, resampling, the 22-joint mapping with
the floor at z = 0 and the CPF-like head frame, clip-wise splits and windows; checked on a synthetic boxing-style
BVH written here, against the independent reader bvhio, and on the assimp clips when they are cached."""

import logging
import math

import numpy as np
import pytest
import torch

from whitebox_hf.data import (
    BVHParseError,
    DataUnavailableError,
    forward_kinematics,
    load_motion,
    load_motion_clip,
    motion_clip_names,
    read_bvh,
    resample_motion,
)
from whitebox_hf.data.motion import (
    FOOT_JOINTS,
    JOINT_NAMES,
    _check_splits,
    bvh_local_motion,
)
from whitebox_hf.data.motion_kinematics import check_rigid_poses

# The boxing clip's skeleton (names, parent, offset in cm, Y up, facing +Z), with its ZXY channel order.
BOXING = [
    ("Hips", None, (0, 0, 0)), ("Ab", "Hips", (0, 8, 0)), ("Chest", "Ab", (0, 22, 0)), ("Neck", "Chest", (0, 22, 0)),
    ("Head", "Neck", (0, 11, 0)), ("LeftCollar", "Chest", (0, 22, 0)), ("LeftShoulder", "LeftCollar", (20, 0, 0)),
    ("LeftElbow", "LeftShoulder", (26, 0, 0)), ("LeftWrist", "LeftElbow", (25, 0, 0)),
    ("RightCollar", "Chest", (0, 22, 0)), ("RightShoulder", "RightCollar", (-20, 0, 0)),
    ("RightElbow", "RightShoulder", (-26, 0, 0)), ("RightWrist", "RightElbow", (-25, 0, 0)),
    ("LeftHip", "Hips", (10, 0, 0)), ("LeftKnee", "LeftHip", (0, -42, 0)), ("LeftAnkle", "LeftKnee", (0, -42, 0)),
    ("LeftToes", "LeftAnkle", (0, -8, 14)), ("RightHip", "Hips", (-10, 0, 0)), ("RightKnee", "RightHip", (0, -42, 0)),
    ("RightAnkle", "RightKnee", (0, -42, 0)), ("RightToes", "RightAnkle", (0, -8, 14)),
]
ROTATIONS = "Zrotation Xrotation Yrotation"


def bvh_text(frames: np.ndarray, frame_time: float, skeleton=BOXING, rotations=ROTATIONS, declared=None) -> str:
    """A BVH file for ``skeleton`` with ``frames`` (F, 6 + 3 (J - 1)) channel values."""
    children = {name: [c for c, parent, _ in skeleton if parent == name] for name, _, _ in skeleton}
    offsets = {name: offset for name, _, offset in skeleton}
    lines = ["HIERARCHY"]

    def joint(name, depth):
        pad = "  " * depth
        lines.append(f"{pad}{'ROOT' if depth == 0 else 'JOINT'} {name}")
        lines.append(pad + "{")
        lines.append(f"{pad}  OFFSET {' '.join(f'{v:.6f}' for v in offsets[name])}")
        channels = f"6 Xposition Yposition Zposition {rotations}" if depth == 0 else f"3 {rotations}"
        lines.append(f"{pad}  CHANNELS {channels}")
        for child in children[name]:
            joint(child, depth + 1)
        if not children[name]:
            lines.extend([f"{pad}  End Site", pad + "  {", f"{pad}    OFFSET 0.0 5.0 0.0", pad + "  }"])
        lines.append(pad + "}")

    joint(skeleton[0][0], 0)
    lines += ["MOTION", f"Frames: {len(frames) if declared is None else declared}", f"Frame Time: {frame_time}"]
    lines += [" ".join(f"{v:.6f}" for v in row) for row in frames]
    return "\n".join(lines) + "\n"


def boxing_frames(num_frames: int, seed: int = 0, amplitude: float = 20.0) -> np.ndarray:
    """A person walking along +Z_BVH at 1 m/s with smooth random joint angles (degrees), hips 95 cm high."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_frames) / 100.0
    phases = rng.uniform(0, 2 * np.pi, size=3 * len(BOXING))
    angles = amplitude * np.sin(2 * np.pi * 0.8 * t[:, None] + phases[None, :])
    root = np.stack([np.zeros_like(t), 95 + 2 * np.sin(2 * np.pi * t), 100 * t], axis=1)
    return np.concatenate([root, angles], axis=1)


@pytest.fixture
def bvh_dir(tmp_path):
    folder = tmp_path / "bvh"
    folder.mkdir()
    for index, name in enumerate(["clip_a", "clip_b", "clip_c"]):
        (folder / f"{name}.bvh").write_text(bvh_text(boxing_frames(300 + 50 * index, seed=index), 0.01))
    return folder


def test_forward_kinematics_matches_bvhio_world_positions(tmp_path):
    bvhio = pytest.importorskip("bvhio")  # a declared test dependency (pyproject [test]); skips only outside it
    for order in ("Zrotation Xrotation Yrotation", "Zrotation Yrotation Xrotation", "Xrotation Yrotation Zrotation"):
        path = tmp_path / f"{order[0]}.bvh"
        path.write_text(bvh_text(boxing_frames(5, seed=3, amplitude=60.0), 0.01, rotations=order))
        bvh = read_bvh(path)
        rotations, translation = bvh_local_motion(bvh)
        _, positions = forward_kinematics(rotations, torch.from_numpy(bvh.offsets), bvh.parents, translation)
        root = bvhio.readAsHierarchy(str(path))
        for frame in range(5):
            root.loadPose(frame)
            joints = [joint for joint, _, _ in root.layout()]
            assert [joint.Name for joint in joints] == bvh.names
            reference = torch.tensor([list(joint.PositionWorld) for joint in joints], dtype=torch.float64)
            # bvhio computes in float32 (glm); the hips stand about 1 m from the origin, in cm.
            torch.testing.assert_close(positions[frame], reference, atol=1e-3, rtol=0)


def test_malformed_bvh_names_file_and_line(tmp_path):
    good = bvh_text(boxing_frames(4), 0.01).splitlines()
    cases = {
        "bad_offset": (4, lambda line: line.replace("OFFSET 0.000000", "OFFSET zero")),  # the root's OFFSET line
        "bad_channel": (5, lambda line: line.replace("Zrotation", "Wrotation", 1)),
        "bad_value": (len(good) - 1, lambda line: line.replace(line.split()[5], "nan?", 1)),
        "short_row": (len(good), lambda line: " ".join(line.split()[:-1])),
    }
    for name, (number, edit) in cases.items():
        lines = list(good)
        lines[number - 1] = edit(lines[number - 1])
        path = tmp_path / f"{name}.bvh"
        path.write_text("\n".join(lines) + "\n")
        with pytest.raises(BVHParseError, match=f"{name}.bvh:{number}:") as error:
            read_bvh(path)
        assert isinstance(error.value, ValueError) and isinstance(error.value, OSError)
    path = tmp_path / "too_few.bvh"
    path.write_text(bvh_text(boxing_frames(4), 0.01, declared=9))
    with pytest.raises(BVHParseError, match=r"too_few.bvh:\d+: the header announces 9 frames"):
        read_bvh(path)
    path = tmp_path / "truncated.bvh"
    path.write_text("\n".join(good[:20]) + "\n")
    with pytest.raises(BVHParseError, match="truncated.bvh:20: no MOTION"):
        read_bvh(path)


def test_extra_data_row_is_dropped_with_a_warning(tmp_path, caplog):
    # The boxing clip holds one data row more than its header says.
    path = tmp_path / "extra.bvh"
    path.write_text(bvh_text(boxing_frames(6), 0.01, declared=5))
    with caplog.at_level(logging.WARNING, logger="whitebox_hf.data.motion"):
        bvh = read_bvh(path)
    assert bvh.motion.shape[0] == 5 and "1 more than its header" in caplog.text
    np.testing.assert_allclose(bvh.motion, boxing_frames(6)[:5], atol=1e-6)


def test_resampling_keeps_duration_and_is_identity_at_the_native_rate():
    generator = torch.Generator().manual_seed(0)
    axis_angle = torch.randn(101, 4, 3, generator=generator, dtype=torch.float64) * 0.3
    import roma

    rotations = roma.rotvec_to_rotmat(axis_angle)
    translation = torch.linspace(0, 1, 101, dtype=torch.float64)[:, None] * torch.tensor([1.0, 2.0, 0.5],
                                                                                           dtype=torch.float64)
    same_rotations, same_translation = resample_motion(rotations, translation, 100, 100)
    assert torch.equal(same_rotations, rotations) and torch.equal(same_translation, translation)
    down_rotations, down_translation = resample_motion(rotations, translation, 100, 30)
    # 1 s at 100 fps (101 frames) -> 31 frames at 30 fps spanning the same second.
    assert down_rotations.shape == (31, 4, 3, 3) and down_translation.shape == (31, 3)
    torch.testing.assert_close(down_translation[-1], translation[-1])  # linear motion is resampled exactly
    torch.testing.assert_close(down_rotations[3], rotations[10])  # t = 0.1 s falls on source frame 10
    # Between frames: a slerp, i.e. a rotation on the geodesic, at the right fraction of the angle.
    source = roma.rotvec_to_rotmat(torch.tensor([[[0.0, 0.0, 0.0]], [[0.0, 0.0, 0.9]]], dtype=torch.float64))
    middle, _ = resample_motion(source, torch.zeros(2, 3, dtype=torch.float64), 1, 3)
    torch.testing.assert_close(roma.rotmat_to_rotvec(middle[1, 0]),
                               torch.tensor([0.0, 0.0, 0.3], dtype=torch.float64))
    with pytest.raises(ValueError, match="`target_fps`"):
        resample_motion(rotations, translation, 100, 0)
    with pytest.raises(ValueError, match="`root_translation`"):
        resample_motion(rotations, translation[:-1], 100, 30)
    with pytest.raises(ValueError, match="`local_rotations` must be a finite"):
        resample_motion(rotations * float("nan"), translation, 100, 30)
    with pytest.raises(ValueError, match="`local_rotations` must be a"):
        resample_motion(rotations[:, :, :2], translation, 100, 30)


def test_clip_is_on_the_floor_with_a_rigid_head_frame(bvh_dir):
    clip = load_motion_clip("clip_a", bvh_dir=bvh_dir)
    assert clip.skeleton == "boxing" and clip.fps == 30 and clip.source_fps == 100
    assert clip.num_frames == math.floor(299 * 0.3) + 1  # 2.99 s at 30 fps
    feet = [JOINT_NAMES.index(j) for j in FOOT_JOINTS]
    assert clip.positions[:, feet, 2].min().abs() < 1e-6  # floor at z = 0
    assert clip.positions[..., 2].min() > -1e-6
    assert clip.fk_residual < 1e-5  # the boxing skeleton maps without skipped rotating joints
    _, fk = forward_kinematics(clip.local_rotations, clip.offsets, range_parents(), clip.root_translation)
    torch.testing.assert_close(fk, clip.positions, atol=1e-4, rtol=0)
    check_rigid_poses("head_poses", clip.head_poses)
    # The first frame's head forward direction points along +x horizontally after the per-clip normalisation.
    forward = clip.head_poses[0, :3, 2]
    assert forward[0] > 0.3 and abs(float(forward[1])) < 1e-5
    torch.testing.assert_close(clip.root_translation[0, :2], torch.zeros(2))
    # Walking at 1 m/s (100 cm/s in the file): 1 m per second horizontally, in metres after the unit change.
    displacement = clip.root_translation[-1] - clip.root_translation[0]
    torch.testing.assert_close(displacement[:2].norm(), torch.tensor((clip.num_frames - 1) / 30), atol=1e-4, rtol=0)


def range_parents():
    from whitebox_hf.data.motion import JOINT_PARENTS

    return JOINT_PARENTS


def test_splits_hold_each_clip_once_and_windows_have_the_right_shape(bvh_dir):
    splits = {"train": ["clip_a", "clip_b"], "test": ["clip_c"]}
    data = load_motion(window=32, stride=16, splits=splits, bvh_dir=bvh_dir)
    assert set(data) == {"train", "test"}
    assert set(data["train"]["clip"]) == {"clip_a", "clip_b"} and set(data["test"]["clip"]) == {"clip_c"}
    row = data["test"].with_format("numpy")[0]
    assert row["local_rotations"].shape == (32, 22, 9) and row["positions"].shape == (32, 22, 3)
    assert row["head_poses"].shape == (32, 4, 4) and row["contacts"].shape == (32, 4)
    with pytest.raises(ValueError, match="clip 'clip_a' in both 'train' and 'test'"):
        load_motion(window=32, splits={"train": ["clip_a"], "test": ["clip_a", "clip_c"]}, bvh_dir=bvh_dir)
    with pytest.raises(ValueError, match="`window`"):
        load_motion(window=16, splits=splits, bvh_dir=bvh_dir)
    (bvh_dir / "short.bvh").write_text(bvh_text(boxing_frames(60), 0.01))  # 0.59 s: 18 frames at 30 fps
    with pytest.raises(ValueError, match="`window` \\(32 frames\\) must not exceed the length of clip 'short'"):
        load_motion(window=32, splits={"test": ["short"]}, bvh_dir=bvh_dir)
    with pytest.raises(ValueError, match="not an available clip"):
        _check_splits({"train": ["nope"]}, ["clip_a"])
    with pytest.raises(DataUnavailableError, match="assimp-testmodels"):
        motion_clip_names(cache_dir=bvh_dir / "empty-cache", fetch=False)


def real_clips_or_skip():
    try:
        names = motion_clip_names(fetch=False)
    except DataUnavailableError:
        pytest.skip("assimp BVH clips not cached (a data download, outside the install): run "
                    "`python -c 'from whitebox_hf.data import fetch_motion_bvh; fetch_motion_bvh()'`")
    return names


def test_real_clips_when_cached():
    assert {"01_01", "01_03", "Boxing_Toes"} <= set(real_clips_or_skip())
    # The amounts stated in the module docstring.
    for name, skeleton, source_fps, frames in (("01_01", "cmu", 120, 688), ("01_03", "cmu", 120, 1128),
                                                 ("Boxing_Toes", "boxing", 100, 921)):
        clip = load_motion_clip(name)
        assert (clip.skeleton, clip.source_fps, clip.num_frames) == (skeleton, source_fps, frames)
        feet = [JOINT_NAMES.index(j) for j in FOOT_JOINTS]
        assert clip.positions[:, feet, 2].min().abs() < 1e-6
        assert clip.fk_residual < 1e-6  # the 22 joints reproduce the BVH's own joint positions
        check_rigid_poses("head_poses", clip.head_poses)
        # An adult's eyes: between 1.3 and 1.8 m above the floor most of the time.
        assert 1.3 < float(clip.head_poses[:, 2, 3].median()) < 1.8
        assert 0.05 < float(clip.contacts.float().mean()) < 0.95


def test_fetch_without_apt_says_how_to_get_the_clips(tmp_path, monkeypatch):
    from whitebox_hf.data import debian_packages, motion

    monkeypatch.setattr(motion, "INSTALLED_FOLDER", tmp_path / "not-installed")
    monkeypatch.setattr(debian_packages.shutil, "which", lambda name: None)
    with pytest.raises(DataUnavailableError, match="apt-get download assimp-testmodels"):
        motion.fetch_motion_bvh(cache_dir=tmp_path / "cache")


def test_default_split_holds_out_the_boxing_clip_and_a_cmu_clip():
    real_clips_or_skip()
    data = load_motion(window=128, stride=64)
    clips = {split: set(data[split]["clip"]) for split in data}
    assert clips == {"train": {"01_03"}, "test": {"01_01", "Boxing_Toes"}}
    # 1128 frames -> starts 0, 64, ..., 960 and the flush-right 1000; 688 -> 0..512 + 560; 921 -> 0..768 + 793.
    assert (len(data["train"]), len(data["test"])) == (17, 10 + 14)
