"""evaluation.world_model: the metrics see the action (a model that applies the recorded transition perfectly beats
the wrong action), rollouts are scored per step, and bad recordings are refused."""

import numpy as np
import pytest

from whitebox_hf.data import record_episodes
from whitebox_hf.evaluation.world_model import (
    PSNR_CAP,
    frame_metrics,
    next_frame_metrics,
    rollout_errors,
)


class Oracle:
    """A stand-in pipeline that returns the recorded next frame when given the recorded action (looked up by the
    context frames), and the last context frame otherwise."""

    def __init__(self, recordings):
        self.model = type("M", (), {"config": type("C", (), {"num_actions": 3, "num_context_frames": 2})})()
        self.table = {}
        for frames, actions in zip(recordings.frames, recordings.actions):
            for t in range(1, len(actions)):
                self.table[(frames[t - 1:t + 1].tobytes(), int(actions[t]))] = frames[t + 1]

    def __call__(self, start_frames, actions, num_inference_steps=1, generator=None):
        context, out = np.array(start_frames), []
        for step in range(actions.shape[1]):
            frames = [self.table.get((c.tobytes(), int(a)), c[-1]) for c, a in zip(context, actions[:, step])]
            out.append(np.stack(frames))
            context = np.concatenate([context[:, 1:], out[-1][:, None]], axis=1)
        return type("Out", (), {"frames": np.stack(out, axis=1)})()


def test_true_action_beats_the_wrong_one_for_a_model_that_uses_it():
    recordings = record_episodes(3, 8, seed=0)
    scores = next_frame_metrics(Oracle(recordings), recordings.frames, recordings.actions)
    assert scores["num_transitions"] == 3 * 7
    assert scores["true_action"]["psnr"] == pytest.approx(PSNR_CAP)
    assert scores["true_action"]["ssim"] == pytest.approx(1.0)
    assert scores["wrong_action"]["psnr"] < scores["true_action"]["psnr"] - 3
    rollout = rollout_errors(Oracle(recordings), recordings.frames, recordings.actions, horizon=5)
    assert rollout["psnr"] == pytest.approx([PSNR_CAP] * 5) and rollout["frames"].shape == (3, 5, 24, 24, 3)


def test_frame_metrics_and_bad_inputs():
    a = np.zeros((2, 24, 24, 3), np.uint8)
    b = a.copy()
    b[1] = 255
    m = frame_metrics(a, b)
    assert m["psnr"][0] == PSNR_CAP and m["psnr"][1] == pytest.approx(0.0) and m["mse"][1] == 1.0
    recordings = record_episodes(1, 4, seed=0)
    with pytest.raises(TypeError, match="`frames`"):
        next_frame_metrics(Oracle(recordings), recordings.frames.astype(np.float32), recordings.actions)
    with pytest.raises(ValueError, match="`actions`"):
        next_frame_metrics(Oracle(recordings), recordings.frames, recordings.actions + 3)
    with pytest.raises(ValueError, match="`horizon`"):
        rollout_errors(Oracle(recordings), recordings.frames, recordings.actions, horizon=4)
