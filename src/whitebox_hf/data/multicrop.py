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

import math

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from ..utils.validation import check_positive_int

__all__ = [
    "FASHION_MNIST_MEAN", "FASHION_MNIST_STD", "BatchMultiCrop", "MultiCropTransform", "multicrop_collate",
]

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


def _validated_settings(global_size, local_size, num_local, global_scale, local_scale, image_mean, image_std,
                        jitter_probability, blur_probabilities, solarize_probability, blur_kernel_size,
                        blur_sigma) -> dict:
    """The checks both multi-crop classes run on their arguments; returns the checked scales and probabilities."""
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
    return {"global_scale": global_scale, "local_scale": local_scale, "blur_probabilities":
            (blur_global_1, blur_global_2, blur_local), "solarize_probability": solarize_probability,
            "jitter_probability": jitter_probability}


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
        checked = _validated_settings(global_size, local_size, num_local, global_scale, local_scale, image_mean,
                                      image_std, jitter_probability, blur_probabilities, solarize_probability,
                                      blur_kernel_size, blur_sigma)
        global_scale, local_scale = checked["global_scale"], checked["local_scale"]
        blur_global_1, blur_global_2, blur_local = checked["blur_probabilities"]
        solarize_probability = checked["solarize_probability"]
        jitter_probability = checked["jitter_probability"]

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

class BatchMultiCrop:
    """uint8 ``(B, C, H, W)`` batch → list of ``2 + num_local`` normalised float32 ``(B, C, h, h)`` views, globals
    first: the recipe of `MultiCropTransform`, drawn independently for every image but computed for the whole
    batch at once.

    `MultiCropTransform` runs about ten torchvision calls per view and image: 1,024 views of a 128-image batch
    cost ~0.3 s on one core, as long as the model's step at width 96. Here each view of the batch is one
    `torch.nn.functional.affine_grid`/`grid_sample` (crop, resize and flip in one affine map per image), a
    per-image brightness/contrast blend, one grouped separable blur and a masked solarisation (~10 ms).

    Differences from `MultiCropTransform`, none of which changes the distribution of crops:
    - resizing is bilinear without antialiasing (the crops shrink by at most √0.4 · 28 / 12 ≈ 1.5× here);
    - values stay in float until normalisation (no rounding to uint8 between the steps);
    - brightness and contrast are applied in a random order per image, as `ColorJitter`, blur pads by
      reflection, as `GaussianBlur`; a crop that does not fit in 10 draws falls back to the whole image.

    Randomness comes from ``generator`` (or the global torch RNG), so under `resumable_batches`, which reseeds
    the global RNG from ``(seed, step, process)``, a resumed run draws the same views.

    Args: those of `MultiCropTransform`.
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
        checked = _validated_settings(global_size, local_size, num_local, global_scale, local_scale, image_mean,
                                      image_std, jitter_probability, blur_probabilities, solarize_probability,
                                      blur_kernel_size, blur_sigma)
        for name, value in (("brightness", brightness), ("contrast", contrast)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ValueError(f"`{name}` must be a number in [0, 1), got {value!r}")
        self.global_size, self.local_size, self.num_local = global_size, local_size, num_local
        self.global_scale, self.local_scale = checked["global_scale"], checked["local_scale"]
        self.blur_probabilities = checked["blur_probabilities"]
        self.solarize_probability = checked["solarize_probability"]
        self.jitter_probability = checked["jitter_probability"]
        self.brightness, self.contrast = float(brightness), float(contrast)
        self.blur_kernel_size, self.blur_sigma = blur_kernel_size, (float(blur_sigma[0]), float(blur_sigma[1]))
        self.horizontal_flip = horizontal_flip
        self.image_mean = torch.tensor(image_mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.image_std = torch.tensor(image_std, dtype=torch.float32).view(1, -1, 1, 1)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4 \
                or images.shape[0] == 0:
            raise ValueError("`images` must be a non-empty uint8 tensor of shape (B, C, H, W), got "
                             f"{getattr(images, 'dtype', type(images).__name__)} "
                             f"{tuple(getattr(images, 'shape', ()))}")
        if images.shape[1] != self.image_mean.shape[1]:
            raise ValueError(f"`images` must have {self.image_mean.shape[1]} channels (image_mean), got "
                             f"{images.shape[1]}")
        pixels = images.float() / 255.0
        blur_1, blur_2, blur_local = self.blur_probabilities
        views = [
            self._view(pixels, self.global_size, self.global_scale, blur_1, 0.0, generator),
            self._view(pixels, self.global_size, self.global_scale, blur_2, self.solarize_probability, generator),
        ]
        views += [self._view(pixels, self.local_size, self.local_scale, blur_local, 0.0, generator)
                  for _ in range(self.num_local)]
        return views

    def _view(self, pixels, size, scale, blur_probability, solarize_probability, generator) -> torch.Tensor:
        batch = pixels.shape[0]
        device = pixels.device
        uniform = lambda *shape: torch.rand(*shape, generator=generator, device=device)  # noqa: E731
        view = self._crop_resize_flip(pixels, size, scale, uniform)
        if self.jitter_probability > 0:
            view = self._jitter(view, uniform(batch) < self.jitter_probability, uniform)
        if blur_probability > 0:
            view = self._blur(view, uniform(batch) < blur_probability, uniform)
        if solarize_probability > 0:
            solarize = (uniform(batch) < solarize_probability).view(-1, 1, 1, 1)
            # RandomSolarize(128) on uint8: values ≥ 128 become 255 − value; 127.5 is what rounds to 128.
            view = torch.where(solarize & (view >= 127.5 / 255), 1.0 - view, view)
        return (view - self.image_mean.to(view.device)) / self.image_std.to(view.device)

    def _crop_resize_flip(self, pixels, size, scale, uniform) -> torch.Tensor:
        """RandomResizedCrop's sampling (area fraction in ``scale``, log-uniform aspect in [3/4, 4/3], first of
        10 draws that fits) and the flip, as one affine map per image."""
        batch, _, height, width = pixels.shape
        tries = 10
        area = height * width * (scale[0] + (scale[1] - scale[0]) * uniform(batch, tries))
        log_ratio = math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * uniform(batch, tries)
        crop_w = torch.sqrt(area * torch.exp(log_ratio))
        crop_h = torch.sqrt(area / torch.exp(log_ratio))
        fits = (crop_w <= width) & (crop_h <= height)
        first = torch.argmax(fits.int(), dim=1, keepdim=True)  # first fitting draw (0 if none fits)
        any_fits = fits.any(dim=1)
        crop_w = torch.where(any_fits, crop_w.gather(1, first).squeeze(1), float(width))
        crop_h = torch.where(any_fits, crop_h.gather(1, first).squeeze(1), float(height))
        left = (width - crop_w) * uniform(batch)
        top = (height - crop_h) * uniform(batch)
        # Normalised coordinates (align_corners=False): pixel edges span [-1, 1].
        centre_x = (left + crop_w / 2) / width * 2 - 1
        centre_y = (top + crop_h / 2) / height * 2 - 1
        flip = torch.where(uniform(batch) < 0.5, -1.0, 1.0) if self.horizontal_flip \
            else torch.ones(batch, device=pixels.device)
        theta = torch.zeros(batch, 2, 3, device=pixels.device)
        theta[:, 0, 0] = crop_w / width * flip
        theta[:, 0, 2] = centre_x
        theta[:, 1, 1] = crop_h / height
        theta[:, 1, 2] = centre_y
        grid = F.affine_grid(theta, [batch, pixels.shape[1], size, size], align_corners=False)
        return F.grid_sample(pixels, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def _jitter(self, view, apply, uniform) -> torch.Tensor:
        """ColorJitter(brightness, contrast) on the images where ``apply``: factors uniform in [1 − s, 1 + s],
        the two adjustments in a random order per image, clamped to [0, 1] after each."""
        batch = view.shape[0]
        shape = (-1, 1, 1, 1)
        brightness = torch.where(apply, 1 + self.brightness * (2 * uniform(batch) - 1), 1.0).view(shape)
        contrast = torch.where(apply, 1 + self.contrast * (2 * uniform(batch) - 1), 1.0).view(shape)

        def adjust_contrast(x):  # blend with the mean grey level of each image, as torchvision
            grey = x.mean(dim=(1, 2, 3), keepdim=True)
            return (contrast * x + (1 - contrast) * grey).clamp(0, 1)

        brightness_first = (uniform(batch) < 0.5).view(shape)
        a = adjust_contrast((view * brightness).clamp(0, 1))
        b = (adjust_contrast(view) * brightness).clamp(0, 1)
        return torch.where(brightness_first, a, b)

    def _blur(self, view, apply, uniform) -> torch.Tensor:
        """GaussianBlur(kernel, sigma) on the images where ``apply`` (σ uniform in ``blur_sigma`` per image),
        one separable grouped convolution with reflection padding; the others get the identity kernel."""
        batch, channels, height, width = view.shape
        low, high = self.blur_sigma
        sigma = low + (high - low) * uniform(batch)
        half = self.blur_kernel_size // 2
        offsets = torch.arange(-half, half + 1, dtype=torch.float32, device=view.device)
        kernel = torch.exp(-(offsets.view(1, -1) ** 2) / (2 * sigma.view(-1, 1) ** 2))
        kernel = kernel / kernel.sum(dim=1, keepdim=True)
        identity = (offsets == 0).float().expand_as(kernel)
        kernel = torch.where(apply.view(-1, 1), kernel, identity).repeat_interleave(channels, dim=0)
        flat = F.pad(view.reshape(1, batch * channels, height, width), (half, half, half, half), mode="reflect")
        flat = F.conv2d(flat, kernel.view(-1, 1, 1, self.blur_kernel_size), groups=batch * channels)
        flat = F.conv2d(flat, kernel.view(-1, 1, self.blur_kernel_size, 1), groups=batch * channels)
        return flat.view(batch, channels, height, width)

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
