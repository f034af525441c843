"""Procedural 3D shapes with exact occupancy, as SITA-VAE (Michelangelo) training items.

A shape is a union of exact primitives (`whitebox_hf.data.shape_primitives`) drawn from one of the ShapeNet-like
families of `whitebox_hf.data.shape_families` (table, chair, lamp, airplane, car, rifle, mug, bottle), scaled and
centred so that its bounding box spans 1.8 along its longest side, inside the cube [-0.9, 0.9]^3, within
[-1, 1]^3. Its signed distance is the minimum of the primitives' exact signed distances (the exact distance
outside the union; inside, where parts overlap, a lower bound of the depth with the exact sign), so occupancy
labels are exact, never estimated from samples.

A training item (spec threed_and_motion.md §1.2-1.3) holds:

- ``surface_points``/``surface_normals``: N points uniform in area on the union's boundary, with the outward
  unit normal. Each primitive's surface is sampled in proportion to its area and only points whose union
  distance is 0 (to ``1e-9``) are kept, i.e. those not buried inside another part.
- ``volume_queries``/``volume_occupancy``: points uniform in [-1, 1]^3 and whether each lies inside (1) or not (0).
- ``near_queries``/``near_occupancy``: fresh surface points plus isotropic Gaussian noise (σ = ``near_noise_std``,
  0.015 by default; the original code leaves it unstated) and their occupancy.

`load_procedural_shapes` builds a `datasets.DatasetDict` of such items. Every instance has its own seed, drawn
from ``(seed, category, index)``, and its split (train/validation/test) follows from a hash of its category and
instance seed alone, so an instance keeps its split when more instances are generated.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np

from .shape_families import SHAPE_FAMILIES
from .shape_primitives import Primitive

__all__ = [
    "SHAPE_CATEGORIES",
    "Shape",
    "load_procedural_shapes",
    "make_shape",
    "sample_shape",
    "shape_split_of",
]

SHAPE_CATEGORIES: tuple[str, ...] = tuple(SHAPE_FAMILIES)
SPLITS = ("train", "validation", "test")
# Half the side of the cube the normalised bounding box fills: the margin keeps near-surface queries and the
# surface itself away from the query box's faces.
_HALF_EXTENT = 0.9
_SURFACE_TOLERANCE = 1e-9


def _check_count(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}")


def _check_category(category) -> None:
    if category not in SHAPE_FAMILIES:
        raise ValueError(f"`category` must be one of {list(SHAPE_CATEGORIES)}, got {category!r}")


def _check_seed(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"`{name}` must be an integer >= 0, got {value!r}")


class Shape:
    """One normalised shape: its ``category``, ``parameters`` (the family's JSON-able parameters), ``caption``
    and the ``primitives`` of the union in the family's units, with the ``scale`` and ``offset`` that map them
    into the cube (normalised point = (point - offset) · scale)."""

    def __init__(self, category: str, parameters: dict, caption: str, primitives: list[Primitive]):
        _check_category(category)
        if not primitives:
            raise ValueError("`primitives` must hold at least one primitive, got none")
        self.category, self.parameters, self.caption = category, parameters, caption
        self.primitives = list(primitives)
        lows, highs = zip(*(p.bounds() for p in self.primitives))
        low, high = np.min(lows, axis=0), np.max(highs, axis=0)
        self.offset = (low + high) / 2
        self.scale = 2 * _HALF_EXTENT / float(np.max(high - low))

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """The exact axis-aligned bounding box of the normalised shape."""
        lows, highs = zip(*(p.bounds() for p in self.primitives))
        return ((np.min(lows, axis=0) - self.offset) * self.scale, (np.max(highs, axis=0) - self.offset) * self.scale)

    def sdf(self, points) -> np.ndarray:
        """Signed distance of normalised ``points [M, 3]`` (negative inside), float64 ``[M]``."""
        p = np.asarray(points, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != 3:
            raise ValueError(f"`points` must have shape [M, 3], got {p.shape}")
        if not np.isfinite(p).all():
            raise ValueError("`points` must be finite, got NaN or inf")
        native = p / self.scale + self.offset
        return self.scale * np.min([prim.sdf(native) for prim in self.primitives], axis=0)

    def occupancy(self, points) -> np.ndarray:
        """1 where a normalised point is inside the shape (signed distance < 0), else 0; uint8 ``[M]``."""
        return (self.sdf(points) < 0).astype(np.uint8)

    def interior_points(self) -> np.ndarray:
        """One normalised point strictly inside each primitive, ``[len(primitives), 3]``."""
        return (np.stack([p.interior_point() for p in self.primitives]) - self.offset) * self.scale

    def sample_surface(self, num_points: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``num_points`` normalised points uniform in area on the union's boundary and their outward unit
        normals, both float64 ``[num_points, 3]``."""
        _check_count("num_points", num_points)
        areas = np.array([p.area() for p in self.primitives])
        points, normals, found = [], [], 0
        while found < num_points:
            # Buried samples are dropped, so draw more than needed; the loop tops up when too many were buried.
            batch = max(2 * (num_points - found), 256)
            counts = rng.multinomial(batch, areas / areas.sum())
            for prim, m in zip(self.primitives, counts):
                if m == 0:
                    continue
                pts, nrm = prim.sample_surface(rng, int(m))
                union = np.min([q.sdf(pts) for q in self.primitives], axis=0)
                keep = union > -_SURFACE_TOLERANCE
                points.append(pts[keep])
                normals.append(nrm[keep])
                found += int(keep.sum())
        points_all, normals_all = np.concatenate(points), np.concatenate(normals)
        # The batches come primitive by primitive: shuffle before truncating so no part is cut short.
        order = rng.permutation(len(points_all))[:num_points]
        return (points_all[order] - self.offset) * self.scale, normals_all[order]

    def training_item(self, rng: np.random.Generator, num_surface_points: int = 4096, num_volume_queries: int = 1024,
                      num_near_queries: int = 1024, near_noise_std: float = 0.015) -> dict:
        """Surface points and normals, volume and near-surface queries with occupancy (float32 arrays, uint8
        labels), as described in the module docstring."""
        _check_count("num_surface_points", num_surface_points)
        _check_count("num_volume_queries", num_volume_queries)
        _check_count("num_near_queries", num_near_queries)
        if not (isinstance(near_noise_std, (int, float)) and math.isfinite(near_noise_std) and near_noise_std > 0):
            raise ValueError(f"`near_noise_std` must be a finite positive number, got {near_noise_std!r}")
        surface, normals = self.sample_surface(num_surface_points, rng)
        volume = rng.uniform(-1.0, 1.0, size=(num_volume_queries, 3))
        near_base, _ = self.sample_surface(num_near_queries, rng)
        # Clipping keeps the near queries inside the query box; the label is computed after clipping.
        near = np.clip(near_base + near_noise_std * rng.standard_normal(near_base.shape), -1.0, 1.0)
        return {
            "surface_points": surface.astype(np.float32),
            "surface_normals": normals.astype(np.float32),
            "volume_queries": volume.astype(np.float32),
            "volume_occupancy": self.occupancy(volume.astype(np.float32)),
            "near_queries": near.astype(np.float32),
            "near_occupancy": self.occupancy(near.astype(np.float32)),
        }


def make_shape(category: str, parameters: dict) -> Shape:
    """The shape of ``category`` with the given family ``parameters`` (as `Shape.parameters` or the JSON column
    hold them)."""
    _check_category(category)
    if not isinstance(parameters, dict):
        raise ValueError(f"`parameters` must be a dict, got {type(parameters).__name__}")
    family = SHAPE_FAMILIES[category]
    return Shape(category, parameters, family.caption(parameters), family.build(parameters))


def sample_shape(category: str, seed: int) -> Shape:
    """A random instance of ``category``, fully determined by ``seed``."""
    _check_category(category)
    _check_seed("seed", seed)
    return make_shape(category, SHAPE_FAMILIES[category].sample(np.random.default_rng(seed)))


def _instance_seed(seed: int, category: str, index: int) -> int:
    entropy = [seed, SHAPE_CATEGORIES.index(category), index]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> 1)


def shape_split_of(category: str, instance_seed: int, validation_fraction: float = 0.1,
                   test_fraction: float = 0.1) -> str:
    """``"train"``, ``"validation"`` or ``"test"`` for one instance, from the SHA-1 of ``"category:seed"``."""
    _check_category(category)
    _check_seed("instance_seed", instance_seed)
    for name, value in (("validation_fraction", validation_fraction), ("test_fraction", test_fraction)):
        if not (isinstance(value, (int, float)) and 0.0 <= value < 1.0):
            raise ValueError(f"`{name}` must be in [0, 1), got {value!r}")
    if validation_fraction + test_fraction >= 1.0:
        raise ValueError(f"`validation_fraction` + `test_fraction` must be < 1, got "
                         f"{validation_fraction} + {test_fraction}")
    digest = hashlib.sha1(f"{category}:{instance_seed}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    return "test" if u < test_fraction else ("validation" if u < test_fraction + validation_fraction else "train")


def load_procedural_shapes(num_per_category: int = 64, seed: int = 0, categories=None,
                           num_surface_points: int = 4096, num_volume_queries: int = 1024,
                           num_near_queries: int = 1024, near_noise_std: float = 0.015,
                           validation_fraction: float = 0.1, test_fraction: float = 0.1):
    """A `datasets.DatasetDict` (train, validation, test) of procedural shapes, reproducible from ``seed``.

    Columns: ``category``, ``caption``, ``parameters`` (the family parameters as JSON; `make_shape` rebuilds the
    shape from them), ``instance_seed``, ``surface_points`` [N, 3], ``surface_normals`` [N, 3],
    ``volume_queries`` [V, 3], ``volume_occupancy`` [V], ``near_queries`` [Q, 3] and ``near_occupancy`` [Q]
    (float32 points, uint8 labels). A split that no instance falls into is empty, with the same columns.

    Args:
        num_per_category: instances per category (all splits together).
        seed: the seed every instance's seed and samples derive from.
        categories: the categories to generate (default: all of `SHAPE_CATEGORIES`).
        num_surface_points: N surface points per item (4096 in Michelangelo).
        num_volume_queries: V uniform queries in [-1, 1]^3 per item.
        num_near_queries: Q near-surface queries per item.
        near_noise_std: σ of the Gaussian jitter of the near-surface queries.
        validation_fraction, test_fraction: the expected shares of the validation and test splits.
    """
    import datasets

    _check_count("num_per_category", num_per_category)
    _check_seed("seed", seed)
    categories = list(SHAPE_CATEGORIES) if categories is None else categories
    if isinstance(categories, str) or not isinstance(categories, (list, tuple)) or not categories:
        raise ValueError(f"`categories` must be a non-empty list of names from {list(SHAPE_CATEGORIES)}, "
                         f"got {categories!r}")
    for category in categories:
        if category not in SHAPE_FAMILIES:
            raise ValueError(f"`categories` must name categories from {list(SHAPE_CATEGORIES)}, got {category!r}")
    if len(set(categories)) != len(categories):
        raise ValueError(f"`categories` must not repeat a category, got {categories!r}")
    rows = {split: [] for split in SPLITS}
    for category in categories:
        for index in range(num_per_category):
            instance_seed = _instance_seed(seed, category, index)
            split = shape_split_of(category, instance_seed, validation_fraction, test_fraction)
            shape = sample_shape(category, instance_seed)
            # The item's samples use a stream of their own, so they do not shift the shape's parameters.
            item_rng = np.random.default_rng([instance_seed, 1])
            item = shape.training_item(item_rng, num_surface_points, num_volume_queries, num_near_queries,
                                       near_noise_std)
            rows[split].append({"category": category, "caption": shape.caption,
                                "parameters": json.dumps(shape.parameters, sort_keys=True),
                                "instance_seed": instance_seed, **item})
    features = datasets.Features({
        "category": datasets.Value("string"),
        "caption": datasets.Value("string"),
        "parameters": datasets.Value("string"),
        "instance_seed": datasets.Value("int64"),
        "surface_points": datasets.Array2D((num_surface_points, 3), "float32"),
        "surface_normals": datasets.Array2D((num_surface_points, 3), "float32"),
        "volume_queries": datasets.Array2D((num_volume_queries, 3), "float32"),
        "volume_occupancy": datasets.Sequence(datasets.Value("uint8"), length=num_volume_queries),
        "near_queries": datasets.Array2D((num_near_queries, 3), "float32"),
        "near_occupancy": datasets.Sequence(datasets.Value("uint8"), length=num_near_queries),
    })
    columns = list(features)
    return datasets.DatasetDict({
        split: datasets.Dataset.from_dict({c: [r[c] for r in split_rows] for c in columns}, features=features)
        for split, split_rows in rows.items()
    })
