"""Cupid (pose-grounded single-image 3D generation, book §8.9): the occupancy + UV cube, the stage-1 flow and the
stage-2 appearance flow.

Lazy (transformers' `_LazyModule`): to export a name, add it to `_import_structure` and to the `TYPE_CHECKING`
imports."""

from typing import TYPE_CHECKING

_import_structure = {
    "configuration_cupid_appearance": ["CUPID_APPEARANCE_PRESETS", "CupidAppearanceConfig"],
    "modeling_cupid_appearance": [
        "CupidAppearanceCondition",
        "CupidAppearanceModel",
        "CupidAppearanceOutput",
        "CupidAppearancePreTrainedModel",
        "project_voxel_centers",
        "render_voxel_colors",
        "shaded_voxel_colors",
        "voxel_normals",
        "voxel_view_colors",
    ],
    "configuration_cupid_flow": ["CUPID_FLOW_PRESETS", "CupidFlowConfig", "DEFAULT_IMAGE_ENCODER_CONFIG"],
    "modeling_cupid_flow": [
        "CupidFlowModel",
        "CupidFlowOutput",
        "CupidFlowPreTrainedModel",
        "flow_matching_target",
        "interpolate_flow_path",
        "sample_logit_normal_timesteps",
        "shift_timesteps",
    ],
    "uv_cube": [
        "UV_CUBE_CHANNELS",
        "UVCubeCorrespondences",
        "build_uv_cube",
        "camera_from_pose",
        "camera_from_uv_cube",
        "decode_uv_cube",
        "denormalize_cube",
        "normalize_cube",
        "uv_cube_from_shape",
        "voxel_grid_points",
    ],
}

if TYPE_CHECKING:
    from .configuration_cupid_appearance import CUPID_APPEARANCE_PRESETS, CupidAppearanceConfig
    from .configuration_cupid_flow import (
        CUPID_FLOW_PRESETS,
        DEFAULT_IMAGE_ENCODER_CONFIG,
        CupidFlowConfig,
    )
    from .modeling_cupid_appearance import (
        CupidAppearanceCondition,
        CupidAppearanceModel,
        CupidAppearanceOutput,
        CupidAppearancePreTrainedModel,
        project_voxel_centers,
        render_voxel_colors,
        shaded_voxel_colors,
        voxel_normals,
        voxel_view_colors,
    )
    from .modeling_cupid_flow import (
        CupidFlowModel,
        CupidFlowOutput,
        CupidFlowPreTrainedModel,
        flow_matching_target,
        interpolate_flow_path,
        sample_logit_normal_timesteps,
        shift_timesteps,
    )
    from .uv_cube import (
        UV_CUBE_CHANNELS,
        UVCubeCorrespondences,
        build_uv_cube,
        camera_from_pose,
        camera_from_uv_cube,
        decode_uv_cube,
        denormalize_cube,
        normalize_cube,
        uv_cube_from_shape,
        voxel_grid_points,
    )
else:
    import sys

    from transformers.utils.import_utils import _LazyModule

    sys.modules[__name__] = _LazyModule(__name__, globals()["__file__"], _import_structure, module_spec=__spec__)
