"""Recordings of a real reinforcement-learning environment: frames and actions of MiniGrid (``minigrid`` on
``gymnasium``), the training data of the action-conditioned world model and of the video model (book §8.7).

MiniGrid is pure Python and deterministic given its seed; the whole grid is rendered as RGB (``render_mode=
"rgb_array"``, ``tile_size`` pixels per cell, with the agent's field of view highlighted), so the frame shows the
agent's position and heading. The default room, ``MiniGrid-Empty-Random-6x6-v0`` at 4 pixels a cell, gives 24×24
frames (a 4×4 floor, a random start cell and heading, the goal in the far corner): small enough to train on two CPU
cores, and at that size the heading is read mostly from the highlighted field of view, which every turn moves. Only the three actions that move the agent are used: ``0`` turn left, ``1`` turn right,
``2`` forward (MiniGrid's ids). The others (pick up, drop, toggle, done) change nothing in an empty room, and a world
model that is never shown a frame-changing difference between actions could ignore them.

An episode is recorded with a seeded uniformly random policy over those actions for ``episode_length`` steps: frames
``(T + 1, H, W, 3)`` uint8 (the reset frame, then one frame after each action) and actions ``(T,)`` int64. An episode
that reaches the goal before ``episode_length`` steps is discarded and the next seed is tried, so every kept episode
has the same length and no frame is a reset. Episode ``i`` of a split uses environment seed ``base + i`` with
``base`` = ``seed`` for train and ``seed + 1_000_000`` for test, so the splits never share an episode (split by
episode) and adding episodes keeps the earlier ones.

`load_environment_recordings` caches the arrays as safetensors under ``~/.cache/whitebox_hf/minigrid/`` (or
``$WHITEBOX_HF_CACHE``), keyed by every argument.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .fashion_mnist import default_cache_dir

__all__ = ["ENVIRONMENT_ACTIONS", "EnvironmentRecordings", "load_environment_recordings", "record_episodes"]

# The frame-changing actions of MiniGrid, by their MiniGrid ids (minigrid.core.actions.Actions).
ENVIRONMENT_ACTIONS = {0: "left", 1: "right", 2: "forward"}
DEFAULT_ENV_ID = "MiniGrid-Empty-Random-6x6-v0"
_TEST_SEED_OFFSET = 1_000_000
_MAX_TRIES_PER_EPISODE = 50


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}")
    return int(value)


@dataclass
class EnvironmentRecordings:
    """One split of recorded episodes.

    Args:
        frames (`np.ndarray` of shape `(E, T + 1, H, W, 3)`, uint8): the reset frame and the frame after each action.
        actions (`np.ndarray` of shape `(E, T)`, int64): the action taken after frame t (ids of
            `ENVIRONMENT_ACTIONS`).
        seeds (`np.ndarray` of shape `(E,)`, int64): the environment seed of each episode.
        env_id (`str`): the gymnasium environment id.
    """

    frames: np.ndarray
    actions: np.ndarray
    seeds: np.ndarray
    env_id: str

    @property
    def num_actions(self) -> int:
        return len(ENVIRONMENT_ACTIONS)


def _make_env(env_id: str, tile_size: int):
    import gymnasium as gym
    import minigrid  # noqa: F401  (registers the MiniGrid environments with gymnasium)

    return gym.make(env_id, render_mode="rgb_array", tile_size=tile_size)


def record_episodes(num_episodes: int, episode_length: int, seed: int = 0, env_id: str = DEFAULT_ENV_ID,
                    tile_size: int = 4) -> EnvironmentRecordings:
    """Record ``num_episodes`` episodes of ``episode_length`` random actions (see the module docstring), with
    environment seeds from ``seed`` on.

    Raises:
        ValueError: a count below 1, a negative seed, or no episode of that length found within 50 seeds.
    """
    num_episodes = _check_int("num_episodes", num_episodes, 1)
    episode_length = _check_int("episode_length", episode_length, 1)
    seed = _check_int("seed", seed, 0)
    tile_size = _check_int("tile_size", tile_size, 1)
    env = _make_env(env_id, tile_size)
    actions_ids = np.array(sorted(ENVIRONMENT_ACTIONS), dtype=np.int64)
    frames, actions, seeds = [], [], []
    candidate, tries = seed, 0
    try:
        while len(frames) < num_episodes:
            env.reset(seed=candidate)
            policy = np.random.default_rng(candidate)
            episode_frames, episode_actions = [env.render()], []
            for _ in range(episode_length):
                action = int(policy.choice(actions_ids))
                _, _, terminated, truncated, _ = env.step(action)
                episode_actions.append(action)
                episode_frames.append(env.render())
                if terminated or truncated:
                    break
            if len(episode_actions) == episode_length and not (terminated or truncated):
                frames.append(np.stack(episode_frames))
                actions.append(np.array(episode_actions, dtype=np.int64))
                seeds.append(candidate)
                tries = 0
            else:
                tries += 1
                if tries >= _MAX_TRIES_PER_EPISODE:
                    raise ValueError(f"`episode_length` {episode_length} is too long for {env_id}: "
                                     f"{tries} episodes in a row ended earlier")
            candidate += 1
    finally:
        env.close()
    return EnvironmentRecordings(np.stack(frames).astype(np.uint8), np.stack(actions),
                                 np.array(seeds, dtype=np.int64), env_id)


def load_environment_recordings(num_train_episodes: int = 200, num_test_episodes: int = 40,
                                episode_length: int = 24, seed: int = 0, env_id: str = DEFAULT_ENV_ID,
                                tile_size: int = 4,
                                cache_dir: str | os.PathLike | None = None) -> dict[str, EnvironmentRecordings]:
    """``{"train": ..., "test": ...}`` recordings, split by episode (see the module docstring), read from the
    cache when present (written atomically otherwise)."""
    from safetensors.numpy import load_file, save_file

    counts = {"train": _check_int("num_train_episodes", num_train_episodes, 1),
              "test": _check_int("num_test_episodes", num_test_episodes, 1)}
    seed = _check_int("seed", seed, 0)
    key = json.dumps({"env_id": env_id, "episode_length": episode_length, "seed": seed, "tile_size": tile_size,
                      **counts, "version": 1}, sort_keys=True)
    folder = Path(cache_dir or default_cache_dir()) / "minigrid"
    path = folder / f"{env_id}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.safetensors"
    if path.is_file():
        arrays = load_file(path)
    else:
        arrays = {}
        for split, base in (("train", seed), ("test", seed + _TEST_SEED_OFFSET)):
            recordings = record_episodes(counts[split], episode_length, base, env_id, tile_size)
            arrays.update({f"{split}.frames": recordings.frames, f"{split}.actions": recordings.actions,
                           f"{split}.seeds": recordings.seeds})
        folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".partial-{os.getpid()}")
        save_file(arrays, partial, metadata={"key": key})
        os.replace(partial, path)  # never a half-written cache file
    return {split: EnvironmentRecordings(arrays[f"{split}.frames"], arrays[f"{split}.actions"],
                                         arrays[f"{split}.seeds"], env_id) for split in ("train", "test")}
