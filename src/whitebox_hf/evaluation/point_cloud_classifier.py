"""A small PointNet (Qi et al. 2017: a shared per-point MLP, a symmetric max pool, an MLP head) that names the
category of a point cloud: the judge of *generated* shapes in ``training/report_shape_generation.py`` (issue 14,
"category accuracy of generated shapes judged by a point-cloud classifier trained on the real data").

It is trained on the surface points of the real (procedural) training shapes, `whitebox_hf.data.
load_procedural_shapes`, and reports its own held-out accuracy, so a reader can tell how much a generated shape's
accuracy says. The clouds are resampled to a fixed ``num_points`` and taken as they are (no recentring or rescaling:
the procedural shapes share one normalised frame, and their size and placement are part of what tells a mug from a
table). Saved as ``model.safetensors`` + ``config.json`` (no pickle).

```python
>>> from whitebox_hf.evaluation.point_cloud_classifier import train_point_cloud_classifier, classify_point_clouds
>>> classifier, metrics = train_point_cloud_classifier(shapes["train"], test_split=shapes["test"])
>>> metrics["test_accuracy"], classify_point_clouds(classifier, [points])
```
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..utils.validation import check_positive_int

__all__ = [
    "PointNetClassifier",
    "classify_point_clouds",
    "load_point_cloud_classifier",
    "point_cloud_accuracy",
    "save_point_cloud_classifier",
    "train_point_cloud_classifier",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class PointNetClassifier(nn.Module):
    """Per-point MLP ``3 → hidden_sizes`` (Linear + LayerNorm + ReLU), max over the points, head ``→ head_size →
    len(categories)``. A max pool makes the logits independent of the points' order.

    Args:
        categories: the class names, in logit order.
        hidden_sizes: widths of the shared per-point layers.
        head_size: width of the head's hidden layer.
        num_points: the number of points each cloud is resampled to (`classify_point_clouds`); stored with the
            weights so a loaded classifier judges clouds as it was trained.
    """

    def __init__(self, categories: Sequence[str], hidden_sizes: Sequence[int] = (64, 128, 256), head_size: int = 128,
                 num_points: int = 256):
        super().__init__()
        if isinstance(categories, str) or not isinstance(categories, Sequence) or len(categories) < 2 \
                or not all(isinstance(c, str) for c in categories) or len(set(categories)) != len(categories):
            raise ValueError(f"`categories` must be at least two distinct names, got {categories!r}")
        if isinstance(hidden_sizes, (str, bytes)) or not isinstance(hidden_sizes, Sequence) or not hidden_sizes:
            raise ValueError(f"`hidden_sizes` must be a non-empty sequence of positive integers, got {hidden_sizes!r}")
        for size in hidden_sizes:
            check_positive_int("hidden_sizes", size)
        check_positive_int("head_size", head_size)
        check_positive_int("num_points", num_points)
        self.config = {"categories": list(categories), "hidden_sizes": [int(s) for s in hidden_sizes],
                       "head_size": int(head_size), "num_points": int(num_points)}
        layers, width = [], 3
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), nn.LayerNorm(size), nn.ReLU()]
            width = size
        self.point_mlp = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(width, head_size), nn.ReLU(), nn.Linear(head_size, len(categories)))

    @property
    def categories(self) -> list[str]:
        return self.config["categories"]

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """``(B, N, 3)`` points → ``(B, num_categories)`` logits."""
        if not isinstance(points, torch.Tensor) or points.ndim != 3 or points.shape[-1] != 3 or points.shape[1] == 0:
            raise ValueError(f"`points` must be a (B, N, 3) tensor with N >= 1, got "
                             f"{tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__}")
        return self.head(self.point_mlp(points).amax(dim=1))


def _split_clouds(split) -> tuple[np.ndarray, list[str]]:
    if not hasattr(split, "column_names") or not {"surface_points", "category"} <= set(split.column_names):
        raise ValueError("the split must be a split of load_procedural_shapes (with `surface_points` and `category` "
                         f"columns), got {type(split).__name__}")
    if len(split) == 0:
        raise ValueError("the split holds no shapes")
    numpy = split.with_format("numpy")
    return np.asarray(numpy["surface_points"], dtype=np.float32), [str(c) for c in split["category"]]


def _resample(points: np.ndarray, num_points: int, rng: np.random.Generator) -> np.ndarray:
    """``num_points`` of a cloud's points, drawn without replacement where it has enough (with, where not)."""
    return points[rng.choice(len(points), num_points, replace=len(points) < num_points)]


def train_point_cloud_classifier(train_split, test_split=None, num_points: int = 256, epochs: int = 25,
                                 batch_size: int = 32, learning_rate: float = 2e-3, jitter: float = 0.005,
                                 hidden_sizes: Sequence[int] = (64, 128, 256), head_size: int = 128,
                                 seed: int = 0) -> tuple[PointNetClassifier, dict]:
    """Train a `PointNetClassifier` on the surface points of ``train_split`` (a split of `load_procedural_shapes`)
    with AdamW and a cosine schedule; each epoch draws a fresh ``num_points`` subset of every shape's stored points
    and jitters it by Gaussian noise of std ``jitter`` (augmentation), all from ``seed``.

    Returns:
        ``(classifier, metrics)`` in eval mode; metrics: ``train_accuracy``, ``test_accuracy`` (with
        ``test_split``, else None), ``num_train_shapes``, ``num_test_shapes``, ``train_seconds``, ``epochs``,
        ``num_points``, ``seed``.

    Raises:
        ValueError: a split that is not a procedural split, fewer than two categories in ``train_split``, or a bad
            setting (named).
    """
    for name, value in (("num_points", num_points), ("epochs", epochs), ("batch_size", batch_size)):
        check_positive_int(name, value)
    for name, value, strict in (("learning_rate", learning_rate, True), ("jitter", jitter, False)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) \
                or value < 0 or (strict and value == 0):
            raise ValueError(f"`{name}` must be a finite number {'> 0' if strict else '>= 0'}, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"`seed` must be an integer >= 0, got {seed!r}")
    clouds, names = _split_clouds(train_split)
    categories = sorted(set(names))
    if len(categories) < 2:
        raise ValueError(f"`train_split` must hold at least two categories, got {categories}")
    labels = torch.tensor([categories.index(n) for n in names])
    torch.manual_seed(seed)
    model = PointNetClassifier(categories, hidden_sizes, head_size, num_points)
    steps_per_epoch = -(-len(clouds) // batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    rng = np.random.default_rng(seed)
    start = time.time()
    model.train()
    for _ in range(epochs):
        batch = np.stack([_resample(cloud, num_points, rng) for cloud in clouds])
        batch = torch.from_numpy(batch + rng.normal(0.0, jitter, batch.shape).astype(np.float32))
        order = torch.from_numpy(rng.permutation(len(clouds)))
        for index in order.split(batch_size):
            loss = F.cross_entropy(model(batch[index]), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    metrics = {"train_seconds": time.time() - start, "epochs": epochs, "num_points": num_points, "seed": seed,
               "num_train_shapes": len(clouds), "train_accuracy": point_cloud_accuracy(model, train_split, seed),
               "test_accuracy": None, "num_test_shapes": 0}
    if test_split is not None:
        metrics.update(test_accuracy=point_cloud_accuracy(model, test_split, seed), num_test_shapes=len(test_split))
    return model, metrics


@torch.no_grad()
def classify_point_clouds(model: PointNetClassifier, clouds: Sequence, seed: int = 0,
                          batch_size: int = 64) -> list[str]:
    """The predicted category of each point cloud ``(N_i, 3)`` (NumPy or torch), each resampled to the model's
    ``num_points`` from ``seed``."""
    if not isinstance(model, PointNetClassifier):
        raise TypeError(f"`model` must be a PointNetClassifier, got {type(model).__name__}")
    if isinstance(clouds, (str, bytes)) or not isinstance(clouds, Sequence) or len(clouds) == 0:
        raise ValueError(f"`clouds` must be a non-empty sequence of (N, 3) point arrays, got {type(clouds).__name__}")
    rng = np.random.default_rng(seed)
    resampled = []
    for index, cloud in enumerate(clouds):
        cloud = cloud.detach().cpu().numpy() if isinstance(cloud, torch.Tensor) else np.asarray(cloud)
        if cloud.ndim != 2 or cloud.shape[1] != 3 or len(cloud) == 0 or not np.isfinite(cloud).all():
            raise ValueError(f"`clouds[{index}]` must be finite points (N, 3) with N >= 1, got shape {cloud.shape}")
        resampled.append(_resample(cloud.astype(np.float32), model.config["num_points"], rng))
    was_training = model.training
    model.eval()
    points = torch.from_numpy(np.stack(resampled))
    predicted = torch.cat([model(points[i:i + batch_size]).argmax(-1) for i in range(0, len(points), batch_size)])
    model.train(was_training)
    return [model.categories[i] for i in predicted.tolist()]


def point_cloud_accuracy(model: PointNetClassifier, split, seed: int = 0) -> float:
    """Accuracy on a procedural split's stored surface points (a category the model does not know counts wrong)."""
    clouds, names = _split_clouds(split)
    predicted = classify_point_clouds(model, list(clouds), seed=seed)
    return float(np.mean([p == n for p, n in zip(predicted, names)]))


def save_point_cloud_classifier(model: PointNetClassifier, folder: str | os.PathLike,
                                metrics: dict | None = None) -> Path:
    """``folder/model.safetensors`` and ``folder/config.json`` (the constructor's arguments, and ``metrics``)."""
    from safetensors.torch import save_file

    if not isinstance(model, PointNetClassifier):
        raise TypeError(f"`model` must be a PointNetClassifier, got {type(model).__name__}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / WEIGHTS_NAME))
    (folder / CONFIG_NAME).write_text(json.dumps({**model.config, "metrics": metrics or {}}, indent=2) + "\n")
    return folder


def load_point_cloud_classifier(folder: str | os.PathLike) -> tuple[PointNetClassifier, dict]:
    """``(classifier in eval mode, the metrics saved with it)`` from `save_point_cloud_classifier`'s folder.

    Raises:
        OSError: the folder lacks ``config.json`` or ``model.safetensors``.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (folder / name).is_file():
            raise OSError(f"no point-cloud classifier in {str(folder)!r}: {name} is missing")
    config = json.loads((folder / CONFIG_NAME).read_text())
    metrics = config.pop("metrics", {})
    model = PointNetClassifier(**config)
    model.load_state_dict(load_file(str(folder / WEIGHTS_NAME)))
    return model.eval(), metrics
