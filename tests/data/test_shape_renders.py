"""load_shape_renders: the instances and splits of load_procedural_shapes, rendered with their cameras, cached on
disk so a second call returns the same data, and bad arguments refused naming the argument."""

import json

import numpy as np
import pytest
import torch

from whitebox_hf.data import (
    load_procedural_shapes,
    load_shape_renders,
    look_at_camera,
    render_seed_of,
    render_views,
)
from whitebox_hf.data.shapes import make_shape

ARGS = dict(num_per_category=2, seed=3, num_views=2, size=16)


@pytest.fixture(scope="module")
def renders(tmp_path_factory):
    cache = tmp_path_factory.mktemp("renders")
    return load_shape_renders(**ARGS, cache_dir=cache), cache


def test_same_instances_and_splits_as_the_shapes(renders):
    dataset, _ = renders
    shapes = load_procedural_shapes(num_per_category=2, seed=3, num_surface_points=8, num_volume_queries=8,
                                    num_near_queries=8)
    assert set(dataset) == set(shapes) == {"train", "validation", "test"}
    for split in shapes:
        for column in ("instance_seed", "category", "caption", "parameters"):
            assert dataset[split][column] == shapes[split][column], (split, column)


def test_views_and_cameras(renders):
    dataset, _ = renders
    assert dataset["train"].features["images"].dtype == "uint8"  # stored as uint8
    row = dataset["train"].with_format("numpy")[0]  # (the numpy formatter widens integers to int64)
    assert row["images"].shape == (2, 16, 16, 3)
    assert row["intrinsics"].shape == (2, 3, 3) and row["poses"].shape == (2, 4, 4)
    assert row["masks"].shape == (2, 16, 16) and row["masks"].any()
    # The background is white and the object shaded darker, exactly where the silhouette is.
    assert (row["images"][~row["masks"]] == 255).all() and (row["images"][row["masks"]] < 255).all()
    # The stored cameras are the render's own: rebuilt from the stored angles, and the image re-rendered.
    first = dataset["train"][0]
    camera = look_at_camera(float(row["azimuth"][0]), float(row["elevation"][0]), 2.5, 40.0, 16)
    np.testing.assert_allclose(row["poses"][0], camera.pose.numpy(), atol=1e-6)
    np.testing.assert_allclose(row["intrinsics"][0], camera.intrinsics.numpy(), atol=1e-6)
    shape = make_shape(first["category"], json.loads(first["parameters"]))
    views = render_views(shape, 2, size=16, seed=render_seed_of(first["instance_seed"]))
    expected = (views["rgb"].numpy() * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(row["images"], expected)


def test_second_call_reads_the_cache(renders, monkeypatch):
    dataset, cache = renders
    import whitebox_hf.data.shape_renders as module

    def fail(*args, **kwargs):
        raise AssertionError("rendered again despite the cache")

    monkeypatch.setattr(module, "render_views", fail)
    again = load_shape_renders(**ARGS, cache_dir=cache)
    for split in dataset:
        assert again[split]["instance_seed"] == dataset[split]["instance_seed"]
        assert torch.equal(again[split].with_format("torch")[:]["images"], dataset[split].with_format("torch")[:]["images"])
        assert again[split]["poses"] == dataset[split]["poses"]


@pytest.mark.parametrize("name, value", [("num_per_category", 0), ("num_per_category", 1.5), ("seed", -1),
                                         ("num_views", 0), ("size", 4), ("size", True), ("cache_dir", 3)])
def test_bad_arguments_raise_naming_them(name, value, tmp_path):
    with pytest.raises(ValueError, match=f"`{name}`"):
        load_shape_renders(**{**ARGS, "cache_dir": tmp_path, name: value})
