"""Attention saliency: where the class token looks in the last layer.

CRATE's class token attends to object parts without any segmentation supervision (Yu et al., *Emergence of
Segmentation with Minimalistic White-Box Transformers*, 2023; book §8.4). `attention_saliency` reads that
attention; `save_saliency_grid` draws it over the images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..utils.validation import check_positive_int
from ._utils import check_pixel_batch, evaluation_mode, model_device
from .features import get_backbone

__all__ = ["attention_saliency", "save_saliency_grid"]


def _normalise_per_image(maps: torch.Tensor) -> torch.Tensor:
    """Min-max scale each ``(H, W)`` map of a ``(batch, H, W)`` stack to ``[0, 1]`` (a constant map → 0)."""
    flat = maps.flatten(1)
    low = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - low
    scaled = torch.where(span > 0, (flat - low) / span.clamp_min(torch.finfo(flat.dtype).tiny), torch.zeros_like(flat))
    return scaled.reshape(maps.shape)


def attention_saliency(model: nn.Module, pixel_values: torch.Tensor, layer: int = -1) -> torch.Tensor:
    """Class-token attention maps, one per image, at the image resolution.

    For the attention probabilities ``A`` of layer ``layer`` (the last by default), shape
    ``(batch, heads, 1 + h·w, 1 + h·w)``, the map is ``mean_heads A[:, :, 0, 1:]`` (the class token's attention
    to the ``h × w`` patches; the cls→cls entry is dropped), reshaped to the patch grid, upsampled bilinearly
    to ``H × W`` and min-max normalised to ``[0, 1]`` per image.

    Args:
        model (`nn.Module`):
            `CrateModel` / `CrateForImageClassification`, or `ViTModel` / `ViTForImageClassification` loaded
            with ``attn_implementation="eager"`` (the SDPA path returns no attention probabilities). Run in
            eval mode under `torch.no_grad()`.
        pixel_values (`torch.Tensor` of shape ``(batch, C, H, W)``):
            Model-ready (normalised, floating-point) images; ``H`` and ``W`` divisible by the patch size.
        layer (`int`, *optional*, defaults to -1):
            Which layer's attention to read (Python indexing over the ``L`` layers).

    Returns:
        `torch.Tensor`: float32 maps of shape ``(batch, H, W)`` in ``[0, 1]``, on the CPU.
    """
    backbone = get_backbone(model)
    check_pixel_batch(pixel_values)
    if not pixel_values.is_floating_point():
        raise TypeError(
            f"`pixel_values` must be model-ready floating-point images, got dtype {pixel_values.dtype}; "
            "normalise uint8 images first (e.g. with the model's image processor)"
        )
    num_layers = backbone.config.num_hidden_layers
    if isinstance(layer, bool) or not isinstance(layer, int) or not -num_layers <= layer < num_layers:
        raise ValueError(f"`layer` must be an integer in [{-num_layers}, {num_layers}), got {layer!r}")
    patch_size = backbone.config.patch_size
    height, width = pixel_values.shape[-2:]
    if height % patch_size or width % patch_size:
        raise ValueError(f"`pixel_values` spatial size {height}x{width} is not divisible by patch_size={patch_size}")
    grid_height, grid_width = height // patch_size, width // patch_size

    with evaluation_mode(backbone):
        outputs = backbone(
            pixel_values=pixel_values.to(model_device(backbone)), output_attentions=True, return_dict=True
        )
    if not outputs.attentions:
        raise ValueError(
            f"`model` ({type(model).__name__}) returned no attention probabilities; load it with "
            'attn_implementation="eager"'
        )
    attention = outputs.attentions[layer].float()  # (batch, heads, tokens, tokens)
    num_prefix = attention.shape[-1] - grid_height * grid_width
    if num_prefix < 1:
        raise ValueError(
            f"attention over {attention.shape[-1]} tokens does not match a {grid_height}x{grid_width} patch grid"
        )
    cls_to_patches = attention[:, :, 0, num_prefix:].mean(dim=1)  # (batch, h·w)
    grid = cls_to_patches.reshape(-1, 1, grid_height, grid_width)
    maps = F.interpolate(grid, size=(height, width), mode="bilinear", align_corners=False)[:, 0]
    return _normalise_per_image(maps).cpu()


def _displayable(image: torch.Tensor) -> torch.Tensor:
    """``(C, H, W)`` → ``(H, W)`` or ``(H, W, 3)`` floats in ``[0, 1]``: uint8 is divided by 255, float images
    (e.g. normalised pixel values) are min-max scaled for display."""
    image = image.detach().cpu()
    if image.dtype == torch.uint8:
        image = image.float() / 255.0
    else:
        image = image.float()
        low, high = image.min(), image.max()
        image = (image - low) / (high - low) if high > low else torch.zeros_like(image)
    return image[0] if image.shape[0] == 1 else image.permute(1, 2, 0)


def save_saliency_grid(
    images: torch.Tensor,
    maps: torch.Tensor,
    path: str | Path,
    titles: Sequence[str] | None = None,
    cmap: str = "jet",
    alpha: float = 0.5,
    ncols: int = 8,
) -> Path:
    """Write a PNG grid of ``images`` with their saliency ``maps`` overlaid.

    Args:
        images (`torch.Tensor` of shape ``(batch, C, H, W)``, ``C`` 1 or 3): uint8 images, or float images that
            are min-max scaled for display.
        maps (`torch.Tensor` of shape ``(batch, H, W)``): maps in ``[0, 1]``, e.g. from `attention_saliency`.
        path (`str` or `Path`): output PNG; parent folders are created.
        titles (sequence of `str`, *optional*): one title per image.
        cmap (`str`, *optional*, defaults to `"jet"`): matplotlib colour map of the overlay.
        alpha (`float`, *optional*, defaults to 0.5): overlay opacity.
        ncols (`int`, *optional*, defaults to 8): images per row.

    Returns:
        `Path`: the written file.
    """
    from matplotlib.figure import Figure  # Agg canvas, no pyplot state

    check_pixel_batch(images, name="images")
    if images.shape[1] not in (1, 3):
        raise ValueError(f"`images` must have 1 or 3 channels, got {images.shape[1]}")
    if not isinstance(maps, torch.Tensor):
        raise TypeError(f"`maps` must be a torch.Tensor, got {type(maps).__name__}")
    expected = (images.shape[0], *images.shape[-2:])
    if tuple(maps.shape) != expected:
        raise ValueError(f"`maps` must have shape {expected} to match `images`, got {tuple(maps.shape)}")
    if titles is not None and len(titles) != images.shape[0]:
        raise ValueError(f"`titles` has {len(titles)} entries but there are {images.shape[0]} images")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"`alpha` must be in [0, 1], got {alpha!r}")
    check_positive_int("ncols", ncols)

    batch = images.shape[0]
    cols = min(ncols, batch)
    rows = math.ceil(batch / cols)
    figure = Figure(figsize=(2.0 * cols, 2.0 * rows + (0.3 * rows if titles else 0.0)))
    axes = figure.subplots(rows, cols, squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.set_axis_off()
        if index >= batch:
            continue
        image = _displayable(images[index])
        axis.imshow(image.numpy(), cmap="gray" if image.ndim == 2 else None, vmin=0.0, vmax=1.0)
        axis.imshow(maps[index].detach().cpu().float().numpy(), cmap=cmap, alpha=alpha, vmin=0.0, vmax=1.0)
        if titles is not None:
            axis.set_title(str(titles[index]), fontsize=8)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=100)
    return path
