#!/usr/bin/env python
"""docs/results/conditional_world.md: the action-conditioned world model (issue 17 item 5) and video by temporal
inflation (item 4), from the runs of ``training/run_world_comparison.sh``.

    python training/report_world_model.py --runs runs/world --out docs/results/conditional_world.md

Reads ``<runs>/diffusion``, ``<runs>/regressor`` (``train_world_model.py``), ``<runs>/video_image`` and
``<runs>/video_temporal`` (``train_video_inflation.py``): their ``metrics.json``, ``rollouts.safetensors`` and
``samples.safetensors``. Writes the page, its pictures (``conditional_world_rollouts.png``,
``conditional_world_video.png``) next to it and ``<out>.json`` with every number the page shows. A run that is
missing is said to be missing; no number is typed here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

WORLD_RUNS = ("diffusion", "regressor")
# Optional: the same diffusion model trained with ε-prediction (``--prediction_type epsilon``), kept as an ablation.
OPTIONAL_WORLD_RUNS = ("diffusion_epsilon",)
# dB of next-frame PSNR the true action must gain over the wrong one for the page to say the model uses the action:
# differences below it are within what one seed of sampling noise moves on 128 transitions.
ACTION_MARGIN_DB = 0.5
# The video verdicts' margins: pixel change lower by 5% (relative), feature similarity higher by 0.01.
PIXEL_CHANGE_MARGIN = 0.05
SIMILARITY_MARGIN = 0.01
VIDEO_ROWS = (("video", "inflated video model (temporal layers trained)"),
              ("independent", "image model, each frame sampled independently"),
              ("recorded", "recorded clips (reference)"),
              ("shuffled", "recorded frames shuffled across clips (reference)"))


def read_metrics(folder: Path) -> dict | None:
    path = folder / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _upscale(frames: np.ndarray, factor: int) -> np.ndarray:
    return frames.repeat(factor, axis=-3).repeat(factor, axis=-2)


def strip_grid(rows: list[np.ndarray], labels: list[str], path: Path, factor: int = 3, title: str = "") -> None:
    """A picture of rows of frames (each (F, H, W, 3) uint8), one labelled row each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), 1, figsize=(width * 0.55 + 1.5, len(rows) * 0.7 + 0.4), squeeze=False)
    for ax, row, label in zip(axes[:, 0], rows, labels):
        pad = np.full((width - len(row), *row.shape[1:]), 255, np.uint8)
        ax.imshow(np.concatenate(list(_upscale(np.concatenate([row, pad]), factor)), axis=1))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def world_section(runs: dict, lines: list[str], summary: dict, out: Path) -> None:
    from safetensors.numpy import load_file

    lines += ["## Action-conditioned world model (item 5)", ""]
    present = {name: m for name, m in runs.items() if m is not None}
    for name in WORLD_RUNS:
        if name not in present:
            lines.append(f"- `{name}`: not run (no `metrics.json`).")
    if not present:
        lines.append("")
        return
    first = next(iter(present.values()))
    config = first["config"]
    lines += ["", (f"**Data**: `{first['env_id']}` ({first['frame_shape'][0]}×{first['frame_shape'][1]} RGB frames), "
              f"{first['num_train_episodes']} training episodes of {config['episode_length']} uniformly random "
              f"actions (left, right, forward): {first['num_train_transitions']:,} transitions, "
              f"{first['num_train_frames']:,} frames; {first['num_test_episodes']} held-out episodes (other seeds). "
              f"{config['num_context_frames']} context frames; both models are the same U-Net "
              f"({first['num_parameters']:,} parameters) with the action as a cross-attention token."), "",
              "| model | steps | batch | epochs | training time (min) | parameters |", "|---|---|---|---|---|---|"]
    for name, m in present.items():
        lines.append(f"| {name} | {m['steps']:,} | {m['batch_size']} | {m['epochs']:.2f} | "
                     f"{m['train_seconds_total'] / 60:.1f} | {m['num_parameters']:,} |")
    lines += ["", "### Next frame: true action vs wrong action", "",
              ("One step from recorded frames; the wrong action is (a + 1) mod 3. PSNR in dB, SSIM from "
              "scikit-image, on uint8 frames."), "",
              "| model | transitions | PSNR true | PSNR wrong | SSIM true | SSIM wrong | PSNR gain of the true action |",
              "|---|---|---|---|---|---|---|"]
    for name, m in present.items():
        one = m["evaluation"]["next_frame"]
        gain = one["true_action"]["psnr"] - one["wrong_action"]["psnr"]
        summary[name] = {"next_frame": one, "rollout": m["evaluation"]["rollout"], "psnr_gain": gain,
                         "steps": m["steps"], "train_seconds_total": m["train_seconds_total"]}
        lines.append(f"| {name} | {one['num_transitions']} | {one['true_action']['psnr']:.2f} | "
                     f"{one['wrong_action']['psnr']:.2f} | {one['true_action']['ssim']:.3f} | "
                     f"{one['wrong_action']['ssim']:.3f} | {gain:+.2f} |")
    copy = first["evaluation"]["next_frame"]["copy_last_frame"]
    summary["copy_last_frame"] = copy
    lines.append(f"| copy the last frame (no model) | {first['evaluation']['next_frame']['num_transitions']} | "
                 f"{copy['psnr']:.2f} | – | {copy['ssim']:.3f} | – | – |")
    horizon = len(first["evaluation"]["rollout"]["psnr"])
    shown = [h for h in (1, 2, 4, 8, 12, 16) if h <= horizon]
    lines += ["", f"### Rollout error over 1..{horizon} steps", "",
              ("From the first recorded frames of each held-out episode and its recorded actions; every generated "
              "frame is fed back as context. PSNR (dB) / SSIM at step h."), "",
              "| model | episodes | " + " | ".join(f"h={h}" for h in shown) + " |",
              "|---|---|" + "---|" * len(shown)]
    for name, m in present.items():
        r = m["evaluation"]["rollout"]
        lines.append(f"| {name} | {r['num_episodes']} | " + " | ".join(
            f"{r['psnr'][h - 1]:.2f} / {r['ssim'][h - 1]:.3f}" for h in shown) + " |")
    lines += [""] + world_findings(summary)
    rollouts = {name: load_file(Path(m["pipeline"]).parent / "rollouts.safetensors")
                for name, m in present.items() if (Path(m["pipeline"]).parent / "rollouts.safetensors").is_file()}
    if rollouts:
        k = config["num_context_frames"]
        rows, labels = [], []
        for episode in range(min(3, *(len(r["rollout"]) for r in rollouts.values()))):
            truth = next(iter(rollouts.values()))["truth"][episode]
            rows.append(truth[k:])
            labels.append(f"ep {episode}: recorded")
            for name, r in rollouts.items():
                rows.append(r["rollout"][episode])
                labels.append(f"ep {episode}: {name}")
        picture = out.parent / "conditional_world_rollouts.png"
        strip_grid(rows, labels, picture, title=f"{horizon}-step rollouts from {k} recorded frames "
                                                f"and the recorded actions")
        lines += ["", f"![rollouts next to the recorded frames]({picture.name})", ""]


def world_findings(summary: dict) -> list[str]:
    """The verdicts, computed from the values."""
    lines = []
    copy = summary.get("copy_last_frame")
    for name in (*WORLD_RUNS, *OPTIONAL_WORLD_RUNS):
        if name in summary:
            gain = summary[name]["psnr_gain"]
            uses = gain > ACTION_MARGIN_DB
            line = (f"- {name}: the true action gives {gain:+.2f} dB next-frame PSNR over the wrong one: the model "
                    f"{'uses' if uses else 'does not measurably use'} the action (margin {ACTION_MARGIN_DB} dB).")
            if copy is not None:
                psnr = summary[name]["next_frame"]["true_action"]["psnr"]
                line += (f" Its next frame is {'better' if psnr > copy['psnr'] else 'worse'} than copying the last "
                         f"frame ({psnr:.2f} vs {copy['psnr']:.2f} dB).")
            lines.append(line)
    if all(name in summary for name in WORLD_RUNS):
        d, r = summary["diffusion"]["rollout"]["psnr"], summary["regressor"]["rollout"]["psnr"]
        better = "diffusion" if d[-1] > r[-1] else "regressor"
        lines.append(f"- After {len(d)} steps the {better} rollout is closer to the recording "
                     f"(PSNR {d[-1]:.2f} dB diffusion vs {r[-1]:.2f} dB regressor; at step 1 "
                     f"{d[0]:.2f} vs {r[0]:.2f}).")
    return lines


def video_section(image: dict | None, temporal: dict | None, lines: list[str], summary: dict, out: Path) -> None:
    from safetensors.numpy import load_file

    lines += ["", "## Video by temporal inflation (item 4)", ""]
    if image is None or temporal is None:
        lines.append(f"- image stage: {'done' if image else 'not run'}; temporal stage: "
                     f"{'done' if temporal else 'not run'} (no `metrics.json`).")
        return
    lines += [("The image model (a `UNet2DConditionModel` on single recorded frames) is inflated with diffusers' "
              "`MotionAdapter` + `UNetMotionModel.from_unet2d`; the temporal layers' output projections start at "
              "zero, so the video model starts as the image model on every frame (tested); only the temporal "
              f"layers are trained, on clips of {temporal['frames_per_item']} recorded frames."), "",
              "| stage | steps | batch | training time (min) | parameters | trained parameters |",
              "|---|---|---|---|---|---|"]
    for name, m in (("image (single frames)", image), ("temporal (clips)", temporal)):
        lines.append(f"| {name} | {m['steps']:,} | {m['batch_size']} | {m['train_seconds_total'] / 60:.1f} | "
                     f"{m['num_parameters']:,} | {m['num_trainable_parameters']:,} |")
    scores = temporal["evaluation"]
    summary["video"] = scores
    first = scores["video"]
    lines += ["", (f"{first['num_clips']} clips of {first['num_frames']} frames each; feature similarity = mean "
              "cosine similarity of consecutive frames' EfficientNet-Lite0 features; pixel change = mean |Δ| "
              "between consecutive frames ([0, 1] pixels); FD = Fréchet distance of all frames' features to the "
              "held-out recorded frames (small sets: compare rows, not other pages)."), "",
              "| clips | feature similarity | pixel change | FD of frames |", "|---|---|---|---|"]
    for key, label in VIDEO_ROWS:
        s = scores[key]
        lines.append(f"| {label} | {s['feature_similarity']:.3f} | {s['pixel_change']:.4f} | {s['fd_frames']:.2f} |")
    v, i, rec = scores["video"], scores["independent"], scores["recorded"]
    calmer = v["pixel_change"] < (1 - PIXEL_CHANGE_MARGIN) * i["pixel_change"]
    similar = v["feature_similarity"] > i["feature_similarity"] + SIMILARITY_MARGIN
    lines += ["", (f"- Frame to frame, the video model's clips change "
              f"{'less' if calmer else 'not measurably less'} than independently sampled frames (pixel change "
              f"{v['pixel_change']:.4f} vs {i['pixel_change']:.4f}, margin {PIXEL_CHANGE_MARGIN:.0%}; recorded clips "
              f"{rec['pixel_change']:.4f}), and their feature similarity is "
              f"{'higher' if similar else 'not measurably higher'} ({v['feature_similarity']:.3f} vs "
              f"{i['feature_similarity']:.3f}, margin {SIMILARITY_MARGIN}; recorded clips "
              f"{rec['feature_similarity']:.3f})."),
              (f"- FD of frames: video model {v['fd_frames']:.2f}, independent frames {i['fd_frames']:.2f}, against "
              f"{scores['shuffled']['fd_frames']:.2f} for recorded frames: the image model's frames are "
              f"{'far from' if i['fd_frames'] > 10 * max(scores['shuffled']['fd_frames'], 1e-9) else 'close to'} "
              f"the recorded ones at this training budget, which bounds what the temporal layers can show.")]
    samples_path = out.parent / "conditional_world_video.png"
    samples = Path(temporal["config"]["output_dir"]) / "samples.safetensors"
    if samples.is_file():
        clips = load_file(samples)
        rows, labels = [], []
        for index in range(min(3, len(clips["video"]))):
            for key, label in (("video", "video model"), ("independent", "independent"), ("recorded", "recorded")):
                rows.append(clips[key][index])
                labels.append(f"{index}: {label}")
        strip_grid(rows, labels, samples_path, title="clips: inflated video model, independent frames, recorded")
        lines += ["", f"![video strips]({samples_path.name})"]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs/world")
    parser.add_argument("--out", default="docs/results/conditional_world.md")
    args = parser.parse_args(argv)
    runs_dir, out = Path(args.runs), Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# Conditional generation: world model and video (book §8.7)", "",
             ("Written by `training/report_world_model.py` from the runs of `training/run_world_comparison.sh` "
             "(CPU, one thread each). Every number below is read from the runs' `metrics.json`."), ""]
    summary: dict = {}
    world_runs = {name: read_metrics(runs_dir / name) for name in WORLD_RUNS}
    world_runs.update({name: m for name in OPTIONAL_WORLD_RUNS if (m := read_metrics(runs_dir / name)) is not None})
    world_section(world_runs, lines, summary, out)
    video_section(read_metrics(runs_dir / "video_image"), read_metrics(runs_dir / "video_temporal"), lines, summary,
                  out)
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
