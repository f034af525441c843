"""The image data sets the training scripts, the evaluation and the model cards name: `DATASETS` (the names
``--dataset`` takes, with their class names, Hub ids and normalisation statistics), `load_image_dataset`,
`load_image_tensors` (in-memory uint8 tensors for the self-supervised scripts) and `normalise_images`.

They live in the data layer, not in `whitebox_hf.training`, because `whitebox_hf.evaluation` and
`whitebox_hf.hub` read them too and must not import the training layer above them.
"""

from __future__ import annotations

import numpy as np
import torch

from .digits import load_sklearn_digits
from .fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist
from .tensors import dataset_to_tensors

__all__ = ["DATASETS", "dataset_hub_id", "load_image_dataset", "load_image_tensors", "normalise_images"]

# Per-channel statistics of the training split (Fashion-MNIST: the commonly quoted 0.2860 / 0.3530).
DATASETS = {
    "fashion-mnist": {"name": "Fashion-MNIST", "hub_id": "zalando-datasets/fashion_mnist",
                      "class_names": FASHION_MNIST_CLASSES, "image_mean": [0.2860], "image_std": [0.3530], "horizontal_flip_ok": True},
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


def load_image_tensors(args: dict, accelerator=None, data: dict | None = None) -> dict:
    """The train and test splits as in-memory uint8 ``(n, C, H, W)`` tensors, for the self-supervised scripts.

    Reads ``args["dataset"]``, ``args["data_dir"]`` and the optional ``args["train_subset"]`` /
    ``args["test_subset"]`` (first n images; 0 = all). ``data`` (tests) replaces the data set: a dict with
    ``train_images``, ``train_labels``, ``test_images``, ``test_labels``, ``image_mean`` and ``image_std``.
    Returns those keys plus ``dataset_name`` and ``horizontal_flip_ok``.
    """
    if data is None:
        dataset, info = load_image_dataset(args["dataset"], args.get("data_dir") or None, accelerator)
        train_images, train_labels = dataset_to_tensors(dataset["train"])
        test_images, test_labels = dataset_to_tensors(dataset["test"])
        tensors = {"image_mean": info["image_mean"], "image_std": info["image_std"], "dataset_name": info["name"],
                   "horizontal_flip_ok": info["horizontal_flip_ok"]}
    else:
        train_images, train_labels = data["train_images"], data["train_labels"]
        test_images, test_labels = data["test_images"], data["test_labels"]
        tensors = {"image_mean": data["image_mean"], "image_std": data["image_std"], "dataset_name": "in-memory",
                   "horizontal_flip_ok": True}
    if args.get("train_subset"):
        train_images, train_labels = train_images[: args["train_subset"]], train_labels[: args["train_subset"]]
    if args.get("test_subset"):
        test_images, test_labels = test_images[: args["test_subset"]], test_labels[: args["test_subset"]]
    tensors.update(train_images=train_images, train_labels=train_labels, test_images=test_images,
                   test_labels=test_labels)
    return tensors


def normalise_images(images: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 ``(n, C, H, W)`` → float32 ``(x/255 − mean)/std`` per channel (what the saved `CrateImageProcessor` does)."""
    mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (images.float() / 255.0 - mean) / std
