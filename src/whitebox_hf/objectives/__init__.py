"""Training objectives for self-supervised and multimodal learning (book §8.2-§8.3): the coding rate, SimDINO
and its DINO baseline, the EMA teacher, CLIP's symmetric InfoNCE and MAE's masked-patch reconstruction."""

from ..nn.coding_rate import coding_rate
from .contrastive import clamp_logit_scale_, clip_loss
from .dino import DINOHead, DINOLoss
from .masked_modeling import masked_patch_loss, random_patch_mask
from .simdino import SimDINOLossOutput, simdino_loss
from .teacher import cosine_momentum, ema_update_

__all__ = [
    "DINOHead",
    "DINOLoss",
    "SimDINOLossOutput",
    "clamp_logit_scale_",
    "clip_loss",
    "coding_rate",
    "cosine_momentum",
    "ema_update_",
    "masked_patch_loss",
    "random_patch_mask",
    "simdino_loss",
]
