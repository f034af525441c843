"""Images of signed-distance shapes from known cameras: a batched sphere tracer in torch.

Multi-view renderings with their cameras are what image-conditioned shape models (and their evaluation) need;
rendering the exact SDF of `whitebox_hf.data.shapes` keeps every pixel, depth and silhouette exact up to the
tracer's tolerance, with no mesh and no graphics stack.

Conventions (OpenCV's, which most multi-view data sets use):

- world: y is up (as in `whitebox_hf.data.shape_families`); the shape lies inside [-1, 1]^3.
- camera: x to the right, y down, z forward (the viewing direction). ``pose`` is the 4×4 camera-to-world matrix
  ``[[R, t], [0, 1]]`` whose columns are the camera's axes and its centre in world coordinates.
- intrinsics ``K = [[f, 0, c], [0, f, c], [0, 0, 1]]`` with ``f = (size / 2) / tan(fov / 2)`` and ``c = size / 2``:
  pixel ``(u, v)`` (column, row) has its centre at ``(u + 0.5, v + 0.5)``.
- depth is the z-depth in the camera frame (the distance along the optical axis, what ``K⁻¹`` unprojects with),
  0 where the ray misses.

Sphere tracing steps each ray forward by the signed distance at its tip; that never oversteps the surface when
the field is a distance bound outside the shape, which `Shape.sdf` is (exact outside the union).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Camera", "camera_rays", "look_at_camera", "random_cameras", "render_sdf", "render_views"]

# Half the diagonal of [-1, 1]^3: the shapes' bounding sphere, beyond which a ray can stop searching.
_SCENE_RADIUS = math.sqrt(3.0)
# The direction towards a fixed light, in the camera frame (up-left and behind the viewer: -x, -y, -z), so that
# every view is lit the same way and the visible side is lit.
_LIGHT_DIRECTION_CAMERA = (-0.4, -0.6, -0.7)
_ALBEDO = (0.8, 0.8, 0.8)


def _check_number(name: str, value, low: float | None = None, high: float | None = None,
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
    azimuth = _check_number("azimuth", azimuth)
    elevation = _check_number("elevation", elevation, -90.0, 90.0, low_open=True, high_open=True)
    distance = _check_number("distance", distance, 0.0, low_open=True)
    fov = _check_number("fov", fov, 0.0, 180.0, low_open=True, high_open=True)
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


def _check_camera(camera) -> None:
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
    _check_camera(camera)
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
    _check_camera(camera)
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps <= 0:
        raise ValueError(f"`max_steps` must be a positive integer, got {max_steps!r}")
    tolerance = _check_number("tolerance", tolerance, 0.0, low_open=True)
    ambient = _check_number("ambient", ambient, 0.0, 1.0)
    background = _check_number("background", background, 0.0, 1.0)
    normal_step = _check_number("normal_step", normal_step, 0.0, low_open=True)
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
    low = _check_number("elevation_range", elevation_range[0], -90.0, 90.0, low_open=True, high_open=True)
    high = _check_number("elevation_range", elevation_range[1], -90.0, 90.0, low_open=True, high_open=True)
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
