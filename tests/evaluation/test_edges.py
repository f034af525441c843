"""Edge F1 of `whitebox_hf.evaluation.edges` on maps whose answer is known by counting."""

from __future__ import annotations

import numpy as np
import pytest

from whitebox_hf.evaluation.edges import edge_agreement, edge_f1
from whitebox_hf.pipelines.control import canny_edges


def line(column, size=10, rows=slice(0, 10)):
    edges = np.zeros((size, size), dtype=bool)
    edges[rows, column] = True
    return edges


def test_identical_maps_score_one_and_a_shift_beyond_the_tolerance_zero():
    assert edge_f1(line(3), line(3), tolerance=0)["f1"] == 1.0
    assert edge_f1(line(3), line(5), tolerance=1)["f1"] == 0.0
    # Two pixels away: inside a tolerance of 2, outside 1.
    assert edge_f1(line(3), line(5), tolerance=2)["f1"] == 1.0


def test_partial_overlap_gives_the_counted_precision_and_recall():
    reference = line(3)                                  # 10 pixels
    predicted = line(3, rows=slice(0, 5)) | line(8)      # 5 on the line + 10 far away
    scores = edge_f1(reference, predicted, tolerance=0)
    assert scores["precision"] == pytest.approx(5 / 15)
    assert scores["recall"] == pytest.approx(5 / 10)
    assert scores["f1"] == pytest.approx(2 * (1 / 3) * 0.5 / (1 / 3 + 0.5))
    # A tolerance of 1 also recovers row 5 of the reference (next to the predicted row 4): 6 of 10.
    assert edge_f1(reference, predicted, tolerance=1)["recall"] == pytest.approx(6 / 10)


def test_counts_are_pooled_over_the_batch_and_empty_pairs_agree():
    empty = np.zeros((10, 10), dtype=bool)
    scores = edge_f1(np.stack([line(3), empty]), np.stack([line(3), empty]), tolerance=0)
    assert scores["f1"] == 1.0 and scores["f1_per_image"] == [1.0, 1.0]
    one_sided = edge_f1(np.stack([empty]), np.stack([line(2)]))
    assert one_sided["f1"] == 0.0 and one_sided["recall"] == 0.0
    missed = edge_f1(np.stack([line(2)]), np.stack([empty]))
    assert missed["f1"] == 0.0 and missed["precision"] == 0.0


def test_the_tolerance_window_does_not_reach_into_the_next_image():
    # Image 0 has the reference edge, image 1 the prediction at the same place: no match across images.
    empty = np.zeros((10, 10), dtype=bool)
    scores = edge_f1(np.stack([line(3), empty]), np.stack([empty, line(3)]), tolerance=2)
    assert scores["f1"] == 0.0


def test_canny_of_a_square_finds_its_outline_and_agrees_with_itself():
    image = np.full((32, 32, 3), 255, dtype=np.uint8)
    image[8:24, 8:24] = 0
    edges = canny_edges(image)[0]
    assert edges[8:24, 7:9].any(axis=1).all() and not edges[14:18, 14:18].any()  # the left side, not the inside
    assert edge_agreement(edges[None], image[None])["f1"] == 1.0
    blank = np.full((1, 32, 32, 3), 255, dtype=np.uint8)
    assert edge_agreement(edges[None], blank)["f1"] == 0.0


@pytest.mark.parametrize("reference, predicted, tolerance, error, message", [
    (np.zeros((2, 4, 4), bool), np.zeros((2, 4, 5), bool), 1, ValueError, "`predicted` must have the shape"),
    (np.zeros((4, 4), np.uint8), np.zeros((4, 4), bool), 1, ValueError, "`reference` must be a bool"),
    ([[True]], np.zeros((1, 1), bool), 1, TypeError, "`reference` must be a bool"),
    (np.zeros((4, 4), bool), np.zeros((4, 4), bool), -1, ValueError, "`tolerance` must be a non-negative"),
])
def test_bad_arguments_are_named(reference, predicted, tolerance, error, message):
    with pytest.raises(error, match=message):
        edge_f1(reference, predicted, tolerance=tolerance)
