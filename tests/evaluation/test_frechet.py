"""Fréchet distance: zero on itself, the closed form for Gaussians, symmetry, input validation."""

import numpy as np
import pytest
import torch

from whitebox_hf.evaluation import (
    feature_statistics,
    frechet_distance,
    frechet_distance_from_statistics,
)


def test_distance_of_a_set_with_itself_is_zero():
    features = np.random.default_rng(0).normal(size=(200, 16))
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-8)
    # rank-deficient covariance (fewer samples than dimensions) still works
    few = np.random.default_rng(1).normal(size=(5, 32))
    assert frechet_distance(few, few) == pytest.approx(0.0, abs=1e-8)


def test_closed_form_for_gaussian_statistics():
    rng = np.random.default_rng(0)
    d = 6
    mean_a, mean_b = rng.normal(size=d), rng.normal(size=d)
    # diagonal covariances: tr((Σa^½ Σb Σa^½)^½) = Σ sqrt(a_i b_i)
    var_a, var_b = rng.uniform(0.5, 2.0, size=d), rng.uniform(0.5, 2.0, size=d)
    expected = np.sum((mean_a - mean_b) ** 2) + np.sum(var_a + var_b - 2 * np.sqrt(var_a * var_b))
    got = frechet_distance_from_statistics(mean_a, np.diag(var_a), mean_b, np.diag(var_b))
    assert got == pytest.approx(expected, rel=1e-10)
    # full covariances: compare with scipy's sqrtm formula
    from scipy.linalg import sqrtm

    a, b = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    cov_a, cov_b = a @ a.T + 0.1 * np.eye(d), b @ b.T + 0.1 * np.eye(d)
    expected = np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a + cov_b - 2 * np.real(sqrtm(cov_a @ cov_b)))
    assert frechet_distance_from_statistics(mean_a, cov_a, mean_b, cov_b) == pytest.approx(expected, rel=1e-8)


def test_samples_of_two_gaussians_approach_the_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.0, size=(20000, 3))
    b = rng.normal(1.0, 2.0, size=(20000, 3))
    expected = 3 * 1.0 + 3 * (1 + 4 - 2 * 2)  # ‖Δμ‖² + Σ(σa² + σb² − 2σaσb)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=0.03)


def test_symmetric_and_accepts_tensors():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 8)), rng.normal(1.0, 1.5, size=(70, 8))
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)
    assert frechet_distance(torch.from_numpy(a).float(), torch.from_numpy(b).float()) == pytest.approx(
        frechet_distance(a, b), rel=1e-5)


def test_statistics_are_float64():
    mean, cov = feature_statistics(torch.randn(10, 4))
    assert mean.dtype == np.float64 and cov.shape == (4, 4)


@pytest.mark.parametrize("a,b", [
    (np.zeros((1, 4)), np.zeros((5, 4))),          # fewer than 2 samples
    (np.zeros((5, 4)), np.zeros((5, 3))),          # dimension mismatch
    (np.zeros(5), np.zeros(5)),                    # not 2-D
    (np.full((3, 2), np.nan), np.zeros((3, 2))),   # non-finite
])
def test_bad_inputs_raise(a, b):
    with pytest.raises(ValueError):
        frechet_distance(a, b)


def test_statistics_dimension_mismatch_raises():
    with pytest.raises(ValueError):
        frechet_distance_from_statistics(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
