"""The architectures, one subpackage per family (transformers' layout). Lazy (transformers' `_LazyModule`):
`import whitebox_hf.models.crate.configuration_crate` imports neither the modeling code nor torch's heavy parts."""

from typing import TYPE_CHECKING

_import_structure = {
    "aot": [],
    "attention_interface": [],
    "auto": [],
    "autoencoders": [],
    "causal_crate": [],
    "crate": [],
    "cupid": [],
    "denoisers": [],
    "language_modeling": [],
    "modeling_utils": [],
    "motion_prior": [],
    "sita_vae": [],
    "tost": [],
    "validation": [],
    "whitebox_clip": [],
}

if TYPE_CHECKING:
    from . import (aot, attention_interface, auto, autoencoders, causal_crate, crate, cupid, denoisers,
                   language_modeling, motion_prior, sita_vae, tost, whitebox_clip)
else:
    import sys

    from transformers.utils.import_utils import _LazyModule

    sys.modules[__name__] = _LazyModule(__name__, globals()["__file__"], _import_structure, module_spec=__spec__)
