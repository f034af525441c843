"""The offline image–caption pairs in one `datasets.DatasetDict`: Openclipart and the Noto emoji, side by side.

Each source keeps its own train/test split (both by a hash of the item's name or path), so a held-out emoji or
drawing stays held out whichever sources are combined. The columns are the ones the text-to-image, VAE and LIFT
scripts need: ``image`` (RGB on white), ``mask`` (the object: the emoji's alpha; for Openclipart, whose SVGs are
rasterised onto white, the pixels that are not white), ``caption``, ``source`` and ``label_name`` (the Openclipart
category or the emoji group, for zero-shot classification).
"""

from __future__ import annotations

import numpy as np

from ..utils.validation import check_positive_int

__all__ = ["CAPTION_SOURCES", "load_caption_images"]

CAPTION_SOURCES = ("openclipart", "emoji")
# An Openclipart pixel counts as background when every channel is at least this (the renderer's white fill).
_WHITE_THRESHOLD = 250


def _openclipart(image_size: int, test_fraction: float):
    import datasets
    from PIL import Image

    from .openclipart import load_openclipart

    dataset = load_openclipart(image_size=image_size, test_fraction=test_fraction, progress=False)
    names = dataset["train"].features["label"].names
    out = {}
    for split in ("train", "test"):
        part = dataset[split]
        images = part.select_columns(["image"]).with_format("numpy", dtype=np.uint8)[:]["image"]
        masks = [Image.fromarray(((image < _WHITE_THRESHOLD).any(axis=-1)).astype(np.uint8) * 255, mode="L")
                 for image in images]
        out[split] = datasets.Dataset.from_dict({
            "image": list(part["image"]), "mask": masks, "caption": list(part["caption"]),
            "source": ["openclipart"] * len(part), "label_name": [names[label] for label in part["label"]],
        }, features=_features())
    return out


def _emoji(image_size: int, test_fraction: float):
    import datasets

    from .emoji import load_emoji

    dataset = load_emoji(image_size=image_size, test_fraction=test_fraction, progress=False)
    out = {}
    for split in ("train", "test"):
        part = dataset[split]
        out[split] = datasets.Dataset.from_dict({
            "image": list(part["image"]), "mask": list(part["mask"]), "caption": list(part["caption"]),
            "source": ["emoji"] * len(part), "label_name": [group.lower() for group in part["group"]],
        }, features=_features())
    return out


def _features():
    import datasets

    return datasets.Features({"image": datasets.Image(), "mask": datasets.Image(), "caption": datasets.Value("string"),
                              "source": datasets.Value("string"), "label_name": datasets.Value("string")})


def load_caption_images(sources=CAPTION_SOURCES, image_size: int = 32, test_fraction: float = 0.1):
    """A `datasets.DatasetDict` (``train``, ``test``) of the image–caption pairs of ``sources``, concatenated in
    the order given. Columns: ``image`` (RGB ``image_size``² on white), ``mask`` (mode L, 255 on the object),
    ``caption``, ``source`` (``"openclipart"`` or ``"emoji"``) and ``label_name``.

    Raises:
        ValueError: ``sources`` is not a non-empty list of distinct names from `CAPTION_SOURCES`, or a bad
            ``image_size`` / ``test_fraction``.
        DataUnavailableError: a source's files are missing and cannot be fetched.
    """
    import datasets

    if isinstance(sources, str) or not isinstance(sources, (list, tuple)) or not sources:
        raise ValueError(f"`sources` must be a non-empty list of names from {CAPTION_SOURCES}, got {sources!r}")
    unknown = [s for s in sources if s not in CAPTION_SOURCES]
    if unknown or len(set(sources)) != len(sources):
        raise ValueError(f"`sources` must be distinct names from {CAPTION_SOURCES}, got {list(sources)!r}")
    check_positive_int("image_size", image_size)
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, float) or not 0.0 < test_fraction < 1.0:
        raise ValueError(f"`test_fraction` must be a float in (0, 1), got {test_fraction!r}")
    loaders = {"openclipart": _openclipart, "emoji": _emoji}
    parts = [loaders[source](image_size, test_fraction) for source in sources]
    return datasets.DatasetDict({split: datasets.concatenate_datasets([part[split] for part in parts])
                                 for split in ("train", "test")})
