"""Per-sample augmentation with torchvision v2, made reproducible across interruptions.

Every sample's random crop/flip is drawn from a seed derived from ``(seed, epoch, index)``, not from the global
RNG, so a run resumed from a mid-epoch checkpoint, or split over several processes, sees exactly the same
augmented images as an uninterrupted single-process run.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, Sampler
from torchvision.transforms import v2

__all__ = ["image_classification_transforms", "AugmentedTensorDataset", "EpochPermutationSampler"]


def image_classification_transforms(
    image_size: int, image_mean, image_std, train: bool, crop_padding: int = 2, horizontal_flip: bool = True,
    random_erasing: float = 0.0,
) -> v2.Compose:
    """uint8 ``(C, H, W)`` → normalised float32. Training adds random-crop-with-padding, horizontal flips and,
    with probability ``random_erasing``, torchvision's random erasing (a rectangle set to 0 after normalisation,
    the augmentation of CRATE's and DeiT's recipes). The normalisation matches a
    `ViTImageProcessor(image_mean=..., image_std=...)` saved with the model."""
    if isinstance(random_erasing, bool) or not isinstance(random_erasing, (int, float)) \
            or not 0.0 <= random_erasing <= 1.0:
        raise ValueError(f"`random_erasing` must be a probability in [0, 1], got {random_erasing!r}")
    steps = []
    if train:
        if crop_padding > 0:
            steps.append(v2.RandomCrop(image_size, padding=crop_padding))
        if horizontal_flip:
            steps.append(v2.RandomHorizontalFlip())
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(image_mean), list(image_std))]
    if train and random_erasing > 0:
        steps.append(v2.RandomErasing(p=random_erasing))
    return v2.Compose(steps)


class AugmentedTensorDataset(Dataset):
    """``(pixel_values, labels)`` pairs from in-memory uint8 images, augmented deterministically.

    ``transform=None`` hands out the uint8 images unchanged, for augmentations that run on whole batches
    (`BatchMultiCrop`)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform, seed: int = 0):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"`images` must be uint8 (n, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"`labels` must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
        self.images, self.labels, self.transform, self.seed = images, labels, transform, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        if self.transform is None:
            return {"pixel_values": self.images[index], "labels": self.labels[index]}
        with torch.random.fork_rng(devices=[]):
            # The CPU generator only: the transforms draw from it alone (the images are CPU tensors).
            # `torch.manual_seed` would also queue a seed for every accelerator back end, each recording a
            # stack trace while that back end is not initialised: 2-4 ms per image, most of a small model's step.
            torch.default_generator.manual_seed((self.seed * 1_000_003 + self.epoch) * 10_000_019 + index)
            pixel_values = self.transform(self.images[index])
        return {"pixel_values": pixel_values, "labels": self.labels[index]}


class EpochPermutationSampler(Sampler[int]):
    """A random permutation that depends only on ``(seed, epoch)``: resumable and identical on every rank."""

    def __init__(self, num_samples: int, seed: int = 0):
        self.num_samples, self.seed, self.epoch = num_samples, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 7919 + self.epoch)
        return iter(torch.randperm(self.num_samples, generator=generator).tolist())
