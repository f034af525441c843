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

__all__ = ["BUNDLED_DIR", "bundled_checkpoint", "find_model_folder", "list_bundled_checkpoints"]

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
