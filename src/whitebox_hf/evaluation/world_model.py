"""Evaluation of action-conditioned world models (`WorldModelPipeline`) against recorded environment frames.

* `next_frame_metrics`: one step from the recorded past frames, with the **true** action and with a **wrong** one
  (``(a + 1) mod num_actions``, a fixed other action), PSNR and SSIM against the recorded next frame. A model that
  uses the action scores higher with the true action; one that ignores it scores the same. The "copy the last frame"
  predictor is reported as the floor that needs no model.
* `rollout_errors`: from the first ``k`` recorded frames of an episode and its recorded actions, an autoregressive
  rollout of ``horizon`` steps; PSNR, SSIM and MSE of step h against the recorded frame h, averaged over episodes,
  for h = 1 .. horizon.

* `temporal_consistency`: for generated clips (the inflated video model vs frames sampled independently),
  frame-to-frame feature similarity, pixel change, and the Fréchet distance of their frames to recorded ones.

PSNR and SSIM are scikit-image's (``skimage.metrics``, uint8 frames, ``data_range=255``, SSIM over the RGB channels
with its default 7×7 window), computed per frame and averaged.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

__all__ = ["PSNR_CAP", "frame_metrics", "next_frame_metrics", "rollout_errors", "temporal_consistency"]

PSNR_CAP = 20 * float(np.log10(255.0))  # dB: an error of one grey level everywhere


def _check_recordings(frames, actions, num_actions: int) -> None:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 5 or frames.shape[-1] != 3:
        raise TypeError(f"`frames` must be uint8 (E, T + 1, H, W, 3) recordings, got "
                        f"{type(frames).__name__} {getattr(frames, 'dtype', '')} {getattr(frames, 'shape', '')}")
    if (not isinstance(actions, np.ndarray) or actions.dtype.kind not in "iu"
            or actions.shape != (frames.shape[0], frames.shape[1] - 1)):
        raise ValueError(f"`actions` must be integer (E, T) = {(frames.shape[0], frames.shape[1] - 1)} ids, got "
                         f"{getattr(actions, 'dtype', type(actions).__name__)} {getattr(actions, 'shape', '')}")
    if actions.min() < 0 or actions.max() >= num_actions:
        raise ValueError(f"`actions` must be ids in [0, {num_actions}), got range [{actions.min()}, {actions.max()}]")


def frame_metrics(predicted: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame ``psnr`` (dB), ``ssim`` and ``mse`` (on [0, 1] pixels) of uint8 ``(N, H, W, 3)`` frames."""
    if predicted.shape != target.shape or predicted.dtype != np.uint8 or target.dtype != np.uint8:
        raise ValueError(f"`predicted` and `target` must be uint8 frames of one shape, got {predicted.dtype} "
                         f"{predicted.shape} and {target.dtype} {target.shape}")
    psnr, ssim = [], []
    for p, t in zip(predicted, target):
        # An exact frame has infinite PSNR; cap it at the PSNR of one grey level of error, so means stay finite.
        psnr.append(PSNR_CAP if np.array_equal(p, t) else min(peak_signal_noise_ratio(t, p, data_range=255), PSNR_CAP))
        ssim.append(structural_similarity(t, p, data_range=255, channel_axis=-1))
    mse = ((predicted.astype(np.float64) - target.astype(np.float64)) / 255.0) ** 2
    return {"psnr": np.array(psnr), "ssim": np.array(ssim), "mse": mse.mean(axis=(1, 2, 3))}


def _summary(metrics: dict[str, np.ndarray]) -> dict[str, float]:
    return {key: float(value.mean()) for key, value in metrics.items()}


def next_frame_metrics(pipe, frames: np.ndarray, actions: np.ndarray, max_transitions: int = 0,
                       num_inference_steps: int = 20, seed: int = 0, batch_size: int = 256) -> dict:
    """One-step PSNR/SSIM with the true and a wrong action (see the module docstring) over the transitions of
    the recordings (every ``t >= k - 1`` of every episode; the first ``max_transitions`` of them when > 0).

    Returns:
        ``{"true_action": {psnr, ssim, mse}, "wrong_action": {...}, "copy_last_frame": {...},
        "num_transitions": n}``.
    """
    config = pipe.model.config
    _check_recordings(frames, actions, config.num_actions)
    k = config.num_context_frames
    index = [(e, t) for e in range(frames.shape[0]) for t in range(k - 1, actions.shape[1])]
    if max_transitions:
        index = index[:max_transitions]
    context = np.stack([frames[e, t - k + 1:t + 1] for e, t in index])
    target = np.stack([frames[e, t + 1] for e, t in index])
    true = np.array([actions[e, t] for e, t in index], dtype=np.int64)
    wrong = (true + 1) % config.num_actions
    results = {"num_transitions": len(index)}
    for name, chosen in (("true_action", true), ("wrong_action", wrong)):
        generator = torch.Generator().manual_seed(seed)  # the same noise for both, so only the action differs
        predicted = np.concatenate([
            pipe(context[i:i + batch_size], torch.from_numpy(chosen[i:i + batch_size, None]),
                 num_inference_steps=num_inference_steps, generator=generator).frames[:, 0]
            for i in range(0, len(index), batch_size)])
        results[name] = _summary(frame_metrics(predicted, target))
    results["copy_last_frame"] = _summary(frame_metrics(context[:, -1], target))
    return results


def rollout_errors(pipe, frames: np.ndarray, actions: np.ndarray, horizon: int = 16, num_inference_steps: int = 20,
                   seed: int = 0, max_episodes: int = 0) -> dict:
    """PSNR/SSIM/MSE of an autoregressive rollout at steps 1 .. ``horizon`` (see the module docstring).

    Returns:
        ``{"psnr": [horizon floats], "ssim": [...], "mse": [...], "num_episodes": E, "frames": uint8 (E, horizon,
        H, W, 3) rollouts}``.

    Raises:
        ValueError: ``horizon`` below 1 or longer than the recordings allow after the k start frames.
    """
    config = pipe.model.config
    _check_recordings(frames, actions, config.num_actions)
    k = config.num_context_frames
    if isinstance(horizon, bool) or not isinstance(horizon, int) or not 1 <= horizon <= frames.shape[1] - k:
        raise ValueError(f"`horizon` must be an integer in [1, {frames.shape[1] - k}] (the recorded frames after "
                         f"the {k} start frames), got {horizon!r}")
    if max_episodes:
        frames, actions = frames[:max_episodes], actions[:max_episodes]
    out = pipe(frames[:, :k], torch.from_numpy(actions[:, k - 1:k - 1 + horizon].astype(np.int64)),
               num_inference_steps=num_inference_steps, generator=torch.Generator().manual_seed(seed))
    truth = frames[:, k:k + horizon]
    per_step = [frame_metrics(out.frames[:, h], truth[:, h]) for h in range(horizon)]
    return {key: [float(m[key].mean()) for m in per_step] for key in ("psnr", "ssim", "mse")} | {
        "num_episodes": int(frames.shape[0]), "frames": out.frames}


def temporal_consistency(clips: np.ndarray, reference_frames: np.ndarray, network=None, image_size: int = 96,
                         batch_size: int = 128) -> dict:
    """Temporal consistency of clips and the quality of their frames.

    * ``feature_similarity``: mean cosine similarity of consecutive frames' EfficientNet-Lite0 features (1280-d,
      pooled; images resized to ``image_size``), the frame-to-frame feature similarity of VideoLDM/AnimateDiff
      evaluations; 1 for a still video.
    * ``pixel_change``: mean absolute change between consecutive frames, on [0, 1] pixels.
    * ``fd_frames``: the Fréchet distance (`whitebox_hf.evaluation.frechet.frechet_distance`) between the features
      of all the clips' frames and those of ``reference_frames`` (the recorded frames; same network and size).

    Args:
        clips: uint8 ``(N, F, H, W, 3)``, F >= 2.
        reference_frames: uint8 ``(M, H, W, 3)``, M >= 2.
        network: an `EfficientNetLite0` to reuse (loaded offline when None).
    """
    from .efficientnet_lite import load_efficientnet_lite0
    from .frechet import frechet_distance

    if not isinstance(clips, np.ndarray) or clips.dtype != np.uint8 or clips.ndim != 5 or clips.shape[1] < 2:
        raise ValueError(f"`clips` must be uint8 (N, F >= 2, H, W, 3), got {getattr(clips, 'dtype', type(clips))} "
                         f"{getattr(clips, 'shape', '')}")
    if (not isinstance(reference_frames, np.ndarray) or reference_frames.dtype != np.uint8
            or reference_frames.ndim != 4):
        raise ValueError(f"`reference_frames` must be uint8 (M, H, W, 3), got "
                         f"{getattr(reference_frames, 'dtype', type(reference_frames))} "
                         f"{getattr(reference_frames, 'shape', '')}")
    network = network or load_efficientnet_lite0(image_size=image_size)

    def features(frames: np.ndarray) -> torch.Tensor:
        images = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
        with torch.no_grad():
            return torch.cat([network.pooled_features(network.preprocess(images[i:i + batch_size], image_size))
                              for i in range(0, len(images), batch_size)])

    n, f = clips.shape[:2]
    clip_features = features(clips.reshape(n * f, *clips.shape[2:])).view(n, f, -1)
    similarity = torch.nn.functional.cosine_similarity(clip_features[:, 1:], clip_features[:, :-1], dim=-1)
    change = np.abs(np.diff(clips.astype(np.float64) / 255.0, axis=1)).mean()
    return {"feature_similarity": float(similarity.mean()), "pixel_change": float(change),
            "fd_frames": float(frechet_distance(clip_features.flatten(0, 1), features(reference_frames))),
            "num_clips": int(n), "num_frames": int(f)}
