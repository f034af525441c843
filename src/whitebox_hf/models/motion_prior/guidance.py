"""EgoAllo's guidance (spec threed_and_motion.md §3.5): a damped Gauss-Newton (Levenberg-Marquardt) solve over the
body's local rotations that keeps the motion near the prior's x̂₀ while making it smooth, keeping feet that the
prior marks as in contact from sliding, and, optionally, matching observed wrist poses.

Variables: per frame and body joint an increment δ (axis-angle) on the current rotation, ``R ← R·exp(δ)``; the pelvis
is not a variable but is placed from the observed head pose every time (`place_root_from_head`'s placement), so the
world positions of the feet and wrists move with every body rotation, as in EgoAllo.

Residuals (each multiplied by its weight; the cost is the sum of their squares; defaults from spec §3.5):

=========================  ======  ==============================================================================
term                       weight  residual
=========================  ======  ==============================================================================
``prior_rotation``         1       e(R̂ᵀR) per joint, R̂ the x̂₀ rotations
``prior_position``         5       torso-joint world positions minus those of x̂₀ (`TORSO_JOINTS`)
``prior_delta_smoothness`` 10      e(R̂_{t+1}ᵀR_{t+1}) − e(R̂_tᵀR_t): the deviation from the prior changes slowly
``rotation_smoothness``    1       e(R_tᵀR_{t+1}) per joint
``acceleration``           5       p_{t+1} − 2p_t + p_{t−1} of every joint (world)
``foot_skate``             30      (p_{t+1} − p_t) of the ankles and toes · (c_t + c_{t+1})/2, c the x̂₀ contacts
``wrist_position``         50      wrist world positions minus the observed ones (when given)
``wrist_orientation``      10      e(R_obsᵀR_wrist) (when given)
=========================  ======  ==============================================================================

``e(R) = vee(R − Rᵀ)/2 = sin θ·axis`` is the rotation error: equal to the log map to first order and, unlike it,
smooth at the identity (where every solve starts: the log's norm has no derivative at zero). The wrist weights are
EgoAllo's Aria wrist/palm weights (its HaMeR wrist weights are 20 and 5). There is no floor cost: as in EgoAllo the
floor enters only through the head height the prior is conditioned on.

The solver (`guide_motion`) is batched torch: per Levenberg-Marquardt iteration one linearisation, the normal
equations ``(JᵀJ + λI)δ = −Jᵀr`` solved matrix-free by conjugate gradients (EgoAllo's linear solver too) with
``Jv`` and ``Jᵀu`` from reverse-mode autodiff (``Jv`` as the derivative of ``u ↦ Jᵀu``, cheaper than torch's
forward mode here), the step kept only where it lowers the sequence's cost; λ (initial 0.1) halves on success and
doubles on failure, per sequence.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import roma
import torch
from torch.func import vjp

from ...data.motion import CPF_OFFSET, CPF_ROTATION, FOOT_JOINTS, HEAD_INDEX, JOINT_NAMES, JOINT_PARENTS
from ...utils.validation import check_finite_tensor, check_floating_tensor, check_tensor
from .head_conditioning import check_head_poses

__all__ = [
    "GUIDANCE_TERMS",
    "TORSO_JOINTS",
    "MotionGuidanceConfig",
    "guidance_costs",
    "guidance_residuals",
    "guide_motion",
]

# The joints whose positions the prior term holds near x̂₀ (the pelvis-to-shoulders trunk, SMPL naming).
TORSO_JOINTS = ("left_hip", "right_hip", "spine1", "spine2", "spine3", "neck", "left_collar", "right_collar",
                "left_shoulder", "right_shoulder")
WRIST_JOINTS = ("left_wrist", "right_wrist")
GUIDANCE_TERMS = ("prior_rotation", "prior_position", "prior_delta_smoothness", "rotation_smoothness",
                  "acceleration", "foot_skate", "wrist_position", "wrist_orientation")


@dataclass(frozen=True)
class MotionGuidanceConfig:
    """Weights and iteration counts of the guidance solve (module docstring; defaults: spec §3.5).

    Args:
        prior_rotation_weight, prior_position_weight, prior_delta_smoothness_weight, rotation_smoothness_weight,
        acceleration_weight, foot_skate_weight, wrist_position_weight, wrist_orientation_weight (`float`):
            the residual weights (0 switches a term off).
        inner_iterations (`int`, defaults to 5): Levenberg-Marquardt iterations after each x̂₀ while sampling.
        post_iterations (`int`, defaults to 20): iterations once after sampling.
        initial_damping (`float`, defaults to 0.1): the initial λ.
        cg_iterations (`int`, defaults to 20): conjugate-gradient iterations per linear solve.
    """

    prior_rotation_weight: float = 1.0
    prior_position_weight: float = 5.0
    prior_delta_smoothness_weight: float = 10.0
    rotation_smoothness_weight: float = 1.0
    acceleration_weight: float = 5.0
    foot_skate_weight: float = 30.0
    wrist_position_weight: float = 50.0
    wrist_orientation_weight: float = 10.0
    inner_iterations: int = 5
    post_iterations: int = 20
    initial_damping: float = 0.1
    cg_iterations: int = 20

    def __post_init__(self):
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name.endswith("_weight"):
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                        or value < 0:
                    raise ValueError(f"`{item.name}` must be a finite number ≥ 0, got {value!r}")
            elif item.name == "initial_damping":
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                        or value <= 0:
                    raise ValueError(f"`initial_damping` must be a finite number > 0, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int) or value < (1 if item.name == "cg_iterations"
                                                                                    else 0):
                minimum = 1 if item.name == "cg_iterations" else 0
                raise ValueError(f"`{item.name}` must be an integer ≥ {minimum}, got {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    def weight(self, term: str) -> float:
        return float(getattr(self, f"{term}_weight"))


def _rotation_error(rotations: torch.Tensor) -> torch.Tensor:
    """e(R) = vee(R − Rᵀ)/2 = sin θ·axis, (..., 3, 3) -> (..., 3)."""
    return 0.5 * torch.stack([rotations[..., 2, 1] - rotations[..., 1, 2], rotations[..., 0, 2] - rotations[..., 2, 0],
                              rotations[..., 1, 0] - rotations[..., 0, 1]], dim=-1)


def _tree_levels(parents) -> list[tuple[list[int], list[int]]]:
    """The joints after the root grouped by depth: per level its joints and each one's parent's position in the
    previous level (a parent is always one level up)."""
    depth = [0]
    for joint in range(1, len(parents)):
        depth.append(depth[parents[joint]] + 1)
    levels: list[list[int]] = [[0]]
    for level in range(1, max(depth) + 1):
        levels.append([j for j in range(len(parents)) if depth[j] == level])
    return [(joints, [levels[level - 1].index(parents[j]) for j in joints])
            for level, joints in enumerate(levels) if level > 0]


_LEVELS = _tree_levels(JOINT_PARENTS)
# Joint j's position in the concatenation of the levels (root first), to put the joints back in index order.
_LEVEL_ORDER = [0] + [j for joints, _ in _LEVELS for j in joints]
_JOINT_ORDER = [_LEVEL_ORDER.index(j) for j in range(len(JOINT_PARENTS))]


def _pose_from_head(body_rotations: torch.Tensor, offsets: torch.Tensor, head_poses: torch.Tensor,
                    cpf_offset: torch.Tensor, cpf_rotation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """World rotations and positions (B, T, J, ...) of the skeleton whose CPF lies on ``head_poses``: the placement
    of `place_root_from_head` (same formulas) without its input checks, since the solver evaluates it (and its
    derivatives) hundreds of times on inputs it has checked once, and with forward kinematics a tree level at a
    time (8 batched steps instead of 21 joint by joint: the solver's cost is mostly the number of autograd nodes)."""
    device = body_rotations.device
    shape = body_rotations.shape[:2]
    rotation = torch.eye(3, dtype=body_rotations.dtype, device=device).expand(*shape, 1, 3, 3)
    position = offsets[..., :1, :].expand(*shape, 1, 3)
    rotations, positions = [rotation], [position]
    for joints, parent_slots in _LEVELS:
        index = torch.tensor(joints, device=device)
        parent_rotation = rotation[:, :, parent_slots]
        position = position[:, :, parent_slots] + (parent_rotation @ offsets[..., index, :, None])[..., 0]
        rotation = parent_rotation @ body_rotations[:, :, index - 1]
        rotations.append(rotation)
        positions.append(position)
    order = torch.tensor(_JOINT_ORDER, device=device)
    rotations = torch.cat(rotations, dim=2)[:, :, order]
    positions = torch.cat(positions, dim=2)[:, :, order]
    head_rotation = rotations[:, :, HEAD_INDEX]
    cpf_rotation_body = head_rotation @ cpf_rotation
    cpf_position_body = positions[:, :, HEAD_INDEX] + (head_rotation @ cpf_offset)
    root_rotation = head_poses[..., :3, :3] @ cpf_rotation_body.transpose(-1, -2)
    origin = head_poses[..., :3, 3] - (root_rotation @ cpf_position_body[..., None])[..., 0]
    world_positions = (root_rotation[:, :, None] @ positions[..., None])[..., 0] + origin[:, :, None]
    return root_rotation[:, :, None] @ rotations, world_positions


class _Problem:
    """The checked inputs of one solve and its weighted residuals as a function of the rotations."""

    def __init__(self, body_rotations, contacts, offsets, head_poses, config, prior_rotations, wrist_positions,
                 wrist_rotations):
        check_tensor("body_rotations", body_rotations, ndim=5, shape_doc="(B, T, 21, 3, 3)")
        check_floating_tensor("body_rotations", body_rotations)
        check_finite_tensor("body_rotations", body_rotations)
        batch, frames, joints = body_rotations.shape[:3]
        if joints != len(JOINT_NAMES) - 1 or tuple(body_rotations.shape[3:]) != (3, 3):
            raise ValueError(f"`body_rotations` must have shape (B, T, {len(JOINT_NAMES) - 1}, 3, 3), got "
                             f"{tuple(body_rotations.shape)}")
        dtype, device = body_rotations.dtype, body_rotations.device
        shapes = {"contacts": (batch, frames, len(FOOT_JOINTS)), "prior_rotations": tuple(body_rotations.shape),
                  "wrist_positions": (batch, frames, 2, 3), "wrist_rotations": (batch, frames, 2, 3, 3)}
        values = {"contacts": contacts, "prior_rotations": prior_rotations, "wrist_positions": wrist_positions,
                  "wrist_rotations": wrist_rotations}
        for name, value in values.items():
            if value is None:
                continue
            check_tensor(name, value)
            if tuple(value.shape) != shapes[name]:
                raise ValueError(f"`{name}` must have shape {shapes[name]}, got {tuple(value.shape)}")
            check_floating_tensor(name, value)
            check_finite_tensor(name, value)
            if value.dtype != dtype:
                raise TypeError(f"`{name}` must have the dtype of `body_rotations` ({dtype}), got {value.dtype}")
        if not isinstance(config, MotionGuidanceConfig):
            raise TypeError(f"`config` must be a MotionGuidanceConfig, got {type(config).__name__}")
        check_head_poses(head_poses)
        if tuple(head_poses.shape[:2]) != (batch, frames) or head_poses.dtype != dtype:
            raise ValueError(f"`head_poses` must have shape ({batch}, {frames}, 4, 4) and dtype {dtype}, got "
                             f"{tuple(head_poses.shape)} {head_poses.dtype}")
        check_tensor("offsets", offsets)
        check_floating_tensor("offsets", offsets)
        check_finite_tensor("offsets", offsets)
        if tuple(offsets.shape) not in ((len(JOINT_NAMES), 3), (batch, len(JOINT_NAMES), 3)):
            raise ValueError(f"`offsets` must have shape ({len(JOINT_NAMES)}, 3) or ({batch}, {len(JOINT_NAMES)}, "
                             f"3), got {tuple(offsets.shape)}")
        if offsets.dtype != dtype:
            raise TypeError(f"`offsets` must have the dtype of `body_rotations` ({dtype}), got {offsets.dtype}")
        self.config = config
        self.offsets = (offsets if offsets.ndim == 3 else offsets.expand(batch, -1, -1))[:, None]
        self.head_poses = head_poses
        self.cpf_offset = torch.tensor(CPF_OFFSET, dtype=dtype, device=device)
        self.cpf_rotation = torch.tensor(CPF_ROTATION, dtype=dtype, device=device)
        self.prior = body_rotations if prior_rotations is None else prior_rotations
        self.contacts = None if contacts is None else contacts.clamp(0, 1)
        self.wrist_positions, self.wrist_rotations = wrist_positions, wrist_rotations
        self.torso = [JOINT_NAMES.index(j) for j in TORSO_JOINTS]
        self.feet = [JOINT_NAMES.index(j) for j in FOOT_JOINTS]
        self.wrists = [JOINT_NAMES.index(j) for j in WRIST_JOINTS]
        _, prior_positions = self.pose(self.prior)
        self.prior_torso = prior_positions[:, :, self.torso]

    def pose(self, body_rotations):
        return _pose_from_head(body_rotations, self.offsets, self.head_poses, self.cpf_offset, self.cpf_rotation)

    def active_terms(self) -> list[str]:
        """The terms with a positive weight and the data they need."""
        frames = self.head_poses.shape[1]
        needs = {"prior_delta_smoothness": frames >= 2, "rotation_smoothness": frames >= 2,
                 "acceleration": frames >= 3, "foot_skate": frames >= 2 and self.contacts is not None,
                 "wrist_position": self.wrist_positions is not None,
                 "wrist_orientation": self.wrist_rotations is not None}
        return [t for t in GUIDANCE_TERMS if self.config.weight(t) > 0 and needs.get(t, True)]

    def residuals(self, body_rotations) -> dict[str, torch.Tensor]:
        """Weighted residuals per term, each (B, n)."""
        batch = body_rotations.shape[0]
        terms = self.active_terms()
        world_rotations, positions = self.pose(body_rotations)
        deviation = _rotation_error(self.prior.transpose(-1, -2) @ body_rotations)
        out = {}
        for term in terms:
            if term == "prior_rotation":
                value = deviation
            elif term == "prior_position":
                value = positions[:, :, self.torso] - self.prior_torso
            elif term == "prior_delta_smoothness":
                value = deviation[:, 1:] - deviation[:, :-1]
            elif term == "rotation_smoothness":
                value = _rotation_error(body_rotations[:, :-1].transpose(-1, -2) @ body_rotations[:, 1:])
            elif term == "acceleration":
                value = positions[:, 2:] - 2 * positions[:, 1:-1] + positions[:, :-2]
            elif term == "foot_skate":
                feet = positions[:, :, self.feet]
                weight = 0.5 * (self.contacts[:, 1:] + self.contacts[:, :-1])
                value = (feet[:, 1:] - feet[:, :-1]) * weight[..., None]
            elif term == "wrist_position":
                value = positions[:, :, self.wrists] - self.wrist_positions
            else:  # wrist_orientation
                value = _rotation_error(self.wrist_rotations.transpose(-1, -2) @ world_rotations[:, :, self.wrists])
            out[term] = self.config.weight(term) * value.reshape(batch, -1)
        return out

    def flat_residuals(self, body_rotations) -> torch.Tensor:
        parts = list(self.residuals(body_rotations).values())
        if not parts:
            return body_rotations.new_zeros(body_rotations.shape[0], 0)
        return torch.cat(parts, dim=1)


def _apply_increment(body_rotations: torch.Tensor, increment: torch.Tensor) -> torch.Tensor:
    return body_rotations @ roma.rotvec_to_rotmat(increment.reshape(*body_rotations.shape[:3], 3))


def _batched_cg(operator, rhs: torch.Tensor, iterations: int) -> torch.Tensor:
    """Conjugate gradients for ``operator(x) = rhs`` per row of (B, N) ``rhs`` (symmetric positive definite)."""
    x = torch.zeros_like(rhs)
    residual = rhs.clone()
    direction = residual.clone()
    norm = (residual * residual).sum(-1)
    tiny = torch.finfo(rhs.dtype).tiny
    for _ in range(iterations):
        product = operator(direction)
        curvature = (direction * product).sum(-1)
        alpha = torch.where(curvature > tiny, norm / curvature.clamp_min(tiny), torch.zeros_like(norm))
        x = x + alpha[:, None] * direction
        residual = residual - alpha[:, None] * product
        new_norm = (residual * residual).sum(-1)
        beta = torch.where(norm > tiny, new_norm / norm.clamp_min(tiny), torch.zeros_like(norm))
        direction = residual + beta[:, None] * direction
        norm = new_norm
    return x


def _solve(problem: _Problem, body_rotations: torch.Tensor, iterations: int) -> torch.Tensor:
    config = problem.config
    batch = body_rotations.shape[0]
    rotations = body_rotations
    damping = torch.full((batch,), float(config.initial_damping), dtype=rotations.dtype, device=rotations.device)
    cost = (problem.flat_residuals(rotations) ** 2).sum(-1)
    for _ in range(iterations):
        if not bool((cost > 0).any()):
            break  # every sequence already at zero cost: nothing to move
        zero = rotations.new_zeros(batch, rotations.shape[1] * rotations.shape[2] * 3)
        with torch.enable_grad():
            residual, transpose = vjp(lambda d: problem.flat_residuals(_apply_increment(rotations, d)), zero)
            # J v as the derivative of the linear map u -> Jᵀu (reverse mode twice; see the module docstring).
            _, forward = vjp(lambda u: transpose(u)[0], torch.zeros_like(residual))
            gradient = transpose(residual)[0].detach()

            def normal(v, damping=damping, forward=forward, transpose=transpose):
                return transpose(forward(v)[0])[0].detach() + damping[:, None] * v

            step = _batched_cg(normal, -gradient, config.cg_iterations)
        candidate = _apply_increment(rotations, step)
        new_cost = (problem.flat_residuals(candidate) ** 2).sum(-1)
        better = new_cost < cost
        rotations = torch.where(better[:, None, None, None, None], candidate, rotations)
        cost = torch.where(better, new_cost, cost)
        damping = torch.where(better, damping * 0.5, damping * 2.0).clamp(1e-6, 1e6)
    return rotations


def guide_motion(body_rotations: torch.Tensor, offsets: torch.Tensor, head_poses: torch.Tensor,
                 contacts: torch.Tensor | None = None, config: MotionGuidanceConfig | None = None,
                 iterations: int | None = None, prior_rotations: torch.Tensor | None = None,
                 wrist_positions: torch.Tensor | None = None,
                 wrist_rotations: torch.Tensor | None = None) -> torch.Tensor:
    """Guided body rotations (B, T, 21, 3, 3), starting from ``body_rotations`` (the x̂₀ rotations, in SO(3)).

    Args:
        body_rotations: (B, T, 21, 3, 3) local rotations of the joints after the pelvis (the solve's start).
        offsets: (22, 3) or (B, 22, 3) bone offsets.
        head_poses: (B, T, 4, 4) observed world CPF poses; the pelvis is placed from them.
        contacts: (B, T, 4) foot contacts of `FOOT_JOINTS` in [0, 1] (the x̂₀ contacts; values outside are clamped,
            since x̂₀ is only approximately 0/1); None switches the foot-skate term off.
        config: weights and iteration counts (`MotionGuidanceConfig()` when None).
        iterations: Levenberg-Marquardt iterations (default ``config.post_iterations``).
        prior_rotations: the rotations the prior terms hold to (default ``body_rotations``).
        wrist_positions: (B, T, 2, 3) observed world positions of the left and right wrist, or None.
        wrist_rotations: (B, T, 2, 3, 3) observed world orientations of the wrists, or None.
    """
    config = MotionGuidanceConfig() if config is None else config
    problem = _Problem(body_rotations, contacts, offsets, head_poses, config, prior_rotations, wrist_positions,
                       wrist_rotations)
    iterations = config.post_iterations if iterations is None else iterations
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"`iterations` must be an integer ≥ 0, got {iterations!r}")
    if not problem.active_terms() or iterations == 0:
        return body_rotations
    with torch.no_grad():
        return _solve(problem, body_rotations.detach(), iterations)


def guidance_residuals(body_rotations: torch.Tensor, offsets: torch.Tensor, head_poses: torch.Tensor,
                       contacts: torch.Tensor | None = None, config: MotionGuidanceConfig | None = None,
                       prior_rotations: torch.Tensor | None = None, wrist_positions: torch.Tensor | None = None,
                       wrist_rotations: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The weighted residuals (B, n) of each active term at ``body_rotations`` (arguments as `guide_motion`)."""
    config = MotionGuidanceConfig() if config is None else config
    problem = _Problem(body_rotations, contacts, offsets, head_poses, config, prior_rotations, wrist_positions,
                       wrist_rotations)
    return problem.residuals(body_rotations)


def guidance_costs(body_rotations: torch.Tensor, offsets: torch.Tensor, head_poses: torch.Tensor,
                   contacts: torch.Tensor | None = None, config: MotionGuidanceConfig | None = None,
                   prior_rotations: torch.Tensor | None = None, wrist_positions: torch.Tensor | None = None,
                   wrist_rotations: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Each active term's cost (B,): the sum of its squared weighted residuals (arguments as `guide_motion`)."""
    residuals = guidance_residuals(body_rotations, offsets, head_poses, contacts, config, prior_rotations,
                                   wrist_positions, wrist_rotations)
    return {term: (value ** 2).sum(-1) for term, value in residuals.items()}
