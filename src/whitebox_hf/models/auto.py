"""Registers every whitebox_hf architecture with the transformers Auto classes.

Imported by ``whitebox_hf/__init__.py`` so that ``import whitebox_hf`` is all a user needs before
``AutoModel.from_pretrained(folder)``. Re-registering the same pair is harmless (``exist_ok=True``).
"""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
)

from .crate import CrateConfig, CrateForImageClassification, CrateImageProcessor, CrateModel


def register_auto_classes() -> None:
    AutoConfig.register(CrateConfig.model_type, CrateConfig, exist_ok=True)
    AutoModel.register(CrateConfig, CrateModel, exist_ok=True)
    AutoModelForImageClassification.register(CrateConfig, CrateForImageClassification, exist_ok=True)
    AutoImageProcessor.register(CrateConfig, image_processor_classes={"torchvision": CrateImageProcessor},
                                exist_ok=True)


register_auto_classes()
