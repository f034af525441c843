"""The action-conditioned world model (Genie-style next-frame diffusion, book §8.7) and its deterministic regressor
baseline (`modeling_world_model`), and the temporal inflation of a 2D U-Net into a video model (`video`).

Lazy (transformers' `_LazyModule`): to export a name, add it to `_import_structure` and to the `TYPE_CHECKING`
imports."""

from typing import TYPE_CHECKING

_import_structure = {
    "modeling_world_model": [
        "PREDICTIONS",
        "WorldModel",
        "WorldModelOutput",
        "check_actions",
        "frames_to_pixels",
        "pixels_to_frames",
        "world_model_loss",
    ],
}

if TYPE_CHECKING:
    from .modeling_world_model import (
        PREDICTIONS,
        WorldModel,
        WorldModelOutput,
        check_actions,
        frames_to_pixels,
        pixels_to_frames,
        world_model_loss,
    )
else:
    import sys

    from transformers.utils.import_utils import _LazyModule

    sys.modules[__name__] = _LazyModule(__name__, globals()["__file__"], _import_structure, module_spec=__spec__)
