"""The geometry tests' shared scene."""

import pytest
import torch

from tests.geometry._synthetic import primitive_voxels, random_camera
from whitebox_hf.geometry import voxel_centers


@pytest.fixture
def scene():
    """(points, K, R, t) with about 200 ellipsoid voxel centres of a 64³ grid."""
    generator = torch.Generator().manual_seed(7)
    indices = primitive_voxels(generator=generator)
    K, R, t = random_camera(generator)
    return voxel_centers(indices, 64), K, R, t

