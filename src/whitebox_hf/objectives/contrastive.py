"""CLIP's symmetric InfoNCE: defined beside `WhiteboxClipModel`, which returns it from its forward
(`whitebox_hf.models.whitebox_clip.contrastive`), and re-exported here with the other training objectives."""

from ..models.whitebox_clip.contrastive import MAX_LOGIT_SCALE, clamp_logit_scale_, clip_loss

__all__ = ["MAX_LOGIT_SCALE", "clamp_logit_scale_", "clip_loss"]
