"""MultiDiffusion windows for long head trajectories (`whitebox_hf.models.motion_prior.windowed_sampling`)."""

import pytest
import torch

from tests.models.motion_models import tiny_model
from tests.models.test_motion_guidance import head_track, skeleton_offsets
from whitebox_hf.models.motion_prior import (
    MotionGuidanceConfig,
    sample_motion,
    sample_motion_windowed,
    window_blend_weights,
    window_starts,
)


def test_window_starts_cover_the_sequence_flush_with_its_end():
    assert window_starts(100, 128, 32) == [0]
    assert window_starts(128, 128, 32) == [0]
    assert window_starts(300, 128, 32) == [0, 96, 172]
    assert window_starts(10, 4, 1) == [0, 3, 6]
    with pytest.raises(ValueError, match="`overlap` must be an integer in"):
        window_starts(10, 4, 4)


@pytest.mark.parametrize("frames, window, overlap", [(300, 128, 32), (10, 4, 1), (50, 16, 0), (20, 32, 8)])
def test_blending_weights_sum_to_one_and_ramp(frames, window, overlap):
    starts, weights = window_blend_weights(frames, window, overlap, torch.float64)
    torch.testing.assert_close(weights.sum(0), torch.ones(frames, dtype=torch.float64))
    assert bool((weights >= 0).all())
    for row, start in zip(weights, starts):
        assert bool((row[:start] == 0).all()) and bool((row[start + window:] == 0).all())
    if len(starts) > 1 and overlap > 0:
        # Inside the first overlap the first window fades out while the second fades in.
        shared = weights[:, starts[1]:starts[1] + overlap]
        assert bool((shared[0].diff() < 0).all()) and bool((shared[1].diff() > 0).all())


@pytest.mark.parametrize("schedule", ["ddim", "egoallo"])
def test_one_window_equals_the_plain_sampler(schedule):
    model = tiny_model()
    head, offsets = head_track(2, 8).float(), skeleton_offsets().float()
    plain = sample_motion(model, head, offsets, 4, generator=torch.Generator().manual_seed(3), schedule=schedule)
    windowed = sample_motion_windowed(model, head, offsets, 4, generator=torch.Generator().manual_seed(3),
                                      schedule=schedule, window=8, overlap=2, guidance="off")
    for name in ("local_rotations", "root_translation", "positions", "contacts", "motion"):
        assert torch.equal(getattr(windowed, name), getattr(plain, name)), name


def test_long_sequence_gets_output_of_its_length_and_guidance_changes_it():
    model = tiny_model()
    head, offsets = head_track(1, 21).float(), skeleton_offsets().float()
    calls = []

    def progress(steps):
        calls.append(len(steps))
        return steps

    out = sample_motion_windowed(model, head, offsets, 3, generator=torch.Generator().manual_seed(0), window=8,
                                 overlap=3, guidance="off", progress=progress)
    assert calls == [3]
    assert out.positions.shape == (1, 21, 22, 3) and out.local_rotations.shape == (1, 21, 22, 3, 3)
    assert out.contacts.shape == (1, 21, 4) and out.motion.shape == (1, 21, model.config.motion_size)
    assert bool(torch.isfinite(out.positions).all())
    config = MotionGuidanceConfig(inner_iterations=1, post_iterations=2, cg_iterations=5)
    guided = sample_motion_windowed(model, head, offsets, 3, generator=torch.Generator().manual_seed(0), window=8,
                                    overlap=3, guidance="inner_and_post", guidance_config=config)
    assert guided.positions.shape == out.positions.shape
    assert not torch.equal(guided.positions, out.positions)
    with pytest.raises(ValueError, match="`guidance` must be one of"):
        sample_motion_windowed(model, head, offsets, 3, guidance="always")
