"""What the motion-prior tests share: the settings of a tiny `MotionPriorModel` (one layer each way, width 16) and
that model, seeded, in eval mode."""

import torch

from whitebox_hf.models.motion_prior import MotionPriorConfig, MotionPriorModel

TINY = dict(hidden_size=16, intermediate_size=32, num_attention_heads=2, num_encoder_layers=1, num_decoder_layers=1,
            noise_embedding_dim=8)


def tiny_model(**overrides) -> MotionPriorModel:
    """A `MotionPriorModel` of `TINY` (with ``overrides``), its weights drawn after ``torch.manual_seed(0)``."""
    torch.manual_seed(0)
    return MotionPriorModel(MotionPriorConfig(**{**TINY, **overrides})).eval()
