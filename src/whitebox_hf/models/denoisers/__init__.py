"""Class-conditional denoisers for flow matching: diffusers' DiT with DiT's own initialisation, and a CRATE-style
denoiser (MSSA + ISTA blocks with adaLN-Zero) as the white-box ablation; and the aligned shape latent denoiser
(Michelangelo's ASLDM) with its condition encoders."""

from typing import TYPE_CHECKING

_import_structure = {
    "aligned_shape_latent": ["AlignedShapeLatentDenoiser"],
    "shape_conditions": [
        "encode_image_condition",
        "encode_text_condition",
        "images_to_pixel_values",
        "load_minilm_text_encoder",
        "null_image_condition",
    ],
    "crate_denoiser": ["CrateDenoiserTransformer"],
    "inputs": ["check_denoiser_inputs"],
    "dit": ["add_input_checks", "build_dit_transformer", "disable_builtin_label_dropout", "initialize_dit_weights"],
}

if TYPE_CHECKING:
    from .aligned_shape_latent import AlignedShapeLatentDenoiser
    from .crate_denoiser import CrateDenoiserTransformer
    from .dit import add_input_checks, build_dit_transformer, disable_builtin_label_dropout, initialize_dit_weights
    from .inputs import check_denoiser_inputs
    from .shape_conditions import (
        encode_image_condition,
        encode_text_condition,
        images_to_pixel_values,
        load_minilm_text_encoder,
        null_image_condition,
    )
else:
    import sys

    from transformers.utils.import_utils import _LazyModule

    sys.modules[__name__] = _LazyModule(__name__, globals()["__file__"], _import_structure, module_spec=__spec__)
