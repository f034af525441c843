"""An independent forward of the authors' CRATE and CRATE-α module layouts, for the converter's tests.

Written from the semantics of Ma-Lab-Berkeley/CRATE ``model/crate.py`` and UCSC-VLAA/CRATE-alpha
``torch_inference/model/crate_alpha.py`` (spec ``crate_family.md`` §1-§2), not from whitebox_hf: the module tree
reproduces the authors' state-dict key names (``to_patch_embedding.2.weight``,
``transformer.layers.3.0.fn.qkv.weight``, ``transformer.layers.3.1.fn.D``, ``mlp_head.1.bias``, ...), and the
arithmetic is spelt out with plain tensor operations, so that a mistake in our mapping or our layers shows up as a
numerical mismatch.
"""

from __future__ import annotations

import torch
from torch import nn


class _Patches(nn.Module):
    """(B, C, H, W) → (B, N, ps·ps·C), patches in raster order, each flattened row, column, channel."""

    def __init__(self, patch_size: int):
        super().__init__()
        self.patch_size = patch_size

    def forward(self, images):
        b, c, h, w = images.shape
        p = self.patch_size
        grid = images.reshape(b, c, h // p, p, w // p, p)
        # axes: b, c, gy, py, gx, px  →  b, gy, gx, py, px, c
        return grid.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)


class _PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module, eps: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.fn = fn

    def forward(self, x):
        return self.fn(self.norm(x))


class _SharedQKVAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, out_bias: bool):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.qkv = nn.Linear(dim, heads * dim_head, bias=False)
        # The authors drop the output projection when it would be square with a single head.
        if heads == 1 and dim_head == dim:
            self.to_out = nn.Identity()
        else:
            self.to_out = nn.Sequential(nn.Linear(heads * dim_head, dim, bias=out_bias), nn.Dropout(0.0))

    def forward(self, x):
        b, n, _ = x.shape
        w = self.qkv(x).reshape(b, n, self.heads, self.dim_head)
        scores = torch.einsum("bihd,bjhd->bhij", w, w) / self.dim_head**0.5
        out = torch.einsum("bhij,bjhd->bihd", scores.softmax(dim=-1), w).reshape(b, n, -1)
        return self.to_out(out)


class _IstaStep(nn.Module):
    """relu(y + η·(Dᵀy − DᵀD y) − η·λ), D stored as ``weight`` (d, d) and applied as ``y @ Dᵀ``."""

    def __init__(self, dim: int, eta: float, lambd: float):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(dim, dim))
        nn.init.kaiming_uniform_(self.weight)
        self.eta, self.lambd = eta, lambd

    def forward(self, y):
        d = self.weight
        dy = y @ d.t()            # D y (token rows)
        dtdy = dy @ d             # Dᵀ D y
        dty = y @ d               # Dᵀ y
        return torch.relu(y + self.eta * (dty - dtdy) - self.eta * self.lambd)


class _OvercompleteIsta(nn.Module):
    """Two steps from zero against D (d, s), decoded with D1 (d, s)."""

    def __init__(self, dim: int, ratio: int, eta: float = 0.1, lambd: float = 0.1):
        super().__init__()
        self.D = nn.Parameter(nn.init.kaiming_uniform_(torch.empty(dim, ratio * dim)))
        self.D1 = nn.Parameter(nn.init.kaiming_uniform_(torch.empty(dim, ratio * dim)))
        self.eta, self.lambd = eta, lambd

    def forward(self, y):
        a1 = torch.relu(self.eta * (y @ self.D) - self.eta * self.lambd)
        residual = a1 @ self.D.t() - y
        a2 = torch.relu(a1 - self.eta * (residual @ self.D) - self.eta * self.lambd)
        return a2 @ self.D1.t()


class _Transformer(nn.Module):
    def __init__(self, dim, depth, heads, dim_head, alpha: bool, eta: float, lambd: float, ratio: int):
        super().__init__()
        eps = 1e-6 if alpha else 1e-5
        self.alpha = alpha
        self.layers = nn.ModuleList()
        for _ in range(depth):
            sparse = _OvercompleteIsta(dim, ratio, eta, lambd) if alpha else _IstaStep(dim, eta, lambd)
            self.layers.append(nn.ModuleList([
                _PreNorm(dim, _SharedQKVAttention(dim, heads, dim_head, out_bias=not alpha), eps),
                _PreNorm(dim, sparse, eps),
            ]))

    def forward(self, x):
        for attention, sparse in self.layers:
            x = x + attention(x)
            x = x + sparse(x) if self.alpha else sparse(x)
        return x


class OfficialCrate(nn.Module):
    """The authors' ``CRATE`` (``alpha=False``) or the CRATE-α port's ``CRATE`` (``alpha=True``) classifier."""

    def __init__(self, image_size: int, patch_size: int, num_classes: int, dim: int, depth: int, heads: int,
                 dim_head: int, channels: int = 3, pool: str = "cls", alpha: bool = False, eta: float = 0.1,
                 lambd: float = 0.1, ratio: int = 4):
        super().__init__()
        num_patches = (image_size // patch_size) ** 2
        if alpha:
            self.conv1 = nn.Conv2d(channels, dim, kernel_size=patch_size, stride=patch_size, bias=True)
        else:
            patch_dim = channels * patch_size**2
            self.to_patch_embedding = nn.Sequential(
                _Patches(patch_size), nn.LayerNorm(patch_dim), nn.Linear(patch_dim, dim), nn.LayerNorm(dim)
            )
        self.pos_embedding = nn.Parameter(torch.randn(1, num_patches + 1, dim))
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.transformer = _Transformer(dim, depth, heads, dim_head, alpha, eta, lambd, ratio)
        self.pool = pool
        self.alpha = alpha
        self.mlp_head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes))

    def forward(self, images):
        if self.alpha:
            x = self.conv1(images).flatten(2).transpose(1, 2)
        else:
            x = self.to_patch_embedding(images)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embedding[:, : x.shape[1] + 1]
        x = self.transformer(x)
        x = x.mean(dim=1) if self.pool == "mean" else x[:, 0]
        return self.mlp_head(x)


# The authors' variants: (dim, depth, heads, patch) at 224², 1000 classes, dim_head = dim // heads.
OFFICIAL_CRATE_VARIANTS = {
    "crate-tiny": (384, 12, 6, 16), "crate-small": (576, 12, 12, 16), "crate-base": (768, 12, 12, 16),
    "crate-large": (1024, 24, 16, 16),
}
OFFICIAL_CRATE_ALPHA_VARIANTS = {"crate-alpha-base": (768, 12, 12, 16), "crate-alpha-large": (1024, 24, 16, 14)}


def official_variant(name: str) -> OfficialCrate:
    alpha = name.startswith("crate-alpha")
    dim, depth, heads, patch = (OFFICIAL_CRATE_ALPHA_VARIANTS if alpha else OFFICIAL_CRATE_VARIANTS)[name]
    return OfficialCrate(224, patch, 1000, dim, depth, heads, dim // heads, alpha=alpha)


def randomise_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fill every parameter with random values (LayerNorm affines away from 1 / 0 too), so that a swapped or
    misplaced tensor changes the output."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            values = torch.randn(parameter.shape, generator=generator)
            if name.endswith("norm.weight") or (parameter.ndim == 1 and "weight" in name):
                values = 1.0 + 0.2 * values
            elif parameter.ndim >= 2 and not name.endswith(("cls_token", "pos_embedding")):
                values = values / parameter[0].numel() ** 0.5
            parameter.copy_(values)
    return model
