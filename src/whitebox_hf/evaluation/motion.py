"""Metrics of estimated body motion against the ground truth (EgoAllo's evaluation, spec threed_and_motion.md §3.6;
brentyi/egoallo ``metrics_helpers.py``), on the 22-joint skeleton of `whitebox_hf.data.JOINT_NAMES` in a +Z-up
world with the floor at z = 0, metres in, the units stated per function out.

* `mpjpe`: mean per-joint position error over all 22 joints (pelvis included), world frame, mm.
* `pa_mpjpe`: the same after aligning each predicted frame to the true one by a similarity transform (Umeyama with
  scale, roma's `rigid_points_registration`), mm.
* `head_error`: mean distance between the predicted and true head joint, m (EgoAllo's T_head; ≈ 0 when the root is
  placed from the observed head).
* `ground_contact`: GND, 1 per sequence in which some foot joint comes within its height threshold of the floor
  (ankles 0.08 m, toes 0.04 m), else 0: it checks that the body is not floating.
* `foot_skating`: EgoEgo's foot skate (EgoAllo's ``compute_foot_skate``): the sequence is dropped so that its lowest
  foot joint touches the floor, then each foot joint's horizontal L1 displacement between frames t-1 and t counts,
  while its height h at t is below the threshold H, weighted by ``2 − 2^(h/H)`` (1 on the floor, 0 at H). EgoAllo
  sums over the frames of a sequence; ``per_frame=True`` (the default here) divides by the T − 1 frame pairs, so that
  windows of different lengths compare. Metres (per frame pair).

Every function takes ``predicted`` and (where it compares) ``target`` joint positions ``(B, T, 22, 3)`` and returns
one value per sequence ``(B,)``, so a caller averages over windows as it sees fit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import roma
import torch

from ..data.motion import FOOT_JOINTS, HEAD_INDEX, JOINT_NAMES
from ..utils.validation import check_finite_tensor, check_floating_tensor, check_tensor

__all__ = [
    "FOOT_CONTACT_HEIGHTS",
    "FOOT_INDICES",
    "MOTION_METRICS",
    "evaluate_motion_windows",
    "foot_skating",
    "ground_contact",
    "head_error",
    "motion_metrics",
    "mpjpe",
    "pa_mpjpe",
]

FOOT_INDICES = tuple(JOINT_NAMES.index(name) for name in FOOT_JOINTS)  # left/right ankle, left/right toe (foot)
# EgoEgo / kinpoly thresholds (metres above the floor), in the order of `FOOT_JOINTS`: ankles, then toes.
FOOT_CONTACT_HEIGHTS = (0.08, 0.08, 0.04, 0.04)


def _check_positions(name: str, value, min_frames: int = 1) -> None:
    check_tensor(name, value, ndim=4, shape_doc=f"(batch, frames, {len(JOINT_NAMES)}, 3)")
    check_floating_tensor(name, value)
    if tuple(value.shape[2:]) != (len(JOINT_NAMES), 3):
        raise ValueError(f"`{name}` must have shape (batch, frames, {len(JOINT_NAMES)}, 3), got {tuple(value.shape)}")
    if value.shape[1] < min_frames:
        raise ValueError(f"`{name}` must hold at least {min_frames} frames, got {value.shape[1]}")
    check_finite_tensor(name, value)


def _check_pair(predicted, target) -> None:
    _check_positions("predicted", predicted)
    _check_positions("target", target)
    if predicted.shape != target.shape or predicted.dtype != target.dtype:
        raise ValueError(f"`target` must have the shape and dtype of `predicted` ({tuple(predicted.shape)}, "
                         f"{predicted.dtype}), got ({tuple(target.shape)}, {target.dtype})")


def mpjpe(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) mean over frames and the 22 joints of ‖predicted − target‖, in millimetres (world frame)."""
    _check_pair(predicted, target)
    return (predicted - target).norm(dim=-1).mean(dim=(1, 2)) * 1000.0


def pa_mpjpe(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) MPJPE in millimetres after a per-frame similarity alignment (rotation, translation and scale, the
    Umeyama solution by roma) of each predicted frame's 22 joints onto the true ones. Unchanged when the predicted
    motion is moved by any similarity transform per frame."""
    _check_pair(predicted, target)
    rotation, translation, scale = roma.rigid_points_registration(predicted, target, compute_scaling=True)
    aligned = scale[..., None, None] * predicted @ rotation.transpose(-1, -2) + translation[..., None, :]
    return (aligned - target).norm(dim=-1).mean(dim=(1, 2)) * 1000.0


def head_error(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) mean distance in metres between the predicted and the true head joint (EgoAllo's T_head)."""
    _check_pair(predicted, target)
    return (predicted[:, :, HEAD_INDEX] - target[:, :, HEAD_INDEX]).norm(dim=-1).mean(dim=1)


def _thresholds(positions: torch.Tensor) -> torch.Tensor:
    return torch.tensor(FOOT_CONTACT_HEIGHTS, dtype=positions.dtype, device=positions.device)


def ground_contact(predicted: torch.Tensor, floor_height: float = 0.0) -> torch.Tensor:
    """(B,) GND: 1.0 for a sequence in which some foot joint comes below its threshold (`FOOT_CONTACT_HEIGHTS`)
    above the floor ``floor_height`` in some frame, else 0.0."""
    _check_positions("predicted", predicted)
    if isinstance(floor_height, bool) or not isinstance(floor_height, (int, float)):
        raise TypeError(f"`floor_height` must be a number, got {type(floor_height).__name__}")
    heights = predicted[:, :, FOOT_INDICES, 2] - floor_height
    return (heights < _thresholds(predicted)).any(dim=-1).any(dim=-1).to(predicted.dtype)


def foot_skating(predicted: torch.Tensor, per_frame: bool = True) -> torch.Tensor:
    """(B,) EgoEgo's foot skate in metres (module docstring): per sequence, after dropping it so that its lowest foot
    joint is at z = 0, the sum over frame pairs and foot joints of the horizontal L1 displacement times
    ``2 − 2^(h/H)`` where the height h at the later frame is below H; divided by the frame pairs with
    ``per_frame``."""
    _check_positions("predicted", predicted, min_frames=2)
    if not isinstance(per_frame, bool):
        raise TypeError(f"`per_frame` must be a bool, got {type(per_frame).__name__}")
    feet = predicted[:, :, FOOT_INDICES]
    # Drop each sequence to the floor: skating is measured for the feet that touch it.
    heights = feet[..., 2] - feet[..., 2].amin(dim=(1, 2), keepdim=True)
    displacement = (feet[:, 1:, :, :2] - feet[:, :-1, :, :2]).abs().sum(dim=-1)
    limit = _thresholds(predicted)
    later = heights[:, 1:]
    weight = torch.where(later < limit, 2 - torch.pow(2.0, later / limit), torch.zeros_like(later))
    total = (displacement * weight).sum(dim=(1, 2))
    return total / (predicted.shape[1] - 1) if per_frame else total


def motion_metrics(predicted: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every metric of this module per sequence: ``{"mpjpe_mm", "pa_mpjpe_mm", "head_error_m", "gnd",
    "foot_skating_m"}`` (predicted motion), plus ``"foot_skating_true_m"``, the true motion's own skate (the floor of
    what a perfect estimate scores)."""
    _check_pair(predicted, target)
    return {"mpjpe_mm": mpjpe(predicted, target), "pa_mpjpe_mm": pa_mpjpe(predicted, target),
            "head_error_m": head_error(predicted, target), "gnd": ground_contact(predicted),
            "foot_skating_m": foot_skating(predicted), "foot_skating_true_m": foot_skating(target)}


MOTION_METRICS = ("mpjpe_mm", "pa_mpjpe_mm", "head_error_m", "gnd", "foot_skating_m", "foot_skating_true_m")


@torch.no_grad()
def evaluate_motion_windows(predict: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
                            head_poses: torch.Tensor, offsets: torch.Tensor, positions: torch.Tensor,
                            clips: Sequence[str], floor_shift: float = 0.0, seed: int = 0, max_windows: int = 0,
                            batch_size: int = 16) -> dict:
    """Score an estimator on held-out windows: ``predict(head_poses (B, T, 4, 4), offsets (B, 22, 3),
    floor_height (B,)) -> joint positions (B, T, 22, 3)``.

    Each window's world is lifted by a height s uniform in ``[-floor_shift, floor_shift]`` (drawn from ``seed``, so
    every estimator sees the same s): the estimator gets the lifted head poses and s (which it may ignore), and its
    estimate is lowered by s before it is compared with the true ``positions`` (floor at z = 0).

    Returns:
        ``{"all": {...}, "per_clip": {clip: {...}}}``, each the mean over windows of every `MOTION_METRICS` entry
        with ``num_windows`` and ``num_frames``.
    """
    _check_positions("positions", positions)
    count = positions.shape[0]
    if tuple(head_poses.shape) != tuple(positions.shape[:2]) + (4, 4):
        raise ValueError(f"`head_poses` must have shape {tuple(positions.shape[:2]) + (4, 4)}, got "
                         f"{tuple(head_poses.shape)}")
    if tuple(offsets.shape) != (count, len(JOINT_NAMES), 3):
        raise ValueError(f"`offsets` must have shape ({count}, {len(JOINT_NAMES)}, 3), got {tuple(offsets.shape)}")
    if len(clips) != count:
        raise ValueError(f"`clips` must name the clip of each of the {count} windows, got {len(clips)} names")
    if isinstance(max_windows, bool) or not isinstance(max_windows, int) or max_windows < 0:
        raise ValueError(f"`max_windows` must be a non-negative integer, got {max_windows!r}")
    if max_windows:
        count = min(count, max_windows)
    shifts = (2 * torch.rand(count, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) - 1) * float(
        floor_shift)
    scores: dict[str, list[torch.Tensor]] = {key: [] for key in MOTION_METRICS}
    for start in range(0, count, batch_size):
        part = slice(start, min(start + batch_size, count))
        shift = shifts[part].to(head_poses.dtype)
        lifted = head_poses[part].clone()
        lifted[:, :, 2, 3] += shift[:, None]
        estimate = predict(lifted, offsets[part], shift).detach().to(positions.dtype).cpu().clone()
        estimate[..., 2] -= shift[:, None, None].to(positions.dtype)
        for key, value in motion_metrics(estimate, positions[part]).items():
            scores[key].append(value.double())
    values = {key: torch.cat(parts) for key, parts in scores.items()}
    frames = positions.shape[1]

    def summary(mask: torch.Tensor) -> dict:
        result = {key: float(value[mask].mean()) for key, value in values.items()}
        result.update(num_windows=int(mask.sum()), num_frames=int(mask.sum()) * frames)
        return result

    names = list(clips[:count])
    per_clip = {name: summary(torch.tensor([n == name for n in names])) for name in sorted(set(names))}
    return {"all": summary(torch.ones(count, dtype=torch.bool)), "per_clip": per_clip}
