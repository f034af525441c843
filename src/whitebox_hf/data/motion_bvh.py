"""Writing motion on the 22-joint skeleton of `whitebox_hf.data.motion` as BVH, the format the clips came in, for
Blender, bvhio and the Space's download button.

The file undoes `bvh_to_clip`'s conventions: the +Z-up world goes back to BVH's +Y up ((x, y, z) -> (x, z, -y), the
inverse of `Y_UP_TO_Z_UP`), metres become centimetres (``scale=100``), the root joint (the pelvis) has the six
channels ``Xposition Yposition Zposition Zrotation Xrotation Yrotation`` and every other joint the three rotations,
applied in that order (intrinsic, R = Rz·Rx·Ry, as `read_bvh` / `bvh_local_motion` read them back). The root's
``OFFSET`` is written as zero and its position channels hold the root joint's world position (the
`forward_kinematics` root translation plus ``offsets[0]``): readers disagree on whether a root ``OFFSET`` adds to
the position channels (`read_bvh` adds it, bvhio does not), and with a zero one they agree. The BVH's
world joint positions are then ``scale`` times the skeleton's, in BVH axes. Leaf joints (head, wrists, toes)
get an ``End Site`` of length 0: the skeleton has no bone beyond them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import roma
import torch

from ..utils.validation import check_finite_tensor, check_floating_tensor, check_tensor
from .motion import JOINT_NAMES, JOINT_PARENTS, TARGET_FPS, Y_UP_TO_Z_UP
from .motion_kinematics import check_parents

__all__ = ["BVH_ROTATION_ORDER", "motion_to_bvh", "write_motion_bvh"]

BVH_ROTATION_ORDER = "ZXY"
_CHANNEL_NAMES = {"X": "Xrotation", "Y": "Yrotation", "Z": "Zrotation"}


def _check_motion(local_rotations, root_translation, offsets, names, parents, fps, scale):
    check_tensor("local_rotations", local_rotations, ndim=4, shape_doc="(T, J, 3, 3)")
    check_floating_tensor("local_rotations", local_rotations)
    check_finite_tensor("local_rotations", local_rotations)
    frames, joints = local_rotations.shape[:2]
    if tuple(local_rotations.shape[2:]) != (3, 3):
        raise ValueError(f"`local_rotations` must have shape (T, J, 3, 3), got {tuple(local_rotations.shape)}")
    for name, value, shape in (("root_translation", root_translation, (frames, 3)), ("offsets", offsets,
                                                                                     (joints, 3))):
        check_tensor(name, value)
        if tuple(value.shape) != shape:
            raise ValueError(f"`{name}` must have shape {shape}, got {tuple(value.shape)}")
        check_floating_tensor(name, value)
        check_finite_tensor(name, value)
    if isinstance(names, str) or not isinstance(names, Sequence) or len(names) != joints or not all(
            isinstance(n, str) and n and not any(c.isspace() for c in n) for n in names) or len(set(names)) != joints:
        raise ValueError(f"`names` must be {joints} distinct joint names without spaces, got {names!r}")
    parents = check_parents("parents", parents, joints)
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0 or fps == float("inf"):
        raise ValueError(f"`fps` must be a positive finite number, got {fps!r}")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0 or scale == float("inf"):
        raise ValueError(f"`scale` must be a positive finite number, got {scale!r}")
    return parents


def motion_to_bvh(local_rotations: torch.Tensor, root_translation: torch.Tensor, offsets: torch.Tensor,
                  fps: float = TARGET_FPS, names: Sequence[str] = JOINT_NAMES,
                  parents: Sequence[int] = JOINT_PARENTS, scale: float = 100.0) -> str:
    """The BVH text of one motion (module docstring).

    Args:
        local_rotations: (T, J, 3, 3) rotations relative to the parent (joint 0's: the root's world orientation),
            in the +Z-up world of `whitebox_hf.data.motion`.
        root_translation: (T, 3) the `forward_kinematics` root translation (metres).
        offsets: (J, 3) bone offsets in the parent's frame (metres).
        fps: frames per second (``Frame Time`` = 1/fps).
        names, parents: the skeleton (default the 22-joint one).
        scale: BVH units per metre (100: centimetres).
    """
    parents = _check_motion(local_rotations, root_translation, offsets, names, parents, fps, scale)
    axes = torch.tensor(Y_UP_TO_Z_UP, dtype=torch.float64)  # BVH -> world; its transpose maps back
    rotations = axes.T @ local_rotations.detach().cpu().double() @ axes
    bone = scale * offsets.detach().cpu().double() @ axes
    translation = scale * root_translation.detach().cpu().double() @ axes + bone[0]
    bone[0] = 0.0  # folded into the position channels (module docstring)
    angles = roma.rotmat_to_euler(BVH_ROTATION_ORDER, rotations, degrees=True)  # (T, J, 3), Z X Y
    children = {joint: [c for c in range(len(parents)) if parents[c] == joint] for joint in range(len(parents))}
    rotation_channels = " ".join(_CHANNEL_NAMES[axis] for axis in BVH_ROTATION_ORDER)
    lines = ["HIERARCHY"]

    def write_joint(joint: int, depth: int) -> None:
        pad = "\t" * depth
        lines.append(f"{pad}{'ROOT' if depth == 0 else 'JOINT'} {names[joint]}")
        lines.append(pad + "{")
        lines.append(f"{pad}\tOFFSET " + " ".join(f"{v:.6f}" for v in bone[joint].tolist()))
        channels = f"6 Xposition Yposition Zposition {rotation_channels}" if depth == 0 else f"3 {rotation_channels}"
        lines.append(f"{pad}\tCHANNELS {channels}")
        for child in children[joint]:
            write_joint(child, depth + 1)
        if not children[joint]:
            lines.extend([f"{pad}\tEnd Site", f"{pad}\t{{", f"{pad}\t\tOFFSET 0.000000 0.000000 0.000000",
                          f"{pad}\t}}"])
        lines.append(pad + "}")

    write_joint(0, 0)
    # The data columns follow the hierarchy's order (depth first), which need not be the joint index order.
    order: list[int] = []

    def visit(joint: int) -> None:
        order.append(joint)
        for child in children[joint]:
            visit(child)

    visit(0)
    lines += ["MOTION", f"Frames: {rotations.shape[0]}", f"Frame Time: {1.0 / fps:.8f}"]
    for frame in range(rotations.shape[0]):
        values = translation[frame].tolist()
        for joint in order:
            values += angles[frame, joint].tolist()
        lines.append(" ".join(f"{v:.6f}" for v in values))
    return "\n".join(lines) + "\n"


def write_motion_bvh(path: str | os.PathLike, local_rotations: torch.Tensor, root_translation: torch.Tensor,
                     offsets: torch.Tensor, fps: float = TARGET_FPS, names: Sequence[str] = JOINT_NAMES,
                     parents: Sequence[int] = JOINT_PARENTS, scale: float = 100.0) -> Path:
    """Write `motion_to_bvh`'s text to ``path`` and return it as a `Path`."""
    text = motion_to_bvh(local_rotations, root_translation, offsets, fps, names, parents, scale)
    path = Path(path)
    path.write_text(text, encoding="utf-8")
    return path
