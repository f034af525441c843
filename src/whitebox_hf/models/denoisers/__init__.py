"""Class-conditional denoisers for flow matching: diffusers' DiT with DiT's own initialisation, and a CRATE-style
denoiser (MSSA + ISTA blocks with adaLN-Zero) as the white-box ablation."""

from .crate_denoiser import CrateDenoiserTransformer
from .dit import build_dit_transformer, disable_builtin_label_dropout, initialize_dit_weights

__all__ = [
    "CrateDenoiserTransformer",
    "build_dit_transformer",
    "disable_builtin_label_dropout",
    "initialize_dit_weights",
]
