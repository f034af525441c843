"""What the Gradio Spaces (``spaces/*/app.py``) share: their queue settings, whole-number inputs and per-request
output files. gradio is imported only by `whole_number` (it is the ``spaces`` extra, not a core dependency)."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

__all__ = ["CONCURRENCY_ENV", "OUTPUT_MAX_AGE_S", "QUEUE_SIZE_ENV", "output_file", "queue_setting", "whole_number"]

# A request waits in Gradio's queue while others run; past the queue size a new one is refused with Gradio's
# "Queue is full" answer (HTTP 503) instead of piling up. Both can be set per deployment.
QUEUE_SIZE_ENV = "WHITEBOX_SPACE_QUEUE_SIZE"
CONCURRENCY_ENV = "WHITEBOX_SPACE_CONCURRENCY"
OUTPUT_MAX_AGE_S = 600  # Gradio copies a returned file within the request; older ones are no longer needed


def queue_setting(value: int | None, name: str, env_var: str, default: int) -> int:
    """The queue setting ``name``: ``value`` if given, else ``$env_var`` if set, else ``default``; a positive
    integer."""
    if value is None:
        raw = os.environ.get(env_var, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"${env_var} ({name}) must be a positive integer, got {raw!r}") from None
        if value < 1:
            raise ValueError(f"${env_var} ({name}) must be a positive integer, got {raw!r}")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
    return value


def whole_number(value: float | None, label: str) -> int:
    """``value`` as an int, or a `gr.Error` the page and the API client show (Gradio already checks the slider's
    range; a fraction or a missing value would otherwise be cut silently or raise a bare traceback)."""
    import gradio as gr

    if value is None or float(value) != int(value):
        raise gr.Error(f"{label} must be a whole number, got {value!r}.")
    return int(value)


def output_file(folder: Path, suffix: str = ".png") -> str:
    """A new, empty file in ``folder`` for one output of one request, after removing the folder's files older than
    `OUTPUT_MAX_AGE_S` (so a long-running Space does not fill its disk).

    Outputs are returned as file paths, never as PIL images: Gradio 6.31 saves a returned PIL image under a name
    derived from its bytes and rewrites that file in place, so when two requests produce the same image (same
    input, same seed) one client can be reading the file while the other request truncates it; a returned file is
    copied into Gradio's cache atomically instead."""
    cutoff = time.time() - OUTPUT_MAX_AGE_S
    for old in folder.iterdir():
        with contextlib.suppress(FileNotFoundError):  # another request may remove it first
            if old.stat().st_mtime < cutoff:
                old.unlink()
    handle, path = tempfile.mkstemp(suffix=suffix, dir=folder)
    os.close(handle)
    return path
