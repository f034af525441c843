#!/usr/bin/env python
"""Evaluate the Cupid runs (issue 15, item 6) on held-out renders into docs/results/cupid.md, its JSON and a picture.

    python training/report_cupid.py                                   # runs under runs/cupid/{flow,pose_regression}
    python training/report_cupid.py --runs_dir /tmp/cupid --num_items 16 --output /tmp/cupid/cupid.md
    python training/report_cupid.py --num_items 32 --multi_view_views 3   # (d) with 3 views; --no-known_camera skips

Each run folder (``training/train_cupid_flow.py``) holds ``metrics.json`` and ``pipeline/`` (``flow``: Cupid stage 1)
or ``model/`` (``pose_regression``: baseline (c)); an absent run is listed as such. Both are scored by
`whitebox_hf.evaluation.cupid` on view 0 of ``--num_items`` renders evenly spaced over ``--split`` (default: the
**test** split, which training never scored) of the renders the runs were trained with (their ``num_per_category`` /
``data_seed`` / ``num_views`` / ``render_size``, read from ``metrics.json``): rotation error (median, share below
5° / 15°), translation and focal error, volumetric IoU of the generated occupancy in the canonical frame, and pose
grounding — the true shape rendered at the predicted camera against the input (silhouette IoU, PSNR), and the
generated shape at its own camera. An "oracle" row scores the true camera with the true voxels, the ceiling the
voxel resolution leaves. Stage 2 (``appearance``: pose-aligned, ``appearance_global``: global image tokens only,
Table 8.14's baseline; ``model/`` folders) is scored on its own, on the true voxels and camera of the same renders
(`evaluate_appearance_model`): input-view PSNR of the coloured voxels, next to the exact colours' ceiling and a flat
grey floor. Beyond the released code, from the same flow run: (d) multi-view against single view
(``--multi_view_views`` views of each item, generated each alone and together by the pipeline's multi-view
approximation; rotation error per view and geometry IoU) and known cameras (geometry IoU with the true camera given,
UV channels inpainted, against without; ``--no-known_camera`` skips it). The stage-1 runs are also scored on CGAL's
sample meshes rendered from random cameras (`whitebox_hf.data.load_cgal_renders`: the runs' image size and views,
the procedural renders' cameras and shading; occupancy targets from the meshes' winding numbers; ``--cgal_meshes``,
``--cgal_max_faces``, ``--no-cgal``). Rows the package cannot produce yet are listed as not built. Every number is computed here or read from a run's ``metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = {"flow": "(a) Cupid stage 1: pose by PnP on the generated UV cube",
        "flow_dense": "(a′) stage 1 with a dense UV cube (every voxel carries its projection; this package's variant)",
        "flow_pose_encoder": "(a″) stage 1 with the frozen image encoder of a pose regressor (trained 10 epochs "
                             "first, run pose_encoder), as Cupid freezes a pretrained encoder",
        "pose_regression": "(c) direct pose regression (same CRATE encoder + MLP → R, t, f)"}
APPEARANCE_RUNS = {"appearance": "(a) stage 2, pose-aligned conditioning (features at the voxels' projections)",
                   "appearance_global": "(b) stage 2 without pose-aligned conditioning (global image tokens only, "
                                        "Table 8.14's baseline)"}
# The stage-1 flows (a `CupidPipeline` under pipeline/); the multi-view, known-camera and picture sections use the
# first one present.
FLOW_RUNS = ("flow", "flow_dense", "flow_pose_encoder")
NOT_BUILT = ()  # (row, why) pairs the package cannot produce yet
CGAL_LABEL = "CGAL meshes rendered from random cameras"
NUM_PICTURES = 4


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and (math.isnan(value) or math.isinf(value))):
        return "—" if value is None or math.isnan(value) else "∞"
    return f"{value:.{digits}f}"


def _pct(value) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs_dir", default="runs/cupid")
    parser.add_argument("--output", default="docs/results/cupid.md")
    parser.add_argument("--split", default="test", choices=("validation", "test"))
    parser.add_argument("--num_items", type=int, default=64)
    parser.add_argument("--sample_steps", type=int, default=25)
    parser.add_argument("--guidance_scale", type=float, default=-1.0,
                        help="the flow's guidance scale g (default: the run's sample_guidance_scale)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_threads", type=int, default=1)
    parser.add_argument("--multi_view_views", type=int, default=None,
                        help="views per item for row (d), multi-view vs single view (default: 3, or the renders' "
                             "num_views if fewer; 0 skips it; at most the renders' num_views)")
    parser.add_argument("--known_camera", action=argparse.BooleanOptionalAction, default=True,
                        help="score the geometry with the true camera given against without")
    parser.add_argument("--cgal", action=argparse.BooleanOptionalAction, default=True,
                        help="score the stage-1 runs on CGAL's sample meshes rendered from random cameras")
    parser.add_argument("--cgal_meshes", nargs="*", default=None,
                        help="CGAL mesh names (default: every readable, watertight one within the face counts)")
    parser.add_argument("--cgal_min_faces", type=int, default=500)
    parser.add_argument("--cgal_max_faces", type=int, default=20_000,
                        help="the exact (winding-number) occupancy labels cost about 1 ms per face at 32³")
    parser.add_argument("--cgal_num_items", type=int, default=None, help="meshes scored (default: all)")
    args = parser.parse_args(argv)
    if args.num_items < 1:
        parser.error(f"--num_items must be >= 1, got {args.num_items}")
    if args.sample_steps < 1:
        parser.error(f"--sample_steps must be >= 1, got {args.sample_steps}")
    if args.batch_size < 1:
        parser.error(f"--batch_size must be >= 1, got {args.batch_size}")
    if args.cgal_num_items is not None and args.cgal_num_items < 1:
        parser.error(f"--cgal_num_items must be >= 1, got {args.cgal_num_items}")
    if args.multi_view_views is not None and (args.multi_view_views == 1 or args.multi_view_views < 0):
        parser.error(f"--multi_view_views must be 0 (skip) or >= 2, got {args.multi_view_views}")
    return args


def _extension_lines(results: dict) -> list[str]:
    """The section of rows beyond the released code: (d) multi-view vs single view, and known cameras."""
    multi, known = results.get("multi_view"), results.get("known_camera")
    if multi is None and known is None:
        return []
    lines = ["", "## Beyond the released code: multi-view and known cameras", "",
             "Same flow run, sampler and noise as row (a). **(d) Multi-view** is the spec's *approximation* (Cupid's "
             "paper shares one object across views in a joint model; its released code has no multi-view path): the "
             "views are sampled together, their occupancy velocities averaged at every step (one shared object), each "
             "view keeping its own UV channels and PnP pose; it is compared with the same views generated one at a "
             "time. **Known camera**: the view's true camera is given and the u, v channels are inpainted with the "
             "voxels' projection during sampling (RePaint-style); the pose is then exact by construction and only the "
             "geometry is compared. Rows are (item, view) pairs; a failed PnP counts as 180° and IoU 0 (a failed "
             "multi-view call fails all its views).", "",
             "| row | views per item | (item, view) rows | rot. median | < 5° | < 15° | rot. median per view | "
             "PnP failures | IoU (canonical) | eval time |", "|---|---|---|---|---|---|---|---|---|---|"]

    def row(label, summary, views, seconds, pose=True):
        per_view = " / ".join(f"{v:.1f}°" for v in summary["rotation_median_per_view_deg"])
        return (f"| {label} | {views} | {summary['num_rows']} | "
                + (f"{_fmt(summary['rotation_error_median_deg'], 1)}° | {_pct(summary['rotation_within_5deg'])} | "
                   f"{_pct(summary['rotation_within_15deg'])} | {per_view} | " if pose
                   else "given | given | given | given | ")
                + f"{summary['failures']} | {_fmt(summary['volumetric_iou'])} | "
                + ("—" if seconds is None else f"{seconds:.0f} s") + " |")

    if multi is not None:
        views = multi["num_views"]
        lines.append(row("(d) single view: each view alone", multi["single"], views, None))
        lines.append(row("(d) multi-view approximation: shared occupancy velocity, pose per view", multi["multi"],
                         views, multi["eval_seconds"]))
    if known is not None:
        lines.append(row("known camera: without (pose by PnP)", known["without"], 1, None))
        lines.append(row("known camera: with the true camera (UV inpainted)", known["with"], 1,
                         known["eval_seconds"], pose=False))
        lines += ["", f"Known camera: IoU {_fmt(known['without']['volumetric_iou'])} without → "
                  f"{_fmt(known['with']['volumetric_iou'])} with the camera, on {known['num_items']} items."]
    return lines


def _portable_arg(arg: str) -> str:
    """A command-line argument as the page shows it: a path under the repository relative to it, another absolute
    path by its last part only (the page names no machine's folders)."""
    if os.path.isabs(arg):
        absolute = os.path.abspath(arg)
        return os.path.relpath(absolute, ROOT) if absolute.startswith(str(ROOT) + os.sep) else Path(arg).name
    return arg


def _data_key(metrics: dict) -> tuple:
    return (metrics["num_per_category"], metrics["data_seed"], metrics["num_views"], metrics["render_size"],
            metrics["cube_resolution"])


def load_runs(runs_dir: Path, names=RUNS) -> dict:
    """The runs ``names`` present under ``runs_dir``: name → metrics.json; they must share their data settings."""
    runs = {}
    for name in names:
        path = runs_dir / name / "metrics.json"
        if path.is_file():
            runs[name] = json.loads(path.read_text())
    keys = {_data_key(m) for m in runs.values()}
    if len(keys) > 1:
        raise ValueError(f"the runs were trained on different data (num_per_category, data_seed, num_views, "
                         f"render_size, cube_resolution): {sorted(keys)}")
    return runs


def oracle_rows(split, targets, items, extent):
    """The true camera and the true voxels of each item: the metrics' ceiling."""
    from whitebox_hf.evaluation.cupid import _score_items

    cameras = [(targets["intrinsics"][i, 0], targets["rotations"][i, 0], targets["translations"][i, 0]) for i in items]
    occupancies = [targets["occupancy"][i].bool() for i in items]
    return _score_items(split, targets, items, 0, cameras, occupancies, extent, with_geometry=True)


def picture(pipeline, split, rows, path: Path, guidance_scale, steps, seed) -> None:
    """Per pictured item: the input, the pipeline's overlay at the recovered camera, the generated voxels
    re-rendered at that camera, and seen from a new view (90° further round the vertical axis)."""
    import numpy as np
    import roma
    import torch
    from PIL import Image

    from whitebox_hf.evaluation.cupid import occupancy_sdf, render_at_camera

    extent = pipeline.config.extent
    tiles = []
    for row in [r for r in rows if not r["failed"]][:NUM_PICTURES]:
        item = row["item"]
        image = torch.from_numpy(np.asarray(split[item]["images"][0], dtype=np.float32) / 255.0).permute(2, 0, 1)
        out = pipeline(image[None], generator=[torch.Generator().manual_seed(seed + item)],
                       num_inference_steps=steps, guidance_scale=guidance_scale, output_type="latent")
        occupied = out.shapes[0][0] > out.thresholds[0]
        k, r, t = out.intrinsics[0], out.rotations[0], out.translations[0]
        size = image.shape[-1]
        sdf = occupancy_sdf(occupied, extent)
        same = render_at_camera(sdf, k, r, t, size)["rgb"]
        turn = roma.rotvec_to_rotmat(torch.tensor([0.0, math.pi / 2, 0.0], dtype=torch.float64))
        novel = render_at_camera(sdf, k, r @ turn, t, size)["rgb"]
        strip = [np.asarray(split[item]["images"][0], dtype=np.uint8), np.asarray(out.overlays[0]),
                 (same.numpy() * 255).round().astype(np.uint8), (novel.numpy() * 255).round().astype(np.uint8)]
        tiles.append(np.concatenate(strip, axis=1))
    if tiles:
        Image.fromarray(np.concatenate(tiles, axis=0)).resize(
            (tiles[0].shape[1] * 2, len(tiles) * tiles[0].shape[0] * 2), Image.NEAREST).save(path)


def cgal_section(runs: dict, runs_dir: Path, args, pipelines: dict, guidance: dict, resolution: int,
                 render_size: int, num_views: int, data_seed: int, cgal_renders) -> dict:
    """Score the stage-1 runs (the flows' pipelines, already loaded, with their guidance scales, and the pose
    regressor) on view 0 of the CGAL
    renders (`load_cgal_renders` with the runs' image size and views; ``cgal_renders`` in tests): the same metrics as
    the held-out procedural renders, the occupancy targets the meshes' winding numbers. Returns the summaries, the
    meshes scored and skipped, and the time, or ``{"unavailable": why}``."""
    from whitebox_hf.data import DataUnavailableError
    from whitebox_hf.evaluation.cupid import (
        cupid_targets,
        evaluate_cupid_pipeline,
        evaluate_pose_regressor,
        summarize_cupid_scores,
    )
    from whitebox_hf.models.cupid.pose_regression import CupidPoseRegressionModel

    start = time.time()
    if resolution & (resolution - 1):
        return {"unavailable": f"the runs' cube resolution {resolution} is not a power of two, which the meshes' "
                               "exact occupancy labels (grid_occupancy) need"}
    cache_file = None
    if cgal_renders is None:
        from whitebox_hf.data import default_cache_dir
        from whitebox_hf.data.cgal_renders import load_cgal_renders

        try:
            cgal_renders = load_cgal_renders(names=args.cgal_meshes, num_views=num_views, size=render_size,
                                             seed=data_seed, min_faces=args.cgal_min_faces,
                                             max_faces=args.cgal_max_faces)
        except DataUnavailableError as error:
            return {"unavailable": str(error).splitlines()[0]}
        cache_file = (Path(default_cache_dir()) / "cupid-targets" /
                      f"report_cgal_{Path(cgal_renders.cache_files[0]['filename']).parent.name}_res{resolution}"
                      ".safetensors")
    from whitebox_hf.data.cgal_renders import skipped_cgal_meshes

    targets = cupid_targets({"cgal": cgal_renders}, resolution, 2.0, cache_file)["cgal"]
    targets_seconds = time.time() - start
    names = list(cgal_renders["name"])
    result = {"meshes": names, "skipped": skipped_cgal_meshes(cgal_renders), "runs": {},
              "targets_seconds": targets_seconds}
    rows = []
    for name in runs:
        begin = time.time()
        if name in FLOW_RUNS:
            summary, rows = evaluate_cupid_pipeline(pipelines[name], cgal_renders, targets,
                                                    max_items=args.cgal_num_items,
                                                    num_inference_steps=args.sample_steps, guidance_scale=guidance[name],
                                                    seed=args.seed, batch_size=args.batch_size)
        else:
            model = CupidPoseRegressionModel.from_pretrained(str(runs_dir / name / "model"))
            summary, rows = evaluate_pose_regressor(model, cgal_renders, targets, max_items=args.cgal_num_items,
                                                    batch_size=args.batch_size)
        summary["eval_seconds"] = time.time() - begin
        summary["per_mesh_rotation_deg"] = {names[row["item"]]: row["rotation_error_deg"] for row in rows}
        result["runs"][name] = summary
    if rows:
        result["oracle"] = summarize_cupid_scores(oracle_rows(cgal_renders, targets, [r["item"] for r in rows], 2.0))
    result["seconds"] = time.time() - start
    return result


def main(argv=None, renders=None, cgal_renders=None) -> dict:
    """Write the page. ``renders`` (tests) replaces `load_shape_renders`' data set, ``cgal_renders``
    `load_cgal_renders`'."""
    import torch

    from whitebox_hf import CupidPipeline
    from whitebox_hf.evaluation.cupid import (
        condition_effect,
        cupid_targets,
        evaluate_cupid_known_camera,
        evaluate_cupid_multiview,
        evaluate_cupid_pipeline,
        evaluate_pose_regressor,
        summarize_cupid_scores,
    )
    from whitebox_hf.models.cupid.pose_regression import CupidPoseRegressionModel

    args = parse_args(argv)
    given_renders = renders  # None: each group of runs loads the renders it was trained on
    torch.set_num_threads(args.num_threads)
    runs_dir, output = Path(args.runs_dir), Path(args.output)
    runs = load_runs(runs_dir)
    appearance_runs = load_runs(runs_dir, APPEARANCE_RUNS)
    if not runs and not appearance_runs:
        raise SystemExit(f"no Cupid run under {runs_dir} (expected "
                         f"{', '.join(f'{n}/metrics.json' for n in (*RUNS, *APPEARANCE_RUNS))}): "
                         "run training/run_cupid_comparison.sh first")
    first = next(iter(runs.values())) if runs else next(iter(appearance_runs.values()))
    num_per_category, data_seed, num_views, render_size, resolution = _data_key(first)
    multi_view_views = min(3, num_views) if args.multi_view_views is None else args.multi_view_views
    if multi_view_views > num_views:
        raise SystemExit(f"--multi_view_views {multi_view_views} exceeds the renders' {num_views} views")
    cache_file = None
    if renders is None:
        from whitebox_hf.data import default_cache_dir
        from whitebox_hf.data.shape_renders import load_shape_renders

        renders = load_shape_renders(num_per_category=num_per_category, seed=data_seed, num_views=num_views,
                                     size=render_size)
        cache_file = (Path(default_cache_dir()) / "cupid-targets" /
                      f"report_{args.split}_n{num_per_category}_seed{data_seed}_views{num_views}_size{render_size}_"
                      f"res{resolution}.safetensors")
    split = renders[args.split]
    targets = cupid_targets({args.split: split}, resolution, 2.0, cache_file)[args.split]

    results = {"split": args.split, "num_items_asked": args.num_items, "sample_steps": args.sample_steps,
               "runs": {}, "data": {"num_per_category": num_per_category, "data_seed": data_seed,
                                    "num_views": num_views, "render_size": render_size, "cube_resolution": resolution}}
    pipeline, pipeline_rows, guidance, rows = None, None, None, []
    pipelines, guidances = {}, {}
    for name, metrics in runs.items():
        start = time.time()
        if name in FLOW_RUNS:
            pipelines[name] = CupidPipeline.from_pretrained(str(runs_dir / name / "pipeline"))
            guidances[name] = args.guidance_scale if args.guidance_scale >= 0 else metrics.get("sample_guidance_scale")
            summary, rows = evaluate_cupid_pipeline(pipelines[name], split, targets, max_items=args.num_items,
                                                    num_inference_steps=args.sample_steps,
                                                    guidance_scale=guidances[name], seed=args.seed,
                                                    batch_size=args.batch_size)
            if pipeline is None:
                pipeline, pipeline_rows, guidance = pipelines[name], rows, guidances[name]
            summary["guidance_scale"] = guidances[name]
            summary["condition_effect"] = condition_effect(pipelines[name], split, targets, max_items=args.num_items,
                                                           seed=args.seed)
        else:
            model = CupidPoseRegressionModel.from_pretrained(str(runs_dir / name / "model"))
            summary, rows = evaluate_pose_regressor(model, split, targets, max_items=args.num_items,
                                                    batch_size=args.batch_size)
        summary["eval_seconds"] = time.time() - start
        summary["per_category_rotation_median_deg"] = _per_category(rows)
        results["runs"][name] = {"training": metrics, "evaluation": summary}
    if rows:
        items = [row["item"] for row in rows]  # every run scores the same (non-empty) items
        results["oracle"] = summarize_cupid_scores(oracle_rows(split, targets, items, 2.0))
    if pipeline is not None and multi_view_views >= 2:
        start = time.time()
        summary, _ = evaluate_cupid_multiview(pipeline, split, targets, max_items=args.num_items,
                                              num_views=multi_view_views, num_inference_steps=args.sample_steps,
                                              guidance_scale=guidance, seed=args.seed)
        results["multi_view"] = dict(summary, eval_seconds=time.time() - start)
    if pipeline is not None and args.known_camera:
        start = time.time()
        summary, _ = evaluate_cupid_known_camera(pipeline, split, targets, max_items=args.num_items,
                                                 num_inference_steps=args.sample_steps, guidance_scale=guidance,
                                                 seed=args.seed, batch_size=args.batch_size)
        results["known_camera"] = dict(summary, eval_seconds=time.time() - start)
    if runs and args.cgal:
        results["cgal"] = cgal_section(runs, runs_dir, args, pipelines, guidances, resolution, render_size,
                                       num_views, data_seed, cgal_renders)
    results["appearance_runs"] = appearance_section(appearance_runs, runs_dir, args, given_renders,
                                                    (split, targets) if not runs or _data_key(
                                                        next(iter(appearance_runs.values()), first)) == _data_key(first)
                                                    else None)
    if pipelines and appearance_runs:
        # A shape's split is a hash of its instance seed (`shape_split_of`), so for the same data seed the stage-2
        # runs' training shapes (fewer per category) are a subset of the stage-1 runs' and their test split is held
        # out from both: only the seed, the image size and the cube resolution must agree.
        stage2_key = _data_key(next(iter(appearance_runs.values())))
        same = [stage2_key[i] == _data_key(first)[i] for i in (1, 3, 4)]
        results["end_to_end"] = end_to_end_section(pipelines, guidances, appearance_runs, runs_dir, args, split,
                                                   targets, same_data=all(same))

    output.parent.mkdir(parents=True, exist_ok=True)
    picture_path = output.with_name(output.stem + "_examples.png")
    if pipeline is not None:
        picture(pipeline, split, pipeline_rows, picture_path, guidance, args.sample_steps, args.seed)
    output.with_suffix(".json").write_text(json.dumps(results, indent=2))
    output.write_text(render_page(results, picture_path if pipeline is not None else None, argv))
    print(f"wrote {output}")
    return results


def appearance_section(appearance_runs: dict, runs_dir: Path, args, renders, shared) -> dict:
    """Score the stage-2 runs (`evaluate_appearance_model`, true voxels and cameras) on view 0 of ``--num_items``
    renders of ``--split``: their own renders when their data settings differ from the stage-1 runs' (``shared`` is
    then None), else the stage-1 runs' split and targets."""
    from transformers import AutoModel

    from whitebox_hf.evaluation.cupid import appearance_targets, cupid_targets, evaluate_appearance_model

    if not appearance_runs:
        return {}
    metrics = next(iter(appearance_runs.values()))
    num_per_category, data_seed, num_views, render_size, resolution = _data_key(metrics)
    cache_root = None
    if renders is None:
        from whitebox_hf.data import default_cache_dir
        from whitebox_hf.data.shape_renders import load_shape_renders

        cache_root = Path(default_cache_dir()) / "cupid-targets"
        if shared is None:
            renders = load_shape_renders(num_per_category=num_per_category, seed=data_seed, num_views=num_views,
                                         size=render_size)
    stem = (f"report_{args.split}_n{num_per_category}_seed{data_seed}_views{num_views}_size{render_size}_"
            f"res{resolution}.safetensors")
    if shared is None:
        split = renders[args.split]
        targets = cupid_targets({args.split: split}, resolution, 2.0,
                                None if cache_root is None else cache_root / stem)[args.split]
    else:
        split, targets = shared
    colors = appearance_targets({args.split: split}, {args.split: targets}, 2.0,
                                None if cache_root is None else cache_root / ("appearance_" + stem))[args.split]
    scored = {}
    for name, run_metrics in appearance_runs.items():
        start = time.time()
        model = AutoModel.from_pretrained(str(runs_dir / name / "model"))
        guidance = run_metrics.get("appearance_guidance_scale")
        summary, _ = evaluate_appearance_model(model, split, targets, colors, max_items=args.num_items,
                                               num_inference_steps=args.sample_steps, guidance_scale=guidance,
                                               seed=args.seed, batch_size=args.batch_size)
        summary.update(eval_seconds=time.time() - start, guidance_scale=guidance)
        scored[name] = {"training": run_metrics, "evaluation": summary}
    return scored


def end_to_end_section(pipelines: dict, guidances: dict, appearance_runs: dict, runs_dir: Path, args, split,
                       targets, same_data: bool) -> dict:
    """Stage 1 + stage 2 together (`evaluate_cupid_end_to_end`): every stage-1 flow with every stage-2 run, the
    colours generated at the camera the flow's cube gave by PnP, on the stage-1 runs' items and noise."""
    from transformers import AutoModel

    from whitebox_hf import CupidPipeline
    from whitebox_hf.evaluation.cupid import evaluate_cupid_end_to_end

    if not same_data:
        return {"unavailable": "the stage-2 runs were trained with another data seed, image size or cube resolution "
                               "than the stage-1 runs"}
    scored = {}
    for flow_name, pipeline in pipelines.items():
        for name in appearance_runs:
            start = time.time()
            combined = CupidPipeline(flow_model=pipeline.flow_model, scheduler=pipeline.scheduler,
                                     image_mean=pipeline.config.image_mean, image_std=pipeline.config.image_std,
                                     extent=pipeline.config.extent, background=pipeline.config.background,
                                     appearance_model=AutoModel.from_pretrained(str(runs_dir / name / "model")))
            summary, _ = evaluate_cupid_end_to_end(combined, split, targets, max_items=args.num_items,
                                                   num_inference_steps=args.sample_steps,
                                                   guidance_scale=guidances[flow_name], seed=args.seed,
                                                   batch_size=args.batch_size)
            scored[f"{flow_name}+{name}"] = dict(summary, flow=flow_name, appearance=name,
                                                 eval_seconds=time.time() - start)
    return scored


def end_to_end_lines(scored) -> list[str]:
    lines = ["", "### Stage 1 + stage 2 end to end", "",
             "The colours generated at the camera that stage 1 recovered by PnP from its own cube (not the true one), "
             "drawn with the generated voxels at that camera and compared with the input render: what a user of "
             "`CupidPipeline(appearance_model=...)` gets. Silhouette IoU: the drawn voxels vs the input's mask. A "
             "failed PnP draws nothing.", "",
             "| stage 1 | stage 2 | PSNR | SSIM | foreground PSNR | silhouette IoU | PnP failures | items | eval time |",
             "|---|---|---|---|---|---|---|---|---|"]
    if not scored:
        return lines + ["| not run | | | | | | | | |"]
    if "unavailable" in scored:
        return lines + [f"| not scored: {scored['unavailable']} | | | | | | | | |"]
    for e in scored.values():
        lines.append(f"| {RUNS[e['flow']]} | {APPEARANCE_RUNS[e['appearance']]} | {_fmt(e['psnr'], 2)} dB | "
                     f"{_fmt(e['ssim'])} | {_fmt(e['foreground_psnr'], 2)} dB | {_fmt(e['mask_iou'])} | "
                     f"{e['failures']} | {e['num_items']} | {e['eval_seconds']:.0f} s |")
    return lines


def _per_category(rows) -> dict:
    import numpy as np

    categories = sorted({row["category"] for row in rows})
    return {c: float(np.median([row["rotation_error_deg"] for row in rows if row["category"] == c]))
            for c in categories}


def appearance_lines(scored: dict) -> list[str]:
    """The stage-2 section: one row per appearance run, then the ceiling and the floor (measured on the same items)."""
    lines = ["", "## Appearance (stage 2)", "",
             "Stage 2 alone: the true voxels and the true camera of each render, so these rows score the appearance, "
             "not stage 1. The target of every occupied voxel is its colour as the renderer draws it in that view "
             "(the renders are untextured grey, Lambertian-shaded by a light fixed to the camera: that shading is "
             "all the appearance they carry). PSNR: the coloured voxels drawn at the camera (opaque cubes) vs the "
             "input render, whole image; foreground: on the pixels both the object and the voxels cover. Ceiling: "
             "the exact target colours drawn the same way (the voxel resolution's limit). Floor: every voxel one "
             "flat grey (the item's mean visible target).", "",
             "| row | PSNR | foreground PSNR | visible colour MAE | items | eval time |", "|---|---|---|---|---|---|"]
    if not scored:
        return lines + [f"| {label} | not run | | | | |" for label in APPEARANCE_RUNS.values()]
    for name, label in APPEARANCE_RUNS.items():
        if name not in scored:
            lines.append(f"| {label} | not run | | | | |")
            continue
        e = scored[name]["evaluation"]
        lines.append(f"| {label} | {_fmt(e['psnr'], 2)} dB | {_fmt(e['foreground_psnr'], 2)} dB | "
                     f"{_fmt(e['visible_color_mae'])} | {e['num_items']} | {e['eval_seconds']:.0f} s |")
    e = next(iter(scored.values()))["evaluation"]
    lines.append(f"| ceiling: exact target colours | {_fmt(e['oracle_psnr'], 2)} dB | "
                 f"{_fmt(e['oracle_foreground_psnr'], 2)} dB | 0 | {e['num_items']} | |")
    lines.append(f"| floor: one flat grey | {_fmt(e['flat_psnr'], 2)} dB | {_fmt(e['flat_foreground_psnr'], 2)} dB | "
                 f"| {e['num_items']} | |")
    return lines


POSE_TABLE_HEADER = [
    "| row | rot. median | < 5° | < 15° | transl. err. | focal err. | PnP failures | IoU (canonical) | "
    "mask IoU (true shape) | PSNR (true shape) | SSIM (true shape) | mask IoU (generated) | PSNR (generated) | "
    "SSIM (generated) | eval time |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]


def _pose_row(label, summary, seconds=None) -> str:
    """One row of the pose and geometry table from `summarize_cupid_scores`."""
    pose, grounding = summary["pose"], summary["grounding"]
    geometry = summary.get("geometry", {})
    return (f"| {label} | {_fmt(pose['rotation_error_median_deg'], 1)}° | {_pct(pose['rotation_within_5deg'])} | "
            f"{_pct(pose['rotation_within_15deg'])} | {_fmt(pose['translation_error'])} | "
            f"{_fmt(pose['focal_error'])} | {pose['failures']} / {summary['num_items']} | "
            f"{_fmt(geometry.get('volumetric_iou'))} | {_fmt(grounding['true_shape_mask_iou'])} | "
            f"{_fmt(grounding['true_shape_psnr'], 1)} dB | {_fmt(grounding.get('true_shape_ssim'))} | "
            f"{_fmt(grounding.get('generated_mask_iou'))} | "
            + (f"{_fmt(grounding['generated_psnr'], 1)} dB" if "generated_psnr" in grounding else "—")
            + f" | {_fmt(grounding.get('generated_ssim'))}"
            + f" | {'—' if seconds is None else f'{seconds:.0f} s'} |")


def cgal_lines(cgal) -> list[str]:
    """The section of the stage-1 runs scored on the CGAL renders (or why it was not)."""
    lines = ["", f"## {CGAL_LABEL}", ""]
    if cgal is None:
        return lines + ["Not scored (`--no-cgal`, or no stage-1 run)."]
    if "unavailable" in cgal:
        return lines + [f"Not scored: {cgal['unavailable']}."]
    reasons = {}
    for name, why in sorted(cgal["skipped"].items()):
        reasons.setdefault(why.split(":")[0] if why.startswith(("unreadable", "not watertight")) else
                           why.split(", ", 1)[1], []).append(name)
    skipped = "; ".join(f"{why}: {len(names)}" + (f" ({', '.join(names)})" if why == "unreadable" else "")
                        for why, names in reasons.items())
    lines += ["Real, non-procedural shapes: CGAL's sample meshes (Debian `libcgal-demo`), each normalised into "
              "[−0.9, 0.9]³ like the procedural shapes and ray-cast (trimesh + Embree) from the procedural renders' "
              "random cameras with their shading (`whitebox_hf.data.load_cgal_renders`); occupancy targets: the exact "
              "winding-number inside of each mesh at the voxel centres. Same runs, sampler, metrics and view 0 as the "
              "table above. The meshes come in their own orientations (several are not upright in the y-up frame "
              "the models were trained in), so the canonical-frame pose and IoU measure how far the learned canonical "
              f"frame carries over to unseen objects. {len(cgal['meshes'])} meshes scored"
              + (f"; left out — {skipped}" if skipped else "") + f". Occupancy labels and renders: "
              f"{cgal['targets_seconds']:.0f} s, section total {cgal['seconds']:.0f} s.", "", *POSE_TABLE_HEADER]
    for name, label in RUNS.items():
        if name in cgal["runs"]:
            lines.append(_pose_row(label, cgal["runs"][name], cgal["runs"][name]["eval_seconds"]))
        else:
            lines.append(f"| {label} | not run | | | | | | | | | | | | | |")
    if "oracle" in cgal:
        lines.append(_pose_row("oracle: true camera, true voxels (the ceiling)", cgal["oracle"]))
    return lines


def render_page(results: dict, picture_path, argv) -> str:
    data = results["data"]
    lines = ["# Cupid: pose-grounded single-image 3D generation (issue 15)", "",
             "Generated by `training/run_cupid_comparison.sh` (`training/report_cupid.py "
             + " ".join(_portable_arg(a) for a in (sys.argv[1:] if argv is None else argv)) + "`); every number below is computed by "
             "`whitebox_hf.evaluation.cupid` or read from the runs' `metrics.json`.", "",
             f"**Data.** Renders of the procedural shapes (`load_shape_renders(num_per_category="
             f"{data['num_per_category']}, seed={data['data_seed']}, num_views={data['num_views']}, "
             f"size={data['render_size']})`: cameras 2.5 from the origin, 40° field of view, azimuth uniform, "
             "elevation in [−10°, 40°]); targets: each shape's exact occupancy at the "
             f"{data['cube_resolution']}³ voxel centres and, per occupied voxel, its pixel under the view's camera. "
             f"Scored on view 0 of {results['num_items_asked']} `{results['split']}` renders evenly spaced over the "
             "split's categories (held out from training and from the runs' own validation scores); shapes with no occupied voxel at this "
             "resolution are skipped and counted.", "",
             "## Training", "", "| run | steps × batch | (shape, view) pairs | parameters (trainable) | time | threads |",
             "|---|---|---|---|---|---|"]
    labels = {**RUNS, **APPEARANCE_RUNS}
    for name, run in [*results["runs"].items(), *results.get("appearance_runs", {}).items()]:
        t = run["training"]
        lines.append(f"| {labels[name]} | {t['steps']:,} × {t['batch_size']} | {t['num_train_pairs']:,} "
                     f"({t['num_train_shapes']} shapes, {t.get('num_train_shapes_empty', 0)} empty left out) | "
                     f"{t['num_parameters']:,} ({t['num_trainable_parameters']:,}) | "
                     f"{t['train_seconds_total'] / 60:.1f} min | {t['threads']} |")
    lines += ["", "## Pose and geometry", "",
              "Rotation: geodesic error of the world-to-camera R. Translation: ‖t̂ − t‖ in canonical units (the "
              "camera is 2.5 away). Focal: |f̂ − f| / f. IoU: generated vs exact occupancy in the canonical frame. "
              "Grounding, true shape: the exact shape rendered at the predicted camera vs the input (silhouette IoU, "
              "PSNR and SSIM of the shaded image) — it scores the camera alone. Generated: the generated voxels at their own "
              "camera vs the input. A failed PnP counts as 180°, ∞ and an empty rendering.", "",
              *POSE_TABLE_HEADER]

    row = _pose_row
    for name, run in results["runs"].items():
        lines.append(row(RUNS[name], run["evaluation"], run["evaluation"]["eval_seconds"]))
    for name in RUNS:
        if name not in results["runs"]:
            lines.append(f"| {RUNS[name]} | not run | | | | | | | | | | | | | |")
    if "oracle" in results:
        lines.append(row("oracle: true camera, true voxels (the ceiling)", results["oracle"]))
    for label, why in NOT_BUILT:
        lines.append(f"| {label} | not built: {why} | | | | | | | | | | | | | |")
    effects = {name: run["evaluation"]["condition_effect"] for name, run in results["runs"].items()
               if "condition_effect" in run["evaluation"]}
    if effects:
        lines += ["", "### Does the flow use its image?", "",
                  "The held-out cubes of the rows above noised to flow time t (the same ε for both), and the velocity "
                  "MSE to the rectified-flow target with the image tokens and with the null condition (zeros): "
                  "gain = 1 − conditional / unconditional; 0 means the image is ignored "
                  "(`whitebox_hf.evaluation.cupid.condition_effect`).", "",
                  "| row | t | MSE conditional | MSE unconditional | gain, all | gain, occupancy | "
                  "gain, u v at occupied voxels |", "|---|---|---|---|---|---|---|"]
        for name, effect in effects.items():
            for t, scores in effect["times"].items():
                gain = scores["gain"]
                lines.append(f"| {RUNS[name]} | {t} | {_fmt(scores['conditional']['all'], 4)} | "
                             f"{_fmt(scores['unconditional']['all'], 4)} | {100 * gain['all']:.2f} % | "
                             f"{100 * gain['occupancy']:.2f} % | {100 * gain['uv_at_occupied']:.2f} % |")
    if results["runs"]:
        lines += cgal_lines(results.get("cgal"))
    lines += appearance_lines(results.get("appearance_runs", {}))
    if results["runs"] and results.get("appearance_runs"):
        lines += end_to_end_lines(results.get("end_to_end", {}))
    if not results["runs"]:
        lines.append("")
        return "\n".join(lines)
    lines += ["", "Median rotation error per category (several categories are nearly symmetric about the vertical "
              "axis — bottles, lamps, mugs without their handle in view — so their azimuth is ambiguous from one image "
              "for any method):", "", "| run | " + " | ".join(
                  next(iter(results["runs"].values()))["evaluation"]["per_category_rotation_median_deg"]) + " |",
              "|---|" + "---|" * len(next(iter(results["runs"].values()))["evaluation"][
                  "per_category_rotation_median_deg"])]
    for name, run in results["runs"].items():
        per = run["evaluation"]["per_category_rotation_median_deg"]
        lines.append(f"| {name} | " + " | ".join(f"{v:.1f}°" for v in per.values()) + " |")
    lines += _extension_lines(results)
    if picture_path is not None and Path(picture_path).is_file():
        lines += ["", "## Pictures", "", "Per row: the input render, the pipeline's overlay (generated silhouette at "
                  "the recovered camera), the generated voxels re-rendered at that camera, and from a new view (90° "
                  "round the vertical axis).", "", f"![Cupid examples]({Path(picture_path).name})"]
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
