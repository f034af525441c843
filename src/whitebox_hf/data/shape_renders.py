"""Rendered views of the procedural shapes, with their cameras and captions: the image side of the shape
alignment space (a LIFT model trained on render/caption pairs) and the image condition of shape models.

`load_shape_renders` draws exactly the instances of `whitebox_hf.data.shapes.load_procedural_shapes` with the
same ``(num_per_category, seed)`` (same instance seeds, same splits, same order within a split) and renders each
with `whitebox_hf.data.rendering.render_views`: ``num_views`` cameras at distance 2.5 with a 40° field of view,
azimuth uniform in [0, 360) and elevation uniform in [-10°, 40°], drawn from the instance seed alone, so a view
never changes when more instances or views are asked for. Only the shapes are rebuilt; the point samples of
`load_procedural_shapes` are not regenerated.

Rendering takes a few hundredths of a second a view on one CPU thread, so the result is saved with
``save_to_disk`` under ``cache_dir/shape-renders/<arguments>`` and later calls load it from there.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .fashion_mnist import default_cache_dir
from .rendering import render_views
from .shapes import (
    SHAPE_CATEGORIES,
    SPLITS,
    _check_count,
    _check_seed,
    _instance_seed,
    sample_shape,
    shape_split_of,
)

__all__ = ["load_shape_renders", "render_seed_of"]

# Bumped whenever the rendering or the columns change, so a stale cache is never read.
_FORMAT_VERSION = 1


def render_seed_of(instance_seed: int) -> int:
    """The seed of an instance's cameras: a stream of its own (so it is independent of the shape's parameters
    and of the point samples), derived from the instance seed alone."""
    _check_seed("instance_seed", instance_seed)
    return int(np.random.SeedSequence([instance_seed, 2]).generate_state(1, dtype=np.uint32)[0])


def _features(num_views: int, size: int):
    import datasets

    return datasets.Features({
        "category": datasets.Value("string"),
        "caption": datasets.Value("string"),
        "parameters": datasets.Value("string"),
        "instance_seed": datasets.Value("int64"),
        "images": datasets.Array4D((num_views, size, size, 3), "uint8"),
        "masks": datasets.Array3D((num_views, size, size), "bool"),
        "intrinsics": datasets.Array3D((num_views, 3, 3), "float64"),
        "poses": datasets.Array3D((num_views, 4, 4), "float64"),
        "azimuth": datasets.Sequence(datasets.Value("float64"), length=num_views),
        "elevation": datasets.Sequence(datasets.Value("float64"), length=num_views),
    })


def load_shape_renders(num_per_category: int = 128, seed: int = 0, num_views: int = 4, size: int = 64,
                       cache_dir: str | os.PathLike | None = None):
    """A `datasets.DatasetDict` (train, validation, test) of rendered views of the procedural shapes.

    Columns: ``category``, ``caption``, ``parameters`` (JSON, as in `load_procedural_shapes`), ``instance_seed``,
    ``images`` ``(num_views, size, size, 3)`` uint8 shaded RGB (grey-white background), ``masks``
    ``(num_views, size, size)`` bool silhouettes, ``intrinsics`` ``(num_views, 3, 3)`` and ``poses``
    ``(num_views, 4, 4)`` (camera-to-world, OpenCV convention; see `whitebox_hf.data.rendering`), ``azimuth`` and
    ``elevation`` (degrees). A split that no instance falls into is empty, with the same columns.

    Args:
        num_per_category: instances per category (all splits together), as in `load_procedural_shapes`.
        seed: the seed every instance's seed derives from, as in `load_procedural_shapes`.
        num_views: views rendered per instance.
        size: the image side in pixels, in [8, 1024].
        cache_dir: the cache root (default `whitebox_hf.data.default_cache_dir()`).
    """
    import datasets

    _check_count("num_per_category", num_per_category)
    _check_seed("seed", seed)
    _check_count("num_views", num_views)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 8 <= size <= 1024:
        raise ValueError(f"`size` must be an integer image side in [8, 1024] pixels, got {size!r}")
    if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
        raise ValueError(f"`cache_dir` must be a path or None, got {type(cache_dir).__name__}")
    num_per_category, seed, num_views, size = int(num_per_category), int(seed), int(num_views), int(size)

    prepared = (Path(cache_dir or default_cache_dir()) / "shape-renders"
                / f"v{_FORMAT_VERSION}_n{num_per_category}_seed{seed}_views{num_views}_size{size}")
    if (prepared / "dataset_dict.json").is_file():
        return datasets.load_from_disk(str(prepared))

    import json

    rows = {split: [] for split in SPLITS}
    # The loop of `load_procedural_shapes`: the same instance seeds, splits and order.
    for category in SHAPE_CATEGORIES:
        for index in range(num_per_category):
            instance_seed = _instance_seed(seed, category, index)
            split = shape_split_of(category, instance_seed)
            shape = sample_shape(category, instance_seed)
            views = render_views(shape, num_views, size=size, seed=render_seed_of(instance_seed))
            rows[split].append({
                "category": category, "caption": shape.caption,
                "parameters": json.dumps(shape.parameters, sort_keys=True), "instance_seed": instance_seed,
                # rgb lies in [0, 1]; rounding (not truncation) keeps the white background at 255.
                "images": (views["rgb"].numpy() * 255.0).round().clip(0, 255).astype(np.uint8),
                "masks": views["mask"].numpy(),
                "intrinsics": views["intrinsics"].numpy(), "poses": views["poses"].numpy(),
                "azimuth": views["azimuth"].numpy(), "elevation": views["elevation"].numpy(),
            })
    features = _features(num_views, size)
    dataset = datasets.DatasetDict({
        split: datasets.Dataset.from_dict({c: [r[c] for r in split_rows] for c in features}, features=features)
        for split, split_rows in rows.items()
    })
    if any(len(split_rows) == 0 for split_rows in rows.values()):
        # `datasets` cannot reload an empty split from disk; only tiny sets get here, so they are not cached.
        return dataset
    # Written to a sibling folder and renamed, so an interrupted save never looks like a complete cache.
    prepared.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=prepared.name + ".", dir=prepared.parent))
    try:
        dataset.save_to_disk(str(staging))
        os.replace(staging, prepared)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (prepared / "dataset_dict.json").is_file():  # another process finished the same cache first
            raise
    return datasets.load_from_disk(str(prepared))
