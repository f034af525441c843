"""Spatial control of the text-to-image base by a ControlNet (book §8.7) on Canny edge maps, run by diffusers' own
`StableDiffusionControlNetPipeline`.

```python
>>> from diffusers import StableDiffusionPipeline
>>> from whitebox_hf.pipelines.control import canny_control_images, control_pipeline, controlnet_from_base
>>> base = StableDiffusionPipeline.from_pretrained("runs/text-to-image-mhsa/pipeline")
>>> controlnet = controlnet_from_base(base)              # zero convolutions: the pipeline equals the base
>>> pipe = control_pipeline(base, controlnet)
>>> edges = canny_control_images(drawings)              # uint8 (n, H, W, 3) -> list of RGB edge maps
>>> images = generate_with_control(pipe, ["Apple. Keywords: fruit"], edges[:1]).images
```

The base is what ``StableDiffusionPipeline.save_pretrained`` writes (VAE, text encoder, tokenizer, U-Net, scheduler,
no safety checker). `controlnet_from_base` builds the ControlNet with `ControlNetModel.from_unet` (the U-Net's
encoder copied, every output projection a zero convolution), its conditioning embedding sized so that it maps a
control image of the base's pixel size to the latent grid. `generate_with_control` is the pipeline's ``__call__``
behind a check of the control image: diffusers resizes a control image of another size, converts any PIL mode to
RGB and accepts tensors of any range without a word (and fails deep inside a convolution on a one-channel tensor);
here each of those is a ValueError or TypeError naming ``image``.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

__all__ = [
    "CONTROL_IMAGE_DOC",
    "canny_control_images",
    "canny_edges",
    "check_control_image",
    "control_image_size",
    "control_pipeline",
    "controlnet_from_base",
    "generate_with_control",
]

CONTROL_IMAGE_DOC = ("an RGB PIL image of the pipeline's size, a list of them, or a float tensor (3, H, W) or "
                     "(n, 3, H, W) with values in [0, 1]")


def canny_edges(images, sigma: float = 1.0, low_threshold: float | None = None,
                high_threshold: float | None = None) -> np.ndarray:
    """Canny edges (`skimage.feature.canny`) of each image's luminance: bool ``(n, H, W)``.

    Args:
        images: uint8 ``(n, H, W, 3)`` or ``(H, W, 3)`` RGB images (numpy or torch), or a list of RGB PIL images.
        sigma: the Gaussian's standard deviation in pixels (1 suits 32-pixel drawings: 2 already merges strokes).
        low_threshold, high_threshold: hysteresis thresholds on the gradient of the [0, 1] luminance
            (skimage's defaults, 10 % and 20 % of the dtype's range, when None).
    """
    from skimage.color import rgb2gray
    from skimage.feature import canny

    array = _uint8_rgb_batch("images", images)
    if not (isinstance(sigma, (int, float)) and not isinstance(sigma, bool) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"`sigma` must be a positive number, got {sigma!r}")
    return np.stack([canny(rgb2gray(image), sigma=sigma, low_threshold=low_threshold, high_threshold=high_threshold)
                     for image in array])


def canny_control_images(images, sigma: float = 1.0, low_threshold: float | None = None,
                         high_threshold: float | None = None) -> list:
    """The ControlNet conditioning of ``images`` (see `canny_edges`): RGB PIL edge maps, white edges on black, as
    ControlNet's Canny models take them."""
    from PIL import Image

    edges = canny_edges(images, sigma, low_threshold, high_threshold)
    return [Image.fromarray(np.repeat(edge[..., None], 3, axis=-1).astype(np.uint8) * 255, mode="RGB")
            for edge in edges]


def _uint8_rgb_batch(name: str, images) -> np.ndarray:
    from PIL import Image

    if isinstance(images, (list, tuple)):
        if not images or not all(isinstance(image, Image.Image) for image in images):
            raise TypeError(f"`{name}` as a list must hold PIL images, got "
                            f"{[type(image).__name__ for image in images][:3] or 'an empty list'}")
        modes = sorted({image.mode for image in images})
        if modes != ["RGB"]:
            raise ValueError(f"`{name}` must be RGB images, got modes {modes}")
        images = np.stack([np.asarray(image) for image in images])
    elif isinstance(images, torch.Tensor):
        images = images.cpu().numpy()
    elif not isinstance(images, np.ndarray):
        raise TypeError(f"`{name}` must be a uint8 (n, H, W, 3) array or tensor or a list of PIL images, got "
                        f"{type(images).__name__}")
    if images.dtype != np.uint8:
        raise ValueError(f"`{name}` must be uint8, got dtype {images.dtype}")
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[0] == 0:
        raise ValueError(f"`{name}` must have shape (n, H, W, 3) or (H, W, 3) with n >= 1, got {images.shape}")
    return images


def control_image_size(pipe) -> tuple[int, int]:
    """``(height, width)`` in pixels of the images ``pipe`` generates by default, so the size a control image
    must have: the U-Net's latent ``sample_size`` times the VAE's scale factor."""
    size = pipe.unet.config.sample_size
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    return height * pipe.vae_scale_factor, width * pipe.vae_scale_factor


def controlnet_from_base(base, conditioning_channels: int = 3, conditioning_embedding_out_channels=None):
    """A `ControlNetModel` made with ``ControlNetModel.from_unet(base.unet)`` (the U-Net's encoder and middle
    block copied, every output projection a zero convolution, so the controlled pipeline starts equal to ``base``).

    The conditioning embedding downsamples by 2 once per extra entry of ``conditioning_embedding_out_channels``;
    diffusers' default (four entries, ÷8) fits Stable Diffusion's 8× VAE only. The default here has
    log2(VAE scale factor) + 1 entries (16, 32, 64, ...), so a control image of the base's pixel size lands on the
    latent grid.

    Raises:
        ValueError: the VAE's scale factor is not a power of two, or ``conditioning_embedding_out_channels`` has
            the wrong length for it.
    """
    from diffusers import ControlNetModel

    factor = base.vae_scale_factor
    downsamplings = round(math.log2(factor)) if factor > 0 else -1
    if factor < 1 or 2**downsamplings != factor:
        raise ValueError(f"the base's VAE scale factor must be a power of two, got {factor}")
    if conditioning_embedding_out_channels is None:
        conditioning_embedding_out_channels = tuple(16 * 2**i for i in range(downsamplings + 1))
    conditioning_embedding_out_channels = tuple(conditioning_embedding_out_channels)
    if len(conditioning_embedding_out_channels) != downsamplings + 1:
        raise ValueError(f"`conditioning_embedding_out_channels` must have {downsamplings + 1} entries for a VAE "
                         f"scale factor of {factor}, got {conditioning_embedding_out_channels}")
    return ControlNetModel.from_unet(base.unet, conditioning_embedding_out_channels=conditioning_embedding_out_channels,
                                     conditioning_channels=conditioning_channels)


def control_pipeline(base, controlnet):
    """diffusers' `StableDiffusionControlNetPipeline` on the components of ``base`` (a `StableDiffusionPipeline` or
    its folder) and ``controlnet`` (a `ControlNetModel` or its folder); no safety checker, as the base."""
    from diffusers import (
        ControlNetModel,
        StableDiffusionControlNetPipeline,
        StableDiffusionPipeline,
    )

    if isinstance(base, (str, os.PathLike)):
        base = StableDiffusionPipeline.from_pretrained(base, safety_checker=None)
    if not isinstance(base, StableDiffusionPipeline):
        raise TypeError(f"`base` must be a StableDiffusionPipeline or its folder, got {type(base).__name__}")
    if isinstance(controlnet, (str, os.PathLike)):
        controlnet = ControlNetModel.from_pretrained(controlnet)
    if not isinstance(controlnet, ControlNetModel):
        raise TypeError(f"`controlnet` must be a ControlNetModel or its folder, got {type(controlnet).__name__}")
    if controlnet.config.cross_attention_dim != base.unet.config.cross_attention_dim:
        raise ValueError(f"`controlnet` must have the base U-Net's cross_attention_dim "
                         f"{base.unet.config.cross_attention_dim}, got {controlnet.config.cross_attention_dim}")
    pipe = StableDiffusionControlNetPipeline(
        vae=base.vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer, unet=base.unet, controlnet=controlnet,
        scheduler=base.scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def check_control_image(image, height: int, width: int, name: str = "image") -> None:
    """Refuse a control image diffusers would silently resize, convert or misread.

    Args:
        image: `CONTROL_IMAGE_DOC`.
        height, width: the size the pipeline generates (`control_image_size`).

    Raises:
        TypeError: ``image`` is of another type (a numpy array, a path, ...).
        ValueError: a PIL image not in mode RGB or of another size, an empty list, a tensor without 3 channels,
            of another size, not floating point or outside [0, 1].
    """
    from PIL import Image

    expected = f"{width}×{height}"
    if isinstance(image, Image.Image):
        image = [image]
    if isinstance(image, (list, tuple)):
        if not image:
            raise ValueError(f"`{name}` must hold at least one control image, got an empty list")
        for i, item in enumerate(image):
            if not isinstance(item, Image.Image):
                raise TypeError(f"`{name}` as a list must hold PIL images, got {type(item).__name__} at index {i}")
            if item.mode != "RGB":
                raise ValueError(f"`{name}` must be an RGB image (mode 'RGB'), got mode {item.mode!r}"
                                 + (f" at index {i}" if len(image) > 1 else ""))
            if item.size != (width, height):
                raise ValueError(f"`{name}` must be {expected} pixels (width×height, the pipeline's size), got "
                                 f"{item.width}×{item.height}" + (f" at index {i}" if len(image) > 1 else ""))
        return
    if isinstance(image, torch.Tensor):
        if image.ndim not in (3, 4):
            raise ValueError(f"`{name}` as a tensor must be (3, H, W) or (n, 3, H, W), got shape {tuple(image.shape)}")
        channels, got_height, got_width = image.shape[-3:]
        if channels != 3:
            raise ValueError(f"`{name}` must have 3 channels (RGB), got {channels} (shape {tuple(image.shape)})")
        if (got_height, got_width) != (height, width):
            raise ValueError(f"`{name}` must be {height}×{width} (H×W, the pipeline's size), got "
                             f"{got_height}×{got_width}")
        if not image.is_floating_point():
            raise ValueError(f"`{name}` as a tensor must be floating point with values in [0, 1], got dtype "
                             f"{image.dtype}")
        if image.numel() and (not torch.isfinite(image).all() or image.min() < 0 or image.max() > 1):
            raise ValueError(f"`{name}` must have values in [0, 1], got [{float(image.min()):.3g}, "
                             f"{float(image.max()):.3g}]")
        return
    raise TypeError(f"`{name}` must be {CONTROL_IMAGE_DOC}, got {type(image).__name__}")


def generate_with_control(pipe, prompt, image, **kwargs):
    """``pipe(prompt, image=image, **kwargs)`` after `check_control_image` against the size ``pipe`` generates
    (``height``/``width`` in ``kwargs`` when given)."""
    default_height, default_width = control_image_size(pipe)
    check_control_image(image, kwargs.get("height") or default_height, kwargs.get("width") or default_width)
    return pipe(prompt, image=image, **kwargs)
