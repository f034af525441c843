"""whitebox_hf: the white-box networks of *Learning Deep Representations of Data Distributions* as
Hugging Face models. Importing the package registers every architecture with the Auto classes."""

__version__ = "0.1.0"

from .models import auto as _auto  # noqa: F401  (registers the Auto classes)
from .models.crate import (
    CRATE_PRESETS,
    CrateConfig,
    CrateForImageClassification,
    CrateImageProcessor,
    CrateModel,
    CratePreTrainedModel,
)
from .nn import ISTA, MultiHeadSubspaceSelfAttention, OvercompleteDictionaryLearning, coding_rate

__all__ = [
    "CRATE_PRESETS",
    "CrateConfig",
    "CrateForImageClassification",
    "CrateImageProcessor",
    "CrateModel",
    "CratePreTrainedModel",
    "ISTA",
    "MultiHeadSubspaceSelfAttention",
    "OvercompleteDictionaryLearning",
    "coding_rate",
]
