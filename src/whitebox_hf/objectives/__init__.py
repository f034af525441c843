"""Training objectives for self-supervised and multimodal learning (book §8.2-§8.3): the coding rate, SimDINO
and its DINO baseline, the EMA teacher, CLIP's symmetric InfoNCE and MAE's masked-patch reconstruction.

Lazy (transformers' `_LazyModule`): a name is imported from its module on first access."""

from typing import TYPE_CHECKING

_import_structure = {
    "contrastive": ["clamp_logit_scale_", "clip_loss"],
    "dino": ["DINOHead", "DINOLoss"],
    "masked_modeling": ["masked_patch_loss", "random_patch_mask"],
    # coding_rate is nn's (whitebox_hf.nn.rate_distortion); it is re-exported here through simdino, its user.
    "simdino": ["SimDINOLossOutput", "coding_rate", "simdino_loss"],
    "teacher": ["cosine_momentum", "ema_update_"],
}

if TYPE_CHECKING:
    from ..nn.rate_distortion import coding_rate
    from .contrastive import clamp_logit_scale_, clip_loss
    from .dino import DINOHead, DINOLoss
    from .masked_modeling import masked_patch_loss, random_patch_mask
    from .simdino import SimDINOLossOutput, simdino_loss
    from .teacher import cosine_momentum, ema_update_
else:
    import sys

    from transformers.utils.import_utils import _LazyModule

    sys.modules[__name__] = _LazyModule(__name__, globals()["__file__"], _import_structure, module_spec=__spec__)
