"""Registers every whitebox_hf architecture with the transformers Auto classes.

Imported by ``whitebox_hf/__init__.py`` so that ``import whitebox_hf`` is all a user needs before
``AutoModel.from_pretrained(folder)``, while ``import whitebox_hf`` stays free of torch, accelerate and diffusers.

transformers' ``register`` methods take the classes themselves, and importing them (or merely
``transformers.models.auto.image_processing_auto``) imports torch, torchvision and accelerate. So registration is
deferred to the first time transformers looks anything up in an Auto mapping: when transformers imports one of its
Auto modules, a post-import hook (``wrapt.register_post_import_hook``) gives each of that module's mappings a
``_extra_content`` (the dict that ``register`` writes and every lookup reads first) that calls
`register_auto_classes` on its first read. Hooks only swap that dict, because a hook runs in the middle of
transformers' own imports, where importing model code would be circular; the first read happens when an Auto class
is used, after those imports. `register_auto_classes` calls transformers' public ``register`` methods with the
classes of the tables below. Re-registering the same pair is harmless (``exist_ok=True``). ``_extra_content`` is
transformers-internal (the ``transformers==5.23.*`` pin covers it); tests/test_import.py loads bundled folders
through the Auto classes in fresh interpreters, in both import orders, so a change there fails loudly.

To register a class: add one row to its table (the class must be exported by ``whitebox_hf``).
"""

from __future__ import annotations

import importlib
from collections import OrderedDict

import wrapt

__all__ = ["AUTO_MODULES", "CONFIGS", "IMAGE_PROCESSORS", "MODELS", "PROCESSORS", "register_auto_classes"]

# Config classes registered with AutoConfig under their own ``model_type``.
CONFIGS = ("CrateConfig", "CausalCrateConfig", "AoTConfig", "ToSTConfig", "ToSTVisionConfig", "WhiteboxClipConfig",
           "SitaVaeConfig", "CupidFlowConfig", "CupidAppearanceConfig",
           "MotionPriorConfig")

# (transformers Auto model class, config class, model class)
MODELS = (
    ("AutoModel", "CrateConfig", "CrateModel"),
    ("AutoModelForImageClassification", "CrateConfig", "CrateForImageClassification"),
    ("AutoModelForMaskedImageModeling", "CrateConfig", "CrateForMaskedImageModeling"),
    ("AutoModel", "CausalCrateConfig", "CausalCrateModel"),
    ("AutoModelForCausalLM", "CausalCrateConfig", "CausalCrateForCausalLM"),
    ("AutoModel", "AoTConfig", "AoTModel"),
    ("AutoModelForCausalLM", "AoTConfig", "AoTForCausalLM"),
    ("AutoModel", "ToSTConfig", "ToSTModel"),
    ("AutoModelForCausalLM", "ToSTConfig", "ToSTForCausalLM"),
    ("AutoModel", "ToSTVisionConfig", "ToSTVisionModel"),
    ("AutoModelForImageClassification", "ToSTVisionConfig", "ToSTForImageClassification"),
    ("AutoModel", "WhiteboxClipConfig", "WhiteboxClipModel"),
    ("AutoModel", "SitaVaeConfig", "SitaVaeModel"),
    ("AutoModel", "CupidFlowConfig", "CupidFlowModel"),
    ("AutoModel", "CupidAppearanceConfig", "CupidAppearanceModel"),
    ("AutoModel", "MotionPriorConfig", "MotionPriorModel"),
)

# (config class, image processor class), registered as the "torchvision" backend
IMAGE_PROCESSORS = (("CrateConfig", "CrateImageProcessor"),)

# (config class, processor class)
PROCESSORS = (("WhiteboxClipConfig", "WhiteboxClipProcessor"),)


def _whitebox(name: str):
    return getattr(importlib.import_module("whitebox_hf"), name)


_registered = False
_configs_registered = False


def _register_configs() -> None:
    global _configs_registered
    if _configs_registered:
        return
    _configs_registered = True
    try:
        from transformers import AutoConfig

        for name in CONFIGS:
            config_class = _whitebox(name)
            AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    except BaseException:
        _configs_registered = False
        raise


def register_auto_classes(configs_only: bool = False) -> None:
    """Register every table with transformers' Auto classes (imports the registered classes). Idempotent.

    ``configs_only`` registers the configurations alone: AutoConfig's mapping is read while transformers imports a
    model module (``auto_docstring`` looks a model_type up when it decorates, e.g., ``BertModel``), and registering
    the models then would import that same module mid-import (`WhiteboxClipModel` imports ``BertModel``).
    """
    global _registered
    _register_configs()
    if _registered or configs_only:
        return
    _registered = True  # first: ``register`` reads the mappings it writes, which would call this again
    try:
        from transformers import AutoImageProcessor, AutoProcessor
        from transformers.models.auto import modeling_auto

        for auto_class, config_name, model_name in MODELS:
            getattr(modeling_auto, auto_class).register(_whitebox(config_name), _whitebox(model_name), exist_ok=True)
        for config_name, processor_name in IMAGE_PROCESSORS:
            AutoImageProcessor.register(_whitebox(config_name),
                                        image_processor_classes={"torchvision": _whitebox(processor_name)},
                                        exist_ok=True)
        for config_name, processor_name in PROCESSORS:
            AutoProcessor.register(_whitebox(config_name), _whitebox(processor_name), exist_ok=True)
    except BaseException:
        _registered = False
        raise


class _RegisterOnFirstRead(dict):
    """An Auto mapping's ``_extra_content`` that runs `register_auto_classes` before its first read."""

    configs_only = False

    def _after_registration(self):
        register_auto_classes(configs_only=self.configs_only)
        return self

    def __contains__(self, key):
        return dict.__contains__(self._after_registration(), key)

    def __getitem__(self, key):
        return dict.__getitem__(self._after_registration(), key)

    def __iter__(self):
        return dict.__iter__(self._after_registration())

    def __len__(self):
        return dict.__len__(self._after_registration())

    def get(self, key, default=None):
        return dict.get(self._after_registration(), key, default)

    def keys(self):
        return dict.keys(self._after_registration())

    def values(self):
        return dict.values(self._after_registration())

    def items(self):
        return dict.items(self._after_registration())


def _defer_registration(module) -> None:
    """Post-import hook: give each Auto mapping of ``module`` a `_RegisterOnFirstRead` ``_extra_content``."""
    # transformers' _LazyAutoMapping and _LazyConfigMapping, both OrderedDicts with an ``_extra_content`` dict;
    # matched by shape because auto_factory may itself be mid-import when configuration_auto's hook runs.
    for value in vars(module).values():
        if isinstance(value, OrderedDict):
            extra_content = vars(value).get("_extra_content")
            if isinstance(extra_content, dict) and not isinstance(extra_content, _RegisterOnFirstRead):
                value._extra_content = _RegisterOnFirstRead(extra_content)
                # AutoConfig's mapping needs only the configurations (see `register_auto_classes`).
                value._extra_content.configs_only = module.__name__.endswith(".configuration_auto")


# The transformers modules whose mappings the tables register into (AutoConfig's holds every model_type, so any
# Auto class resolving a folder of ours reads it first).
AUTO_MODULES = (
    "transformers.models.auto.configuration_auto",
    "transformers.models.auto.modeling_auto",
    "transformers.models.auto.image_processing_auto",
    "transformers.models.auto.processing_auto",
)

for _module_name in AUTO_MODULES:
    wrapt.register_post_import_hook(_defer_registration, _module_name)
