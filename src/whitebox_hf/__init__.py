"""whitebox_hf: the white-box networks of *Learning Deep Representations of Data Distributions* as
Hugging Face models. Importing the package registers every architecture with the Auto classes.

The package is lazy (transformers' `_LazyModule`): `import whitebox_hf` imports no model code, and neither torch
nor diffusers, peft, accelerate or datasets; each name below is imported from its module on first access. The
Auto-class registration (`whitebox_hf.models.auto`) runs when transformers' Auto modules are imported, so
`AutoModel.from_pretrained(folder)` works right after `import whitebox_hf`. To export a name, add it to its
module's list in `_import_structure` and to the `TYPE_CHECKING` imports (tests/test_import.py checks they agree).
"""

import sys
from typing import TYPE_CHECKING

from transformers.utils.import_utils import _LazyModule

__version__ = "0.1.0"

_import_structure = {
    "cli": [],
    "data": [],
    "evaluation": [],
    "finetuning": [],
    "geometry": [],
    "hub": [],
    "models": [],
    "objectives": [],
    "pipelines": [
        "CupidPipeline",
        "MotionGenerationPipeline",
        "ShapeGenerationPipeline",
        "WhiteboxDDPMPipeline",
        "WhiteboxFlowPipeline",
    ],
    "tokenization": [],
    "training": [],
    "utils": [],
    "models.aot": ["AOT_PRESETS", "AoTConfig", "AoTForCausalLM", "AoTModel"],
    "models.sita_vae": ["SITA_VAE_PRESETS", "SitaVaeConfig", "SitaVaeModel"],
    "models.cupid": ["CUPID_APPEARANCE_PRESETS", "CUPID_FLOW_PRESETS", "CupidAppearanceConfig", "CupidAppearanceModel",
                     "CupidFlowConfig", "CupidFlowModel"],
    "models.motion_prior": ["MOTION_PRIOR_PRESETS", "MotionPriorConfig", "MotionPriorModel"],
    "models.causal_crate": ["CAUSAL_CRATE_PRESETS", "CausalCrateConfig", "CausalCrateForCausalLM", "CausalCrateModel"],
    "models.crate": [
        "CRATE_PRESETS",
        "CrateConfig",
        "CrateForImageClassification",
        "CrateForMaskedImageModeling",
        "CrateImageProcessor",
        "CrateModel",
        "CratePreTrainedModel",
    ],
    "models.denoisers": ["AlignedShapeLatentDenoiser", "CrateDenoiserTransformer", "build_dit_transformer"],
    "models.language_modeling": ["nanogpt_parameter_count"],
    "models.tost": [
        "TOST_PRESETS",
        "TOST_VISION_PRESETS",
        "ToSTConfig",
        "ToSTForCausalLM",
        "ToSTForImageClassification",
        "ToSTModel",
        "ToSTVisionConfig",
        "ToSTVisionModel",
    ],
    "models.whitebox_clip": ["WhiteboxClipConfig", "WhiteboxClipModel", "WhiteboxClipProcessor"],
    "nn": [
        "ISTA",
        "MultiHeadSubspaceSelfAttention",
        "OvercompleteDictionaryLearning",
        "TokenStatisticsCache",
        "TokenStatisticsSelfAttention",
        "coding_rate",
    ],
}

if TYPE_CHECKING:
    from .models.aot import AOT_PRESETS, AoTConfig, AoTForCausalLM, AoTModel
    from .models.sita_vae import SITA_VAE_PRESETS, SitaVaeConfig, SitaVaeModel
    from .models.cupid import (
        CUPID_APPEARANCE_PRESETS,
        CUPID_FLOW_PRESETS,
        CupidAppearanceConfig,
        CupidAppearanceModel,
        CupidFlowConfig,
        CupidFlowModel,
    )
    from .models.motion_prior import MOTION_PRIOR_PRESETS, MotionPriorConfig, MotionPriorModel
    from .models.causal_crate import CAUSAL_CRATE_PRESETS, CausalCrateConfig, CausalCrateForCausalLM, CausalCrateModel
    from .models.crate import (
        CRATE_PRESETS,
        CrateConfig,
        CrateForImageClassification,
        CrateForMaskedImageModeling,
        CrateImageProcessor,
        CrateModel,
        CratePreTrainedModel,
    )
    from .models.denoisers import AlignedShapeLatentDenoiser, CrateDenoiserTransformer, build_dit_transformer
    from .models.language_modeling import nanogpt_parameter_count
    from .models.tost import (
        TOST_PRESETS,
        TOST_VISION_PRESETS,
        ToSTConfig,
        ToSTForCausalLM,
        ToSTForImageClassification,
        ToSTModel,
        ToSTVisionConfig,
        ToSTVisionModel,
    )
    from .models.whitebox_clip import WhiteboxClipConfig, WhiteboxClipModel, WhiteboxClipProcessor
    from .nn import (
        ISTA,
        MultiHeadSubspaceSelfAttention,
        OvercompleteDictionaryLearning,
        TokenStatisticsCache,
        TokenStatisticsSelfAttention,
        coding_rate,
    )
    from .pipelines import (
        CupidPipeline,
        MotionGenerationPipeline,
        ShapeGenerationPipeline,
        WhiteboxDDPMPipeline,
        WhiteboxFlowPipeline,
    )
else:
    sys.modules[__name__] = _LazyModule(__name__, globals()["__file__"], _import_structure, module_spec=__spec__,
                                        extra_objects={"__version__": __version__})
    # After the swap, so that registration resolves the classes through the lazy module.
    from .models import auto as _auto  # noqa: E402,F401  (registers with the Auto classes as they are imported)
