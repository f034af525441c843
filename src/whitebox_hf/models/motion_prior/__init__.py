"""EgoAllo's motion prior (full-body motion from the head trajectory, book §8.10): the head conditionings of Table
8.15 and the x₀-predicting diffusion transformer with its loss and DDIM sampler.

Lazy (transformers' `_LazyModule`): to export a name, add it to `_import_structure` and to the `TYPE_CHECKING`
imports."""

from typing import TYPE_CHECKING

_import_structure = {
    "configuration_motion_prior": [
        "HEAD_CONDITIONINGS",
        "HEAD_CONDITIONING_DIMS",
        "MOTION_PRIOR_PRESETS",
        "MotionPriorConfig",
    ],
    "guidance": [
        "GUIDANCE_TERMS",
        "TORSO_JOINTS",
        "MotionGuidanceConfig",
        "guidance_costs",
        "guidance_residuals",
        "guide_motion",
    ],
    "head_conditioning": ["check_head_poses", "fourier_encode", "head_condition_features", "head_condition_size"],
    "modeling_motion_prior": [
        "MotionPriorModel",
        "MotionPriorOutput",
        "MotionPriorPreTrainedModel",
        "MotionSample",
        "egoallo_timesteps",
        "motion_prior_loss",
        "motion_prior_training_loss",
        "motion_prior_scheduler",
        "noise_level_weights",
        "pack_motion",
        "place_root_from_head",
        "sample_motion",
        "unpack_motion",
    ],
    "windowed_sampling": ["GUIDANCE_MODES", "sample_motion_windowed", "window_blend_weights", "window_starts"],
}

if TYPE_CHECKING:
    from .configuration_motion_prior import (
        HEAD_CONDITIONING_DIMS,
        HEAD_CONDITIONINGS,
        MOTION_PRIOR_PRESETS,
        MotionPriorConfig,
    )
    from .guidance import (
        GUIDANCE_TERMS,
        TORSO_JOINTS,
        MotionGuidanceConfig,
        guidance_costs,
        guidance_residuals,
        guide_motion,
    )
    from .head_conditioning import check_head_poses, fourier_encode, head_condition_features, head_condition_size
    from .modeling_motion_prior import (
        MotionPriorModel,
        MotionPriorOutput,
        MotionPriorPreTrainedModel,
        MotionSample,
        egoallo_timesteps,
        motion_prior_loss,
        motion_prior_training_loss,
        motion_prior_scheduler,
        noise_level_weights,
        pack_motion,
        place_root_from_head,
        sample_motion,
        unpack_motion,
    )
    from .windowed_sampling import GUIDANCE_MODES, sample_motion_windowed, window_blend_weights, window_starts
else:
    import sys

    from transformers.utils.import_utils import _LazyModule

    sys.modules[__name__] = _LazyModule(__name__, globals()["__file__"], _import_structure, module_spec=__spec__)
