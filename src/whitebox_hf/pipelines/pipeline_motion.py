"""`MotionGenerationPipeline`: full-body motion from the trajectory of a head-mounted device (EgoAllo, book §8.10;
spec ``threed_and_motion.md`` §3).

    head poses (T, 4, 4) ─ the motion prior's DDIM sampler (30 steps) over MultiDiffusion windows ─┐
        each step: windows' x̂₀ blended, rotations projected onto SO(3), guidance (5 LM iterations), update
    ─ guidance once more (20 iterations) → pelvis placed from the head → forward kinematics
    → joints (T, 22, 3), local rotations (T, 22, 3, 3), foot contacts (T, 4), BVH text

The skeleton (bone offsets of `whitebox_hf.data.JOINT_NAMES`, metres) is part of the pipeline's configuration
(``offsets``) and may be replaced per call. Head poses are world CPF poses (+Z up) at the pipeline's frame rate
(``fps``, 30); ``floor_height`` is the floor's z in that world, subtracted from the head heights the prior sees
(None: the floor is taken to be at z = 0, EgoAllo without a floor estimate). The sampling and guidance are
`whitebox_hf.models.motion_prior.sample_motion_windowed` and `guide_motion`.

Example, a held-out clip (``clip.positions`` is the ground truth), with ``load_motion_clip`` and
``save_motion_gif`` of the package's data module and ``motion_prior_scheduler`` of its motion prior::

    pipe = MotionGenerationPipeline(prior, motion_prior_scheduler(prior.config, "ddim"),
                                    offsets=load_motion_clip("01_03").offsets.tolist())
    clip = load_motion_clip("01_01")
    out = pipe(clip.head_poses, generator=torch.Generator().manual_seed(0), output_type="bvh")
    open("estimate.bvh", "w").write(out.bvh[0])
    save_motion_gif("estimate.gif", {"estimate": out.joints[0], "ground truth": clip.positions}, stride=3)

Save/load as the package's other pipelines: ``pipe.save_pretrained(folder)``, then
``MotionGenerationPipeline.from_pretrained(folder)`` with whitebox_hf or
``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`` without it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput

from ..data.motion import JOINT_NAMES, JOINT_PARENTS, TARGET_FPS
from ..data.motion_bvh import motion_to_bvh
from ..data.motion_kinematics import check_rigid_poses
from ..models.motion_prior.guidance import MotionGuidanceConfig
from ..models.motion_prior.windowed_sampling import GUIDANCE_MODES, sample_motion_windowed
from .class_conditional import ClassConditionalPipelineMixin

__all__ = ["MOTION_OUTPUT_TYPES", "MotionGenerationPipeline", "MotionGenerationPipelineOutput"]

MOTION_OUTPUT_TYPES = ("joints", "rotations", "bvh")
SCHEDULES = ("ddim", "egoallo")


@dataclass
class MotionGenerationPipelineOutput(BaseOutput):
    """Output of `MotionGenerationPipeline` (B sequences of T frames).

    Args:
        joints (`torch.FloatTensor` of shape `(B, T, 22, 3)`): world joint positions (metres, +Z up).
        contacts (`torch.BoolTensor` of shape `(B, T, 4)`): foot contacts of `FOOT_JOINTS` (x̂₀'s values > 0.5).
        local_rotations (`torch.FloatTensor` of shape `(B, T, 22, 3, 3)`, *optional*): rotations relative to the
            parent (joint 0's: the pelvis's world orientation); ``output_type`` ``"rotations"`` or ``"bvh"``.
        root_translation (`torch.FloatTensor` of shape `(B, T, 3)`, *optional*): the `forward_kinematics` root
            translation; with ``local_rotations``.
        bvh (`list[str]`, *optional*): one BVH file's text per sequence (``output_type="bvh"``).
    """

    joints: torch.Tensor
    contacts: torch.Tensor
    local_rotations: torch.Tensor | None = None
    root_translation: torch.Tensor | None = None
    bvh: list[str] | None = None


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an integer ≥ {minimum}, got {value!r}")


def _check_positive_number(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"`{name}` must be a positive finite number, got {value!r}")


def _check_offsets(name: str, offsets, batch: int | None = None) -> None:
    joints = len(JOINT_NAMES)
    if not isinstance(offsets, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor of shape ({joints}, 3), got {type(offsets).__name__}")
    allowed = [(joints, 3)] + ([] if batch is None else [(batch, joints, 3)])
    if tuple(offsets.shape) not in allowed:
        raise ValueError(f"`{name}` must have shape {' or '.join(map(str, allowed))}, got {tuple(offsets.shape)}")
    if not offsets.is_floating_point():
        raise TypeError(f"`{name}` must be a floating-point tensor, got dtype {offsets.dtype}")
    if not bool(torch.isfinite(offsets).all()):
        raise ValueError(f"`{name}` must be finite, got NaN or infinite values")


class MotionGenerationPipeline(ClassConditionalPipelineMixin, DiffusionPipeline):
    """Body motion from head poses with EgoAllo's motion prior (see the module docstring).

    Args:
        prior (`MotionPriorModel`): the x₀-predicting motion prior.
        scheduler (`DDIMScheduler`): its sampling schedule (`motion_prior_scheduler(config, "ddim")`).
        offsets (`list[list[float]]`): the skeleton, (22, 3) bone offsets in metres (e.g. a training clip's
            ``MotionClip.offsets.tolist()``).
        fps (`int`, defaults to 30): the frame rate the prior was trained at; head poses must have it.
        window (`int`, defaults to 128): frames per MultiDiffusion window (the training window).
        overlap (`int`, defaults to 32): frames shared by neighbouring windows.
        min_frames (`int`, defaults to 32): the shortest head trajectory accepted (the shortest training window:
            the prior has never seen fewer frames).
    """

    model_cpu_offload_seq = "prior"

    def __init__(self, prior, scheduler, offsets: list | None = None, fps: int = TARGET_FPS, window: int = 128,
                 overlap: int = 32, min_frames: int = 32):
        super().__init__()
        if offsets is None:
            raise ValueError(f"`offsets` must be the skeleton's ({len(JOINT_NAMES)}, 3) bone offsets in metres, got "
                             "None")
        offsets_tensor = torch.as_tensor(offsets, dtype=torch.float64) if not isinstance(offsets, torch.Tensor) \
            else offsets.double()
        _check_offsets("offsets", offsets_tensor)
        _check_int("fps", fps, 1)
        _check_int("window", window, 2)
        if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < window:
            raise ValueError(f"`overlap` must be an integer in [0, window) = [0, {window}), got {overlap!r}")
        _check_int("min_frames", min_frames, 2)
        config = getattr(prior, "config", None)
        if getattr(config, "model_type", None) != "motion_prior":
            raise TypeError(f"`prior` must be a MotionPriorModel, got {type(prior).__name__}")
        if config.num_body_joints != len(JOINT_NAMES) - 1:
            raise ValueError(f"`prior` denoises {config.num_body_joints} body joints; the skeleton has "
                             f"{len(JOINT_NAMES) - 1} after the pelvis")
        self.register_modules(prior=prior, scheduler=scheduler)
        self.register_to_config(offsets=offsets_tensor.tolist(), fps=fps, window=window, overlap=overlap,
                                min_frames=min_frames)

    @property
    def skeleton_offsets(self) -> torch.Tensor:
        """The configured skeleton, (22, 3) float64."""
        return torch.tensor(self.config.offsets, dtype=torch.float64)

    # -- input checks ----------------------------------------------------------------------------------------

    def _check_head_poses(self, head_poses) -> torch.Tensor:
        if not isinstance(head_poses, torch.Tensor):
            raise TypeError(f"`head_poses` must be a torch.Tensor of shape (T, 4, 4) or (B, T, 4, 4), got "
                            f"{type(head_poses).__name__}")
        if head_poses.ndim not in (3, 4) or tuple(head_poses.shape[-2:]) != (4, 4):
            raise ValueError(f"`head_poses` must have shape (T, 4, 4) or (B, T, 4, 4), got {tuple(head_poses.shape)}")
        if not head_poses.is_floating_point():
            raise TypeError(f"`head_poses` must be a floating-point tensor (float32 or float64), got dtype "
                            f"{head_poses.dtype}")
        poses = head_poses if head_poses.ndim == 4 else head_poses[None]
        if poses.shape[0] == 0:
            raise ValueError(f"`head_poses` must hold at least one sequence, got shape {tuple(head_poses.shape)}")
        if poses.shape[1] < self.config.min_frames:
            raise ValueError(f"`head_poses` must hold at least {self.config.min_frames} frames (`min_frames`, at "
                             f"{self.config.fps} fps), got {poses.shape[1]}")
        check_rigid_poses("head_poses", poses.detach().cpu())
        return poses

    def _check_floor(self, floor_height, batch: int, dtype) -> torch.Tensor | None:
        if floor_height is None:
            return None
        if isinstance(floor_height, torch.Tensor):
            if tuple(floor_height.shape) not in ((), (batch,)):
                raise ValueError(f"`floor_height` must be a number or a tensor of shape ({batch},) (one per "
                                 f"sequence), got shape {tuple(floor_height.shape)}")
            if not floor_height.is_floating_point():
                raise TypeError(f"`floor_height` must be a floating-point tensor, got dtype {floor_height.dtype}")
            if not bool(torch.isfinite(floor_height).all()):
                raise ValueError(f"`floor_height` must be finite, got {floor_height.tolist()}")
            return floor_height.to(dtype).expand(batch).clone()
        if isinstance(floor_height, bool) or not isinstance(floor_height, (int, float)) or not math.isfinite(
                floor_height):
            raise ValueError(f"`floor_height` must be a finite number (metres), a ({batch},) tensor or None, got "
                             f"{floor_height!r}")
        return torch.full((batch,), float(floor_height), dtype=dtype)

    def _check_wrists(self, name: str, value, shape: tuple) -> torch.Tensor | None:
        if value is None:
            return None
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"`{name}` must be a torch.Tensor of shape {shape}, got {type(value).__name__}")
        if value.ndim == len(shape) - 1:
            value = value[None]
        if tuple(value.shape) != shape:
            raise ValueError(f"`{name}` must have shape {shape} (or without the batch axis), got "
                             f"{tuple(value.shape)}")
        if not value.is_floating_point():
            raise TypeError(f"`{name}` must be a floating-point tensor, got dtype {value.dtype}")
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"`{name}` must be finite, got NaN or infinite values")
        return value

    @staticmethod
    def _guidance_config(guidance_config) -> MotionGuidanceConfig | None:
        if guidance_config is None or isinstance(guidance_config, MotionGuidanceConfig):
            return guidance_config
        if isinstance(guidance_config, dict):
            known = {f.name for f in fields(MotionGuidanceConfig)}
            unknown = sorted(set(guidance_config) - known)
            if unknown:
                raise ValueError(f"`guidance_config` has unknown keys {unknown}; expected some of {sorted(known)}")
            return MotionGuidanceConfig(**guidance_config)
        raise TypeError(f"`guidance_config` must be a MotionGuidanceConfig, a dict of its fields or None, got "
                        f"{type(guidance_config).__name__}")

    # -- sampling --------------------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self,
        head_poses: torch.Tensor,
        num_inference_steps: int = 30,
        guidance: str = "inner_and_post",
        guidance_config: MotionGuidanceConfig | dict | None = None,
        floor_height: float | torch.Tensor | None = None,
        fps: float | None = None,
        offsets: torch.Tensor | None = None,
        wrist_positions: torch.Tensor | None = None,
        wrist_rotations: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        eta: float = 0.8,
        schedule: str = "ddim",
        output_type: str = "joints",
        return_dict: bool = True,
    ) -> MotionGenerationPipelineOutput | tuple:
        """Estimate body motion for one or more head trajectories.

        Args:
            head_poses (`torch.Tensor` of shape `(T, 4, 4)` or `(B, T, 4, 4)`): world poses of the head (CPF) frame:
                rigid, finite, +Z up, T ≥ ``min_frames``, at ``fps``; float32 or float64 (sampled in the prior's
                dtype).
            num_inference_steps (`int`, defaults to 30): sampler steps.
            guidance (`str`, defaults to ``"inner_and_post"``): ``"off"``, ``"post"`` or ``"inner_and_post"``.
            guidance_config (`MotionGuidanceConfig` or `dict`, *optional*): guidance weights and iterations.
            floor_height (`float` or `(B,)` tensor, *optional*): the floor's z (None: z = 0).
            fps (`float`, *optional*): the trajectory's frame rate; must equal the pipeline's (checked when given).
            offsets (`(22, 3)` or `(B, 22, 3)` tensor, *optional*): skeleton(s) instead of the configured one.
            wrist_positions (`(B, T, 2, 3)`), wrist_rotations (`(B, T, 2, 3, 3)`) (*optional*): observed world
                wrist poses (left, right) for the guidance's wrist terms.
            generator (`torch.Generator`, *optional*): the noise.
            eta (`float`, defaults to 0.8): noise scale of the update (EgoAllo: 0.8).
            schedule (`str`, defaults to ``"ddim"``): ``"ddim"`` (the pipeline's scheduler) or ``"egoallo"``.
            output_type (`str`, defaults to ``"joints"``): ``"joints"``, ``"rotations"`` (adds local rotations and
                root translation) or ``"bvh"`` (adds those and the BVH texts).
            return_dict (`bool`, defaults to `True`): a `MotionGenerationPipelineOutput` or a tuple of its fields.

        Raises:
            TypeError: a non-tensor or non-floating ``head_poses`` (or other tensor argument), a bad ``generator``.
            ValueError: a wrong shape, non-finite or non-rigid head poses, fewer than ``min_frames`` frames, a frame
                rate other than the pipeline's, a bad ``floor_height``, ``guidance``, ``schedule`` or
                ``output_type``.
        """
        poses = self._check_head_poses(head_poses)
        batch, frames = poses.shape[:2]
        if fps is not None:
            _check_positive_number("fps", fps)
            if abs(fps - self.config.fps) > 1e-6 * self.config.fps:
                raise ValueError(f"`fps` must be the pipeline's frame rate {self.config.fps} (resample the "
                                 f"trajectory first, e.g. whitebox_hf.data.resample_motion), got {fps!r}")
        _check_int("num_inference_steps", num_inference_steps, 1)
        if not isinstance(guidance, str) or guidance not in GUIDANCE_MODES:
            raise ValueError(f"`guidance` must be one of {GUIDANCE_MODES}, got {guidance!r}")
        guidance_config = self._guidance_config(guidance_config)
        if not isinstance(schedule, str) or schedule not in SCHEDULES:
            raise ValueError(f"`schedule` must be one of {SCHEDULES}, got {schedule!r}")
        if not isinstance(output_type, str) or output_type not in MOTION_OUTPUT_TYPES:
            raise ValueError(f"`output_type` must be one of {MOTION_OUTPUT_TYPES}, got {output_type!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"`generator` must be a torch.Generator or None, got {type(generator).__name__}")
        if offsets is None:
            offsets = self.skeleton_offsets
        else:
            _check_offsets("offsets", offsets, batch)
        device, dtype = self._execution_device, self.prior.dtype
        floor = self._check_floor(floor_height, batch, dtype)
        wrists = self._check_wrists("wrist_positions", wrist_positions, (batch, frames, 2, 3))
        wrist_turns = self._check_wrists("wrist_rotations", wrist_rotations, (batch, frames, 2, 3, 3))

        sample = sample_motion_windowed(
            self.prior, poses.to(device=device, dtype=dtype), offsets.to(device=device, dtype=dtype),
            num_inference_steps=num_inference_steps, eta=eta,
            floor_height=None if floor is None else floor.to(device), generator=generator, schedule=schedule,
            window=self.config.window, overlap=self.config.overlap, guidance=guidance,
            guidance_config=guidance_config,
            wrist_positions=None if wrists is None else wrists.to(device=device, dtype=dtype),
            wrist_rotations=None if wrist_turns is None else wrist_turns.to(device=device, dtype=dtype),
            scheduler=self.scheduler, progress=self.progress_bar)

        output = MotionGenerationPipelineOutput(joints=sample.positions, contacts=sample.contacts > 0.5)
        if output_type in ("rotations", "bvh"):
            output.local_rotations, output.root_translation = sample.local_rotations, sample.root_translation
        if output_type == "bvh":
            skeletons = offsets.expand(batch, -1, -1) if offsets.ndim == 2 else offsets
            output.bvh = [motion_to_bvh(sample.local_rotations[b], sample.root_translation[b],
                                        skeletons[b].to(sample.local_rotations), fps=self.config.fps,
                                        names=JOINT_NAMES, parents=JOINT_PARENTS) for b in range(batch)]
        self.maybe_free_model_hooks()
        if not return_dict:
            return tuple(getattr(output, f.name) for f in fields(output) if getattr(output, f.name) is not None)
        return output
