"""Gradio Space: full-body motion from the trajectory of a head-mounted device (EgoAllo, book §8.10).

Pick a held-out motion-capture clip (its head trajectory is the input, its body the ground truth) or upload a head
trajectory as CSV or BVH; `whitebox_hf.pipelines.MotionGenerationPipeline` samples the body motion with its
diffusion motion prior (DDIM, MultiDiffusion windows) and refines it by guidance. The estimate is animated beside the
ground truth (when there is one) and offered as a BVH file.

The pipeline is read from a local folder, never from the network: ``build_demo(model_path)``, else
``$WHITEBOX_MOTION_PATH``, else the first of ``./model`` beside this file, the package's bundled
``cmu-motion-from-head``, the repository's ``runs/motion/ours/pipeline`` and ``runs/motion/ours/model``. A folder is
either a saved pipeline (``model_index.json``) or the bare ``MotionPriorModel`` that ``train_motion_prior.py`` saves
(``config.json``), which is wrapped into a pipeline with the skeleton of the run's training clip (`pipeline_from_run`).

    python spaces/motion-from-head/app.py [--model PATH] [--port 7860]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import tempfile
import time
from pathlib import Path

import gradio as gr
import torch

import whitebox_hf  # noqa: F401  (registers the motion prior with the Auto classes diffusers loads it through)
from whitebox_hf.data.fashion_mnist import DataUnavailableError
from whitebox_hf.data.motion import (
    CPF_OFFSET,
    CPF_ROTATION,
    HEAD_INDEX,
    HOW_TO_GET_IT,
    JOINT_NAMES,
    JOINT_PARENTS,
    SKELETON_MAPS,
    TARGET_FPS,
    Y_UP_TO_Z_UP,
    BVHParseError,
    bvh_local_motion,
    bvh_to_clip,
    load_motion_clip,
    read_bvh,
    resample_motion,
)
from whitebox_hf.data.motion_animation import save_motion_gif
from whitebox_hf.data.motion_kinematics import forward_kinematics, head_poses
from whitebox_hf.hub import BUNDLED_DIR
from whitebox_hf.hub.spaces import (
    CONCURRENCY_ENV,
    QUEUE_SIZE_ENV,
    output_file,
    queue_setting,
    whole_number,
)
from whitebox_hf.models.motion_prior import MotionPriorModel, motion_prior_scheduler
from whitebox_hf.pipelines import MotionGenerationPipeline

HERE = Path(__file__).resolve().parent
RUNS = HERE.parents[1] / "runs" / "motion"
ENV_VAR = "WHITEBOX_MOTION_PATH"
BUNDLE = "cmu-motion-from-head"
CANDIDATES = (HERE / "model", BUNDLED_DIR / BUNDLE, RUNS / "ours" / "pipeline", RUNS / "ours" / "model")
HINT = ("train one offline with `bash training/run_motion_comparison.sh` (or `python training/train_motion_prior.py "
        "--config training/configs/motion_prior.yaml --output_dir runs/motion/ours`), which writes "
        "runs/motion/ours/model.")
HELD_OUT_CLIPS = ("01_01", "Boxing_Toes")  # `whitebox_hf.data.motion.DEFAULT_SPLITS["test"]`
TRAIN_CLIP = "01_03"  # the skeleton a bare prior is wrapped with when its run does not name its training clip
GUIDANCE_CHOICES = ("off", "post", "inner_and_post")
DEFAULT_GUIDANCE = "post"  # inner guidance runs a Levenberg-Marquardt solve after every step: slow on a CPU
# The CSV upload: one row per frame at 30 fps, the 16 entries of the 4x4 world head (CPF) pose, row-major.
CSV_COLUMNS = tuple(f"m{row}{column}" for row in range(4) for column in range(4))
RIGID_TOLERANCE = 1e-4  # as `MotionGenerationPipeline`'s own check (`check_rigid_poses`)
MAX_SECONDS = 30.0
MAX_GIF_FRAMES = 60  # longer motions are drawn every n-th frame: matplotlib draws about 10 frames per second
GIF_SIZE = 240

QUEUE_SIZE = 16
CONCURRENCY = 1  # one request at a time: a pipeline's scheduler keeps the timesteps of the call in progress


# -- the model ---------------------------------------------------------------------------------------------------

def resolve_model_path(model_path=None) -> Path:
    """The folder to serve: ``model_path``, else ``$WHITEBOX_MOTION_PATH``, else the first of `CANDIDATES` that
    holds a pipeline (``model_index.json``) or a motion prior (``config.json``)."""
    if model_path is None and os.environ.get(ENV_VAR, "").strip():
        model_path = os.environ[ENV_VAR]
    if model_path is not None and not isinstance(model_path, (str, os.PathLike)):
        raise TypeError(f"`model_path` must be a folder (str or os.PathLike), got {type(model_path).__name__}")
    folders = [Path(model_path)] if model_path is not None else [Path(c) for c in CANDIDATES]
    for folder in folders:
        if (folder / "model_index.json").is_file() or (folder / "config.json").is_file():
            return folder
    raise FileNotFoundError(f"no folder with model_index.json or config.json found (looked in "
                            f"{[str(f) for f in folders]}). Pass model_path=..., set ${ENV_VAR}, or {HINT}")


def pipeline_from_run(model_folder: Path) -> MotionGenerationPipeline:
    """A pipeline around the bare `MotionPriorModel` that ``train_motion_prior.py`` saves in ``<run>/model``: the
    skeleton (bone offsets) of the run's first training clip and its training window, both read from
    ``<run>/metrics.json`` when it is there (else clip `TRAIN_CLIP` and the pipeline's default window)."""
    prior = MotionPriorModel.from_pretrained(model_folder, dtype=torch.float32).eval()
    metrics_path = Path(model_folder).parent / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    clips = metrics.get("train_clips") or [TRAIN_CLIP]
    windows = {"window": int(metrics["window"]), "overlap": int(metrics["window"]) // 4} if "window" in metrics else {}
    try:
        offsets = load_motion_clip(clips[0], fetch=False).offsets
    except DataUnavailableError as error:
        raise FileNotFoundError(f"{model_folder} is a bare motion prior; wrapping it into a pipeline needs the "
                                f"skeleton of its training clip {clips[0]!r}. {error}") from error
    return MotionGenerationPipeline(prior, motion_prior_scheduler(prior.config, "ddim"), offsets=offsets.tolist(),
                                    **windows)


def load_pipeline(folder: Path) -> MotionGenerationPipeline:
    """The pipeline in ``folder``, computed in float32 whatever dtype its weights are stored in (a bundled copy stores
    float16; the up-cast is exact)."""
    folder = Path(folder)
    if (folder / "model_index.json").is_file():
        pipe = MotionGenerationPipeline.from_pretrained(folder, torch_dtype=torch.float32)
    else:
        pipe = pipeline_from_run(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# -- the inputs --------------------------------------------------------------------------------------------------

def check_trajectory(poses: torch.Tensor, source: str, min_frames: int) -> None:
    """Refuse a head trajectory that is not (T, 4, 4), finite and rigid, or shorter than ``min_frames``, with a
    message naming ``source`` and the first bad frame (counted from 1)."""
    if poses.ndim != 3 or tuple(poses.shape[1:]) != (4, 4):
        raise ValueError(f"{source}: head poses must have shape (frames, 4, 4), got {tuple(poses.shape)}")
    finite = torch.isfinite(poses).flatten(1).all(1)
    if not bool(finite.all()):
        raise ValueError(f"{source}: frame {int((~finite).nonzero()[0]) + 1} holds a non-finite number")
    rotation = poses[:, :3, :3].double()
    off_orthonormal = (rotation.transpose(-1, -2) @ rotation - torch.eye(3, dtype=torch.float64)).abs().amax((1, 2))
    off_last_row = (poses[:, 3, :].double() - torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64)).abs().amax(1)
    determinant = torch.linalg.det(rotation)
    for what, bad in (("its last row is not 0 0 0 1", off_last_row > RIGID_TOLERANCE),
                      ("its rotation block is not orthonormal", off_orthonormal > RIGID_TOLERANCE),
                      ("its rotation block is a reflection (determinant < 0)", determinant < 0)):
        if bool(bad.any()):
            frame = int(bad.nonzero()[0])
            raise ValueError(f"{source}: frame {frame + 1} is not a rigid pose: {what} (orthonormality error "
                             f"{float(off_orthonormal[frame]):.3g}, determinant {float(determinant[frame]):.3g})")
    if poses.shape[0] < min_frames:
        raise ValueError(f"{source}: the trajectory is too short: {poses.shape[0]} frames "
                         f"({poses.shape[0] / TARGET_FPS:.2f} s at {TARGET_FPS} fps); the model needs at least "
                         f"{min_frames} frames")


def parse_head_csv(path) -> torch.Tensor:
    """Read a head-trajectory CSV (README "CSV format"): one row per frame at 30 fps, 16 comma-separated numbers,
    the world head (CPF) pose's 4x4 matrix row-major (m00, m01, ..., m33; +Z up, metres); an optional header row that
    is exactly ``m00,...,m33``. Returns (T, 4, 4) float64. Raises ValueError naming the file and line."""
    name = Path(path).name
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except UnicodeDecodeError as error:
        raise ValueError(f"{name}: not UTF-8 text ({error.reason}): not a CSV file") from None
    numbered = [(number, [cell.strip() for cell in row]) for number, row in enumerate(rows, 1)
                if any(cell.strip() for cell in row)]
    if numbered and tuple(numbered[0][1]) == CSV_COLUMNS:
        numbered = numbered[1:]
    if not numbered:
        raise ValueError(f"{name}: no data rows; expected one row of 16 numbers ({','.join(CSV_COLUMNS)}) per frame")
    values = []
    for number, row in numbered:
        if len(row) != len(CSV_COLUMNS):
            raise ValueError(f"{name}:{number}: expected 16 columns (the 4x4 head pose row-major, "
                             f"{CSV_COLUMNS[0]}..{CSV_COLUMNS[-1]}), got {len(row)}")
        try:
            values.append([float(cell) for cell in row])
        except ValueError:
            bad = next(cell for cell in row if not _is_number(cell))
            raise ValueError(f"{name}:{number}: expected numbers, got {bad!r}") from None
    return torch.tensor(values, dtype=torch.float64).reshape(-1, 4, 4)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def write_head_csv(path, poses: torch.Tensor) -> Path:
    """Write (T, 4, 4) head poses in the CSV format `parse_head_csv` reads (with the header row)."""
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        writer.writerows([[f"{v:.6f}" for v in row] for row in poses.reshape(-1, 16).tolist()])
    return path


def own_skeleton_motion(bvh) -> tuple[torch.Tensor, torch.Tensor]:
    """Head poses and joint positions (in `JOINT_NAMES` order) of a BVH on this Space's own 22-joint skeleton (the
    files it offers for download: centimetres, +Y up, see `whitebox_hf.data.motion_bvh`), resampled to 30 fps."""
    if any(bvh.parents[bvh.names.index(name)] != (-1 if parent < 0 else bvh.names.index(JOINT_NAMES[parent]))
           for name, parent in zip(JOINT_NAMES, JOINT_PARENTS)):
        raise ValueError(f"{Path(bvh.path).name}: the joints are named like this Space's skeleton but are connected "
                         "differently")
    rotations, translation = bvh_local_motion(bvh)
    if bvh.motion.shape[0] < 2:
        raise ValueError(f"{Path(bvh.path).name}: the trajectory is too short: 1 frame")
    rotations, translation = resample_motion(rotations, translation, bvh.fps, TARGET_FPS)
    axes = torch.tensor(Y_UP_TO_Z_UP, dtype=torch.float64)
    rotations = axes @ rotations @ axes.T
    translation = 0.01 * translation @ axes.T
    offsets = 0.01 * torch.from_numpy(bvh.offsets) @ axes.T
    order = [bvh.names.index(name) for name in JOINT_NAMES]  # file order (depth first) -> JOINT_NAMES order
    world, positions = forward_kinematics(rotations[:, order], offsets[order], JOINT_PARENTS, translation)
    heads = head_poses(world, positions, HEAD_INDEX, torch.tensor(CPF_OFFSET, dtype=torch.float64),
                       torch.tensor(CPF_ROTATION, dtype=torch.float64))
    return heads, positions


def head_from_bvh(path) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Head poses (T, 4, 4), the file's own joint positions (T, 22, 3, the ground truth) and a description, from a
    BVH on one of the skeletons the data module maps (CMU, the boxing clip's) or on this Space's own 22-joint
    skeleton. The head trajectory is the CPF-like frame of the file's head joint. Raises ValueError (a file that
    does not parse names its line)."""
    name = Path(path).name
    try:
        bvh = read_bvh(path)
    except BVHParseError as error:
        raise ValueError(f"the BVH file does not parse: {str(error).replace(str(path), name)}") from None
    if set(bvh.names) == set(JOINT_NAMES):
        heads, positions = own_skeleton_motion(bvh)
        return heads, positions, f"the 22-joint skeleton of {name}"
    if not any(_bvh_joints(mapping) <= set(bvh.names) for mapping in SKELETON_MAPS.values()):
        raise ValueError(f"{name}: the skeleton matches none of those this Space reads (the CMU and boxing "
                         f"skeletons of the assimp clips, or this Space's own 22 joints {', '.join(JOINT_NAMES)}); "
                         f"its joints are {', '.join(bvh.names[:12])}{' ...' if len(bvh.names) > 12 else ''}")
    try:
        clip = bvh_to_clip(bvh, Path(path).stem)
    except ValueError as error:  # e.g. a single frame, which cannot be resampled
        raise ValueError(f"{name}: {error}") from None
    return clip.head_poses.double(), clip.positions.double(), f"the {clip.skeleton.upper()} skeleton of {name}"


def _bvh_joints(mapping: dict) -> set[str]:
    """The BVH joints a `SKELETON_MAPS` entry reads (a virtual joint names its bone's two ends)."""
    return {entry if isinstance(entry, str) else name for entry in mapping.values()
            for name in ((entry,) if isinstance(entry, str) else entry[:2])}


def held_out_clip(name: str, cache: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Head poses and ground-truth joints of a held-out clip, from the BVH cache (never downloaded here)."""
    if name not in HELD_OUT_CLIPS:
        raise gr.Error(f"Pick one of the held-out clips {', '.join(HELD_OUT_CLIPS)}, got {name!r}.")
    if name not in cache:
        try:
            clip = load_motion_clip(name, fetch=False)
        except DataUnavailableError:
            raise gr.Error("The held-out clips are not on this machine. " + HOW_TO_GET_IT.replace("\n", " ")
                           + " Or upload a head trajectory instead.") from None
        cache[name] = (clip.head_poses.double(), clip.positions.double())
    return cache[name]


# -- the request handler ------------------------------------------------------------------------------------------

def _number(value, label: str) -> float:
    if value is None or isinstance(value, bool) or not math.isfinite(float(value)):
        raise gr.Error(f"{label} must be a finite number, got {value!r}.")
    return float(value)


def make_estimate(pipe: MotionGenerationPipeline, output_dir: Path):
    """The Space's request handler: ``(clip, upload, steps, guidance, floor_height, seed, start_s, duration_s) ->
    (GIF path, BVH path, status)``; bad input raises `gr.Error` with a message for the page."""
    clips: dict = {}
    min_frames = pipe.config.min_frames

    def estimate(clip, upload, steps, guidance, floor_height, seed, start_s, duration_s):
        steps, seed = whole_number(steps, "Steps"), whole_number(seed, "Seed")
        if steps < 1:
            raise gr.Error(f"Steps must be at least 1, got {steps}.")
        if seed < 0:
            raise gr.Error(f"Seed must be ≥ 0, got {seed}.")
        if guidance not in GUIDANCE_CHOICES:
            raise gr.Error(f"Guidance must be one of {', '.join(GUIDANCE_CHOICES)}, got {guidance!r}.")
        floor = _number(floor_height, "Floor height")
        start_s, duration_s = _number(start_s, "Start"), _number(duration_s, "Duration")
        if start_s < 0 or not 0 < duration_s <= MAX_SECONDS:
            raise gr.Error(f"Start must be ≥ 0 s and duration in (0, {MAX_SECONDS:g}] s, got {start_s:g} s and "
                           f"{duration_s:g} s.")
        began = time.perf_counter()
        if upload is not None:
            path = Path(upload if isinstance(upload, (str, os.PathLike)) else upload.name)
            suffix = path.suffix.lower()
            try:
                if suffix == ".csv":
                    poses, truth, source = parse_head_csv(path), None, f"the CSV trajectory {path.name}"
                elif suffix == ".bvh":
                    poses, truth, source = head_from_bvh(path)
                else:
                    raise ValueError(f"{path.name}: upload a .csv or a .bvh file, got a {suffix or 'suffix-less'} "
                                     "file")
                check_trajectory(poses, path.name, 2)
            except (ValueError, OSError) as error:
                raise gr.Error(str(error)) from None
        else:
            poses, truth = held_out_clip(clip, clips)
            source = f"held-out clip {clip}"
        first = round(start_s * TARGET_FPS)
        if first >= poses.shape[0]:
            raise gr.Error(f"Start {start_s:g} s lies beyond the end of {source} ({poses.shape[0] / TARGET_FPS:.2f} "
                           "s).")
        last = min(poses.shape[0], first + round(duration_s * TARGET_FPS))
        poses = poses[first:last]
        truth = None if truth is None else truth[first:last]
        try:
            check_trajectory(poses, source, min_frames)
        except ValueError as error:
            raise gr.Error(f"{error} (from {start_s:g} s, {duration_s:g} s long).") from None
        loaded = time.perf_counter()
        try:
            out = pipe(poses.float(), num_inference_steps=steps, guidance=guidance, floor_height=floor,
                       generator=torch.Generator().manual_seed(seed), output_type="bvh")
        except ValueError as error:  # the pipeline's own checks, worded for its arguments
            raise gr.Error(str(error)) from error
        sampled = time.perf_counter()
        panels = {"estimate": out.joints[0]}
        if truth is not None:
            panels["ground truth"] = truth.float()
        frames = poses.shape[0]
        stride = math.ceil(frames / MAX_GIF_FRAMES)
        gif = output_file(output_dir, suffix=".gif")
        save_motion_gif(gif, panels, fps=TARGET_FPS, size=GIF_SIZE, stride=stride)
        bvh = output_file(output_dir, suffix=".bvh")
        Path(bvh).write_text(out.bvh[0], encoding="utf-8")
        drawn = time.perf_counter()
        error_line = ""
        if truth is not None:
            mpjpe = float((out.joints[0].double() - truth).norm(dim=-1).mean()) * 1000
            error_line = f" MPJPE against the ground truth {mpjpe:.0f} mm."
        status = (f"**{source}**, frames {first + 1}-{last} ({frames} frames, {frames / TARGET_FPS:.2f} s at "
                  f"{TARGET_FPS} fps); {steps} DDIM steps, guidance {guidance}, floor at z = {floor:g} m, seed "
                  f"{seed}.{error_line} Timings: input {loaded - began:.1f} s, sampling {sampled - loaded:.1f} s, "
                  f"animation ({math.ceil(frames / stride)} frames) and BVH {drawn - sampled:.1f} s.")
        return gif, bvh, status

    return estimate


def build_demo(model_path=None, *, max_size: int | None = None, concurrency_limit: int | None = None) -> gr.Blocks:
    """The Gradio `Blocks` of this Space, with the pipeline loaded from a local folder (`resolve_model_path`).

    At most ``max_size`` requests (else ``$WHITEBOX_SPACE_QUEUE_SIZE``, else 16) wait while ``concurrency_limit``
    (else ``$WHITEBOX_SPACE_CONCURRENCY``, else `CONCURRENCY`) run; a request beyond them gets Gradio's "Queue is
    full" answer."""
    queue_size = queue_setting(max_size, "max_size", QUEUE_SIZE_ENV, QUEUE_SIZE)
    concurrency = queue_setting(concurrency_limit, "concurrency_limit", CONCURRENCY_ENV, CONCURRENCY)
    folder = resolve_model_path(model_path)
    pipe = load_pipeline(folder)
    output_dir = Path(tempfile.mkdtemp(prefix="motion_space_"))
    estimate = make_estimate(pipe, output_dir)
    config = pipe.prior.config
    parameters = sum(p.numel() for p in pipe.prior.parameters())
    examples = sorted(str(path) for path in (HERE / "examples").glob("*.csv"))

    with gr.Blocks(title="White-box motion from head pose") as demo:
        gr.Markdown(
            "# Full-body motion from a head trajectory (EgoAllo)\n"
            "`MotionGenerationPipeline` samples body motion with a diffusion motion prior conditioned on the "
            "canonicalised head trajectory, then refines it by guidance (a Levenberg-Marquardt solve with "
            "smoothness and foot-contact terms). "
            f"Model: `{folder.parent.name}/{folder.name}` ({parameters:,} parameters, {config.head_conditioning} "
            f"head conditioning, windows of {pipe.config.window} frames). The documented runs train on one CMU clip "
            "(about 38 s of motion): "
            "expect rough estimates, especially for motions unlike those of the training clip.")
        with gr.Row():
            with gr.Column():
                clip = gr.Dropdown(list(HELD_OUT_CLIPS), value=HELD_OUT_CLIPS[0], label="Held-out clip",
                                   elem_id="clip")
                upload = gr.File(label="…or upload a head trajectory (.csv: 16 numbers per frame, the 4×4 head pose "
                                 "row-major at 30 fps; .bvh: the file's head joint) — used instead of the clip",
                                 file_types=[".csv", ".bvh"], type="filepath", elem_id="upload")
                if examples:
                    gr.Examples(examples=examples, inputs=upload, label="Head trajectories (CSV)")
                with gr.Row():
                    start = gr.Number(value=0.0, minimum=0, label="Start (s)", elem_id="start")
                    duration = gr.Number(value=4.0, minimum=0.1, maximum=MAX_SECONDS, label="Duration (s)",
                                         elem_id="duration")
                steps = gr.Slider(1, 50, value=30, step=1, label="DDIM steps", elem_id="steps")
                guidance = gr.Radio(list(GUIDANCE_CHOICES), value=DEFAULT_GUIDANCE, elem_id="guidance",
                                    label="Guidance (inner_and_post also guides every step: slow on a CPU)")
                floor = gr.Number(value=0.0, label="Floor height (z of the floor, m)", elem_id="floor")
                seed = gr.Number(value=0, precision=0, minimum=0, maximum=2**32 - 1, label="Seed", elem_id="seed")
                button = gr.Button("Estimate body motion", variant="primary", elem_id="estimate")
            with gr.Column():
                animation = gr.Image(type="filepath", label="Estimate beside the ground truth", elem_id="animation")
                download = gr.File(label="BVH", elem_id="download")
                status = gr.Markdown(elem_id="status")
        button.click(estimate, inputs=[clip, upload, steps, guidance, floor, seed, start, duration],
                     outputs=[animation, download, status], api_name="estimate")
    return demo.queue(default_concurrency_limit=concurrency, max_size=queue_size)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help=f"pipeline or prior folder (default: ${ENV_VAR} or the list)")
    parser.add_argument("--port", type=int, default=None)
    arguments = parser.parse_args()
    build_demo(arguments.model).launch(server_port=arguments.port)
