"""The MiniGrid recordings: shapes, dtypes, the frame-changing actions only, determinism, split by episode, cache."""

import numpy as np
import pytest

from whitebox_hf.data import (
    ENVIRONMENT_ACTIONS,
    load_environment_recordings,
    record_episodes,
)


def test_recordings_have_the_documented_layout_and_are_deterministic():
    first = record_episodes(3, 6, seed=0)
    assert first.frames.shape == (3, 7, 24, 24, 3) and first.frames.dtype == np.uint8
    assert first.actions.shape == (3, 6) and first.actions.dtype == np.int64
    assert set(np.unique(first.actions)) <= set(ENVIRONMENT_ACTIONS)
    again = record_episodes(3, 6, seed=0)
    assert np.array_equal(first.frames, again.frames) and np.array_equal(first.actions, again.actions)
    # Turning always changes the frame (the agent's heading is drawn).
    turns = np.isin(first.actions, [0, 1])
    changed = np.abs(np.diff(first.frames.astype(int), axis=1)).sum(axis=(2, 3, 4)) > 0
    assert changed[turns].all()


def test_splits_share_no_episode_and_are_cached(tmp_path):
    splits = load_environment_recordings(4, 2, episode_length=5, cache_dir=tmp_path)
    assert not set(splits["train"].seeds) & set(splits["test"].seeds)
    assert len(list((tmp_path / "minigrid").glob("*.safetensors"))) == 1
    cached = load_environment_recordings(4, 2, episode_length=5, cache_dir=tmp_path)
    assert np.array_equal(cached["test"].frames, splits["test"].frames)


@pytest.mark.parametrize("kwargs, name", [({"num_episodes": 0}, "num_episodes"),
                                          ({"episode_length": True}, "episode_length"),
                                          ({"seed": -1}, "seed")])
def test_bad_counts_name_the_argument(kwargs, name):
    args = {"num_episodes": 1, "episode_length": 2, **kwargs}
    with pytest.raises(ValueError, match=f"`{name}`"):
        record_episodes(**args)
