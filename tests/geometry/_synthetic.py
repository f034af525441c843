"""Synthetic cameras and Cupid-style correspondences for the geometry tests (spec threed_and_motion.md §2.7)."""

import math

import roma
import torch


def random_rotation(generator: torch.Generator) -> torch.Tensor:
    """A uniformly random rotation by QR of a Gaussian matrix (spec §2.7), signs fixed so det R = +1."""
    Q, U = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=generator))
    Q = Q * torch.sign(torch.diagonal(U))[None, :]
    return Q * torch.linalg.det(Q)


def random_camera(generator: torch.Generator):
    """K in normalised uv (f = 0.5 / tan(fov/2), c = 0.5, fov 30-60°), R random, the object 1.5-3 units ahead."""
    fov = math.radians(30 + 30 * torch.rand((), generator=generator).item())
    f = 0.5 / math.tan(fov / 2)
    K = torch.tensor([[f, 0.0, 0.5], [0.0, f, 0.5], [0.0, 0.0, 1.0]], dtype=torch.float64)
    distance = 1.5 + 1.5 * torch.rand((), generator=generator).item()
    offset = 0.1 * (torch.rand(2, dtype=torch.float64, generator=generator) - 0.5)
    t = torch.cat([offset, torch.tensor([distance], dtype=torch.float64)])
    return K, random_rotation(generator), t


def primitive_voxels(resolution: int = 64, count: int = 200, generator: torch.Generator | None = None,
                     shape: str = "ellipsoid"):
    """Indices of ``count`` occupied voxels of a solid primitive (its voxel centres are a UV cube's points): a
    flattish ellipsoid (semi-axes 0.45, 0.3, 0.2) or a box filling the grid (half-sides 0.45)."""
    axis = (torch.arange(resolution, dtype=torch.float64) + 0.5) / resolution - 0.5
    x, y, z = torch.meshgrid(axis, axis, axis, indexing="ij")
    if shape == "ellipsoid":
        inside = (x / 0.45) ** 2 + (y / 0.3) ** 2 + (z / 0.2) ** 2 <= 1
    else:
        inside = (x.abs() <= 0.45) & (y.abs() <= 0.45) & (z.abs() <= 0.45)
    indices = inside.nonzero()
    pick = torch.randperm(indices.shape[0], generator=generator)[:count]
    return indices[pick]


def angle_degrees(R1, R2):
    return torch.rad2deg(roma.rotmat_geodesic_distance(R1, R2)).item()
