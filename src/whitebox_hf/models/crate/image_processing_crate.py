"""Image processor for CRATE: ViT's preprocessing plus a channel adapter.

transformers' pipelines open every image as RGB, so a model trained on grey images (Fashion-MNIST) would
receive 3 channels. `CrateImageProcessor` converts each image to the model's `num_channels` first (ITU-R 601-2
luma for RGB→grey, repetition for grey→RGB) and otherwise behaves exactly like `ViTImageProcessor`.
"""

from __future__ import annotations

import torch
from torchvision.transforms.v2 import functional as tvF
from transformers import ViTImageProcessor

__all__ = ["CrateImageProcessor"]


class CrateImageProcessor(ViTImageProcessor):
    r"""
    `ViTImageProcessor` (resize, rescale, normalise) that first converts images to `num_channels` channels.

    Args:
        num_channels (`int`, *optional*, defaults to 3):
            Channels the model expects: 1 (grey) or 3 (RGB).
        **kwargs:
            Every `ViTImageProcessor` argument (`size`, `image_mean`, `image_std`, `do_resize`, ...).
    """

    num_channels = 3

    def __init__(self, num_channels: int = 3, **kwargs):
        if num_channels not in (1, 3):
            raise ValueError(f"`num_channels` must be 1 or 3, got {num_channels!r}")
        # ViT's default statistics are 0.5 per channel for 3 channels; give a grey model one value each.
        kwargs.setdefault("image_mean", [0.5] * num_channels)
        kwargs.setdefault("image_std", [0.5] * num_channels)
        super().__init__(**kwargs)
        self.num_channels = num_channels
        # Explicit statistics must have one value per model channel; otherwise normalisation would fail later
        # with a broadcast error far from the cause.
        for name in ("image_mean", "image_std"):
            value = getattr(self, name)
            if self.do_normalize and isinstance(value, (list, tuple)) and len(value) != num_channels:
                raise ValueError(
                    f"`{name}` must have num_channels={num_channels} values, got {len(value)} ({list(value)}); "
                    f"pass e.g. image_mean=[0.2860], image_std=[0.3530] for Fashion-MNIST"
                )

    def _to_model_channels(self, image: torch.Tensor) -> torch.Tensor:
        channels = image.shape[-3]
        if channels == self.num_channels:
            return image
        if channels == 4:  # drop alpha
            image, channels = image[..., :3, :, :], 3
        if channels == 3 and self.num_channels == 1:
            return tvF.rgb_to_grayscale(image, num_output_channels=1)
        if channels == 1 and self.num_channels == 3:
            return image.repeat_interleave(3, dim=-3)
        raise ValueError(f"cannot convert an image with {channels} channels to num_channels={self.num_channels}")

    def _preprocess(self, images: list[torch.Tensor], *args, **kwargs):
        return super()._preprocess([self._to_model_channels(image) for image in images], *args, **kwargs)
