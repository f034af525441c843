"""Folders that appear complete or not at all: the training checkpoints and every script's final ``save_pretrained``.

A folder is written under a hidden temporary sibling, every file and the folder itself are flushed to disk
(``fsync``), and only then is it renamed to its final name. A rename within one file system is atomic, so a
process killed at any moment leaves either the previous folder or the new one under the final name, never a
half-written ``model.safetensors`` (at most a ``.<name>.partial`` sibling, which the next write replaces).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_directory", "fsync_directory", "fsync_tree", "partial_path", "publish_directory"]


def partial_path(final: str | os.PathLike) -> Path:
    """The hidden temporary sibling ``.<name>.partial`` where ``final`` is written before it is renamed."""
    final = Path(final)
    return final.with_name(f".{final.name}.partial")


def fsync_directory(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (the names of the files created or renamed in it) to disk."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_tree(folder: str | os.PathLike) -> None:
    """Flush every file under ``folder``, then every folder, to disk."""
    for root, _, files in os.walk(folder):
        for name in files:
            descriptor = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        fsync_directory(root)


def publish_directory(partial: str | os.PathLike, final: str | os.PathLike) -> Path:
    """Flush ``partial`` to disk and rename it to ``final``.

    An existing ``final`` is first renamed aside to ``.<name>.old`` and deleted once the new folder is in place:
    a directory cannot be renamed over a non-empty one, and this order never deletes the old copy before the
    new one is complete. Returns ``final``.
    """
    partial, final = Path(partial), Path(final)
    fsync_tree(partial)
    old = final.with_name(f".{final.name}.old")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.rename(final, old)
    os.rename(partial, final)
    fsync_directory(final.parent)
    shutil.rmtree(old, ignore_errors=True)
    return final


@contextlib.contextmanager
def atomic_directory(final: str | os.PathLike) -> Iterator[Path]:
    """Write a folder atomically: ``with atomic_directory(output_dir / "model") as folder:
    model.save_pretrained(folder)``. The body writes into a fresh temporary sibling, which replaces ``final``
    when the body returns; if it raises, ``final`` is left as it was and the temporary folder is removed."""
    final = Path(final)
    partial = partial_path(final)
    shutil.rmtree(partial, ignore_errors=True)  # left by a run killed while writing
    partial.mkdir(parents=True)
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    publish_directory(partial, final)
