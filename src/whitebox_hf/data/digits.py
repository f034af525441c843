"""scikit-learn's bundled 8×8 digits, a last-resort fallback for the demo when Fashion-MNIST cannot be had.
Upsampled to 16×16 grey images so a patch-4 model sees a 4×4 grid."""

from __future__ import annotations

import numpy as np

__all__ = ["load_sklearn_digits"]


def load_sklearn_digits(test_fraction: float = 0.2, seed: int = 0):
    """The 1 797 sklearn digits as a `DatasetDict` (``train``/``test``, `Image` + `ClassLabel`)."""
    import datasets
    from sklearn.datasets import load_digits

    digits = load_digits()
    # 0..16 intensities -> 0..255, 8×8 -> 16×16 by pixel repetition.
    images = (digits.images * (255.0 / 16.0)).round().astype(np.uint8).repeat(2, axis=1).repeat(2, axis=2)
    order = np.random.default_rng(seed).permutation(len(images))
    n_test = int(len(images) * test_fraction)
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=[str(i) for i in range(10)])}
    )

    def split(indices):
        return datasets.Dataset.from_dict(
            {"image": list(images[indices]), "label": digits.target[indices].tolist()}, features=features
        )

    return datasets.DatasetDict({"train": split(order[n_test:]), "test": split(order[:n_test])})
