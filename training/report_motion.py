#!/usr/bin/env python
"""Collect the motion-prior runs (issue 16, item 8) into docs/results/motion.md and motion.json.

    python training/report_motion.py                               # every run under runs/motion/<run>/
    python training/report_motion.py --runs_dir /tmp/motion --output /tmp/motion/motion.md --guidance off

Each run folder ``<runs_dir>/<run>/`` (runs `RUNS`, trained by ``training/run_motion_comparison.sh``; an absent one is
listed as not run) holds ``metrics.json`` and ``model/`` from ``training/train_motion_prior.py``, whose held-out
evaluation (MPJPE, PA-MPJPE, head error, GND, foot skating on non-overlapping windows of the held-out clips, the
floor lifted by a fixed random height per window) gives the numbers. This script adds, on the same windows, the
same floor shifts and the same `evaluate_motion_windows`:

* (f) nearest-neighbour retrieval on the ``ours`` head features over the training windows of the ``ours`` run's
  settings, and (g) the mean training pose rigidly attached to the head (`whitebox_hf.models.motion_prior.baselines`);
* (c) guidance: the ``ours`` model sampled with EgoAllo's inner + post Levenberg-Marquardt guidance
  (``sample_motion_windowed(..., guidance="inner_and_post")``, one window per held-out window) against its plain
  samples (`sample_motion`) on the same windows (``--guidance_max_windows`` limits both: guidance costs solves). The guided sampler comes from the motion-pipeline work of issue
  16 (item 5); where this tree does not have it the row says so and nothing is computed (`guided_predictor`, the
  hook). ``--guidance off`` skips the row on purpose.

Every number on the page is computed from the runs' outputs or here; none is typed. The amount of real data is
computed from the clips themselves (`whitebox_hf.data.load_motion_clips`).
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
sys.path.insert(0, str(ROOT / "training"))  # train_motion_prior's window loading and predictor

# Run folder -> (group of the list, what the row is). Each changes one thing from "ours".
RUNS = {
    "ours": ("a, b, d", "per-timestep invariant canonicalisation (ours), floor height on"),
    "absolute_relative": ("a", "absolute + relative"),
    "absolute_global_deltas": ("a", "absolute + global deltas"),
    "sequence_canonical": ("a", "sequence canonicalisation"),
    "absolute": ("a", "absolute"),
    "no_floor": ("b", "ours, floor height off"),
    "window32": ("d", "ours, 32-frame windows"),
    "window128": ("d", "ours, 128-frame windows"),
    "regression": ("e", "baseline: black-box transformer regression (same network, no diffusion)"),
}
TABLE_815_ORDER = ("ours", "absolute_relative", "absolute_global_deltas", "sequence_canonical", "absolute")
METRICS = (("mpjpe_mm", "MPJPE (mm)", 1), ("pa_mpjpe_mm", "PA-MPJPE (mm)", 1), ("head_error_m", "T_head (m)", 4),
           ("gnd", "GND", 2), ("foot_skating_m", "foot skate (mm/frame)", 2))


def _fmt(value, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:,.{digits}f}"


def _metric_cell(scores: dict, key: str, digits: int) -> str:
    value = scores.get(key)
    if value is not None and key == "foot_skating_m":
        value *= 1000.0  # metres per frame pair -> mm per frame pair
    return _fmt(value, digits)


def read_run(run_dir: Path) -> dict | None:
    path = run_dir / "metrics.json"
    if not path.is_file() or not (run_dir / "model" / "config.json").is_file():
        return None
    run = json.loads(path.read_text())
    if "evaluation" not in run or "config" not in run:
        raise SystemExit(f"{path} has no 'evaluation' / 'config': rerun training/train_motion_prior.py")
    return run


def data_facts(bvh_dir: str | None) -> dict:
    """The real motion there is, computed from the clips."""
    from whitebox_hf.data import load_motion_clips

    clips = load_motion_clips(bvh_dir=bvh_dir)
    return {"clips": {c.name: {"frames": c.num_frames, "seconds": c.seconds, "skeleton": c.skeleton,
                               "source_fps": c.source_fps} for c in clips},
            "num_clips": len(clips), "frames": sum(c.num_frames for c in clips),
            "seconds": sum(c.seconds for c in clips)}


def guided_predictor(model, args: dict, generator):
    """The hook of row (c): ``predict(head_poses, offsets, floor_height) -> positions`` with EgoAllo's guidance, or
    the reason it cannot be computed in this tree (a string)."""
    try:
        from whitebox_hf.models.motion_prior import sample_motion_windowed
    except ImportError:
        return ("not computed: the guided sampler `sample_motion_windowed` (issue 16 item 5, the motion-pipeline "
                "work) is not importable in this tree")

    def predict(head_poses, offsets, floor_height):
        floor = floor_height if args["floor_height"] == "on" else None
        frames = head_poses.shape[1]
        return sample_motion_windowed(model, head_poses, offsets, num_inference_steps=args["sample_steps"],
                                      eta=args["sample_eta"], floor_height=floor, generator=generator,
                                      window=frames, overlap=0, guidance="inner_and_post").positions
    return predict


def baselines(run: dict, max_windows: int) -> dict[str, dict]:
    """Rows (f) and (g) on the ``ours`` run's windows, floor shifts and evaluation seed."""
    import train_motion_prior as script

    from whitebox_hf.evaluation.motion import evaluate_motion_windows
    from whitebox_hf.models.motion_prior.baselines import MeanPoseMotion, NearestNeighbourMotion

    args = script.parse_args([f"--{k}={v}" for k, v in run["config"].items() if k in script.DEFAULTS])
    windows = script.load_windows(args)
    train, test = windows["train"], windows["test"]
    # The training windows' floor is at z = 0: the features of a query are taken with its floor given.
    retrieval = NearestNeighbourMotion(train["head_poses"], train["local_rotations"][:, :, 1:])
    mean_pose = MeanPoseMotion(train["local_rotations"][:, :, 1:])
    rows = {}
    for name, predict in (("nearest_neighbour", lambda h, o, f: retrieval(h, o, f).positions),
                          ("mean_pose", lambda h, o, f: mean_pose(h, o).positions)):
        start = time.time()
        rows[name] = evaluate_motion_windows(predict, test["head_poses"], test["offsets"], test["positions"],
                                             test["clip"], floor_shift=args["floor_shift"], seed=script.EVAL_SEED,
                                             max_windows=max_windows or args["eval_max_windows"])
        rows[name]["eval_seconds"] = time.time() - start
    return rows


def guidance_rows(run_dir: Path, run: dict, max_windows: int) -> dict | str:
    """Row (c) on the first ``max_windows`` held-out windows (0: all): ``{"off": ..., "on": ...}``, the ours model's
    plain samples and its guided samples on the same windows, floor shifts and seed; or why it was not computed."""
    import torch
    from transformers import AutoModel

    import train_motion_prior as script

    from whitebox_hf.evaluation.motion import evaluate_motion_windows

    args = script.parse_args([f"--{k}={v}" for k, v in run["config"].items() if k in script.DEFAULTS])
    model = AutoModel.from_pretrained(run_dir / "model").eval()
    predict = guided_predictor(model, args, torch.Generator().manual_seed(script.EVAL_SEED))
    if isinstance(predict, str):
        return predict
    test = script.load_windows(args)["test"]
    rows = {}
    for name, estimator in (("off", script.predictor(model, args, torch.Generator().manual_seed(script.EVAL_SEED))),
                            ("on", predict)):
        start = time.time()
        try:
            rows[name] = evaluate_motion_windows(estimator, test["head_poses"], test["offsets"], test["positions"],
                                                 test["clip"], floor_shift=args["floor_shift"],
                                                 seed=script.EVAL_SEED, max_windows=max_windows)
        except Exception as error:  # the guided sampler is another helper's: report its failure, do not hide it
            return f"failed: {type(error).__name__}: {error}"
        rows[name]["eval_seconds"] = time.time() - start
    return rows


def _row(label: str, group: str, scores: dict, run: dict | None, window=None) -> str:
    window = run["window"] if run else window
    cells = [group, label, str(window)] + [_metric_cell(scores, key, digits) for key, _, digits in METRICS]
    cells.append(f"{run['steps']:,}" if run else "—")
    cells.append(_fmt(run["train_seconds_total"] / 60, 1) if run else "—")
    return "| " + " | ".join(cells) + " |"


def write_report(runs_dir: Path, output: Path, facts: dict, runs: dict, extra: dict, guided, elapsed: float,
                 argv: list[str]) -> str:
    header = ("| group | estimator | window | " + " | ".join(title for _, title, _ in METRICS)
              + " | steps | training (min) |")
    rule = "|" + "---|" * (len(METRICS) + 5)
    blank = " |" * (len(METRICS) + 2)
    ours = runs.get("ours")
    train_clips = ", ".join(ours["train_clips"]) if ours else "—"
    test_clips = ", ".join(ours["test_clips"]) if ours else "—"
    clip_rows = "\n".join(
        f"| {name} | {info['skeleton']} | {info['source_fps']:g} | {info['frames']:,} | {info['seconds']:.1f} | "
        f"{'train' if ours and name in ours['train_clips'] else 'held out' if ours and name in ours['test_clips'] else '—'} |"
        for name, info in facts["clips"].items())
    lines = [
        "# EgoAllo motion prior: body motion from the head trajectory (issue 16)",
        "",
        "<!-- generated by training/report_motion.py from the runs of training/run_motion_comparison.sh; do not "
        "edit -->",
        "",
        "**Real data, all of it**: the BVH clips of Debian's assimp-testmodels, "
        f"{facts['num_clips']} clips, {facts['frames']:,} frames, {facts['seconds']:.1f} s at 30 fps "
        "(EgoAllo trains on AMASS, about 40 hours). No procedural motion is used anywhere on this page.",
        "",
        "| clip | skeleton | source fps | frames at 30 fps | seconds | split |",
        "|---|---|---|---|---|---|",
        clip_rows,
        "",
        f"Trained on {train_clips}; evaluated on non-overlapping windows of the held-out clips {test_clips} (the "
        "last window flush with the clip's end), each on its own skeleton, with the world's floor lifted by a "
        "fixed random height per window (the same for every row) that only the floor-height-on rows are told. "
        "The pelvis of every estimate is placed so that its head frame follows the observed head, hence T_head ≈ 0. "
        "Foot skate is EgoEgo's, per frame pair; the true motion's own skate is in the per-clip table.",
        "",
        header,
        rule,
    ]
    for name, (group, label) in RUNS.items():
        run = runs.get(name)
        if run is None:
            lines.append(f"| {group} | {label} | not run |{blank}")
            continue
        lines.append(_row(label, group, run["evaluation"]["all"], run))
    window = ours["window"] if ours else None
    lines.append(_row("baseline: nearest neighbour on the ours head features", "f",
                      extra["nearest_neighbour"]["all"], None, window) if "nearest_neighbour" in extra
                 else f"| f | baseline: nearest neighbour | not run |{blank}")
    lines.append(_row("baseline: mean pose rigidly attached to the head", "g", extra["mean_pose"]["all"], None, window)
                 if "mean_pose" in extra else f"| g | baseline: mean pose | not run |{blank}")
    if isinstance(guided, dict):
        count = guided["on"]["all"]["num_windows"]
        lines.append(_row(f"ours, guidance off (plain sampler; {count} windows)", "c", guided["off"]["all"], ours))
        lines.append(_row(f"ours, guidance on (inner + post LM; same {count} windows)", "c", guided["on"]["all"],
                          ours))
    else:
        lines.append(f"| c | ours with guidance | {guided} |{blank}")
    lines.append("")

    measured = [n for n in TABLE_815_ORDER if n in runs]
    if len(measured) == len(TABLE_815_ORDER):
        by_mpjpe = sorted(measured, key=lambda n: runs[n]["evaluation"]["all"]["mpjpe_mm"])
        verdict = "holds" if by_mpjpe[0] == "ours" else "does not hold"
        same = "the same as" if tuple(by_mpjpe) == TABLE_815_ORDER else "not the same as"
        lines += ["## The book's claim (Table 8.15)", "",
                  f"Ordering by held-out MPJPE, best first: {' < '.join(by_mpjpe)}. The claim that the per-timestep "
                  f"invariant conditioning is best {verdict} here; the ordering is {same} the book's "
                  f"({' < '.join(TABLE_815_ORDER)}).", ""]
    if ours and extra:
        best = ours["evaluation"]["all"]["mpjpe_mm"]
        beaten = [f"{name} ({_fmt(extra[name]['all']['mpjpe_mm'])} mm)" for name in ("nearest_neighbour", "mean_pose")
                  if name in extra and best < extra[name]["all"]["mpjpe_mm"]]
        unbeaten = [f"{name} ({_fmt(extra[name]['all']['mpjpe_mm'])} mm)" for name in ("nearest_neighbour",
                    "mean_pose") if name in extra and best >= extra[name]["all"]["mpjpe_mm"]]
        if "regression" in runs:
            target = runs["regression"]["evaluation"]["all"]["mpjpe_mm"]
            (beaten if best < target else unbeaten).append(f"regression ({_fmt(target)} mm)")
        lines += ["## Baselines", "", f"The ours prior ({_fmt(best)} mm MPJPE) beats: {', '.join(beaten) or 'none'}; "
                  f"does not beat: {', '.join(unbeaten) or 'none'}.", ""]

    lines += ["## Per held-out clip", "", "| estimator | clip | windows | MPJPE (mm) | PA-MPJPE (mm) | GND | "
              "foot skate (mm/frame) | true foot skate (mm/frame) |", "|---|---|---|---|---|---|---|---|"]
    per_clip_sources = [(name, runs[name]["evaluation"]) for name in RUNS if name in runs]
    per_clip_sources += [(name, extra[name]) for name in ("nearest_neighbour", "mean_pose") if name in extra]
    if isinstance(guided, dict):
        per_clip_sources += [("ours, guidance off", guided["off"]), ("ours, guidance on", guided["on"])]
    for name, evaluation in per_clip_sources:
        for clip, scores in evaluation["per_clip"].items():
            lines.append(f"| {name} | {clip} | {scores['num_windows']} | {_fmt(scores['mpjpe_mm'])} | "
                         f"{_fmt(scores['pa_mpjpe_mm'])} | {_fmt(scores['gnd'], 2)} | "
                         f"{_metric_cell(scores, 'foot_skating_m', 2)} | {_metric_cell(scores, 'foot_skating_true_m', 2)} |")
    lines += ["", "## Training", "",
              "| run | steps | epochs | windows | window (frames) | parameters | training (s) | s/step | evaluation (s) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name in RUNS:
        run = runs.get(name)
        if run:
            lines.append(f"| {name} | {run['steps']:,} | {run['epochs']:.1f} | {run['num_train_windows']} | "
                         f"{run['window']} | {run['num_parameters']:,} | {run['train_seconds_total']:.0f} | "
                         f"{run['seconds_per_step']:.3f} | {run['eval_seconds']:.0f} |")
    total = sum(r["train_seconds_total"] for r in runs.values())
    lines += ["", f"Total training time {total / 60:.1f} min (one thread per run); this report took "
              f"{elapsed:.0f} s. Commands: `bash training/run_motion_comparison.sh` then "
              f"`python training/report_motion.py {' '.join(argv)}`; each run's exact command is in its "
              "metrics.json and model card.", ""]
    text = "\n".join(lines)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    return text


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs_dir", default="runs/motion")
    parser.add_argument("--output", default="docs/results/motion.md")
    parser.add_argument("--json", default="", help="default: the output's .json sibling")
    parser.add_argument("--bvh_dir", default="", help="the clips' folder (default: the cached assimp clips)")
    parser.add_argument("--guidance", choices=("on", "off"), default="on",
                        help="row (c): sample the ours model with guidance (off: skip the row)")
    parser.add_argument("--max_windows", type=int, default=0, help="> 0: score only the first n held-out windows")
    parser.add_argument("--guidance_max_windows", type=int, default=0,
                        help="> 0: row (c) (guided and plain, on the same windows) on the first n held-out windows")
    argv = sys.argv[1:] if argv is None else list(argv)
    options = parser.parse_args(argv)
    for key in ("max_windows", "guidance_max_windows"):
        if getattr(options, key) < 0:
            raise ValueError(f"`{key}` must be non-negative, got {getattr(options, key)}")
    start = time.time()
    runs_dir, output = Path(options.runs_dir), Path(options.output)
    runs = {name: run for name in RUNS if (run := read_run(runs_dir / name)) is not None}
    for name in RUNS:
        if name not in runs:
            print(f"{runs_dir / name}: no finished run (metrics.json + model/), listed as not run")
    facts = data_facts(options.bvh_dir or None)
    extra = baselines(runs["ours"], options.max_windows) if "ours" in runs else {}
    if options.guidance == "off":
        guided = "not computed: --guidance off"
    elif "ours" not in runs:
        guided = "not computed: no ours run"
    else:
        guided = guidance_rows(runs_dir / "ours", runs["ours"], options.guidance_max_windows or options.max_windows)
        if isinstance(guided, str):
            print(f"row (c) {guided}")
    shown = [os.path.relpath(a, ROOT) if os.path.isabs(a) and a.startswith(str(ROOT)) else
             (Path(a).name if os.path.isabs(a) else a) for a in argv]
    write_report(runs_dir, output, facts, runs, extra, guided, time.time() - start, shown)
    summary = {"data": facts, "runs": {name: {k: v for k, v in run.items() if k not in ("config", "command", "model")}
                                       for name, run in runs.items()},
               "baselines": extra, "guidance": guided}
    json_path = Path(options.json) if options.json else output.with_suffix(".json")
    json_path.write_text(json.dumps(summary, indent=2))
    print(f"wrote {output} and {json_path}")
    return summary


if __name__ == "__main__":
    main()
