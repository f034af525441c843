"""The image data sets the training scripts, the evaluation and the model cards know by name.

`DATASETS` maps a ``--dataset`` key to what every consumer needs: its display name, its Hub id (for the
card's ``datasets:`` metadata), its class names, its per-channel statistics and whether a horizontal flip
keeps a sample's class. `load_image_dataset` is the one name → loader table.
"""

from __future__ import annotations

import numpy as np

from .digits import load_sklearn_digits
from .fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist

__all__ = ["DATASETS", "dataset_hub_id", "load_image_dataset"]

# Per-channel statistics of the training split (Fashion-MNIST: the commonly quoted 0.2860 / 0.3530).
DATASETS = {
    "fashion-mnist": {"name": "Fashion-MNIST", "hub_id": "zalando-datasets/fashion_mnist",
                      "class_names": FASHION_MNIST_CLASSES, "image_mean": [0.2860], "image_std": [0.3530],
                      "horizontal_flip_ok": True},
    "digits": {"name": "sklearn digits (16x16)", "hub_id": "sklearn-digits",
               "class_names": [str(i) for i in range(10)], "image_mean": None, "image_std": None,
               "horizontal_flip_ok": False},  # a mirrored digit is a different (or no) digit
}


def dataset_hub_id(dataset_name: str) -> str | None:
    """The Hub id of a data set named by its key (``fashion-mnist``) or display name (``Fashion-MNIST``);
    None for a data set outside `DATASETS`."""
    for key, info in DATASETS.items():
        if dataset_name in (key, info["name"]):
            return info["hub_id"]
    return None


def load_image_dataset(name: str, data_dir: str | None = None, accelerator=None):
    """``(DatasetDict, info)`` for ``name`` in `DATASETS`. With an Accelerator, the main process prepares
    the cache first so that several processes never write it at once."""
    if name not in DATASETS:
        raise ValueError(f"`dataset` must be one of {sorted(DATASETS)}, got {name!r}")
    info = dict(DATASETS[name])
    loader = (lambda: load_fashion_mnist(data_dir=data_dir)) if name == "fashion-mnist" else load_sklearn_digits
    if accelerator is not None:
        with accelerator.main_process_first():
            dataset = loader()
    else:
        dataset = loader()
    if info["image_mean"] is None:
        pixels = np.stack([np.asarray(image) for image in dataset["train"]["image"]]).astype(np.float64) / 255.0
        info["image_mean"], info["image_std"] = [float(pixels.mean())], [float(pixels.std())]
    return dataset, info
