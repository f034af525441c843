"""Procedural 3D shapes (whitebox_hf.data.shapes): exact signed distances, boundary samples, labels, splits."""

import json

import numpy as np
import pytest
from scipy.spatial import cKDTree

from whitebox_hf.data import (
    SHAPE_CATEGORIES,
    Box,
    Capsule,
    Cone,
    Cylinder,
    Sphere,
    Torus,
    load_procedural_shapes,
    make_shape,
    sample_shape,
    shape_split_of,
)

PRIMITIVES = [
    Box((0.1, 0.2, 0.0), (0.3, 0.2, 0.5)),
    Sphere((0.0, 0.0, 0.1), 0.4),
    Cylinder((0.0, 0.1, 0.0), 0.3, 0.5, axis=0),
    Cone((0.0, 0.1, 0.0), 0.4, 0.1, 0.3, axis=1),
    Cone((0.0, 0.0, 0.0), 0.0, 0.4, 0.3, axis=2),
    Torus((0.0, 0.0, 0.0), 0.5, 0.15, axis=2),
    Capsule((0.0, 0.0, 0.0), (0.3, 0.4, 0.2), 0.1),
]


def _inside_by_definition(prim, p):
    """Containment written independently of the SDF code, from each primitive's definition."""
    if isinstance(prim, Box):
        return np.all(np.abs(p - prim.center) < prim.half_extents, axis=1)
    if isinstance(prim, Sphere):
        return np.sum((p - prim.center) ** 2, axis=1) < prim.radius**2
    if isinstance(prim, Capsule):
        a, b = np.array(prim.start), np.array(prim.end)
        t = np.linspace(0, 1, 2001)
        seg = a + t[:, None] * (b - a)
        return np.min(np.linalg.norm(p[:, None] - seg[None], axis=2), axis=1) < prim.radius
    q = p - prim.center
    along = q[:, prim.axis]
    rho = np.linalg.norm(np.delete(q, prim.axis, axis=1), axis=1)
    if isinstance(prim, Cylinder):
        return (rho < prim.radius) & (np.abs(along) < prim.half_height)
    if isinstance(prim, Cone):
        frac = (along + prim.half_height) / (2 * prim.half_height)
        return (np.abs(along) < prim.half_height) & (rho < prim.radius_bottom + (prim.radius_top - prim.radius_bottom) * frac)
    if isinstance(prim, Torus):
        return (rho - prim.major_radius) ** 2 + along**2 < prim.minor_radius**2
    raise AssertionError(prim)


@pytest.mark.parametrize("prim", PRIMITIVES, ids=lambda p: type(p).__name__)
def test_primitive_sdf_is_the_signed_distance(prim):
    rng = np.random.default_rng(0)
    queries = rng.uniform(-1, 1, (400, 3))
    sdf = prim.sdf(queries)
    np.testing.assert_array_equal(sdf < 0, _inside_by_definition(prim, queries))
    # |sdf| is the distance to the surface: dense surface samples come close to it from above, never below.
    surface, normals = prim.sample_surface(rng, 40000)
    nearest = cKDTree(surface).query(queries)[0]
    assert np.all(nearest >= np.abs(sdf) - 1e-12)
    assert np.max(nearest - np.abs(sdf)) < 0.02
    assert np.max(np.abs(prim.sdf(surface))) < 1e-12
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-12)
    assert prim.sdf(prim.interior_point()[None])[0] < 0
    lo, hi = prim.bounds()
    assert np.all(surface >= lo - 1e-12) and np.all(surface <= hi + 1e-12)
    np.testing.assert_allclose(surface.min(axis=0), lo, atol=0.02)
    np.testing.assert_allclose(surface.max(axis=0), hi, atol=0.02)


def test_primitive_surface_sampling_is_uniform_in_area():
    # A cylinder of radius 0.5 and height 2: the side holds 2πrh / (2πrh + 2πr²) = 0.8 of the area.
    cyl = Cylinder((0.0, 0.0, 0.0), 0.5, 1.0)
    points, _ = cyl.sample_surface(np.random.default_rng(1), 20000)
    on_side = np.abs(np.abs(points[:, 1]) - 1.0) > 1e-9
    assert abs(on_side.mean() - 0.8) < 0.015
    # On a torus, the outer half (ρ > R) holds more area than the inner half.
    torus = Torus((0.0, 0.0, 0.0), 0.6, 0.3)
    points, _ = torus.sample_surface(np.random.default_rng(2), 40000)
    outer = np.hypot(points[:, 0], points[:, 2]) > 0.6
    # Outer share: ∫_{-π/2}^{π/2} (R + r cos v) dv / (2πR) = 1/2 + r/(πR).
    assert abs(outer.mean() - (0.5 + 0.3 / (np.pi * 0.6))) < 0.01


@pytest.mark.parametrize("category", SHAPE_CATEGORIES)
def test_family_geometry(category):
    for seed in range(3):
        shape = sample_shape(category, seed)
        # Known points: inside every part, outside at the cube's corners and faces.
        assert np.all(shape.sdf(shape.interior_points()) < 0)
        outside = np.array([[1, 1, 1], [-1, -1, -1], [1, 0, 0], [0, -1, 0], [0, 0, 1], [-1, 1, -1]], float)
        assert np.all(shape.sdf(outside) > 0)
        lo, hi = shape.bounds()
        assert np.all(lo >= -0.9 - 1e-9) and np.all(hi <= 0.9 + 1e-9)
        assert np.isclose(np.max(hi - lo), 1.8)
        rng = np.random.default_rng(seed)
        points, normals = shape.sample_surface(2048, rng)
        assert points.shape == normals.shape == (2048, 3)
        assert np.all(np.abs(points) <= 0.9 + 1e-9)
        assert np.max(np.abs(shape.sdf(points))) < 1e-4
        np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-9)
        # The normal is the SDF gradient (central differences); only points within eps of an edge may differ.
        eps = 1e-6
        grad = np.stack([(shape.sdf(points + eps * e) - shape.sdf(points - eps * e)) / (2 * eps) for e in np.eye(3)], 1)
        assert np.mean(np.sum(grad * normals, axis=1) > 0.99) > 0.99
        # Moving along the normal leaves the shape, moving against it enters it.
        assert np.mean(shape.sdf(points + 1e-4 * normals) > 0) > 0.99
        assert np.mean(shape.sdf(points - 1e-4 * normals) < 0) > 0.99


def test_surface_points_cover_every_visible_part():
    # A unit cube with a sphere buried in it: no sample may come from the sphere, all from the cube's faces.
    from whitebox_hf.data.shapes import Shape

    shape = Shape("mug", {}, "test", [Box((0, 0, 0), (1, 1, 1)), Sphere((0, 0, 0), 0.5)])
    points, normals = shape.sample_surface(1000, np.random.default_rng(0))
    assert np.allclose(np.max(np.abs(points), axis=1), 0.9)
    assert np.allclose(np.abs(normals).sum(axis=1), 1.0)


def test_training_item_labels_match_the_sdf():
    shape = sample_shape("chair", 4)
    item = shape.training_item(np.random.default_rng(0), 512, 256, 300, 0.02)
    assert item["surface_points"].shape == (512, 3) and item["surface_points"].dtype == np.float32
    assert item["volume_queries"].shape == (256, 3) and item["near_queries"].shape == (300, 3)
    assert np.all(np.abs(item["volume_queries"]) <= 1)
    for queries, labels in (("volume_queries", "volume_occupancy"), ("near_queries", "near_occupancy")):
        expected = (shape.sdf(item[queries]) < 0).astype(np.uint8)
        np.testing.assert_array_equal(item[labels], expected)
    # Near queries straddle the surface: both labels occur, and they stay within a few σ of it.
    assert 0.2 < item["near_occupancy"].mean() < 0.8
    assert np.max(np.abs(shape.sdf(item["near_queries"]))) < 0.02 * 6


def test_captions_follow_the_parameters():
    base = sample_shape("table", 0).parameters
    round_top = make_shape("table", {**base, "top": "round", "legs": "pedestal"})
    rectangular = make_shape("table", {**base, "top": "rectangular", "depth": 0.6, "legs": "four"})
    assert "round" in round_top.caption and "pedestal" in round_top.caption
    assert "rectangular" in rectangular.caption and "four" in rectangular.caption
    for category in SHAPE_CATEGORIES:
        captions = {sample_shape(category, s).caption for s in range(20)}
        assert len(captions) >= 4, (category, captions)
    bottle = sample_shape("bottle", 0).parameters
    short = make_shape("bottle", {**bottle, "kind": "bottle", "neck_length": 0.11}).caption
    long = make_shape("bottle", {**bottle, "kind": "bottle", "neck_length": 0.44}).caption
    assert "short neck" in short and "long neck" in long


def test_splits_are_disjoint_deterministic_and_rebuildable():
    kwargs = dict(num_per_category=4, seed=3, categories=["mug", "lamp"], num_surface_points=64,
                  num_volume_queries=32, num_near_queries=32)
    first, second = load_procedural_shapes(**kwargs), load_procedural_shapes(**kwargs)
    assert set(first) == {"train", "validation", "test"}
    assert sum(len(first[s]) for s in first) == 8
    seeds = [set(first[s]["instance_seed"]) for s in first]
    assert sum(len(s) for s in seeds) == len(set().union(*seeds)) == 8
    for split in first:
        assert first[split].to_dict() == second[split].to_dict()
        for row in first[split]:
            assert shape_split_of(row["category"], row["instance_seed"]) == split
            shape = make_shape(row["category"], json.loads(row["parameters"]))
            assert shape.caption == row["caption"]
            assert np.max(np.abs(shape.sdf(np.asarray(row["surface_points"])))) < 1e-4
            np.testing.assert_array_equal(row["volume_occupancy"], shape.occupancy(np.asarray(row["volume_queries"], np.float32)))
    other = load_procedural_shapes(**{**kwargs, "seed": 4})
    assert set(other["train"]["instance_seed"]).isdisjoint(set(first["train"]["instance_seed"]))
    # A split depends on the instance alone: more instances leave the first ones where they were.
    bigger = load_procedural_shapes(**{**kwargs, "num_per_category": 6})
    for split in first:
        assert set(first[split]["instance_seed"]) <= set(bigger[split]["instance_seed"])
    shares = [shape_split_of("car", s) for s in range(2000)]
    assert abs(shares.count("test") / 2000 - 0.1) < 0.03 and abs(shares.count("validation") / 2000 - 0.1) < 0.03


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"num_per_category": 0}, "num_per_category"),
        ({"num_per_category": 2.0}, "num_per_category"),
        ({"num_surface_points": -1}, "num_surface_points"),
        ({"num_volume_queries": True}, "num_volume_queries"),
        ({"num_near_queries": 0}, "num_near_queries"),
        ({"near_noise_std": float("nan")}, "near_noise_std"),
        ({"categories": ["table", "sofa"]}, "categories"),
        ({"categories": "table"}, "categories"),
        ({"categories": ["mug", "mug"]}, "categories"),
        ({"seed": -1}, "seed"),
        ({"test_fraction": 1.5}, "test_fraction"),
    ],
)
def test_bad_loader_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        load_procedural_shapes(**{"num_per_category": 1, "categories": ["mug"], "num_surface_points": 8,
                                  "num_volume_queries": 8, "num_near_queries": 8, **kwargs})


def test_bad_shape_inputs_raise():
    shape = sample_shape("mug", 0)
    with pytest.raises(ValueError, match="`points`"):
        shape.sdf(np.array([[0.0, np.nan, 0.0]]))
    with pytest.raises(ValueError, match="`points`"):
        shape.sdf(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="`num_points`"):
        shape.sample_surface(0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="`category`"):
        sample_shape("sofa", 0)
    with pytest.raises(ValueError, match="`radius`"):
        Sphere((0, 0, 0), float("nan"))
    with pytest.raises(ValueError, match="`minor_radius`"):
        Torus((0, 0, 0), 0.2, 0.3)
    with pytest.raises(ValueError, match="`axis`"):
        Cylinder((0, 0, 0), 0.2, 0.3, axis=3)
    with pytest.raises(ValueError, match="`center`"):
        Box((0, 0), (1, 1, 1))
