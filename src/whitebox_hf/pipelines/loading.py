"""Loading saved pipelines and autoencoders with the installed package's classes.

A folder written by `ClassConditionalPipelineMixin.save_pretrained` carries its own code for diffusers'
``trust_remote_code=True`` route. ``WhiteboxFlowPipeline.from_pretrained(folder)`` (and the DDPM one) come here
instead and never run that code: each ``model_index.json`` entry ``[library, class]`` is resolved to a class of
diffusers / transformers, or -- when ``library`` is anything else (the module file saved in the component's folder,
or the whitebox_hf module path that folders saved before that layout hold) -- to the package's component class of
that name (`COMPONENT_CLASSES`). diffusers' own ``from_pretrained`` cannot be reused for this: it loads a folder's
code whenever ``model_index.json`` names a file that is there.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

from diffusers import DiTTransformer2DModel, ModelMixin
from transformers import PreTrainedModel

from ..models.autoencoders import CrateRepresentationAutoencoder
from ..models.crate import CrateModel
from ..models.cupid import CupidAppearanceModel, CupidFlowModel
from ..models.denoisers import (
    AlignedShapeLatentDenoiser,
    CrateDenoiserTransformer,
    add_input_checks,
)
from ..models.motion_prior import MotionPriorModel
from ..models.safe_loading import CONVERSION_HINT, check_no_pickle_only, file_errors
from ..models.sita_vae import SitaVaeModel
from ..models.whitebox_clip import WhiteboxClipModel
from ..models.world_model import WorldModel
from .class_conditional import NAMED_LIBRARIES

__all__ = ["COMPONENT_CLASSES", "component_class", "load_autoencoder", "load_pipeline"]

# The package's pipeline component classes, by class name (what ``model_index.json`` and ``config.json`` record).
COMPONENT_CLASSES = {cls.__name__: cls for cls in (AlignedShapeLatentDenoiser, CrateDenoiserTransformer,
                                                   CrateModel, CupidFlowModel, CupidAppearanceModel,
                                                   CrateRepresentationAutoencoder, SitaVaeModel,
                                                   WhiteboxClipModel, MotionPriorModel, WorldModel)}

# `from_pretrained` options: where to download from, and how to load each model component.
DOWNLOAD_OPTIONS = ("cache_dir", "force_download", "local_files_only", "token", "revision")
MODEL_OPTIONS = ("torch_dtype", "dtype", "variant", "use_safetensors", "low_cpu_mem_usage")


def component_class(library: str, class_name: str):
    """The class of a ``model_index.json`` entry ``[library, class_name]`` (see the module docstring).

    Raises:
        ValueError: no such class.
    """
    if library in NAMED_LIBRARIES:
        cls = getattr(importlib.import_module(library), class_name, None)
    else:
        cls = COMPONENT_CLASSES.get(class_name)
    if cls is None:
        known = f"a {library} class" if library in NAMED_LIBRARIES else f"one of {sorted(COMPONENT_CLASSES)}"
        raise ValueError(f"unknown component class {class_name!r} (from {library!r}): expected {known}")
    return cls


def _folder(pretrained_model_name_or_path, download: dict) -> Path:
    path = str(pretrained_model_name_or_path)
    if os.path.isdir(path):
        return Path(path)
    if os.path.isabs(path) or path.count("/") > 1 or path.startswith("."):
        raise OSError(f"`pretrained_model_name_or_path` must be a folder or a Hub repo id; no folder {path!r}")
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(path, **download))


def _read_index(index_path: Path) -> dict:
    """``model_index.json`` as a dict; `OSError` naming the file when it is not a JSON object."""
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise OSError(f"{index_path} is not valid JSON ({error}): the saved pipeline is damaged") from None
    if not isinstance(index, dict):
        raise OSError(f"{index_path} must hold a JSON object, got a {type(index).__name__}")
    return index


def load_pipeline(cls, pretrained_model_name_or_path, **kwargs):
    """``cls.from_pretrained`` for the package's pipeline classes (see the module docstring).

    Args:
        cls: the pipeline class (`WhiteboxFlowPipeline`, `WhiteboxDDPMPipeline`, `ShapeGenerationPipeline`).
        pretrained_model_name_or_path: a saved folder or a Hub repo id (downloaded with ``cache_dir``,
            ``force_download``, ``local_files_only``, ``token``, ``revision``).
        kwargs: components to use instead of the saved ones (``transformer=...``), configuration values
            (``num_classes``, ``id2label``), options for every model component (``torch_dtype``/``dtype``,
            ``variant``, ``use_safetensors``, ``low_cpu_mem_usage``); ``trust_remote_code`` is accepted and
            unused (no code of the folder runs).

    Weights load from safetensors only: a component folder holding only pickled weights (``.bin``) is refused before
    anything reads it, and ``use_safetensors=False`` is refused.

    Raises:
        OSError: no such folder or repo, no ``model_index.json`` there, a component whose weights are only
            pickles, or a damaged file (naming it: ``model_index.json``, a ``config.json``, a ``.safetensors``).
        ValueError: the folder holds another pipeline class, an unknown component class, or lacks a required
            component.
        TypeError: an unknown keyword argument.
    """
    kwargs = dict(kwargs)
    kwargs.pop("trust_remote_code", None)
    if kwargs.get("use_safetensors") is False:
        raise ValueError(f"`use_safetensors` must be True or unset: pickled weights are refused on purpose "
                         f"(unpickling can run code), got False; {CONVERSION_HINT}")
    download = {key: kwargs.pop(key) for key in DOWNLOAD_OPTIONS if key in kwargs}
    model_options = {key: kwargs.pop(key) for key in MODEL_OPTIONS if key in kwargs}
    expected, optional = cls._get_signature_keys(cls)
    passed = {key: kwargs.pop(key) for key in expected if key in kwargs}
    config_values = {key: kwargs.pop(key) for key in optional if key in kwargs}
    if kwargs:
        raise TypeError(f"{cls.__name__}.from_pretrained() got unexpected keyword arguments {sorted(kwargs)}")

    folder = _folder(pretrained_model_name_or_path, download)
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise OSError(f"no model_index.json in {folder}: not a saved pipeline")
    index = _read_index(index_path)
    saved_class = index.get("_class_name")
    saved_class = saved_class[1] if isinstance(saved_class, list) else saved_class
    if saved_class != cls.__name__:
        raise ValueError(f"{folder} holds a {saved_class}, not a {cls.__name__}; load it with that class")

    components = {}
    for name in expected:
        if name in passed:
            components[name] = passed[name]
            continue
        library, class_name = index.get(name) or (None, None)
        if library is None:
            if name not in cls._optional_components:
                raise ValueError(f"{index_path} has no `{name}` component, which {cls.__name__} needs")
            components[name] = None
            continue
        component = component_class(library, class_name)
        options = {}
        if issubclass(component, (ModelMixin, PreTrainedModel)):
            # Weights: safetensors only, for diffusers' and transformers' classes as for the package's own.
            options = {**model_options, "use_safetensors": True}
        check_no_pickle_only(folder / name)
        with file_errors(folder / name, f"the `{name}` component ({class_name}) of {folder}"):
            loaded = component.from_pretrained(str(folder), subfolder=name, **options)
        if isinstance(loaded, DiTTransformer2DModel) and getattr(loaded.config, "num_embeds_ada_norm", None):
            add_input_checks(loaded)
        components[name] = loaded
    values = {key: index[key] for key in optional if key in index and key not in cls._optional_components}
    pipeline = cls(**components, **{**values, **config_values})
    pipeline.register_to_config(_name_or_path=str(pretrained_model_name_or_path))
    return pipeline


def load_autoencoder(path: str | os.PathLike):
    """Load a saved autoencoder folder, choosing the class from ``_class_name`` in its ``config.json``: a diffusers
    class (``AutoencoderKL``, ...) or one of the package's (`COMPONENT_CLASSES`, e.g. the RAE).

    Raises:
        FileNotFoundError: no ``config.json`` in ``path``.
        ValueError: the class named there is unknown.
    """
    import diffusers

    config_path = Path(path) / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"no config.json in autoencoder folder {str(path)!r}")
    class_name = json.loads(config_path.read_text()).get("_class_name")
    cls = getattr(diffusers, class_name or "", None) or COMPONENT_CLASSES.get(class_name)
    if cls is None or not hasattr(cls, "from_pretrained"):
        raise ValueError(f"unknown autoencoder class {class_name!r} in {config_path} (not in diffusers nor "
                         f"{sorted(COMPONENT_CLASSES)})")
    return cls.from_pretrained(path)
