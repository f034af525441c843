"""Evaluation of frozen representations: features, k-NN and linear probes, attention saliency, layer-wise
white-box diagnostics (sparsity and coding rate), and offline `evaluate` metrics.

```python
>>> from whitebox_hf.evaluation import extract_features, knn_accuracy, linear_probe_accuracy
>>> train = extract_features(model, train_images, image_processor=processor)
>>> test = extract_features(model, test_images, image_processor=processor)
>>> knn_accuracy(train, train_labels, test, test_labels, k=20)
>>> linear_probe_accuracy(train, train_labels, test, test_labels)
```
"""

from .collapse import effective_rank, feature_std
from .diagnostics import diagnostics_table, layerwise_diagnostics, plot_diagnostics
from .features import extract_features, get_backbone
from .knn import knn_accuracy, knn_classify
from .linear_probe import fit_linear_probe, linear_probe_accuracy
from .saliency import attention_saliency, save_saliency_grid
from .scoring import METRIC_NAMES, compute_accuracy, metric_path

__all__ = [
    "METRIC_NAMES",
    "attention_saliency",
    "compute_accuracy",
    "diagnostics_table",
    "effective_rank",
    "extract_features",
    "feature_std",
    "fit_linear_probe",
    "get_backbone",
    "knn_accuracy",
    "knn_classify",
    "layerwise_diagnostics",
    "linear_probe_accuracy",
    "metric_path",
    "plot_diagnostics",
    "save_saliency_grid",
]
from .efficientnet_lite import EfficientNetLite0, EffNetPerceptualLoss, load_efficientnet_lite0  # noqa: E402
from .frechet import (  # noqa: E402
    FrechetEffNetDistance,
    fd_effnet,
    feature_statistics,
    frechet_distance,
    frechet_distance_from_statistics,
)

__all__ += [
    "EffNetPerceptualLoss",
    "EfficientNetLite0",
    "FrechetEffNetDistance",
    "fd_effnet",
    "feature_statistics",
    "frechet_distance",
    "frechet_distance_from_statistics",
    "load_efficientnet_lite0",
]
