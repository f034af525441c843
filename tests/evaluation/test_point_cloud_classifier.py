"""The point-cloud category classifier that judges generated shapes: it learns well-separated procedural
categories from their surface points, round-trips through safetensors + JSON, and refuses bad input by name."""

import json

import numpy as np
import pytest
import torch

from whitebox_hf.data.shapes import load_procedural_shapes
from whitebox_hf.evaluation.point_cloud_classifier import (
    PointNetClassifier,
    classify_point_clouds,
    load_point_cloud_classifier,
    point_cloud_accuracy,
    save_point_cloud_classifier,
    train_point_cloud_classifier,
)

SETTINGS = {"num_points": 64, "epochs": 30, "batch_size": 8, "hidden_sizes": (16, 32), "head_size": 16}


@pytest.fixture(scope="module")
def shapes():
    # Three families that differ in outline (a mug, a bottle, a table): 30 instances each, 64 points.
    return load_procedural_shapes(num_per_category=30, categories=["mug", "bottle", "table"], num_surface_points=64,
                                  num_volume_queries=1, num_near_queries=1, test_fraction=0.3)


@pytest.fixture(scope="module")
def trained(shapes):
    return train_point_cloud_classifier(shapes["train"], shapes["test"], **SETTINGS)


def test_classifier_learns_three_categories_well_above_chance(shapes, trained):
    model, metrics = trained
    assert model.categories == ["bottle", "mug", "table"]
    assert metrics["num_test_shapes"] == len(shapes["test"]) > 10
    assert metrics["test_accuracy"] >= 0.7  # chance: 1/3
    assert metrics["train_accuracy"] >= metrics["test_accuracy"] - 0.2
    # An untrained network of the same shape is not this good: the score reflects the training.
    torch.manual_seed(0)
    untrained = PointNetClassifier(model.categories, SETTINGS["hidden_sizes"], SETTINGS["head_size"], 64).eval()
    assert point_cloud_accuracy(untrained, shapes["test"]) < metrics["test_accuracy"]


def test_save_load_round_trip_gives_the_same_predictions(shapes, trained, tmp_path):
    model, metrics = trained
    folder = save_point_cloud_classifier(model, tmp_path / "clf", metrics)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((folder / "config.json").read_text())["metrics"]["test_accuracy"] == metrics["test_accuracy"]
    loaded, loaded_metrics = load_point_cloud_classifier(folder)
    assert loaded_metrics == metrics and loaded.config == model.config
    clouds = [np.asarray(points) for points in shapes["test"]["surface_points"]]
    assert classify_point_clouds(loaded, clouds) == classify_point_clouds(model, clouds)
    points = torch.from_numpy(np.stack(clouds[:4]).astype(np.float32))
    torch.testing.assert_close(loaded(points), model(points))


def test_predictions_do_not_depend_on_point_order(trained, shapes):
    model, _ = trained
    points = torch.from_numpy(np.asarray(shapes["test"]["surface_points"][:2], dtype=np.float32))
    torch.testing.assert_close(model(points), model(points[:, torch.randperm(points.shape[1])]))


def test_bad_input_is_refused_by_name(shapes, trained, tmp_path):
    model, _ = trained
    with pytest.raises(ValueError, match="categories"):
        PointNetClassifier(["mug"])
    with pytest.raises(ValueError, match="num_points"):
        train_point_cloud_classifier(shapes["train"], num_points=0)
    with pytest.raises(ValueError, match="learning_rate"):
        train_point_cloud_classifier(shapes["train"], learning_rate=0.0)
    with pytest.raises(ValueError, match="at least two categories"):
        train_point_cloud_classifier(shapes["train"].filter(lambda r: r["category"] == "mug"))
    with pytest.raises(ValueError, match="load_procedural_shapes"):
        train_point_cloud_classifier([[0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match=r"clouds\[1\]"):
        classify_point_clouds(model, [np.zeros((5, 3)), np.zeros((5, 2))])
    with pytest.raises(ValueError, match="points"):
        model(torch.zeros(2, 5))
    with pytest.raises(OSError, match="config.json"):
        load_point_cloud_classifier(tmp_path / "nothing")
