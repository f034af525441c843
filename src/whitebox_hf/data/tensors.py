"""Turn an image-classification `Dataset` into dense tensors once, so training loops on 2 CPU cores do not
decode PNGs every step."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["dataset_to_tensors"]


def dataset_to_tensors(dataset, image_column: str = "image", label_column: str = "label"):
    """Return ``(images uint8 (n, C, H, W), labels int64 (n,))`` from a `datasets.Dataset` of equal-size
    images."""
    if image_column not in dataset.column_names or label_column not in dataset.column_names:
        raise ValueError(
            f"dataset must have columns {image_column!r} and {label_column!r}, got {dataset.column_names}"
        )
    arrays = [np.asarray(image) for image in dataset[image_column]]
    images = np.stack(arrays)
    if images.ndim == 3:
        images = images[:, None]  # grey (n, H, W) -> (n, 1, H, W)
    else:
        images = images.transpose(0, 3, 1, 2)  # (n, H, W, C) -> (n, C, H, W)
    labels = torch.as_tensor(np.asarray(dataset[label_column]), dtype=torch.long)
    return torch.from_numpy(np.ascontiguousarray(images)), labels
