"""Pinhole projection with OpenCV's conventions (spec threed_and_motion.md §2.3): world-to-camera extrinsics
``x_cam = R·x + t``; camera axes x right, y down, z forward; image origin at the top-left corner.

Two image units are used. *Pixels* are continuous coordinates in which the image covers ``[0, W] × [0, H]`` (pixel
``i`` spans ``[i, i+1]``, the convention of ``grid_sample(align_corners=False)``). *Normalised uv* divide pixels by
``(W, H)``, so the image is ``[0, 1]²``: Cupid's UV cube stores ``u_i = π(P, x_i) ∈ [0, 1]²`` for every occupied voxel
(§2.3), with intrinsics in uv units (f = 0.5 / tan(fov / 2), c = 0.5 for a centred camera, §2.7)."""

from __future__ import annotations

import torch

from ._checks import check_box, check_like, check_matrix, check_points, check_size

__all__ = [
    "crop_intrinsics",
    "decrop_intrinsics",
    "intrinsics_pixels_to_uv",
    "intrinsics_uv_to_pixels",
    "pixels_to_uv",
    "project_points",
    "projection_matrix",
    "uv_to_pixels",
    "voxel_centers",
    "world_to_camera",
]


def _check_camera(points, intrinsics, rotation, translation) -> None:
    check_points("points", points, 3)
    check_matrix("intrinsics", intrinsics, (3, 3))
    check_matrix("rotation", rotation, (3, 3))
    check_matrix("translation", translation, (3,))
    for name, value in (("intrinsics", intrinsics), ("rotation", rotation), ("translation", translation)):
        check_like(name, value, "points", points)


def world_to_camera(points: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """Camera-frame coordinates ``R·x + t`` of world ``points`` ``(N, 3)`` (OpenCV: z is the depth)."""
    check_points("points", points, 3)
    check_matrix("rotation", rotation, (3, 3))
    check_matrix("translation", translation, (3,))
    check_like("rotation", rotation, "points", points)
    check_like("translation", translation, "points", points)
    return points @ rotation.T + translation


def project_points(points: torch.Tensor, intrinsics: torch.Tensor, rotation: torch.Tensor,
                   translation: torch.Tensor) -> torch.Tensor:
    """π(P, x) of spec §2.4 with ``P = K·[R | t]``: the ``(N, 2)`` image coordinates of world ``points`` ``(N, 3)``,
    in the units of ``intrinsics`` (pixels, or normalised uv for uv-unit K).

    Raises ``ValueError`` if a point lies on or behind the camera plane (depth ≤ 0), where the projection is
    undefined or mirrored."""
    _check_camera(points, intrinsics, rotation, translation)
    camera = points @ rotation.T + translation
    depth = camera[:, 2]
    if bool((depth <= 0).any()):
        raise ValueError(f"`points` must lie in front of the camera (depth > 0), got a minimum depth of "
                         f"{depth.min().item():.6g}")
    image = camera @ intrinsics.T
    return image[:, :2] / image[:, 2:]


def projection_matrix(intrinsics: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """The 3×4 camera matrix ``P = K·[R | t]`` (Hartley & Zisserman eq. 6.8)."""
    check_matrix("intrinsics", intrinsics, (3, 3))
    check_matrix("rotation", rotation, (3, 3))
    check_matrix("translation", translation, (3,))
    check_like("rotation", rotation, "intrinsics", intrinsics)
    check_like("translation", translation, "intrinsics", intrinsics)
    return intrinsics @ torch.cat([rotation, translation[:, None]], dim=1)


def pixels_to_uv(pixels: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Normalised uv ``(x / W, y / H)`` of continuous pixel coordinates ``(N, 2)``; ``image_size = (W, H)``."""
    check_points("pixels", pixels, 2)
    width, height = check_size("image_size", image_size)
    return pixels / pixels.new_tensor([width, height])


def uv_to_pixels(uv: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Continuous pixel coordinates ``(u·W, v·H)`` of normalised ``uv`` ``(N, 2)``; inverse of `pixels_to_uv`."""
    check_points("uv", uv, 2)
    width, height = check_size("image_size", image_size)
    return uv * uv.new_tensor([width, height])


def _scale_matrix(reference: torch.Tensor, sx: float, sy: float, ox: float = 0.0, oy: float = 0.0) -> torch.Tensor:
    return reference.new_tensor([[sx, 0.0, ox], [0.0, sy, oy], [0.0, 0.0, 1.0]])


def intrinsics_pixels_to_uv(intrinsics: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """K in normalised uv units, ``diag(1/W, 1/H, 1)·K``, from K in pixels of a ``(W, H)`` image."""
    check_matrix("intrinsics", intrinsics, (3, 3))
    width, height = check_size("image_size", image_size)
    return _scale_matrix(intrinsics, 1.0 / width, 1.0 / height) @ intrinsics


def intrinsics_uv_to_pixels(intrinsics: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """K in pixels of a ``(W, H)`` image, ``diag(W, H, 1)·K``, from K in normalised uv; inverse of the above."""
    check_matrix("intrinsics", intrinsics, (3, 3))
    width, height = check_size("image_size", image_size)
    return _scale_matrix(intrinsics, width, height) @ intrinsics


def _crop_affine(intrinsics, crop_box, image_size, crop_resolution) -> torch.Tensor:
    """The affine map A from crop image units to full image units, so that ``K_full = A·K_crop``."""
    check_matrix("intrinsics", intrinsics, (3, 3))
    x0, y0, crop_w, crop_h = check_box("crop_box", crop_box)
    width, height = check_size("image_size", image_size)
    if crop_resolution is None:
        # Spec §2.3 de_crop: u_full = (x0 + u·w_c) / W, v_full = (y0 + v·h_c) / H (uv in, uv out).
        return _scale_matrix(intrinsics, crop_w / width, crop_h / height, x0 / width, y0 / height)
    resized_w, resized_h = check_size("crop_resolution", crop_resolution)
    # Pixels of the crop resized to (w_r, h_r) → full-image pixels: x_full = x0 + x·w_c / w_r.
    return _scale_matrix(intrinsics, crop_w / resized_w, crop_h / resized_h, x0, y0)


def decrop_intrinsics(intrinsics: torch.Tensor, crop_box: tuple[float, float, float, float],
                      image_size: tuple[int, int], crop_resolution: tuple[int, int] | None = None) -> torch.Tensor:
    """Map K recovered on a crop back to the full image (Cupid's ``de_crop``, spec §2.3).

    ``crop_box = (x0, y0, w_c, h_c)`` is the crop in full-image pixels (it may reach outside the image, as a padded
    crop does) and ``image_size = (W, H)`` the full image. With ``crop_resolution=None`` K is in normalised uv of the
    crop and the result in normalised uv of the full image: ``u_full = (x0 + u·w_c) / W`` (likewise v). With
    ``crop_resolution = (w_r, h_r)`` K is in pixels of the crop after it was resized to ``w_r × h_r`` and the result
    is in full-image pixels. R and t are unchanged: cropping and resizing act on the image plane only."""
    return _crop_affine(intrinsics, crop_box, image_size, crop_resolution) @ intrinsics


def crop_intrinsics(intrinsics: torch.Tensor, crop_box: tuple[float, float, float, float],
                    image_size: tuple[int, int], crop_resolution: tuple[int, int] | None = None) -> torch.Tensor:
    """The inverse of `decrop_intrinsics`: K of the full image expressed in the crop's units (same arguments)."""
    return torch.linalg.inv(_crop_affine(intrinsics, crop_box, image_size, crop_resolution)) @ intrinsics


def voxel_centers(indices: torch.Tensor, resolution: int) -> torch.Tensor:
    """Centres ``(idx + 0.5) / resolution − 0.5 ∈ [−0.5, 0.5]³`` of voxels with integer ``indices`` ``(N, 3)`` in a
    ``resolution³`` grid (spec §2.3, the points of Cupid's UV-cube correspondences), in float64."""
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution <= 0:
        raise ValueError(f"`resolution` must be a positive integer, got {resolution!r}")
    if not isinstance(indices, torch.Tensor):
        raise TypeError(f"`indices` must be a torch.Tensor, got {type(indices).__name__}")
    if indices.ndim != 2 or indices.shape[1] != 3 or indices.shape[0] == 0:
        raise ValueError(f"`indices` must have shape (N, 3) with N >= 1, got {tuple(indices.shape)}")
    if indices.is_floating_point() or indices.dtype == torch.bool or indices.is_complex():
        raise TypeError(f"`indices` must be an integer tensor, got dtype {indices.dtype}")
    if bool((indices < 0).any()) or bool((indices >= resolution).any()):
        raise ValueError(f"`indices` must lie in [0, {resolution - 1}], got values in "
                         f"[{indices.min().item()}, {indices.max().item()}]")
    return (indices.to(torch.float64) + 0.5) / resolution - 0.5
