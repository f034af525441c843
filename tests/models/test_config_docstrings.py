"""transformers' model-file style: a configuration's docstring lists every argument in its ``Args:`` section,
the inherited ones included (a reader of `CausalCrateConfig` must not have to open another class)."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import re

import pytest
from transformers import CONFIG_MAPPING, PreTrainedConfig

import whitebox_hf.models
import whitebox_hf.models.auto  # noqa: F401  (registers the configurations with the Auto classes)
from whitebox_hf.models.language_modeling import WhiteboxCausalLMConfig

SECTION_HEADERS = ("Example:", "Examples:", "Raises:", "Returns:", "Attributes:")


def _registered_configs() -> list[type]:
    classes = {config for config in CONFIG_MAPPING.values() if config.__module__.startswith("whitebox_hf.")}
    classes.add(WhiteboxCausalLMConfig)  # the LM scaffold's config: abstract, so not registered
    # Any other PreTrainedConfig subclass of the package must be registered (or listed above) to be checked.
    return sorted(classes, key=lambda c: c.__name__)


def _arguments(config_class: type) -> set[str]:
    """The fields the class and its whitebox_hf bases declare, and any ``__init__`` arguments of theirs."""
    names = set()
    for klass in config_class.__mro__:
        if klass is PreTrainedConfig or not klass.__module__.startswith("whitebox_hf."):
            continue
        names.update(klass.__dict__.get("__annotations__", {}))
        if "__init__" in klass.__dict__ and not dataclasses.is_dataclass(klass):
            parameters = inspect.signature(klass.__dict__["__init__"]).parameters.values()
            names.update(p.name for p in parameters if p.name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD)
    return {name for name in names if not name.isupper() and not name.startswith("_")
            and name not in ("model_type", "sub_configs", "base_config_key")}


def _args_section(doc: str) -> str:
    doc = inspect.cleandoc(doc)
    assert "Args:" in doc, "the docstring has no Args: section"
    section = doc.split("Args:", 1)[1]
    for header in SECTION_HEADERS:
        section = section.split(f"\n{header}", 1)[0]
    return section


def test_every_whitebox_config_is_checked():
    checked = set(_registered_configs())
    # Every PreTrainedConfig subclass defined anywhere under whitebox_hf.models is among the checked ones.
    for module_info in pkgutil.walk_packages(whitebox_hf.models.__path__, "whitebox_hf.models."):
        module = importlib.import_module(module_info.name)
        for value in vars(module).values():
            if (isinstance(value, type) and issubclass(value, PreTrainedConfig)
                    and value.__module__ == module.__name__):
                assert value in checked, f"{value.__name__} is not registered, so its docstring goes unchecked"
    names = {c.__name__ for c in checked}
    assert {"CrateConfig", "CausalCrateConfig", "AoTConfig", "ToSTConfig", "WhiteboxClipConfig",
            "WhiteboxCausalLMConfig"} <= names


@pytest.mark.parametrize("config_class", _registered_configs(), ids=lambda c: c.__name__)
def test_config_docstring_lists_every_argument(config_class):
    section = _args_section(config_class.__doc__ or "")
    documented = set(re.findall(r"^    (\w+) \(", section, flags=re.MULTILINE))
    missing = _arguments(config_class) - documented
    assert not missing, f"{config_class.__name__}'s docstring does not document {sorted(missing)}"
    unknown = documented - _arguments(config_class)
    assert not unknown, f"{config_class.__name__}'s docstring documents arguments it does not take: {sorted(unknown)}"
