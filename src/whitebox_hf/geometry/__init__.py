"""Camera geometry for pose-grounded 3D generation (Cupid, book §8.9; spec threed_and_motion.md §2.3-2.7):
OpenCV-convention projection, PnP by a Hartley-normalised DLT with RQ decomposition and Gauss-Newton refinement, the
de-crop mapping of intrinsics, and similarity (Umeyama) alignment.

A low layer: it imports only torch, roma and ``whitebox_hf.utils``. Lazy (transformers' `_LazyModule`): to export a
name, add it to `_import_structure` and to the `TYPE_CHECKING` imports."""

from typing import TYPE_CHECKING

_import_structure = {
    "camera": [
        "crop_intrinsics",
        "decrop_intrinsics",
        "intrinsics_pixels_to_uv",
        "intrinsics_uv_to_pixels",
        "pixels_to_uv",
        "project_points",
        "projection_matrix",
        "uv_to_pixels",
        "voxel_centers",
        "world_to_camera",
    ],
    "pnp": ["PnPSolution", "decompose_projection_matrix", "refine_pose", "solve_pnp_dlt"],
    "alignment": ["apply_similarity", "rotation_error_degrees", "similarity_alignment"],
}

if TYPE_CHECKING:
    from .alignment import apply_similarity, rotation_error_degrees, similarity_alignment
    from .camera import (
        crop_intrinsics,
        decrop_intrinsics,
        intrinsics_pixels_to_uv,
        intrinsics_uv_to_pixels,
        pixels_to_uv,
        project_points,
        projection_matrix,
        uv_to_pixels,
        voxel_centers,
        world_to_camera,
    )
    from .pnp import PnPSolution, decompose_projection_matrix, refine_pose, solve_pnp_dlt
else:
    import sys

    from transformers.utils.import_utils import _LazyModule

    sys.modules[__name__] = _LazyModule(__name__, globals()["__file__"], _import_structure, module_spec=__spec__)
