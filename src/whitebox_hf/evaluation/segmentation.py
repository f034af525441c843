"""Emergent segmentation: does a backbone's attention (or its patch features) pick out the object?

Book §8.2.5 / Table 8.6 (Yu et al., *Emergence of Segmentation with Minimalistic White-Box Transformers*, 2023):
CRATE's class token attends to the object without segmentation labels, ViT's less so. Three scores against an
object mask on the patch grid, per layer and per head:

* **attention share**: of the class token's attention to the patches (renormalised to sum 1 over patches), the part
  that falls on object patches. Uniform attention scores the object's share of the grid, ``|M| / N``.
* **top-mass IoU**: the attention map thresholded as DINO does (keep the highest patches until they hold ``mass``,
  60 %, of it), IoU with the mask.
* **normalised-cut IoU** (MaskCut / TokenCut style, per layer): the affinity ``W_ij = 1`` if the cosine of patch
  features ``i, j`` is at least ``tau`` else ``eps``; the second-smallest eigenvector of the normalised Laplacian
  ``I − D^{-1/2} W D^{-1/2}`` (mapped back by ``D^{-1/2}``) split at its mean; the foreground is the side holding
  the smaller share of border patches (objects are centred; Fashion-MNIST's lie on a black border), or the side the
  class token attends more (``foreground="attention"``).

Masks come from images whose background is black (Fashion-MNIST): `patch_object_masks`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..utils.validation import check_positive_int
from ._utils import evaluation_mode, model_device
from .features import get_backbone

__all__ = [
    "patch_object_masks",
    "border_patches",
    "attention_share",
    "top_mass_mask",
    "mask_iou",
    "normalized_cut_mask",
    "random_mass_masks",
    "segmentation_scores",
]


def _check_fraction(name: str, value: float, closed_high: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a number, got {type(value).__name__}")
    if not (0.0 < value <= 1.0 if closed_high else 0.0 <= value < 1.0):
        raise ValueError(f"`{name}` must be in {'(0, 1]' if closed_high else '[0, 1)'}, got {value!r}")


def patch_object_masks(images: torch.Tensor, patch_size: int, threshold: float = 0.1,
                       min_fraction: float = 0.5) -> torch.Tensor:
    """Object masks on the patch grid from images on a black background.

    A pixel is object when its intensity (mean over channels, scaled to ``[0, 1]``; uint8 is divided by 255)
    exceeds ``threshold``; a patch is object when at least ``min_fraction`` of its pixels are.

    Args:
        images: ``(B, H, W)`` or ``(B, C, H, W)``, uint8 or float in ``[0, 1]``; ``H, W`` divisible by the patch.
    Returns:
        bool ``(B, (H/ps)·(W/ps))``, patches in raster order (the order of the model's patch tokens).
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"`images` must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise ValueError(f"`images` must have shape (B, H, W) or (B, C, H, W), got {tuple(images.shape)}")
    check_positive_int("patch_size", patch_size)
    _check_fraction("threshold", threshold, closed_high=False)
    _check_fraction("min_fraction", min_fraction)
    if images.shape[-1] % patch_size or images.shape[-2] % patch_size:
        raise ValueError(f"`images` size {tuple(images.shape[-2:])} is not divisible by `patch_size`={patch_size}")
    if images.dtype == torch.uint8:
        pixels = images.float() / 255.0
    elif images.is_floating_point():
        pixels = images.float()
    else:
        raise TypeError(f"`images` must be uint8 or floating point, got {images.dtype}")
    objects = (pixels.mean(dim=1, keepdim=True) > threshold).float()
    fraction = F.avg_pool2d(objects, patch_size)
    return (fraction >= min_fraction).flatten(1)


def border_patches(grid_height: int, grid_width: int) -> torch.Tensor:
    """bool ``(grid_height·grid_width,)``: the patches on the outer ring of the grid."""
    check_positive_int("grid_height", grid_height)
    check_positive_int("grid_width", grid_width)
    ring = torch.zeros(grid_height, grid_width, dtype=torch.bool)
    ring[0], ring[-1], ring[:, 0], ring[:, -1] = True, True, True, True
    return ring.flatten()


def _check_maps(name: str, maps: torch.Tensor, masks: torch.Tensor) -> None:
    if not isinstance(maps, torch.Tensor) or not isinstance(masks, torch.Tensor):
        raise TypeError(f"`{name}` and `masks` must be torch.Tensors, got {type(maps).__name__} and "
                        f"{type(masks).__name__}")
    if masks.dtype != torch.bool or masks.ndim != 2:
        raise ValueError(f"`masks` must be a bool tensor (batch, num_patches), got {masks.dtype} "
                         f"{tuple(masks.shape)}")
    if maps.shape[0] != masks.shape[0] or maps.shape[-1] != masks.shape[-1]:
        raise ValueError(f"`{name}` of shape {tuple(maps.shape)} must be (batch, ..., num_patches) matching `masks` "
                         f"{tuple(masks.shape)}")


def attention_share(attention: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Share of each map's mass on the mask: ``Σ_{i∈M} a_i / Σ_i a_i``.

    Args:
        attention: non-negative ``(B, ..., N)`` (e.g. ``(B, heads, N)``, the class token's attention to patches).
        masks: bool ``(B, N)``.
    Returns:
        ``(B, ...)`` float shares in ``[0, 1]``.
    """
    _check_maps("attention", attention, masks)
    attention = attention.float()
    if (attention < 0).any():
        raise ValueError("`attention` must be non-negative")
    mask = masks.float().reshape(masks.shape[0], *([1] * (attention.ndim - 2)), masks.shape[1])
    total = attention.sum(dim=-1)
    if (total <= 0).any():
        raise ValueError("`attention` has a map with zero mass")
    return (attention * mask).sum(dim=-1) / total


def top_mass_mask(attention: torch.Tensor, mass: float = 0.6) -> torch.Tensor:
    """DINO's thresholding: the highest entries of each map, taken in order until they hold ``mass`` of its total
    (the entry that crosses the line is kept). bool, the shape of ``attention`` ``(..., N)``."""
    if not isinstance(attention, torch.Tensor):
        raise TypeError(f"`attention` must be a torch.Tensor, got {type(attention).__name__}")
    _check_fraction("mass", mass)
    values, order = attention.float().sort(dim=-1, descending=True)
    cumulative = values.cumsum(dim=-1) / values.sum(dim=-1, keepdim=True)
    before = cumulative - values / values.sum(dim=-1, keepdim=True)  # mass held before each entry
    keep_sorted = before < mass - 1e-7
    return torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)


def mask_iou(predicted: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """IoU of bool ``(B, ..., N)`` predictions with bool ``(B, N)`` masks, ``(B, ...)``; two empty sets score 1."""
    _check_maps("predicted", predicted, masks)
    if predicted.dtype != torch.bool:
        raise ValueError(f"`predicted` must be a bool tensor, got {predicted.dtype}")
    target = masks.reshape(masks.shape[0], *([1] * (predicted.ndim - 2)), masks.shape[1])
    intersection = (predicted & target).sum(dim=-1).float()
    union = (predicted | target).sum(dim=-1).float()
    return torch.where(union > 0, intersection / union.clamp_min(1), torch.ones_like(union))


def normalized_cut_mask(features: torch.Tensor, grid_height: int, grid_width: int, tau: float = 0.15,
                        eps: float = 1e-5, foreground: str = "border",
                        attention: torch.Tensor | None = None) -> torch.Tensor:
    """MaskCut-style bipartition of each image's patches, bool ``(B, N)`` (True = foreground).

    Args:
        features: ``(B, N, d)`` patch features (N = grid_height · grid_width, raster order).
        tau, eps: affinity ``1`` where the cosine is ``≥ tau``, else ``eps`` (MaskCut: 0.15, 1e-5).
        foreground: ``"border"``: the side with the smaller share of border patches; ``"attention"``: the side with
            the larger mean of ``attention`` (``(B, N)``, e.g. the class token's).
    """
    if not isinstance(features, torch.Tensor) or features.ndim != 3:
        raise ValueError(f"`features` must be a (batch, num_patches, dim) tensor, got "
                         f"{getattr(features, 'shape', type(features).__name__)}")
    if features.shape[1] != grid_height * grid_width:
        raise ValueError(f"`features` holds {features.shape[1]} patches, expected grid_height·grid_width = "
                         f"{grid_height * grid_width}")
    if foreground not in ("border", "attention"):
        raise ValueError(f"`foreground` must be 'border' or 'attention', got {foreground!r}")
    if foreground == "attention" and (attention is None or tuple(attention.shape) != tuple(features.shape[:2])):
        raise ValueError(f"`foreground='attention'` needs `attention` of shape {tuple(features.shape[:2])}, got "
                         f"{None if attention is None else tuple(attention.shape)}")
    if not -1.0 <= tau <= 1.0:
        raise ValueError(f"`tau` must be a cosine in [-1, 1], got {tau!r}")
    if not eps > 0:
        raise ValueError(f"`eps` must be positive, got {eps!r}")
    unit = F.normalize(features.double(), dim=-1)
    cosine = unit @ unit.transpose(1, 2)
    affinity = torch.where(cosine >= tau, torch.ones_like(cosine), torch.full_like(cosine, eps))
    degree = affinity.sum(dim=-1)
    inv_sqrt = degree.rsqrt()
    normalised = inv_sqrt[:, :, None] * affinity * inv_sqrt[:, None, :]
    laplacian = torch.eye(features.shape[1], dtype=torch.float64) - normalised
    _, vectors = torch.linalg.eigh(laplacian)  # ascending eigenvalues
    fiedler = vectors[:, :, 1] * inv_sqrt  # generalised eigenvector of (D − W) x = λ D x
    side = fiedler > fiedler.mean(dim=-1, keepdim=True)
    if foreground == "border":
        border = border_patches(grid_height, grid_width).to(side.device)
        on_border = (side & border).sum(-1).float() / side.sum(-1).clamp_min(1)
        off_border = (~side & border).sum(-1).float() / (~side).sum(-1).clamp_min(1)
        flip = on_border > off_border
    else:
        weights = attention.double()
        inside = (weights * side).sum(-1) / side.sum(-1).clamp_min(1)
        outside = (weights * ~side).sum(-1) / (~side).sum(-1).clamp_min(1)
        flip = inside < outside
    return torch.where(flip[:, None], ~side, side)


def random_mass_masks(masks: torch.Tensor, mass: float = 0.6, generator: torch.Generator | None = None) -> torch.Tensor:
    """The chance baseline of `top_mass_mask`: uniform attention, ties broken at random, i.e. a uniformly random set
    of ``ceil(mass·N)`` patches per image (bool, the shape of ``masks``)."""
    _check_fraction("mass", mass)
    uniform = torch.full(masks.shape, 1.0 / masks.shape[1])
    scores = torch.rand(masks.shape, generator=generator)
    order = scores.argsort(dim=-1, descending=True)
    keep = top_mass_mask(uniform, mass)  # the first ceil(mass·N) of a uniform map
    return torch.zeros_like(keep).scatter(-1, order, keep)


@torch.no_grad()
def segmentation_scores(model: nn.Module, pixel_values: torch.Tensor, masks: torch.Tensor, mass: float = 0.6,
                        tau: float = 0.15, batch_size: int = 250) -> dict:
    """The three scores of a CRATE or ViT backbone, averaged over the images, per layer and per head.

    Args:
        model: `CrateModel` / `CrateForImageClassification` or `ViTModel` / `ViTForImageClassification` loaded with
            ``attn_implementation="eager"``.
        pixel_values: model-ready ``(B, C, H, W)``.
        masks: bool ``(B, N)`` object masks on the model's patch grid (`patch_object_masks`).
    Returns:
        a dict of lists: ``share`` and ``iou`` ``[L][K]`` (per layer, per head), ``share_mean_head`` and
        ``iou_mean_head`` ``[L]`` (the head-averaged map, what a saliency figure shows), ``ncut_iou`` ``[L]`` (layer
        output patch features, border rule), ``ncut_iou_attention`` ``[L]`` (same cut, side chosen by the class
        token's head-averaged attention), and ``num_images``.
    """
    backbone = get_backbone(model)
    patch_size = backbone.config.patch_size
    grid_height, grid_width = pixel_values.shape[-2] // patch_size, pixel_values.shape[-1] // patch_size
    num_patches = grid_height * grid_width
    if tuple(masks.shape) != (pixel_values.shape[0], num_patches) or masks.dtype != torch.bool:
        raise ValueError(f"`masks` must be bool of shape (batch, num_patches) = {(pixel_values.shape[0], num_patches)},"
                         f" got {masks.dtype} {tuple(masks.shape)}")
    check_positive_int("batch_size", batch_size)
    sums: dict[str, torch.Tensor] = {}
    with evaluation_mode(backbone):
        for start in range(0, pixel_values.shape[0], batch_size):
            batch = pixel_values[start:start + batch_size].to(model_device(backbone))
            target = masks[start:start + batch_size]
            outputs = backbone(pixel_values=batch, output_attentions=True, output_hidden_states=True, return_dict=True)
            if not outputs.attentions:
                raise ValueError(f"`model` ({type(model).__name__}) returned no attention probabilities; load it "
                                 'with attn_implementation="eager"')
            per_batch = {key: [] for key in ("share", "iou", "share_mean_head", "iou_mean_head", "ncut_iou",
                                             "ncut_iou_attention")}
            for layer, attention in enumerate(outputs.attentions):
                num_prefix = attention.shape[-1] - num_patches
                cls_to_patches = attention[:, :, 0, num_prefix:].float().cpu()  # (b, K, N)
                cls_to_patches = cls_to_patches / cls_to_patches.sum(-1, keepdim=True)
                mean_head = cls_to_patches.mean(dim=1)
                per_batch["share"].append(attention_share(cls_to_patches, target).sum(0))
                per_batch["iou"].append(mask_iou(top_mass_mask(cls_to_patches, mass), target).sum(0))
                per_batch["share_mean_head"].append(attention_share(mean_head, target).sum(0))
                per_batch["iou_mean_head"].append(mask_iou(top_mass_mask(mean_head, mass), target).sum(0))
                features = outputs.hidden_states[layer + 1][:, num_prefix:].float().cpu()
                cut = normalized_cut_mask(features, grid_height, grid_width, tau)
                per_batch["ncut_iou"].append(mask_iou(cut, target).sum(0))
                cut = normalized_cut_mask(features, grid_height, grid_width, tau, foreground="attention",
                                          attention=mean_head)
                per_batch["ncut_iou_attention"].append(mask_iou(cut, target).sum(0))
            for key, values in per_batch.items():
                stacked = torch.stack(values).double()
                sums[key] = sums[key] + stacked if key in sums else stacked
    count = pixel_values.shape[0]
    result = {key: (value / count).tolist() for key, value in sums.items()}
    result["num_images"] = count
    return result
