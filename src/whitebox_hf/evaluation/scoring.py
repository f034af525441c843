"""Plain accuracy, and the paths of the `evaluate` metric scripts shipped with the package.

`evaluate.load("accuracy")` needs the Hub; the scripts under ``whitebox_hf/evaluation/metrics/`` load offline:

```python
>>> import evaluate
>>> from whitebox_hf.evaluation import metric_path
>>> accuracy = evaluate.load(metric_path("accuracy"))
>>> accuracy.compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0])
{'accuracy': 0.75}
```
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["METRIC_NAMES", "compute_accuracy", "metric_path"]

_METRICS_DIR = Path(__file__).resolve().parent / "metrics"
METRIC_NAMES = ("accuracy",)  # k-NN and probe scores are plain accuracies of their predictions


def _as_label_array(value, name: str) -> np.ndarray:
    if hasattr(value, "detach"):  # torch.Tensor
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.ndim != 1:
        raise ValueError(f"`{name}` must be one-dimensional, got shape {array.shape}")
    if array.size and not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.bool_)):
        raise TypeError(f"`{name}` must hold integer labels, got dtype {array.dtype}")
    return array


def compute_accuracy(predictions, references) -> float:
    """Fraction of ``predictions`` equal to ``references`` (1-D integer arrays, tensors or sequences of the
    same, non-zero length)."""
    predictions = _as_label_array(predictions, "predictions")
    references = _as_label_array(references, "references")
    if predictions.shape != references.shape:
        raise ValueError(
            f"`predictions` ({predictions.shape[0]}) and `references` ({references.shape[0]}) differ in length"
        )
    if predictions.size == 0:
        raise ValueError("`predictions` and `references` must not be empty")
    return float(np.mean(predictions == references))


def metric_path(name: str) -> str:
    """The path of the packaged `evaluate` metric script ``name`` (one of `METRIC_NAMES`), to pass to
    `evaluate.load`."""
    if name not in METRIC_NAMES:
        raise ValueError(f"`name` must be one of {METRIC_NAMES}, got {name!r}")
    path = _METRICS_DIR / name / f"{name}.py"
    if not path.is_file():  # pragma: no cover - a broken installation
        raise FileNotFoundError(f"metric script {path} is missing from the installed package")
    return str(path)
