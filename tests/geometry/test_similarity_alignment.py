"""Similarity alignment (Umeyama, spec threed_and_motion.md §2.6; tests of §2.7)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.geometry._synthetic import random_rotation
from whitebox_hf.geometry import (
    apply_similarity,
    rotation_error_degrees,
    similarity_alignment,
)


def known_similarity(seed):
    generator = torch.Generator().manual_seed(seed)
    source = torch.randn(60, 3, dtype=torch.float64, generator=generator)
    scale = torch.tensor(0.2 + 3 * torch.rand((), generator=generator).item(), dtype=torch.float64)
    R = random_rotation(generator)
    t = torch.randn(3, dtype=torch.float64, generator=generator)
    return source, scale, R, t


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_umeyama_recovers_a_known_similarity(seed):
    source, scale, R, t = known_similarity(seed)
    target = apply_similarity(source, scale, R, t)
    s_hat, R_hat, t_hat = similarity_alignment(source, target)
    assert abs(s_hat.item() - scale.item()) < 1e-9
    assert rotation_error_degrees(R_hat, R).item() < 1e-6
    assert torch.allclose(t_hat, t, atol=1e-9)


def test_kabsch_without_scale_and_weights_against_outliers():
    source, _, R, t = known_similarity(1)
    target = apply_similarity(source, torch.tensor(1.0, dtype=torch.float64), R, t)
    s_hat, R_hat, t_hat = similarity_alignment(source, target, with_scale=False)
    assert s_hat.item() == 1.0 and rotation_error_degrees(R_hat, R).item() < 1e-6
    assert torch.allclose(t_hat, t, atol=1e-9)
    corrupted = target.clone()
    corrupted[:10] += 5.0
    weights = torch.ones(source.shape[0], dtype=torch.float64)
    weights[:10] = 0
    _, R_plain, _ = similarity_alignment(source, corrupted)
    s_w, R_w, t_w = similarity_alignment(source, corrupted, weights)
    assert rotation_error_degrees(R_plain, R).item() > 1.0
    assert rotation_error_degrees(R_w, R).item() < 1e-6 and abs(s_w.item() - 1) < 1e-9
    assert torch.allclose(t_w, t, atol=1e-9)


def test_reflected_inputs_still_give_a_rotation():
    source, scale, R, t = known_similarity(2)
    mirrored = source * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64)
    _, R_hat, _ = similarity_alignment(source, apply_similarity(mirrored, scale, R, t))
    assert abs(torch.linalg.det(R_hat).item() - 1) < 1e-9


def test_bad_inputs_raise():
    source, *_ = known_similarity(3)
    with pytest.raises(ValueError, match="`target` must have the shape of `source`"):
        similarity_alignment(source, source[:-1])
    with pytest.raises(ValueError, match="`source` must hold at least 3 points, got 2"):
        similarity_alignment(source[:2], source[:2])
    with pytest.raises(ValueError, match="`source` must not be a single repeated point"):
        similarity_alignment(torch.ones(5, 3, dtype=torch.float64), source[:5])
    with pytest.raises(ValueError, match="`weights` must have a positive sum"):
        similarity_alignment(source, source, torch.zeros(source.shape[0], dtype=torch.float64))
