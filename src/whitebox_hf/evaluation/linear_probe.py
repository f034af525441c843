"""Linear probing: a multinomial logistic regression trained on frozen, standardised features.

The probe is scikit-learn's `LogisticRegression` (L-BFGS, L2 penalty ``1 / C``) behind a `StandardScaler`;
``max_iter`` bounds the work: a 60 000 × 192 feature matrix, 10 classes, fits in seconds on one CPU core.
If L-BFGS stops at ``max_iter`` scikit-learn emits a `ConvergenceWarning`; the probe is still usable.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from ..utils.validation import check_positive_int
from ._utils import as_feature_tensor, as_label_tensor
from .scoring import compute_accuracy

__all__ = ["fit_linear_probe", "linear_probe_accuracy"]


def _features_and_labels(features, labels, feature_name: str, label_name: str) -> tuple[np.ndarray, np.ndarray]:
    x = as_feature_tensor(features, feature_name).detach().cpu().numpy()
    y = as_label_tensor(labels, label_name).cpu().numpy()
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"`{label_name}` has {y.shape[0]} entries but `{feature_name}` has {x.shape[0]} rows")
    return x, y


def fit_linear_probe(
    train_features: torch.Tensor | np.ndarray,
    train_labels: torch.Tensor | np.ndarray,
    C: float = 1.0,
    max_iter: int = 200,
    tol: float = 1e-4,
) -> Pipeline:
    """Fit ``StandardScaler → LogisticRegression(C, max_iter, tol)`` on ``(n, d)`` features and their
    ``n`` integer labels (at least two classes) and return the fitted scikit-learn pipeline."""
    x, y = _features_and_labels(train_features, train_labels, "train_features", "train_labels")
    if np.unique(y).size < 2:
        raise ValueError("`train_labels` must contain at least two classes")
    if isinstance(C, bool) or not isinstance(C, (int, float)) or not 0 < C < float("inf"):
        raise ValueError(f"`C` must be a finite positive number, got {C!r}")
    check_positive_int("max_iter", max_iter)
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol < float("inf"):
        raise ValueError(f"`tol` must be a finite positive number, got {tol!r}")
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, tol=tol))
    return probe.fit(x, y)


def linear_probe_accuracy(
    train_features: torch.Tensor | np.ndarray,
    train_labels: torch.Tensor | np.ndarray,
    test_features: torch.Tensor | np.ndarray,
    test_labels: torch.Tensor | np.ndarray,
    C: float = 1.0,
    max_iter: int = 200,
    tol: float = 1e-4,
) -> float:
    """Test accuracy in ``[0, 1]`` of a logistic-regression probe fitted by `fit_linear_probe` on the
    training features.

    Args:
        train_features, test_features (`torch.Tensor` or `np.ndarray` of shape ``(n, d)``): frozen features,
            e.g. from `extract_features`.
        train_labels, test_labels (tensor, array or sequence of non-negative ints): their labels.
        C (`float`, *optional*, defaults to 1.0): inverse L2 regularisation strength.
        max_iter (`int`, *optional*, defaults to 200): L-BFGS iteration cap.
        tol (`float`, *optional*, defaults to 1e-4): L-BFGS stopping tolerance.
    """
    x_train, y_train = _features_and_labels(train_features, train_labels, "train_features", "train_labels")
    x_test, y_test = _features_and_labels(test_features, test_labels, "test_features", "test_labels")
    if x_test.shape[1] != x_train.shape[1]:
        raise ValueError(
            f"`test_features` has width {x_test.shape[1]} but `train_features` has width {x_train.shape[1]}"
        )
    probe = fit_linear_probe(x_train, y_train, C=C, max_iter=max_iter, tol=tol)
    return compute_accuracy(probe.predict(x_test), y_test)
