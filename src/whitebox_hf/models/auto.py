"""Registers every whitebox_hf architecture with the transformers Auto classes.

Imported by ``whitebox_hf/__init__.py`` so that ``import whitebox_hf`` is all a user needs before
``AutoModel.from_pretrained(folder)``. Re-registering the same pair is harmless (``exist_ok=True``).
"""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForImageClassification,
    AutoModelForMaskedImageModeling,
    AutoProcessor,
)

from .aot import AoTConfig, AoTForCausalLM, AoTModel
from .causal_crate import CausalCrateConfig, CausalCrateForCausalLM, CausalCrateModel
from .crate import (
    CrateConfig,
    CrateForImageClassification,
    CrateForMaskedImageModeling,
    CrateImageProcessor,
    CrateModel,
)
from .tost import ToSTConfig, ToSTForCausalLM, ToSTForImageClassification, ToSTModel, ToSTVisionConfig, ToSTVisionModel
from .whitebox_clip import WhiteboxClipConfig, WhiteboxClipModel, WhiteboxClipProcessor


def register_auto_classes() -> None:
    for config_class in (CrateConfig, CausalCrateConfig, AoTConfig, ToSTConfig, ToSTVisionConfig):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    AutoModel.register(CrateConfig, CrateModel, exist_ok=True)
    AutoModelForImageClassification.register(CrateConfig, CrateForImageClassification, exist_ok=True)
    AutoModelForMaskedImageModeling.register(CrateConfig, CrateForMaskedImageModeling, exist_ok=True)
    AutoImageProcessor.register(CrateConfig, image_processor_classes={"torchvision": CrateImageProcessor},
                                exist_ok=True)
    for config_class, base_model, causal_lm in (
        (CausalCrateConfig, CausalCrateModel, CausalCrateForCausalLM),
        (AoTConfig, AoTModel, AoTForCausalLM),
        (ToSTConfig, ToSTModel, ToSTForCausalLM),
    ):
        AutoModel.register(config_class, base_model, exist_ok=True)
        AutoModelForCausalLM.register(config_class, causal_lm, exist_ok=True)
    AutoModel.register(ToSTVisionConfig, ToSTVisionModel, exist_ok=True)
    AutoModelForImageClassification.register(ToSTVisionConfig, ToSTForImageClassification, exist_ok=True)
    AutoConfig.register(WhiteboxClipConfig.model_type, WhiteboxClipConfig, exist_ok=True)
    AutoModel.register(WhiteboxClipConfig, WhiteboxClipModel, exist_ok=True)
    AutoProcessor.register(WhiteboxClipConfig, WhiteboxClipProcessor, exist_ok=True)


register_auto_classes()
