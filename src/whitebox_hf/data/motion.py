"""Real human motion for the EgoAllo-style motion prior (book §8.10; spec threed_and_motion.md §3, data.md "Human
motion"): the BVH motion-capture clips of Debian's ``assimp-testmodels``, on one 22-joint skeleton.

**How much real data there is** (computed by `load_motion_clips` on assimp-testmodels 5.2.5, at 30 fps):

=============  =========  ==========  ==============  =====================  ==============
clip           skeleton   source fps  source frames   frames at 30 fps       seconds
=============  =========  ==========  ==============  =====================  ==============
01_01          CMU (31)   120         2752            688                    22.9
01_03          CMU (31)   120         4511            1128                   37.6
Boxing_Toes    boxing     100         3069 (+1 row)   921                    30.7
total                                                 2737                   91.2
=============  =========  ==========  ==============  =====================  ==============

That is about a minute and a half of motion from two people: enough to test the pipeline and to evaluate on
held-out clips, far too little to learn a general prior (EgoAllo trains on AMASS, about 40 hours). The default
split holds out one CMU clip and the boxing clip (`DEFAULT_SPLITS`); any other data must be labelled as such.

Pipeline, per clip:

1. `read_bvh` parses the file: a small reader that needs only numpy and names the file and line of anything it
   cannot parse (PyPI's ``bvhio`` pulls in the compiled ``pyglm`` and computes in float32, so it serves only as the
   tests' independent reference for world positions). The boxing file has one data row more than its ``Frames:``
   header; the header is trusted and the extra row dropped with a warning. Euler channels become rotation matrices
   through roma in the file's own channel order.
2. The clip is resampled to 30 fps (`resample_motion`: root translation linearly, every joint's local rotation by
   slerp) and converted to metres (CMU: 1 unit = 1/0.45 inch = 0.056444 m, the CMU ASF scale; boxing:
   centimetres) and to a +Z-up world (x, y, z)_BVH -> (x, -z, y): the rest pose faces -y with its left along +x.
3. Both skeletons are mapped onto `JOINT_NAMES`, the 22-joint SMPL topology of spec §3.7 (the CMU and boxing
   joints used are in `SKELETON_MAPS`; the boxing skeleton has two spine joints, so ``spine2`` is a virtual joint
   half-way along its ``Ab -> Chest`` bone; CMU's ``spine1`` is its LowerBack, which sits on the hips). The mapped
   joints keep their BVH world rotations (with one exception, `ROTATION_SOURCES`); local rotations are relative to
   the mapped parent and bone offsets are the rest-pose offsets. The joints left out (CMU's LHipJoint/RHipJoint,
   which never rotate in these files, Neck, Neck1's parent, and the fingers) are absorbed so that forward kinematics
   of the 22-joint skeleton reproduces the BVH's own positions of the mapped joints: measured
   `MotionClip.fk_residual` below 1e-6 m on all three clips (``tests/data/test_motion.py``).
4. Per-clip normalisation: the floor (the lowest ankle/toe height of the clip) is put at z = 0, the first
   frame's pelvis at the horizontal origin, and the first frame's head forward direction along +x.
5. The head frame is CPF-like (spec §3.7: a fixed offset from the head joint, chosen by hand, `CPF_OFFSET`):
   its axes are x left, y up, z forward in the head's rest frame, so ``f = R e_z`` is the viewing direction as in
   spec §3.2. Foot contacts come from foot-joint speeds and heights (`motion_kinematics.foot_contacts`).

`load_motion` cuts the clips into windows of 32-128 frames, split by clip, as a `datasets.DatasetDict`.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .debian_packages import download_debian_package
from .fashion_mnist import DataUnavailableError, default_cache_dir

if TYPE_CHECKING:
    import torch  # imported lazily by the functions: reading a BVH file needs only numpy

logger = logging.getLogger(__name__)

__all__ = [
    "CPF_OFFSET",
    "DEFAULT_SPLITS",
    "FOOT_JOINTS",
    "JOINT_NAMES",
    "JOINT_PARENTS",
    "TARGET_FPS",
    "BVHParseError",
    "BVHSkeleton",
    "MotionClip",
    "fetch_motion_bvh",
    "load_motion",
    "load_motion_clip",
    "load_motion_clips",
    "motion_clip_names",
    "read_bvh",
    "resample_motion",
]

DEBIAN_PACKAGE = "assimp-testmodels"
INSTALLED_FOLDER = Path("/usr/share/assimp/models/BVH")
HOW_TO_GET_IT = (
    "The assimp BVH motion clips could not be found. Fetch them with\n"
    "  python -c 'from whitebox_hf.data import fetch_motion_bvh; fetch_motion_bvh()'\n"
    "(Debian/Ubuntu: apt-get download assimp-testmodels, unpacked into the cache), or install them with\n"
    "  sudo apt-get install assimp-testmodels     (the clips land in /usr/share/assimp/models/BVH)"
)
TARGET_FPS = 30

# The 22-joint SMPL topology of spec §3.7 (SMPL's order; in the 21-joint indexing without the pelvis the head is 14,
# the wrists 19/20, the ankles 6/7 and the feet (toes) 9/10, as in spec §3.1).
JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle", "right_ankle",
    "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)
JOINT_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)
HEAD_INDEX = JOINT_NAMES.index("head")
FOOT_JOINTS = ("left_ankle", "right_ankle", "left_foot", "right_foot")
# Contacts (metres above the floor): ankles sit higher above the sole than the toe joints.
CONTACT_HEIGHTS = (0.15, 0.15, 0.08, 0.08)
CONTACT_SPEED = 0.3  # m/s
# The CPF-like head frame: eyes about 8 cm in front of and 10 cm above the head joint (chosen by hand, from adult
# head proportions), in the z-up rest frame where the body faces -y.
CPF_OFFSET = (0.0, -0.08, 0.10)
# CPF axes (x left, y up, z forward) in the z-up rest frame (left +x, up +z, forward -y): the columns of this matrix.
CPF_ROTATION = ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0))
# BVH (Y up) -> world (Z up): (x, y, z) -> (x, -z, y), a proper rotation.
Y_UP_TO_Z_UP = ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0))

# Unified joint -> BVH joint, or (BVH joint, BVH child, fraction): a virtual joint that far along that bone.
SKELETON_MAPS = {
    "cmu": {
        "pelvis": "Hips", "left_hip": "LeftUpLeg", "right_hip": "RightUpLeg", "spine1": "LowerBack",
        "left_knee": "LeftLeg", "right_knee": "RightLeg", "spine2": "Spine",
        "left_ankle": "LeftFoot", "right_ankle": "RightFoot", "spine3": "Spine1", "left_foot": "LeftToeBase",
        "right_foot": "RightToeBase", "neck": "Neck1", "left_collar": "LeftShoulder", "right_collar": "RightShoulder",
        "head": "Head", "left_shoulder": "LeftArm", "right_shoulder": "RightArm", "left_elbow": "LeftForeArm",
        "right_elbow": "RightForeArm", "left_wrist": "LeftHand", "right_wrist": "RightHand",
    },
    "boxing": {
        "pelvis": "Hips", "left_hip": "LeftHip", "right_hip": "RightHip", "spine1": "Ab", "left_knee": "LeftKnee",
        "right_knee": "RightKnee", "spine2": ("Ab", "Chest", 0.5), "left_ankle": "LeftAnkle",
        "right_ankle": "RightAnkle", "spine3": "Chest", "left_foot": "LeftToes", "right_foot": "RightToes",
        "neck": "Neck", "left_collar": "LeftCollar", "right_collar": "RightCollar", "head": "Head",
        "left_shoulder": "LeftShoulder", "right_shoulder": "RightShoulder", "left_elbow": "LeftElbow",
        "right_elbow": "RightElbow", "left_wrist": "LeftWrist", "right_wrist": "RightWrist",
    },
}
# Unified joint -> the BVH joint whose world rotation it takes, where that is not its own. CMU's Neck sits at Spine1
# (offset 0) and rotates: taking its rotation for spine3 places the neck exactly, and the collars, also at offset 0
# from Spine1, do not depend on spine3's rotation.
ROTATION_SOURCES = {"cmu": {"spine3": "Neck"}, "boxing": {}}
# Metres per BVH unit: CMU's ASF/BVH conversion uses (1/0.45) inch; the boxing clip is in centimetres.
SKELETON_SCALES = {"cmu": 0.0254 / 0.45, "boxing": 0.01}
DEFAULT_SPLITS = {"train": ("01_03",), "test": ("01_01", "Boxing_Toes")}

_ROTATION_CHANNELS = {"Xrotation": "X", "Yrotation": "Y", "Zrotation": "Z"}
_POSITION_CHANNELS = ("Xposition", "Yposition", "Zposition")


class BVHParseError(OSError, ValueError):
    """A BVH file that does not parse; the message starts with ``path:line:``."""


@dataclass
class BVHSkeleton:
    """A parsed BVH file, in its own units and axes.

    ``parents[j] < j`` (joints in file order), ``offsets`` (J, 3), ``channels[j]`` the channel names of joint j,
    ``end_sites`` maps a joint name to its End Site offset, ``motion`` (F, C) the channel values per frame
    (degrees for rotations), ``frame_time`` seconds per frame."""

    path: str
    names: list[str]
    parents: list[int]
    offsets: np.ndarray
    channels: list[list[str]]
    end_sites: dict[str, np.ndarray]
    frame_time: float
    motion: np.ndarray

    @property
    def fps(self) -> float:
        # Files store the frame time to a few digits (CMU: .0083333 for 120 fps); a rate within 0.01 % of a whole
        # number is taken to be that number, so 120 -> 30 fps resampling picks every fourth frame exactly.
        rate = 1.0 / self.frame_time
        return float(round(rate)) if abs(rate - round(rate)) <= 1e-4 * rate else rate


class _Tokens:
    def __init__(self, path: str, lines: list[str], start: int, stop: int):
        self.path = path
        self.items = [(token, number + 1) for number in range(start, stop) for token in lines[number].split()]
        self.index = 0
        self.last_line = stop

    def error(self, message: str, line: int | None = None) -> BVHParseError:
        return BVHParseError(f"{self.path}:{line if line is not None else self.last_line}: {message}")

    def next(self, expected: str) -> tuple[str, int]:
        if self.index >= len(self.items):
            raise self.error(f"the hierarchy ends early: expected {expected}")
        token, line = self.items[self.index]
        self.index += 1
        return token, line

    def expect(self, word: str) -> int:
        token, line = self.next(repr(word))
        if token != word:
            raise self.error(f"expected {word!r}, got {token!r}", line)
        return line

    def number(self, what: str) -> float:
        token, line = self.next(what)
        try:
            value = float(token)
        except ValueError:
            raise self.error(f"expected a number ({what}), got {token!r}", line) from None
        if not math.isfinite(value):
            raise self.error(f"expected a finite number ({what}), got {token!r}", line)
        return value


def _read_joint(tokens: _Tokens, name: str, parent: int, skeleton: dict) -> None:
    index = len(skeleton["names"])
    skeleton["names"].append(name)
    skeleton["parents"].append(parent)
    tokens.expect("{")
    tokens.expect("OFFSET")
    skeleton["offsets"].append([tokens.number(f"{name} OFFSET") for _ in range(3)])
    tokens.expect("CHANNELS")
    token, line = tokens.next("a channel count")
    if not token.isdigit() or int(token) not in (3, 6):
        raise tokens.error(f"expected a channel count of 3 or 6 for joint {name!r}, got {token!r}", line)
    channels = []
    for _ in range(int(token)):
        channel, line = tokens.next("a channel name")
        if channel not in _ROTATION_CHANNELS and channel not in _POSITION_CHANNELS:
            raise tokens.error(f"unknown channel {channel!r} of joint {name!r}", line)
        channels.append(channel)
    if sorted(c for c in channels if c in _ROTATION_CHANNELS) != sorted(_ROTATION_CHANNELS):
        raise tokens.error(f"joint {name!r} must have the three rotation channels, got {channels}", line)
    skeleton["channels"].append(channels)
    while True:
        token, line = tokens.next("JOINT, End Site or '}'")
        if token == "}":
            return
        if token == "JOINT":
            child, _ = tokens.next("a joint name")
            _read_joint(tokens, child, index, skeleton)
        elif token == "End":
            tokens.expect("Site")
            tokens.expect("{")
            tokens.expect("OFFSET")
            skeleton["end_sites"][name] = np.array([tokens.number(f"{name} End Site OFFSET") for _ in range(3)])
            tokens.expect("}")
        else:
            raise tokens.error(f"expected JOINT, End Site or '}}' inside joint {name!r}, got {token!r}", line)


def read_bvh(path: str | os.PathLike) -> BVHSkeleton:
    """Parse a BVH file (one ROOT). Extra data rows beyond the ``Frames:`` count are dropped with a warning.

    Raises:
        OSError: the file cannot be read.
        BVHParseError (an OSError and a ValueError): the file does not parse; the message names the file and line.
    """
    path = os.fspath(path)
    with open(path, "rb") as handle:
        raw = handle.read()
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError as error:
        # A binary or mis-encoded file: name the line of the first undecodable byte, like every other parse error.
        line = raw[:error.start].count(b"\n") + 1
        raise BVHParseError(f"{path}:{line}: not UTF-8 text ({error.reason} at byte {error.start}): not a BVH "
                            "file") from None
    motion_line = next((i for i, line in enumerate(lines) if line.strip() == "MOTION"), None)
    tokens = _Tokens(path, lines, 0, len(lines) if motion_line is None else motion_line)
    if motion_line is None:
        raise tokens.error("no MOTION section", max(len(lines), 1))
    tokens.expect("HIERARCHY")
    tokens.expect("ROOT")
    root, _ = tokens.next("the root joint's name")
    skeleton = {"names": [], "parents": [], "offsets": [], "channels": [], "end_sites": {}}
    _read_joint(tokens, root, -1, skeleton)
    if tokens.index != len(tokens.items):
        token, line = tokens.items[tokens.index]
        raise tokens.error(f"expected MOTION after the root joint, got {token!r}", line)
    header = {}
    for key, offset in (("Frames:", 1), ("Frame Time:", 2)):
        number = motion_line + offset
        text = lines[number].strip() if number < len(lines) else ""
        if not text.startswith(key):
            raise BVHParseError(f"{path}:{number + 1}: expected {key!r}, got {text[:40]!r}")
        header[key] = (text[len(key):].strip(), number + 1)
    frames_text, frames_line = header["Frames:"]
    if not frames_text.isdigit() or int(frames_text) == 0:
        raise BVHParseError(f"{path}:{frames_line}: expected a positive frame count, got {frames_text!r}")
    time_text, time_line = header["Frame Time:"]
    try:
        frame_time = float(time_text)
    except ValueError:
        frame_time = float("nan")
    if not (math.isfinite(frame_time) and frame_time > 0):
        raise BVHParseError(f"{path}:{time_line}: expected a positive frame time, got {time_text!r}")
    num_frames = int(frames_text)
    width = sum(len(c) for c in skeleton["channels"])
    first = motion_line + 3
    rows = [(number, lines[number]) for number in range(first, len(lines)) if lines[number].strip()]
    if len(rows) < num_frames:
        raise BVHParseError(f"{path}:{len(lines)}: the header announces {num_frames} frames, the file holds "
                            f"{len(rows)} data rows")
    if len(rows) > num_frames:
        logger.warning("%s holds %d data rows, %d more than its header's Frames: %d; the extra rows are dropped",
                       path, len(rows), len(rows) - num_frames, num_frames)
    motion = np.empty((num_frames, width), dtype=np.float64)
    for frame, (number, text) in enumerate(rows[:num_frames]):
        values = text.split()
        if len(values) != width:
            raise BVHParseError(f"{path}:{number + 1}: expected {width} channel values, got {len(values)}")
        try:
            motion[frame] = [float(v) for v in values]
        except ValueError:
            bad = next(v for v in values if not _is_float(v))
            raise BVHParseError(f"{path}:{number + 1}: expected numbers, got {bad!r}") from None
        if not np.isfinite(motion[frame]).all():
            raise BVHParseError(f"{path}:{number + 1}: the channel values must be finite")
    return BVHSkeleton(path=path, names=skeleton["names"], parents=skeleton["parents"],
                       offsets=np.asarray(skeleton["offsets"], dtype=np.float64), channels=skeleton["channels"],
                       end_sites=skeleton["end_sites"], frame_time=frame_time, motion=motion)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def bvh_local_motion(bvh: BVHSkeleton):
    """The BVH's local joint rotations (F, J, 3, 3) and root translation (F, 3) as float64 torch tensors, in the
    file's units and axes. Each joint's Euler channels are applied in their listed order (intrinsic), so
    ``Zrotation Xrotation Yrotation`` gives Rz·Rx·Ry."""
    import roma
    import torch

    motion = torch.from_numpy(bvh.motion)
    rotations = []
    translation = None
    column = 0
    for joint, channels in enumerate(bvh.channels):
        order = "".join(_ROTATION_CHANNELS[c] for c in channels if c in _ROTATION_CHANNELS)
        angle_columns = [column + i for i, c in enumerate(channels) if c in _ROTATION_CHANNELS]
        position_columns = [column + channels.index(c) for c in _POSITION_CHANNELS if c in channels]
        rotations.append(roma.euler_to_rotmat(order, motion[:, angle_columns], degrees=True))
        if joint == 0:
            if len(position_columns) != 3:
                raise BVHParseError(f"{bvh.path}: the root joint {bvh.names[0]!r} must have the three position "
                                    f"channels, got {channels}")
            translation = motion[:, position_columns]
        column += len(channels)
    return torch.stack(rotations, dim=1), translation


def resample_motion(local_rotations, root_translation, source_fps: float, target_fps: float = TARGET_FPS):
    """Resample (F, J, 3, 3) local rotations (slerp) and an (F, 3) root translation (linear) from ``source_fps``
    to ``target_fps``: frame k lies at time k / target_fps, for every such time within the clip's duration
    (F - 1) / source_fps. At ``target_fps == source_fps`` it returns the input frames unchanged."""
    import torch

    from .motion_kinematics import slerp_rotations

    for name, value in (("source_fps", source_fps), ("target_fps", target_fps)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"`{name}` must be a positive finite number, got {value!r}")
    if not isinstance(local_rotations, torch.Tensor) or local_rotations.ndim != 4 or tuple(
            local_rotations.shape[-2:]) != (3, 3):
        raise ValueError(f"`local_rotations` must be a (F, J, 3, 3) tensor, got "
                         f"{getattr(local_rotations, 'shape', type(local_rotations).__name__)}")
    num_frames = local_rotations.shape[0]
    if not isinstance(root_translation, torch.Tensor) or tuple(root_translation.shape) != (num_frames, 3):
        raise ValueError(f"`root_translation` must be a ({num_frames}, 3) tensor, got "
                         f"{getattr(root_translation, 'shape', type(root_translation).__name__)}")
    for name, value in (("local_rotations", local_rotations), ("root_translation", root_translation)):
        if not value.is_floating_point() or not bool(torch.isfinite(value).all()):
            raise ValueError(f"`{name}` must be a finite floating-point tensor, got dtype {value.dtype} holding "
                             f"{'non-finite values' if value.is_floating_point() else 'integers'}")
    if num_frames < 2:
        raise ValueError(f"`local_rotations` must hold at least 2 frames to resample, got {num_frames}")
    ratio = source_fps / target_fps
    # A small tolerance keeps the last frame when the duration is a whole number of target frames up to rounding.
    count = math.floor((num_frames - 1) / ratio + 1e-9) + 1
    position = torch.arange(count, dtype=torch.float64) * ratio
    lower = position.floor().long().clamp(max=num_frames - 2)
    weight = (position - lower).to(local_rotations.dtype)
    upper = lower + 1
    rotations = slerp_rotations(local_rotations[lower], local_rotations[upper],
                                weight[:, None].expand(count, local_rotations.shape[1]).contiguous())
    translation = root_translation[lower] + weight[:, None] * (root_translation[upper] - root_translation[lower])
    # Frames that fall on a source frame are copied, so resampling at the native rate is exactly the identity.
    on_lower, on_upper = weight == 0, weight == 1
    rotations[on_lower] = local_rotations[lower[on_lower]]
    rotations[on_upper] = local_rotations[upper[on_upper]]
    return rotations, translation


@dataclass
class MotionClip:
    """One clip on the 22-joint skeleton (`JOINT_NAMES`), 30 fps, metres, +Z up, floor at z = 0.

    Attributes:
        name: the file's stem (e.g. ``"01_01"``).
        skeleton: ``"cmu"`` or ``"boxing"``, the source skeleton.
        fps: frames per second (30).
        local_rotations: (T, 22, 3, 3) rotations relative to the parent (joint 0's: the pelvis's world orientation).
        root_translation: (T, 3) pelvis position.
        offsets: (22, 3) rest-pose bone offsets in the parent's frame (this person's skeleton).
        positions: (T, 22, 3) joint positions, the forward kinematics of the above (the ground truth).
        head_poses: (T, 4, 4) CPF-like head poses in the world.
        contacts: (T, 4) foot contacts of `FOOT_JOINTS`.
        fk_residual: mean distance (m) between ``positions`` and the BVH's own positions of the mapped joints.
        source_fps, source_frames: the BVH's rate and frame count.
    """

    name: str
    skeleton: str
    fps: int
    local_rotations: torch.Tensor
    root_translation: torch.Tensor
    offsets: torch.Tensor
    positions: torch.Tensor
    head_poses: torch.Tensor
    contacts: torch.Tensor
    fk_residual: float
    source_fps: float
    source_frames: int
    extra: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.positions.shape[0])

    @property
    def seconds(self) -> float:
        return self.num_frames / self.fps


def _skeleton_kind(bvh: BVHSkeleton) -> str:
    for kind, mapping in SKELETON_MAPS.items():
        needed = {v if isinstance(v, str) else v[0] for v in mapping.values()} | {
            v[1] for v in mapping.values() if not isinstance(v, str)}
        if needed <= set(bvh.names):
            return kind
    raise ValueError(f"{bvh.path}: the skeleton (joints {bvh.names}) matches none of the known skeletons "
                     f"{sorted(SKELETON_MAPS)}")


def bvh_to_clip(bvh: BVHSkeleton, name: str | None = None) -> MotionClip:
    """Map a parsed assimp BVH clip onto the 22-joint skeleton (module docstring, steps 2-5)."""
    import torch

    from .motion_kinematics import foot_contacts, forward_kinematics, head_poses

    kind = _skeleton_kind(bvh)
    mapping = SKELETON_MAPS[kind]
    scale = SKELETON_SCALES[kind]
    rotations, translation = bvh_local_motion(bvh)
    rotations, translation = resample_motion(rotations, translation, bvh.fps, TARGET_FPS)
    axes = torch.tensor(Y_UP_TO_Z_UP, dtype=torch.float64)
    # Conjugating by the axis change keeps every joint's rest rotation the identity in the z-up world.
    rotations = axes @ rotations @ axes.T
    translation = scale * translation @ axes.T
    offsets = scale * torch.from_numpy(bvh.offsets) @ axes.T
    world_rotations, world_positions = forward_kinematics(rotations, offsets, bvh.parents, translation)
    identity = torch.eye(3, dtype=torch.float64).expand(1, len(bvh.names), 3, 3)
    _, rest_positions = forward_kinematics(identity, offsets, bvh.parents, torch.zeros(1, 3, dtype=torch.float64))
    index = {joint: i for i, joint in enumerate(bvh.names)}

    def place(unified, rotations_, positions_):
        entry = mapping[unified]
        rotation_source = ROTATION_SOURCES[kind].get(unified)
        if isinstance(entry, str):
            joint = entry
            position = positions_[:, index[joint]]
        else:
            joint, child, fraction = entry
            along = fraction * offsets[index[child]]
            position = positions_[:, index[joint]] + (rotations_[:, index[joint]] @ along)
        return rotations_[:, index[rotation_source or joint]], position

    placed = [place(joint, world_rotations, world_positions) for joint in JOINT_NAMES]
    rest = [place(joint, identity, rest_positions)[1] for joint in JOINT_NAMES]
    unified_world = torch.stack([r for r, _ in placed], dim=1)
    positions = torch.stack([p for _, p in placed], dim=1)
    rest = torch.cat(rest, dim=0)
    parents = torch.tensor(JOINT_PARENTS[1:])
    local = unified_world.clone()
    local[:, 1:] = unified_world[:, parents].transpose(-1, -2) @ unified_world[:, 1:]
    unified_offsets = torch.zeros_like(rest)
    unified_offsets[1:] = rest[1:] - rest[parents]
    root = positions[:, 0].clone()
    world, fk_positions = forward_kinematics(local, unified_offsets, JOINT_PARENTS, root)
    # The clip's joints are those of the 22-joint skeleton's forward kinematics, so a model that predicts local
    # rotations can reproduce its ground truth exactly; the distance to the BVH's own joints is kept as a number.
    fk_residual = float((fk_positions - positions).norm(dim=-1).mean())

    # Per-clip normalisation: floor at z = 0, first pelvis at the horizontal origin, first head forward along +x.
    # A rigid motion of the root moves the whole skeleton rigidly, so it is applied to the root alone.
    feet = [JOINT_NAMES.index(j) for j in FOOT_JOINTS]
    shift = torch.stack([root[0, 0], root[0, 1], fk_positions[:, feet, 2].min()])
    cpf_offset = torch.tensor(CPF_OFFSET, dtype=torch.float64)
    cpf_rotation = torch.tensor(CPF_ROTATION, dtype=torch.float64)
    forward = (world[0, HEAD_INDEX] @ cpf_rotation)[:, 2]
    yaw = math.atan2(float(forward[1]), float(forward[0]))
    cos, sin = math.cos(-yaw), math.sin(-yaw)
    turn = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    root = (root - shift) @ turn.T
    local[:, 0] = turn @ local[:, 0]
    world, positions = forward_kinematics(local, unified_offsets, JOINT_PARENTS, root)
    heads = head_poses(world, positions, HEAD_INDEX, cpf_offset, cpf_rotation)
    contacts = foot_contacts(positions[:, feet], TARGET_FPS, CONTACT_SPEED,
                             torch.tensor(CONTACT_HEIGHTS, dtype=torch.float64))
    return MotionClip(name=name or Path(bvh.path).stem, skeleton=kind, fps=TARGET_FPS,
                      local_rotations=local.float(), root_translation=root.float(), offsets=unified_offsets.float(),
                      positions=positions.float(), head_poses=heads.float(), contacts=contacts,
                      fk_residual=fk_residual, source_fps=bvh.fps, source_frames=bvh.motion.shape[0])


def _cache_folder(cache_dir) -> Path:
    return Path(cache_dir or default_cache_dir()) / "assimp-bvh"


def fetch_motion_bvh(cache_dir: str | os.PathLike | None = None) -> Path:
    """Make assimp-testmodels' BVH clips available under ``cache_dir/assimp-bvh`` (or use an installed copy in
    /usr/share/assimp/models/BVH) and return that folder.

    Raises:
        DataUnavailableError: no cached or installed copy, and the package could not be downloaded.
    """
    if any(INSTALLED_FOLDER.glob("*.bvh")):
        return INSTALLED_FOLDER
    folder = _cache_folder(cache_dir)
    if any(folder.glob("*.bvh")):
        return folder
    with tempfile.TemporaryDirectory() as workdir:
        extracted = download_debian_package(DEBIAN_PACKAGE, workdir, HOW_TO_GET_IT)
        source = extracted / INSTALLED_FOLDER.relative_to("/")
        files = sorted(source.glob("*.bvh"))
        if not files:
            raise DataUnavailableError(f"{DEBIAN_PACKAGE} holds no {INSTALLED_FOLDER}/*.bvh.\n{HOW_TO_GET_IT}")
        # Copy into a sibling folder and rename, so an interrupted copy never looks like a complete cache.
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for path in files + sorted(source.glob("*.txt")):
            shutil.copy2(path, partial / path.name)
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
    logger.info("%d BVH clips cached in %s", len(files), folder)
    return folder


def _bvh_folder(bvh_dir, cache_dir, fetch: bool) -> Path:
    if bvh_dir is not None:
        folder = Path(bvh_dir)
        if not any(folder.glob("*.bvh")):
            raise OSError(f"`bvh_dir` {folder} holds no *.bvh files")
        return folder
    if any(INSTALLED_FOLDER.glob("*.bvh")):
        return INSTALLED_FOLDER
    folder = _cache_folder(cache_dir)
    if any(folder.glob("*.bvh")):
        return folder
    if not fetch:
        raise DataUnavailableError(f"no BVH clips cached in {folder}.\n{HOW_TO_GET_IT}")
    return fetch_motion_bvh(cache_dir)


def motion_clip_names(bvh_dir=None, cache_dir=None, fetch: bool = True) -> list[str]:
    """Sorted clip names (file stems) of the available BVH files."""
    return sorted(p.stem for p in _bvh_folder(bvh_dir, cache_dir, fetch).glob("*.bvh"))


def load_motion_clip(name: str, bvh_dir=None, cache_dir=None, fetch: bool = True) -> MotionClip:
    """The clip ``name`` (e.g. ``"01_01"``) as a `MotionClip`."""
    folder = _bvh_folder(bvh_dir, cache_dir, fetch)
    path = folder / f"{name}.bvh"
    if not isinstance(name, str) or "/" in name or not path.is_file():
        raise ValueError(f"`name` must be one of the clips in {folder} (see motion_clip_names), got {name!r}")
    return bvh_to_clip(read_bvh(path), name)


def load_motion_clips(names=None, bvh_dir=None, cache_dir=None, fetch: bool = True) -> list[MotionClip]:
    """Every clip (or those in ``names``) as `MotionClip` objects, in name order."""
    available = motion_clip_names(bvh_dir, cache_dir, fetch)
    if names is not None:
        if isinstance(names, str) or not isinstance(names, (list, tuple)) or not names:
            raise ValueError(f"`names` must be a non-empty list of clip names, got {names!r}")
        unknown = [n for n in names if n not in available]
        if unknown:
            raise ValueError(f"`names` must name available clips {available}, got unknown {unknown!r}")
    return [load_motion_clip(n, bvh_dir, cache_dir, fetch=False) for n in (names or available)]


def _check_splits(splits, available: list[str]) -> dict[str, tuple[str, ...]]:
    if not isinstance(splits, dict) or not splits or any(not isinstance(k, str) for k in splits):
        raise ValueError(f"`splits` must be a non-empty dict from split name to clip names, got {splits!r}")
    seen: dict[str, str] = {}
    for split, names in splits.items():
        if isinstance(names, str) or not isinstance(names, (list, tuple)) or not names:
            raise ValueError(f"`splits[{split!r}]` must be a non-empty list of clip names, got {names!r}")
        for clip in names:
            if clip not in available:
                raise ValueError(f"`splits[{split!r}]` names {clip!r}, which is not an available clip {available}")
            if clip in seen:
                raise ValueError(f"`splits` puts clip {clip!r} in both {seen[clip]!r} and {split!r}: split by clip")
            seen[clip] = split
    return {k: tuple(v) for k, v in splits.items()}


def clip_windows(clip: MotionClip, window: int, stride: int) -> list[dict]:
    """Windows of ``window`` frames every ``stride`` frames (the last one flush with the clip's end)."""
    if clip.num_frames < window:
        return []
    starts = list(range(0, clip.num_frames - window + 1, stride))
    if starts[-1] != clip.num_frames - window:
        starts.append(clip.num_frames - window)
    rows = []
    for start in starts:
        part = slice(start, start + window)
        rows.append({
            "clip": clip.name, "skeleton": clip.skeleton, "start": start, "fps": clip.fps,
            "local_rotations": clip.local_rotations[part].reshape(window, len(JOINT_NAMES), 9).numpy(),
            "root_translation": clip.root_translation[part].numpy(),
            "positions": clip.positions[part].numpy(),
            "head_poses": clip.head_poses[part].numpy(),
            "contacts": clip.contacts[part].numpy(),
            "offsets": clip.offsets.numpy(),
        })
    return rows


def load_motion(window: int = 64, stride: int | None = None, splits=None, bvh_dir=None, cache_dir=None,
                fetch: bool = True):
    """A `datasets.DatasetDict` of motion windows, split by clip (default `DEFAULT_SPLITS`).

    Columns: ``clip``, ``skeleton``, ``start``, ``fps``, ``local_rotations`` [W, 22, 9] (row-major 3x3),
    ``root_translation`` [W, 3], ``positions`` [W, 22, 3], ``head_poses`` [W, 4, 4], ``contacts`` [W, 4]
    (`FOOT_JOINTS`) and ``offsets`` [22, 3].

    Args:
        window: frames per window, 32-128 (at 30 fps).
        stride: frames between window starts (default ``window // 2``).
        splits: ``{split: [clip names]}``; a clip may sit in one split only.
    """
    import datasets

    if isinstance(window, bool) or not isinstance(window, int) or not 32 <= window <= 128:
        raise ValueError(f"`window` must be an integer in [32, 128] frames, got {window!r}")
    stride = window // 2 if stride is None else stride
    if isinstance(stride, bool) or not isinstance(stride, int) or stride <= 0:
        raise ValueError(f"`stride` must be a positive integer, got {stride!r}")
    available = motion_clip_names(bvh_dir, cache_dir, fetch)
    splits = _check_splits(DEFAULT_SPLITS if splits is None else splits, available)
    joints = len(JOINT_NAMES)
    features = datasets.Features({
        "clip": datasets.Value("string"),
        "skeleton": datasets.Value("string"),
        "start": datasets.Value("int64"),
        "fps": datasets.Value("int64"),
        "local_rotations": datasets.Array3D((window, joints, 9), "float32"),
        "root_translation": datasets.Array2D((window, 3), "float32"),
        "positions": datasets.Array3D((window, joints, 3), "float32"),
        "head_poses": datasets.Array3D((window, 4, 4), "float32"),
        "contacts": datasets.Array2D((window, len(FOOT_JOINTS)), "bool"),
        "offsets": datasets.Array2D((joints, 3), "float32"),
    })
    result = {}
    for split, names in splits.items():
        rows = []
        for name in names:
            clip = load_motion_clip(name, bvh_dir, cache_dir, fetch=False)
            if clip.num_frames < window:
                raise ValueError(f"`window` ({window} frames) must not exceed the length of clip {name!r} in split "
                                 f"{split!r}, {clip.num_frames} frames at {clip.fps} fps")
            rows += clip_windows(clip, window, stride)
        result[split] = datasets.Dataset.from_dict({c: [r[c] for r in rows] for c in features}, features=features)
    return datasets.DatasetDict(result)
