"""Loading diffusers components safely and with errors that name the file: safetensors weights only (a pickled
``.bin`` is refused before anything reads it, since unpickling can run code), and a tampered or truncated
``config.json`` / ``*.safetensors`` / ``model_index.json`` raises `OSError` naming that file rather than whatever
json, safetensors or diffusers raise.

`SafetensorsOnlyModelMixin` gives a diffusers `ModelMixin` subclass this ``from_pretrained``; `check_no_pickle_only`
and `file_errors` are what the pipeline loader uses for the components of other classes (diffusers' own).

This module imports only the standard library, torch's ecosystem (safetensors) and nothing of whitebox_hf, so that
it can be bundled with the component code that saved pipelines carry.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["PICKLE_SUFFIXES", "SafetensorsOnlyModelMixin", "check_no_pickle_only", "file_errors", "first_broken_file"]

# Weight files that torch reads by unpickling.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")

CONVERSION_HINT = (
    "convert it once, in a process you trust, with `from safetensors.torch import save_file; import torch; "
    "save_file(torch.load(PATH, weights_only=True), PATH.replace('.bin', '.safetensors'))` (or load the model "
    "and call `save_pretrained(folder)`, which writes safetensors)"
)


def check_no_pickle_only(folder: str | os.PathLike, argument: str = "pretrained_model_name_or_path") -> None:
    """Refuse a local folder whose weights exist only as pickle files (``.bin``…): `OSError` naming them, saying
    why they are refused and how to convert them. A folder with a ``.safetensors`` file, or without any weights
    (a scheduler), passes."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    files = [p for p in folder.iterdir() if p.is_file()]
    if any(p.suffix == ".safetensors" for p in files):
        return
    pickles = sorted(p.name for p in files if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise OSError(
            f"`{argument}`: {folder} holds weights only as {pickles} (pickle), which whitebox_hf refuses on purpose: "
            f"unpickling a file can run arbitrary code. Expected a .safetensors file; {CONVERSION_HINT}"
        )


def first_broken_file(folder: str | os.PathLike) -> tuple[Path, str] | None:
    """The first ``*.json`` that is not a JSON object or ``*.safetensors`` whose header cannot be read in
    ``folder``, with the reason; None if all are readable."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    for path in sorted(folder.glob("*.json")):
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            return path, f"not valid JSON ({error})"
        if not isinstance(value, dict):
            return path, f"expected a JSON object, got a {type(value).__name__}"
    for path in sorted(folder.glob("*.safetensors")):
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118 - safe_open is not a dict; a truncated file fails here or when the tensor is read
                    handle.get_slice(key)
        except Exception as error:  # noqa: BLE001 - safetensors raises its own SafetensorError, and OSError
            return path, f"not a readable safetensors file ({' '.join(str(error).split())})"
    return None


@contextlib.contextmanager
def file_errors(folder: str | os.PathLike, what: str) -> Iterator[None]:
    """Turn a failure while loading ``what`` from ``folder`` caused by a broken file into `OSError` naming the
    file; errors not explained by a broken file pass through unchanged."""
    try:
        yield
    except Exception as error:
        broken = first_broken_file(folder)
        if broken is None:
            raise
        path, reason = broken
        raise OSError(f"cannot load {what}: {path} is {reason}") from error


class SafetensorsOnlyModelMixin:
    """Put before `ModelMixin` in the bases: ``from_pretrained`` loads safetensors only (``use_safetensors=False``
    is refused, and a folder holding only pickled ``.bin`` weights is refused before anything reads them), and a
    broken file of the folder raises `OSError` naming it."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        if kwargs.get("use_safetensors") is False:
            raise ValueError(f"`use_safetensors` must be True or unset for {cls.__name__}: pickled weights are "
                             f"refused on purpose (unpickling can run code), got False; {CONVERSION_HINT}")
        kwargs["use_safetensors"] = True
        folder = Path(str(pretrained_model_name_or_path)) / (kwargs.get("subfolder") or "")
        check_no_pickle_only(folder)
        with file_errors(folder, f"{cls.__name__} from {folder}"):
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
