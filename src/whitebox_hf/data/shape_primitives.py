"""Solid primitives with an exact signed distance, an exact bounding box and area-uniform surface sampling.

Every primitive works on float64 numpy arrays of points ``[M, 3]``. The signed distance is negative inside, zero on
the surface and positive outside, and it is the true Euclidean distance to the surface (not a bound), so occupancy
labels and near-surface distances derived from it are exact. Boxes, cylinders, cones and tori are axis-aligned
(``axis`` 0, 1 or 2 is their symmetry axis); capsules run between two arbitrary end points. The procedural shape
families (`whitebox_hf.data.shape_families`) are unions of these.

Surface samples are uniform in area on the primitive's own surface and come with the analytic outward unit
normal; `whitebox_hf.data.shapes` keeps only those on the boundary of a union.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Box", "Capsule", "Cone", "Cylinder", "Primitive", "Sphere", "Torus"]


def _plane_axes(axis: int) -> tuple[int, int]:
    if axis not in (0, 1, 2):
        raise ValueError(f"`axis` must be 0, 1 or 2, got {axis!r}")
    return tuple(i for i in range(3) if i != axis)  # type: ignore[return-value]


def _to_global(axis: int, local: np.ndarray) -> np.ndarray:
    """Local columns (plane u, plane v, along the axis) to global x, y, z."""
    u, v = _plane_axes(axis)
    out = np.empty_like(local)
    out[:, u], out[:, v], out[:, axis] = local[:, 0], local[:, 1], local[:, 2]
    return out


def _radial(axis: int, center, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance from the axis line and signed coordinate along the axis, relative to ``center``."""
    u, v = _plane_axes(axis)
    q = p - np.asarray(center, dtype=np.float64)
    return np.hypot(q[:, u], q[:, v]), q[:, axis]


def _check_positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"`{name}` must be a finite positive number, got {value!r}")


def _check_point(name: str, value) -> None:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != (3,) or not np.isfinite(arr).all():
        raise ValueError(f"`{name}` must be 3 finite numbers, got {value!r}")


def _segment_distance_2d(q: np.ndarray, a, b) -> np.ndarray:
    """Distance from 2-D points ``q [M, 2]`` to the segment ``a``–``b``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ab = b - a
    length2 = ab @ ab
    # A cap of radius 0 (a pointed cone) is a single point: its distance is the distance to that point.
    t = np.clip(((q - a) @ ab) / length2, 0.0, 1.0) if length2 > 0 else np.zeros(len(q))
    return np.linalg.norm(q - a - t[:, None] * ab, axis=1)


def _disk(rng: np.random.Generator, n: int, radius: float) -> np.ndarray:
    # sqrt of a uniform radius fraction makes the density uniform in area, not in radius.
    rho = radius * np.sqrt(rng.random(n))
    phi = rng.uniform(0.0, 2.0 * np.pi, n)
    return np.stack([rho * np.cos(phi), rho * np.sin(phi)], axis=1)


def _split_counts(rng: np.random.Generator, n: int, areas) -> np.ndarray:
    """How many of ``n`` samples land on each part, drawn in proportion to its area."""
    areas = np.asarray(areas, dtype=np.float64)
    return rng.multinomial(n, areas / areas.sum())


class Primitive:
    """Common interface: `sdf`, `area`, `bounds`, `sample_surface`, `interior_point` and `to_dict`."""

    def sdf(self, p: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def area(self) -> float:
        raise NotImplementedError

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def sample_surface(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def interior_point(self) -> np.ndarray:
        """A point strictly inside the primitive (tests use it as a known-inside point)."""
        raise NotImplementedError

    def to_dict(self) -> dict:
        return {"type": type(self).__name__.lower(), **{k: (list(v) if isinstance(v, tuple) else v)
                                                        for k, v in asdict(self).items()}}


@dataclass(frozen=True)
class Box(Primitive):
    """Axis-aligned box with ``center`` and positive ``half_extents``."""

    center: tuple
    half_extents: tuple

    def __post_init__(self):
        _check_point("center", self.center)
        _check_point("half_extents", self.half_extents)
        for h in self.half_extents:
            _check_positive("half_extents", float(h))

    def sdf(self, p):
        q = np.abs(p - np.asarray(self.center)) - np.asarray(self.half_extents)
        return np.linalg.norm(np.maximum(q, 0.0), axis=1) + np.minimum(q.max(axis=1), 0.0)

    def _face_areas(self):
        hx, hy, hz = self.half_extents
        per_axis = [4 * hy * hz, 4 * hx * hz, 4 * hx * hy]
        return [per_axis[k] for k in range(3) for _ in (0, 1)]

    def area(self):
        return float(sum(self._face_areas()))

    def bounds(self):
        c, h = np.asarray(self.center, dtype=np.float64), np.asarray(self.half_extents, dtype=np.float64)
        return c - h, c + h

    def sample_surface(self, rng, n):
        h = np.asarray(self.half_extents, dtype=np.float64)
        counts = _split_counts(rng, n, self._face_areas())
        points, normals = [], []
        for face, m in enumerate(counts):
            k, sign = face // 2, (1.0 if face % 2 else -1.0)
            pts = rng.uniform(-h, h, size=(m, 3))
            pts[:, k] = sign * h[k]
            nrm = np.zeros((m, 3))
            nrm[:, k] = sign
            points.append(pts)
            normals.append(nrm)
        return np.concatenate(points) + np.asarray(self.center), np.concatenate(normals)

    def interior_point(self):
        return np.asarray(self.center, dtype=np.float64)


@dataclass(frozen=True)
class Sphere(Primitive):
    center: tuple
    radius: float

    def __post_init__(self):
        _check_point("center", self.center)
        _check_positive("radius", self.radius)

    def sdf(self, p):
        return np.linalg.norm(p - np.asarray(self.center), axis=1) - self.radius

    def area(self):
        return 4.0 * np.pi * self.radius**2

    def bounds(self):
        c = np.asarray(self.center, dtype=np.float64)
        return c - self.radius, c + self.radius

    def sample_surface(self, rng, n):
        d = rng.standard_normal((n, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        return np.asarray(self.center) + self.radius * d, d

    def interior_point(self):
        return np.asarray(self.center, dtype=np.float64)


@dataclass(frozen=True)
class Cylinder(Primitive):
    """Capped cylinder around ``axis`` through ``center``, spanning ``center ± half_height`` along the axis."""

    center: tuple
    radius: float
    half_height: float
    axis: int = 1

    def __post_init__(self):
        _check_point("center", self.center)
        _check_positive("radius", self.radius)
        _check_positive("half_height", self.half_height)
        _plane_axes(self.axis)

    def sdf(self, p):
        rho, y = _radial(self.axis, self.center, p)
        d = np.stack([rho - self.radius, np.abs(y) - self.half_height], axis=1)
        return np.minimum(d.max(axis=1), 0.0) + np.linalg.norm(np.maximum(d, 0.0), axis=1)

    def area(self):
        return 4.0 * np.pi * self.radius * self.half_height + 2.0 * np.pi * self.radius**2

    def bounds(self):
        c = np.asarray(self.center, dtype=np.float64)
        h = np.full(3, self.radius)
        h[self.axis] = self.half_height
        return c - h, c + h

    def sample_surface(self, rng, n):
        r, h = self.radius, self.half_height
        side, bottom, top = _split_counts(rng, n, [4 * np.pi * r * h, np.pi * r * r, np.pi * r * r])
        phi = rng.uniform(0.0, 2.0 * np.pi, side)
        ring = np.stack([np.cos(phi), np.sin(phi)], axis=1)
        local = [np.column_stack([r * ring, rng.uniform(-h, h, side)])]
        normals = [np.column_stack([ring, np.zeros(side)])]
        for m, sign in ((bottom, -1.0), (top, 1.0)):
            local.append(np.column_stack([_disk(rng, m, r), np.full(m, sign * h)]))
            normals.append(np.tile([0.0, 0.0, sign], (m, 1)))
        pts = _to_global(self.axis, np.concatenate(local)) + np.asarray(self.center)
        return pts, _to_global(self.axis, np.concatenate(normals))

    def interior_point(self):
        return np.asarray(self.center, dtype=np.float64)


@dataclass(frozen=True)
class Cone(Primitive):
    """Capped cone (frustum) around ``axis``: radius ``radius_bottom`` at ``center - half_height`` along the axis
    and ``radius_top`` at ``center + half_height``. One of the radii may be 0 (a pointed cone)."""

    center: tuple
    radius_bottom: float
    radius_top: float
    half_height: float
    axis: int = 1

    def __post_init__(self):
        _check_point("center", self.center)
        _check_positive("half_height", self.half_height)
        for name in ("radius_bottom", "radius_top"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"`{name}` must be a finite number >= 0, got {value!r}")
        if max(self.radius_bottom, self.radius_top) <= 0:
            raise ValueError("`radius_bottom` and `radius_top` cannot both be 0")
        _plane_axes(self.axis)

    def sdf(self, p):
        # A solid of revolution: its distance equals the 2-D distance, in the (radius, height) half-plane, to
        # the trapezoid profile, whose boundary there is the bottom edge, the slanted side and the top edge.
        rho, y = _radial(self.axis, self.center, p)
        r0, r1, h = self.radius_bottom, self.radius_top, self.half_height
        q = np.stack([rho, y], axis=1)
        dist = np.minimum.reduce([
            _segment_distance_2d(q, (0.0, -h), (r0, -h)),
            _segment_distance_2d(q, (r0, -h), (r1, h)),
            _segment_distance_2d(q, (0.0, h), (r1, h)),
        ])
        inside = (np.abs(y) < h) & (rho < r0 + (r1 - r0) * (y + h) / (2 * h))
        return np.where(inside, -dist, dist)

    def _slant(self):
        return math.hypot(self.radius_top - self.radius_bottom, 2 * self.half_height)

    def area(self):
        r0, r1 = self.radius_bottom, self.radius_top
        return np.pi * (r0 + r1) * self._slant() + np.pi * (r0 * r0 + r1 * r1)

    def bounds(self):
        c = np.asarray(self.center, dtype=np.float64)
        h = np.full(3, max(self.radius_bottom, self.radius_top))
        h[self.axis] = self.half_height
        return c - h, c + h

    def sample_surface(self, rng, n):
        r0, r1, h = self.radius_bottom, self.radius_top, self.half_height
        side, bottom, top = _split_counts(rng, n, [np.pi * (r0 + r1) * self._slant(), np.pi * r0 * r0,
                                                   np.pi * r1 * r1])
        # The side's area density grows with the local radius: draw heights by rejection against it.
        t = np.empty(0)
        while t.size < side:
            cand = rng.random(2 * side + 16)
            keep = rng.random(cand.size) * max(r0, r1) < r0 + (r1 - r0) * cand
            t = np.concatenate([t, cand[keep]])
        t = t[:side]
        rho = r0 + (r1 - r0) * t
        phi = rng.uniform(0.0, 2.0 * np.pi, side)
        ring = np.stack([np.cos(phi), np.sin(phi)], axis=1)
        local = [np.column_stack([rho[:, None] * ring, -h + 2 * h * t])]
        # Outward normal of the slanted edge in the (radius, height) plane: (2h, r0 - r1), normalised.
        n_rho, n_y = 2 * h / self._slant(), (r0 - r1) / self._slant()
        normals = [np.column_stack([n_rho * ring, np.full(side, n_y)])]
        for m, sign, r in ((bottom, -1.0, r0), (top, 1.0, r1)):
            local.append(np.column_stack([_disk(rng, m, r), np.full(m, sign * h)]))
            normals.append(np.tile([0.0, 0.0, sign], (m, 1)))
        pts = _to_global(self.axis, np.concatenate(local)) + np.asarray(self.center)
        return pts, _to_global(self.axis, np.concatenate(normals))

    def interior_point(self):
        # The centre may lie outside a thin pointed cone's profile only at zero radius; shift towards the wider cap.
        shift = np.zeros(3)
        shift[self.axis] = -0.5 * self.half_height if self.radius_bottom >= self.radius_top else 0.5 * self.half_height
        return np.asarray(self.center, dtype=np.float64) + shift


@dataclass(frozen=True)
class Torus(Primitive):
    """Torus around ``axis`` through ``center``: tube radius ``minor_radius`` around a ring of ``major_radius``."""

    center: tuple
    major_radius: float
    minor_radius: float
    axis: int = 1

    def __post_init__(self):
        _check_point("center", self.center)
        _check_positive("major_radius", self.major_radius)
        _check_positive("minor_radius", self.minor_radius)
        if self.minor_radius >= self.major_radius:
            raise ValueError(f"`minor_radius` must be < `major_radius` ({self.major_radius}), got {self.minor_radius}")
        _plane_axes(self.axis)

    def sdf(self, p):
        rho, y = _radial(self.axis, self.center, p)
        return np.hypot(rho - self.major_radius, y) - self.minor_radius

    def area(self):
        return 4.0 * np.pi**2 * self.major_radius * self.minor_radius

    def bounds(self):
        c = np.asarray(self.center, dtype=np.float64)
        h = np.full(3, self.major_radius + self.minor_radius)
        h[self.axis] = self.minor_radius
        return c - h, c + h

    def sample_surface(self, rng, n):
        big, small = self.major_radius, self.minor_radius
        # The area element is proportional to (R + r cos v): accept tube angles v in that proportion.
        v = np.empty(0)
        while v.size < n:
            cand = rng.uniform(0.0, 2.0 * np.pi, 2 * n + 16)
            keep = rng.random(cand.size) * (big + small) < big + small * np.cos(cand)
            v = np.concatenate([v, cand[keep]])
        v = v[:n]
        u = rng.uniform(0.0, 2.0 * np.pi, n)
        normal_local = np.column_stack([np.cos(v) * np.cos(u), np.cos(v) * np.sin(u), np.sin(v)])
        ring = np.column_stack([big * np.cos(u), big * np.sin(u), np.zeros(n)])
        pts = _to_global(self.axis, ring + small * normal_local) + np.asarray(self.center)
        return pts, _to_global(self.axis, normal_local)

    def interior_point(self):
        u, _ = _plane_axes(self.axis)
        p = np.asarray(self.center, dtype=np.float64).copy()
        p[u] += self.major_radius
        return p


@dataclass(frozen=True)
class Capsule(Primitive):
    """All points within ``radius`` of the segment from ``start`` to ``end`` (a cylinder with round ends)."""

    start: tuple
    end: tuple
    radius: float

    def __post_init__(self):
        _check_point("start", self.start)
        _check_point("end", self.end)
        _check_positive("radius", self.radius)
        if np.allclose(self.start, self.end):
            raise ValueError(f"`start` and `end` must differ, got {self.start!r} twice (use a Sphere)")

    def _frame(self):
        a, b = np.asarray(self.start, dtype=np.float64), np.asarray(self.end, dtype=np.float64)
        d = (b - a) / np.linalg.norm(b - a)
        helper = np.eye(3)[np.argmin(np.abs(d))]
        e1 = np.cross(d, helper)
        e1 /= np.linalg.norm(e1)
        return a, b, d, e1, np.cross(d, e1)

    def sdf(self, p):
        a, b = np.asarray(self.start, dtype=np.float64), np.asarray(self.end, dtype=np.float64)
        ab = b - a
        t = np.clip(((p - a) @ ab) / (ab @ ab), 0.0, 1.0)
        return np.linalg.norm(p - a - t[:, None] * ab, axis=1) - self.radius

    def area(self):
        length = float(np.linalg.norm(np.subtract(self.end, self.start)))
        return 2.0 * np.pi * self.radius * length + 4.0 * np.pi * self.radius**2

    def bounds(self):
        a, b = np.asarray(self.start, dtype=np.float64), np.asarray(self.end, dtype=np.float64)
        return np.minimum(a, b) - self.radius, np.maximum(a, b) + self.radius

    def sample_surface(self, rng, n):
        a, b, d, e1, e2 = self._frame()
        r, length = self.radius, float(np.linalg.norm(b - a))
        side, caps = _split_counts(rng, n, [2 * np.pi * r * length, 4 * np.pi * r * r])
        phi = rng.uniform(0.0, 2.0 * np.pi, side)
        side_normals = np.cos(phi)[:, None] * e1 + np.sin(phi)[:, None] * e2
        side_points = a + rng.uniform(0.0, length, side)[:, None] * d + r * side_normals
        # A uniform sphere split by the plane through its centre gives the two hemispherical caps.
        cap_normals = rng.standard_normal((caps, 3))
        cap_normals /= np.linalg.norm(cap_normals, axis=1, keepdims=True)
        cap_centres = np.where((cap_normals @ d)[:, None] > 0, b, a)
        return (np.concatenate([side_points, cap_centres + r * cap_normals]),
                np.concatenate([side_normals, cap_normals]))

    def interior_point(self):
        return 0.5 * (np.asarray(self.start, dtype=np.float64) + np.asarray(self.end, dtype=np.float64))
