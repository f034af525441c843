"""DINO's multi-crop augmentation (spec ``ssl_and_generation.md`` §1.1), scaled to 28×28 grey images.

The recipe of ``DataAugmentationDINO`` for 224-px RGB ImageNet crops, transposed to Fashion-MNIST:

- 2 global views: ``RandomResizedCrop(global_size, scale=global_scale)``; L local views:
  ``RandomResizedCrop(local_size, scale=local_scale)`` (224/96 px → 28/12 px keeps the 3:7 side ratio).
- Every view: horizontal flip, then brightness/contrast jitter (0.4, 0.4) with probability 0.8. Hue/saturation
  jitter and random grayscale are left out: they are no-ops on single-channel images.
- Gaussian blur with probability 1.0 on global view 1, 0.1 on global view 2 (followed by solarisation with
  probability 0.2) and 0.5 on every local view.
- Normalisation with the Fashion-MNIST mean/std instead of ImageNet's.

Deviation: DINO blurs 224-px crops with σ ∈ (0.1, 2.0); scaling σ by 28/224 would make the blur invisible, so
the default here is a 3×3 kernel with σ ∈ (0.1, 1.0), which still removes most stroke-level detail at 28 px.

Randomness comes from the global torch RNG, so wrapping the transform in `AugmentedTensorDataset` (which seeds
each sample from ``(seed, epoch, index)``) makes every sample's views reproducible and resumable.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import v2

from ..utils.validation import check_positive_int

__all__ = ["FASHION_MNIST_MEAN", "FASHION_MNIST_STD", "MultiCropTransform", "multicrop_collate"]

FASHION_MNIST_MEAN = (0.2860,)
FASHION_MNIST_STD = (0.3530,)


def _check_scale(name: str, scale) -> tuple[float, float]:
    if (not isinstance(scale, Sequence) or len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1):
        raise ValueError(f"`{name}` must be a pair 0 < low ≤ high ≤ 1, got {scale!r}")
    return float(scale[0]), float(scale[1])


def _check_probability(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"`{name}` must be in [0, 1], got {value!r}")
    return float(value)


class MultiCropTransform:
    """uint8 ``(C, H, W)`` image → list of ``2 + num_local`` normalised float32 views, globals first.

    Args:
        global_size (`int`, defaults to 28): side of the two global views.
        local_size (`int`, defaults to 12): side of the local views.
        num_local (`int`, defaults to 6): number of local views L (DINO uses 8, SimDINO 10).
        global_scale, local_scale (`tuple[float, float]`): area fractions of `RandomResizedCrop`.
        image_mean, image_std (`Sequence[float]`): per-channel normalisation (Fashion-MNIST's by default).
        brightness, contrast (`float`, defaults to 0.4): jitter strengths, applied with ``jitter_probability``.
        jitter_probability (`float`, defaults to 0.8).
        blur_probabilities (`tuple[float, float, float]`, defaults to ``(1.0, 0.1, 0.5)``): blur probability for
            global view 1, global view 2 and every local view.
        solarize_probability (`float`, defaults to 0.2): solarisation of global view 2 only.
        blur_kernel_size (`int`, defaults to 3), blur_sigma (`tuple[float, float]`, defaults to ``(0.1, 1.0)``).
        horizontal_flip (`bool`, defaults to True): disable for data where a mirror image changes the class.
    """

    def __init__(
        self,
        global_size: int = 28,
        local_size: int = 12,
        num_local: int = 6,
        global_scale: tuple[float, float] = (0.4, 1.0),
        local_scale: tuple[float, float] = (0.05, 0.4),
        image_mean: Sequence[float] = FASHION_MNIST_MEAN,
        image_std: Sequence[float] = FASHION_MNIST_STD,
        brightness: float = 0.4,
        contrast: float = 0.4,
        jitter_probability: float = 0.8,
        blur_probabilities: tuple[float, float, float] = (1.0, 0.1, 0.5),
        solarize_probability: float = 0.2,
        blur_kernel_size: int = 3,
        blur_sigma: tuple[float, float] = (0.1, 1.0),
        horizontal_flip: bool = True,
    ):
        for name, value in (("global_size", global_size), ("local_size", local_size),
                            ("blur_kernel_size", blur_kernel_size)):
            check_positive_int(name, value)
        if blur_kernel_size % 2 == 0:
            raise ValueError(f"`blur_kernel_size` must be odd, got {blur_kernel_size!r}")
        if isinstance(num_local, bool) or not isinstance(num_local, int) or num_local < 0:
            raise ValueError(f"`num_local` must be a non-negative integer, got {num_local!r}")
        if len(image_mean) != len(image_std) or any(s <= 0 for s in image_std):
            raise ValueError(f"`image_mean`/`image_std` must have equal lengths and positive stds, got "
                             f"{image_mean!r} / {image_std!r}")
        if len(blur_probabilities) != 3:
            raise ValueError(f"`blur_probabilities` must hold 3 probabilities, got {blur_probabilities!r}")
        global_scale = _check_scale("global_scale", global_scale)
        local_scale = _check_scale("local_scale", local_scale)
        blur_global_1, blur_global_2, blur_local = (
            _check_probability("blur_probabilities", p) for p in blur_probabilities
        )
        solarize_probability = _check_probability("solarize_probability", solarize_probability)
        jitter_probability = _check_probability("jitter_probability", jitter_probability)
        if not 0 < blur_sigma[0] <= blur_sigma[1]:
            raise ValueError(f"`blur_sigma` must be a pair 0 < low ≤ high, got {blur_sigma!r}")

        self.global_size, self.local_size, self.num_local = global_size, local_size, num_local

        def blur(probability: float) -> list:
            # v2.RandomApply with p=1 still draws a random number; skipping it keeps p=1/p=0 exact and cheap.
            if probability == 0.0:
                return []
            transform = v2.GaussianBlur(blur_kernel_size, sigma=tuple(blur_sigma))
            return [transform if probability == 1.0 else v2.RandomApply([transform], p=probability)]

        def view(size: int, scale: tuple[float, float], extra: list) -> v2.Compose:
            steps = [v2.RandomResizedCrop(size, scale=scale, interpolation=v2.InterpolationMode.BICUBIC,
                                          antialias=True)]
            if horizontal_flip:
                steps.append(v2.RandomHorizontalFlip())
            if jitter_probability > 0:
                steps.append(v2.RandomApply([v2.ColorJitter(brightness=brightness, contrast=contrast)],
                                            p=jitter_probability))
            # Geometry and photometry run on uint8 (as PIL does in DINO), so solarising at 128 matches PIL's.
            steps += extra
            steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(image_mean), list(image_std))]
            return v2.Compose(steps)

        solarize = [v2.RandomSolarize(128, p=solarize_probability)] if solarize_probability > 0 else []
        self.global_transform_1 = view(global_size, global_scale, blur(blur_global_1))
        self.global_transform_2 = view(global_size, global_scale, blur(blur_global_2) + solarize)
        self.local_transform = view(local_size, local_scale, blur(blur_local))

    def __call__(self, image: torch.Tensor) -> list[torch.Tensor]:
        if not isinstance(image, torch.Tensor) or image.dtype != torch.uint8 or image.ndim != 3:
            raise ValueError("`image` must be a uint8 tensor of shape (C, H, W), got "
                             f"{getattr(image, 'dtype', type(image).__name__)} {tuple(getattr(image, 'shape', ()))}")
        views = [self.global_transform_1(image), self.global_transform_2(image)]
        views += [self.local_transform(image) for _ in range(self.num_local)]
        return views

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(global_size={self.global_size}, local_size={self.local_size}, "
                f"num_local={self.num_local})")


def multicrop_collate(samples: list[dict]) -> dict:
    """Collate `AugmentedTensorDataset` samples whose ``pixel_values`` are lists of views: ``pixel_values``
    becomes a list of ``(batch, C, h, w)`` tensors, one per view (globals first), ``labels`` a tensor."""
    if not samples:
        raise ValueError("`samples` must be a non-empty list")
    num_views = len(samples[0]["pixel_values"])
    if any(len(sample["pixel_values"]) != num_views for sample in samples):
        raise ValueError("every sample in `samples` must have the same number of views")
    pixel_values = [torch.stack([sample["pixel_values"][k] for sample in samples]) for k in range(num_views)]
    labels = torch.stack([torch.as_tensor(sample["labels"]) for sample in samples])
    return {"pixel_values": pixel_values, "labels": labels}
