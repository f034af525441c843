"""Class-conditional denoisers for flow matching: diffusers' DiT with DiT's own initialisation, and a CRATE-style
denoiser (MSSA + ISTA blocks with adaLN-Zero) as the white-box ablation."""

from typing import TYPE_CHECKING

_import_structure = {
    "crate_denoiser": ["CrateDenoiserTransformer"],
    "inputs": ["check_denoiser_inputs"],
    "dit": ["add_input_checks", "build_dit_transformer", "disable_builtin_label_dropout", "initialize_dit_weights"],
}

if TYPE_CHECKING:
    from .crate_denoiser import CrateDenoiserTransformer
    from .dit import add_input_checks, build_dit_transformer, disable_builtin_label_dropout, initialize_dit_weights
    from .inputs import check_denoiser_inputs
else:
    import sys

    from transformers.utils.import_utils import _LazyModule

    sys.modules[__name__] = _LazyModule(__name__, globals()["__file__"], _import_structure, module_spec=__spec__)
