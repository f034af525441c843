"""WorldModelPipeline: rollout shapes and dtypes, determinism, the regressor route, bad inputs, save/load."""

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from tests.models.test_world_model import tiny
from whitebox_hf.pipelines import WorldModelPipeline


def tiny_pipeline(prediction="diffusion"):
    pipe = WorldModelPipeline(tiny(prediction), DDIMScheduler(num_train_timesteps=100))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def start(batch=2):
    return np.random.default_rng(0).integers(0, 256, (batch, 2, 8, 8, 3), dtype=np.uint8)


def test_rollout_gives_one_frame_per_action_and_is_seeded():
    pipe = tiny_pipeline()
    actions = torch.tensor([[0, 1, 2], [2, 2, 0]])
    out = pipe(start(), actions, num_inference_steps=3, generator=torch.Generator().manual_seed(0))
    assert out.frames.shape == (2, 3, 8, 8, 3) and out.frames.dtype == np.uint8
    again = pipe(start(), actions, num_inference_steps=3, generator=torch.Generator().manual_seed(0))
    assert np.array_equal(out.frames, again.frames)
    pt = pipe(start(), [0, 1], num_inference_steps=2, output_type="pt", generator=torch.Generator().manual_seed(0))
    assert pt.frames.shape == (2, 2, 3, 8, 8) and pt.frames.dtype == torch.float32
    assert pt.frames.abs().max() <= 1


def test_regressor_rollout_is_deterministic_and_feeds_back_its_frames():
    pipe = tiny_pipeline("regressor")
    out = pipe(start(1), [[0, 2]], output_type="pt")
    context = torch.cat([pipe._start_frames(start(1))[:, 1:], out.frames[:, :1]], dim=1)
    with torch.no_grad():
        second = pipe.model(context, torch.tensor([2])).sample.clamp(-1, 1)
    assert torch.allclose(out.frames[:, 1], second, atol=1e-6)


@pytest.mark.parametrize("frames, actions, error, name", [
    (start(), [], ValueError, "actions"),
    (start(), [[0, 5], [1, 1]], ValueError, "actions"),
    (start(), [[0.5], [1.0]], TypeError, "actions"),
    (start(), [[0], [1], [2]], ValueError, "actions"),
    (start()[:, :1], [0], ValueError, "start_frames"),
    (start()[..., :6, :], [0], ValueError, "start_frames"),
    (start().astype(np.float32), [0], TypeError, "start_frames"),
    (torch.zeros(2, 2, 3, 8, 8, dtype=torch.int32), [0], TypeError, "start_frames"),
    ([[0]], [0], TypeError, "start_frames"),
])
def test_bad_inputs_name_the_argument(frames, actions, error, name):
    with pytest.raises(error, match=f"`{name}`"):
        tiny_pipeline()(frames, actions, num_inference_steps=1)


def test_save_and_load_with_the_package(tmp_path):
    pipe = tiny_pipeline()
    expected = pipe(start(), [1, 0], num_inference_steps=2, generator=torch.Generator().manual_seed(0)).frames
    pipe.save_pretrained(tmp_path / "p")
    loaded = WorldModelPipeline.from_pretrained(tmp_path / "p")
    loaded.set_progress_bar_config(disable=True)
    out = loaded(start(), [1, 0], num_inference_steps=2, generator=torch.Generator().manual_seed(0)).frames
    assert np.array_equal(out, expected)
