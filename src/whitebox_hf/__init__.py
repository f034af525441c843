"""whitebox_hf: the white-box networks of *Learning Deep Representations of Data Distributions* as
Hugging Face models. Importing the package registers every architecture with the Auto classes."""

__version__ = "0.1.0"

from .models import auto as _auto  # noqa: F401  (registers the Auto classes)
from .models.crate import (
    CRATE_PRESETS,
    CrateConfig,
    CrateForImageClassification,
    CrateForMaskedImageModeling,
    CrateImageProcessor,
    CrateModel,
    CratePreTrainedModel,
)
from .models.aot import AOT_PRESETS, AoTConfig, AoTForCausalLM, AoTModel
from .models.causal_crate import CAUSAL_CRATE_PRESETS, CausalCrateConfig, CausalCrateForCausalLM, CausalCrateModel
from .models.language_modeling import nanogpt_parameter_count
from .models.tost import TOST_PRESETS, ToSTConfig, ToSTForCausalLM, ToSTForImageClassification, ToSTModel
from .models.tost import TOST_VISION_PRESETS, ToSTVisionConfig, ToSTVisionModel
from .nn import (
    ISTA,
    MultiHeadSubspaceSelfAttention,
    OvercompleteDictionaryLearning,
    TokenStatisticsCache,
    TokenStatisticsSelfAttention,
    coding_rate,
)

__all__ = [
    "AOT_PRESETS",
    "AoTConfig",
    "AoTForCausalLM",
    "AoTModel",
    "CAUSAL_CRATE_PRESETS",
    "CausalCrateConfig",
    "CausalCrateForCausalLM",
    "CausalCrateModel",
    "TOST_PRESETS",
    "ToSTConfig",
    "ToSTForCausalLM",
    "ToSTForImageClassification",
    "ToSTModel",
    "TOST_VISION_PRESETS",
    "ToSTVisionConfig",
    "ToSTVisionModel",
    "TokenStatisticsCache",
    "TokenStatisticsSelfAttention",
    "nanogpt_parameter_count",
    "CRATE_PRESETS",
    "CrateConfig",
    "CrateForImageClassification",
    "CrateForMaskedImageModeling",
    "CrateImageProcessor",
    "CrateModel",
    "CratePreTrainedModel",
    "ISTA",
    "MultiHeadSubspaceSelfAttention",
    "OvercompleteDictionaryLearning",
    "coding_rate",
]

from .models.whitebox_clip import WhiteboxClipConfig, WhiteboxClipModel, WhiteboxClipProcessor  # noqa: E402

__all__ += ["WhiteboxClipConfig", "WhiteboxClipModel", "WhiteboxClipProcessor"]

# Generation (issue 5): importing these modules also lets diffusers resolve saved pipeline components by module path.
from .models.denoisers import CrateDenoiserTransformer, build_dit_transformer  # noqa: E402
from .pipelines import WhiteboxDDPMPipeline, WhiteboxFlowPipeline  # noqa: E402

__all__ += ["CrateDenoiserTransformer", "WhiteboxDDPMPipeline", "WhiteboxFlowPipeline", "build_dit_transformer"]
