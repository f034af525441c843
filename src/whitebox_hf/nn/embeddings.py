"""Patch embeddings f^emb for image models (book §8.2.3: patchify, project, add positions), and the patch
layout and fixed positions every image model shares: `patchify` / `unpatchify` and the 2-D sin-cos table."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..utils.validation import check_finite_tensor, check_floating_tensor, check_tensor

__all__ = [
    "ConvPatchEmbedding",
    "LinearPatchEmbedding",
    "check_pixel_values",
    "interpolate_position_embedding",
    "patchify",
    "sincos_position_embedding_2d",
    "unpatchify",
]


def check_pixel_values(pixel_values: torch.Tensor, num_channels: int, patch_size: int) -> None:
    """Raise a clear error for input a patch embedding cannot take: not a 4-D ``(batch, channels, height, width)``
    tensor, empty, not floating point (integer 0-255, bool or complex images are refused, never cast), the wrong
    number of channels, a side not divisible by the patch, or (CPU tensors only: see
    `whitebox_hf.utils.validation`) a NaN or infinite pixel."""
    check_tensor("pixel_values", pixel_values, ndim=4, shape_doc="(batch, channels, height, width)")
    check_floating_tensor("pixel_values", pixel_values)
    channels, height, width = pixel_values.shape[1:]
    if channels != num_channels:
        raise ValueError(
            f"`pixel_values` has {channels} channels but the model expects num_channels={num_channels}"
        )
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"`pixel_values` spatial size {height}x{width} is not divisible by patch_size={patch_size}"
        )
    check_finite_tensor("pixel_values", pixel_values)


def patchify(pixel_values: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``(B, C, H, W)`` → ``(B, (H/ps)·(W/ps), ps·ps·C)``: patches in raster order, each flattened in
    (row, col, channel) order (CRATE's stem and the MAE reconstruction target)."""
    if pixel_values.ndim != 4:
        raise ValueError(
            f"`pixel_values` must have shape (batch, channels, height, width), got {tuple(pixel_values.shape)}"
        )
    batch, channels, height, width = pixel_values.shape
    p = patch_size
    if height % p or width % p:
        raise ValueError(f"`pixel_values` spatial size {height}x{width} is not divisible by patch_size={p}")
    patches = pixel_values.reshape(batch, channels, height // p, p, width // p, p)
    # (B, C, h, p, w, p) -> (B, h, w, p, p, C) -> (B, h·w, p·p·C)
    return patches.permute(0, 2, 4, 3, 5, 1).reshape(batch, (height // p) * (width // p), p * p * channels)


def unpatchify(patches: torch.Tensor, patch_size: int, num_channels: int,
               grid_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Inverse of `patchify`: ``(B, h·w, ps·ps·C)`` → ``(B, C, h·ps, w·ps)``; ``grid_size=(h, w)`` defaults
    to a square grid."""
    if patches.ndim != 3:
        raise ValueError(f"`patches` must have shape (batch, patches, values), got {tuple(patches.shape)}")
    batch, num_patches, values = patches.shape
    p = patch_size
    if values != p * p * num_channels:
        raise ValueError(f"patches hold {values} values, expected patch_size²·num_channels = {p * p * num_channels}")
    if grid_size is None:
        side = math.isqrt(num_patches)
        if side * side != num_patches:
            raise ValueError(f"{num_patches} patches is not a square grid; pass `grid_size`")
        grid_size = (side, side)
    grid_h, grid_w = grid_size
    if grid_h * grid_w != num_patches:
        raise ValueError(f"`grid_size` {grid_size} does not hold {num_patches} patches")
    images = patches.reshape(batch, grid_h, grid_w, p, p, num_channels).permute(0, 5, 1, 3, 2, 4)
    return images.reshape(batch, num_channels, grid_h * p, grid_w * p)


def sincos_position_embedding_2d(hidden_size: int, grid_height: int, grid_width: int,
                                 num_prefix_tokens: int = 1) -> torch.Tensor:
    """Fixed 2-D sine-cosine positions as in MAE (He et al. 2022), shape ``(1, prefix + h·w, d)``.

    Half of the channels encode the column index and half the row index, each with the 1-D transformer table
    ``[sin(x·ω_k), cos(x·ω_k)]``, ``ω_k = 10000^{-k/(d/4)}``; prefix (class-token) slots are zero. Computed in
    float64 so the table does not depend on the device.
    """
    if hidden_size % 4:
        raise ValueError(f"2-D sin-cos positions need `hidden_size` divisible by 4, got {hidden_size}")
    quarter = hidden_size // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)

    def table(coordinates: torch.Tensor) -> torch.Tensor:
        angles = coordinates.reshape(-1, 1).to(torch.float64) * omega
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    rows, cols = torch.meshgrid(torch.arange(grid_height), torch.arange(grid_width), indexing="ij")
    # MAE's order (facebookresearch/mae): the first half of the channels follows the column (x), the second
    # the row (y).
    patch_table = torch.cat([table(cols), table(rows)], dim=1)
    prefix = torch.zeros(num_prefix_tokens, hidden_size, dtype=torch.float64)
    return torch.cat([prefix, patch_table], dim=0).unsqueeze(0).float()


class LinearPatchEmbedding(nn.Module):
    """CRATE's stem (Ma-Lab-Berkeley/CRATE): cut into patches, flatten each in (row, col, channel) order,
    then ``LayerNorm(P) → Linear(P→d) → LayerNorm(d)`` with ``P = C·ps²``."""

    def __init__(self, num_channels: int, patch_size: int, hidden_size: int, layer_norm_eps: float = 1e-5):
        super().__init__()
        self.num_channels = num_channels
        self.patch_size = patch_size
        patch_dim = num_channels * patch_size**2
        self.patch_norm = nn.LayerNorm(patch_dim, eps=layer_norm_eps)
        self.projection = nn.Linear(patch_dim, hidden_size)
        self.embedding_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        check_pixel_values(pixel_values, self.num_channels, self.patch_size)
        patches = patchify(pixel_values, self.patch_size)
        return self.embedding_norm(self.projection(self.patch_norm(patches)))


class ConvPatchEmbedding(nn.Module):
    """CRATE-α's (and ViT's) stem: a ``Conv2d`` with kernel = stride = patch size."""

    def __init__(self, num_channels: int, patch_size: int, hidden_size: int):
        super().__init__()
        self.num_channels = num_channels
        self.patch_size = patch_size
        self.projection = nn.Conv2d(num_channels, hidden_size, kernel_size=patch_size, stride=patch_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        check_pixel_values(pixel_values, self.num_channels, self.patch_size)
        return self.projection(pixel_values).flatten(2).transpose(1, 2)


def interpolate_position_embedding(
    position_embedding: torch.Tensor, grid_height: int, grid_width: int, num_prefix_tokens: int = 1
) -> torch.Tensor:
    """Resize a learned ``(1, prefix + h·w, d)`` position table (square grid) to ``grid_height×grid_width``
    patches by bicubic interpolation, keeping the prefix (class token) slots as they are."""
    num_patches = position_embedding.shape[1] - num_prefix_tokens
    side = int(math.isqrt(num_patches))
    if side * side != num_patches:
        raise ValueError(f"position table holds {num_patches} patch slots, which is not a square grid")
    if (grid_height, grid_width) == (side, side):
        return position_embedding
    prefix, patch_table = position_embedding[:, :num_prefix_tokens], position_embedding[:, num_prefix_tokens:]
    dim = patch_table.shape[-1]
    patch_table = patch_table.reshape(1, side, side, dim).permute(0, 3, 1, 2)
    patch_table = F.interpolate(
        patch_table.float(), size=(grid_height, grid_width), mode="bicubic", align_corners=False
    ).to(position_embedding.dtype)
    patch_table = patch_table.permute(0, 2, 3, 1).reshape(1, grid_height * grid_width, dim)
    return torch.cat([prefix, patch_table], dim=1)
