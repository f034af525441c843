"""Weighted k-nearest-neighbour classification of frozen features (the DINO protocol, Caron et al. 2021).

Features are l2-normalised, so the similarity of a test and a training feature is their cosine. Each of
the ``k`` most similar training features votes for its label with weight ``exp(similarity / temperature)``;
the prediction is the label with the largest total vote.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from ..utils.validation import check_positive_int
from ._utils import as_feature_tensor, as_label_tensor
from .scoring import compute_accuracy

__all__ = ["knn_classify", "knn_accuracy"]


def _check_knn_arguments(train_features, train_labels, test_features, k, temperature, num_classes, chunk_size):
    train = as_feature_tensor(train_features, "train_features")
    test = as_feature_tensor(test_features, "test_features")
    labels = as_label_tensor(train_labels, "train_labels")
    if labels.shape[0] != train.shape[0]:
        raise ValueError(
            f"`train_labels` has {labels.shape[0]} entries but `train_features` has {train.shape[0]} rows"
        )
    if train.shape[1] != test.shape[1]:
        raise ValueError(
            f"`test_features` has width {test.shape[1]} but `train_features` has width {train.shape[1]}"
        )
    check_positive_int("k", k)
    if k > train.shape[0]:
        raise ValueError(f"`k` ({k}) must not exceed the number of training features ({train.shape[0]})")
    if not (isinstance(temperature, (int, float)) and not isinstance(temperature, bool)
            and 0 < temperature < float("inf")):
        raise ValueError(f"`temperature` must be a finite positive number, got {temperature!r}")
    check_positive_int("chunk_size", chunk_size)
    max_label = int(labels.max())
    if num_classes is None:
        num_classes = max_label + 1
    elif isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= max_label:
        raise ValueError(
            f"`num_classes` must be an integer larger than every training label (max {max_label}), "
            f"got {num_classes!r}"
        )
    return train, labels.to(train.device), test.to(train.device), num_classes


def knn_classify(
    train_features: torch.Tensor | np.ndarray,
    train_labels: torch.Tensor | np.ndarray,
    test_features: torch.Tensor | np.ndarray,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Predict a label for every test feature by a temperature-weighted vote of its ``k`` nearest training
    features under cosine similarity.

    Args:
        train_features (`torch.Tensor` or `np.ndarray` of shape ``(n_train, d)``): training (memory bank) features.
        train_labels (tensor, array or sequence of ``n_train`` non-negative ints): their labels.
        test_features (`torch.Tensor` or `np.ndarray` of shape ``(n_test, d)``): features to classify.
        k (`int`, *optional*, defaults to 20): neighbours that vote (at most ``n_train``).
        temperature (`float`, *optional*, defaults to 0.07): a neighbour with cosine similarity ``s`` votes
            with weight ``exp(s / temperature)``.
        num_classes (`int`, *optional*): number of classes; defaults to ``max(train_labels) + 1``.
        chunk_size (`int`, *optional*, defaults to 1024): test features scored at a time, which bounds the
            similarity matrix held in memory to ``chunk_size × n_train``.

    Returns:
        `torch.Tensor`: int64 predictions of shape ``(n_test,)``, on the device of ``train_features``. Ties
        between classes go to the smaller label.
    """
    train, labels, test, num_classes = _check_knn_arguments(
        train_features, train_labels, test_features, k, temperature, num_classes, chunk_size
    )
    train = F.normalize(train, dim=1)
    test = F.normalize(test, dim=1)
    predictions = []
    for chunk in test.split(chunk_size):
        similarity = chunk @ train.T  # (chunk, n_train) cosine similarities
        top_similarity, top_index = similarity.topk(k, dim=1)
        weights = (top_similarity / temperature).exp()
        votes = torch.zeros(chunk.shape[0], num_classes, dtype=weights.dtype, device=weights.device)
        votes.scatter_add_(1, labels[top_index], weights)
        predictions.append(votes.argmax(dim=1))
    return torch.cat(predictions)


def knn_accuracy(
    train_features: torch.Tensor | np.ndarray,
    train_labels: torch.Tensor | np.ndarray,
    test_features: torch.Tensor | np.ndarray,
    test_labels: torch.Tensor | np.ndarray,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk_size: int = 1024,
) -> float:
    """Accuracy in ``[0, 1]`` of `knn_classify` on ``test_features`` against ``test_labels``; the other
    arguments are those of `knn_classify`."""
    test = as_feature_tensor(test_features, "test_features")
    references = as_label_tensor(test_labels, "test_labels")
    if references.shape[0] != test.shape[0]:
        raise ValueError(
            f"`test_labels` has {references.shape[0]} entries but `test_features` has {test.shape[0]} rows"
        )
    predictions = knn_classify(
        train_features, train_labels, test, k=k, temperature=temperature,
        num_classes=num_classes, chunk_size=chunk_size,
    )
    return compute_accuracy(predictions.cpu().numpy(), references.numpy())
