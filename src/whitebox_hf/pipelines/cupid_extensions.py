"""Cupid beyond the released code (issue 15, item 4; spec ``threed_and_motion.md`` §2.5-2.6): the pieces
`CupidPipeline` calls for multi-view input and known cameras, and `compose_cupid_scene` for scenes of several objects.

* **Multi-view (an approximation).** The paper shares one canonical object across views, each view with its own UV
  cube and pose; the released code has no multi-view path. Here, as the spec suggests, TRELLIS's "multidiffusion"
  stands in: the views are sampled together, the occupancy channel starts from one shared noise and its velocity is
  averaged over the views at every step (one shared object), while each view keeps its own u, v channels (its own
  pose, recovered by PnP per view). `MULTI_VIEW_APPROXIMATION` is the label the pipeline's output carries.
* **Known cameras.** When the camera of a view is given, the u, v channels are inpainted RePaint-style: after every
  Euler step the known channels are replaced by the known clean values noised to the step's new time on the
  straight rectified-flow path, ``(1 − t')·x₀ + t'·ε`` (ε the sample's own initial noise of those channels). The
  known clean value of a voxel is its centre's projection under the camera where the flow's current clean estimate
  ``x̂₀ = x_t − t·v`` says it is occupied, and the empty value 0 elsewhere, as in the training cubes.
* **Scene composition.** Each object (a mask of one image) is generated with its own camera; the generated voxels'
  own surface seen at that camera (a ray cast through the occupied voxels, in place of Cupid's rendering of its mesh
  at its pose) gives per mask pixel a canonical point, paired with the depth back-projection of the same pixel, and
  a similarity (Umeyama, `whitebox_hf.geometry.similarity_alignment`, i.e. roma) maps the canonical object into the
  depth's camera frame. Cupid uses MoGe's monocular depth and intrinsics;
  this package has no depth model, so the caller passes depth and K, and the tests use the renderer's ground-truth
  depth in its place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..geometry import project_points, similarity_alignment, world_to_camera
from ..models.cupid.uv_cube import voxel_grid_points

__all__ = [
    "MULTI_VIEW_APPROXIMATION",
    "CupidSceneOutput",
    "average_shared_velocity",
    "check_known_camera",
    "compose_cupid_scene",
    "inpaint_known_uv",
    "known_uv_channels",
    "share_initial_occupancy",
]

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
    from ..geometry import intrinsics_uv_to_pixels

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
