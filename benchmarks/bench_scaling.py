#!/usr/bin/env python
"""Scale-out benchmark: training/train_image_classification.py, unchanged, on 1 process and on 2 processes
(DDP and FSDP through `accelerate launch` and training/accelerate_configs/), at the same global batch.

Each configuration is one short training run in its own process tree (``--max_steps`` steps). Throughput is
measured from the run's own log (``log.jsonl``: ``elapsed_s`` at each ``log_every`` step), from the first
logged step to the last, so process start-up, data loading, the first (warm-up) steps and the final
evaluation and save are left out. Peak memory is the high-water RSS of the largest process of the run (a
rank), read with ``getrusage(RUSAGE_CHILDREN)`` in a fresh intermediate process per run. Every global batch
size in ``--batch-sizes`` is run for every configuration, so the page also gives the log-log slope of the
step time and of the memory against the batch.

It writes a markdown page (``--output``, default docs/results/scaling.md) and a JSON with every number next to
it, and states how to run the same script on several GPUs or nodes. Smoke test: ``--quick``.

Usage::

    .venv/bin/python benchmarks/bench_scaling.py
    .venv/bin/python benchmarks/bench_scaling.py --quick --output /tmp/smoke/scaling.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_common.py, whatever the working directory
from _common import environment_lines, loadavg, now, start  # noqa: E402
from _slopes import loglog_slope, slope_cell  # noqa: E402

SCRIPT = ROOT / "training" / "train_image_classification.py"
CONFIGS = ROOT / "training" / "accelerate_configs"
DEFAULT_OUTPUT = "docs/results/scaling.md"
QUICK_OUTPUT = "/tmp/whitebox_hf_bench/scaling_quick.md"
# name: (accelerate config file or None for a plain one-process run, processes)
SETUPS = {"1 process": (None, 1), "2 processes DDP": ("cpu_ddp.yaml", 2), "2 processes FSDP": ("cpu_fsdp.yaml", 2)}

# Runs the command and reports the largest child's peak RSS: a fresh interpreter per run, so the figure is
# this run's own (RUSAGE_CHILDREN keeps the maximum over every child ever waited for).
MEASURE = ("import resource, subprocess, sys, json; code = subprocess.call(sys.argv[1:]); "
           "print(json.dumps(dict(code=code, maxrss_kb=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)))")


def run_setup(name: str, batch_size: int, args, workdir: Path) -> dict:
    config, processes = SETUPS[name]
    output_dir = workdir / f"{name.replace(' ', '_')}_b{batch_size}"
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads_per_process), HF_HUB_OFFLINE="1")
    if config is None:
        command = [sys.executable, str(SCRIPT)]
    else:
        env["ACCELERATE_USE_CPU"] = "1"  # torchrun launcher, CPU ranks over gloo (see the config files)
        command = [str(Path(sys.executable).with_name("accelerate")), "launch", "--config_file",
                   str(CONFIGS / config), "--main_process_port", str(args.port), str(SCRIPT)]
    command += [
        "--dataset", args.dataset, "--hidden_size", str(args.hidden_size), "--num_hidden_layers", str(args.num_layers),
        "--num_attention_heads", str(args.num_heads), "--patch_size", str(args.patch_size),
        "--batch_size", str(batch_size), "--epochs", "1000", "--max_steps", str(args.steps),
        "--log_every", str(args.log_every), "--warmup_steps", "2", "--test_subset", "64", "--eval_batch_size", "64",
        "--eval_every", str(10 * args.steps), "--checkpoint_every", str(10 * args.steps), "--save_model", "false",
        "--num_threads", str(args.threads_per_process), "--output_dir", str(output_dir),
    ]
    t0 = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", MEASURE, *command], env=env, capture_output=True, text=True,
                            cwd=ROOT, timeout=args.timeout_s)
    wall = time.perf_counter() - t0
    try:
        measured = json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        measured = dict(code=result.returncode, maxrss_kb=None)
    if measured["code"] != 0:
        return dict(error=f"exit code {measured['code']}: {result.stderr[-800:]}", wall_s=wall)
    metrics = json.loads((output_dir / "metrics.json").read_text())
    logged = [json.loads(line) for line in (output_dir / "log.jsonl").read_text().splitlines()]
    points = [(r["step"], r["elapsed_s"]) for r in logged if "elapsed_s" in r and "step" in r]
    (first_step, first_s), (last_step, last_s) = points[0], points[-1]
    if last_step <= first_step or last_s <= first_s:
        return dict(error=f"too few logged steps to time ({points})", wall_s=wall)
    step_s = (last_s - first_s) / (last_step - first_step)
    return dict(processes=metrics["num_processes"], expected_processes=processes, batch_size=batch_size,
                steps_timed=last_step - first_step, step_s=step_s, images_per_s=batch_size / step_s,
                peak_rss_bytes=measured["maxrss_kb"] * 1024, wall_s=wall)


def render(report: dict) -> str:
    runs, batches, setups = report["runs"], report["batch_sizes"], report["setups"]
    lines = ["# Scale-out: one process against two (DDP, FSDP) on this machine", ""]
    if report["quick"]:
        lines += ["> **SMOKE RUN (`--quick`)**: a few steps of a tiny model; the numbers only show that the harness "
                  "works.", ""]
    lines += environment_lines(report, extra=[
        f"* model: CRATE d {report['model']['hidden_size']}, L {report['model']['num_layers']}, K "
        f"{report['model']['num_heads']}, patch {report['model']['patch_size']} on `{report['model']['dataset']}`; "
        f"{report['steps']} steps per run, logged every {report['log_every']}; "
        f"{report['threads_per_process']} thread(s) per process"])
    lines += ["## Throughput", "",
              "Images/s at the same **global** batch (each of two processes computes half of every batch: "
              "`split_batches=True`), from the first logged step to the last; in brackets the speed-up over one "
              "process.", "",
              "| global batch | " + " | ".join(setups) + " |", "|---" * (len(setups) + 1) + "|"]
    for b in batches:
        cells = []
        for s in setups:
            r = runs[s][str(b)]
            if "error" in r:
                cells.append("failed")
                continue
            base = runs[setups[0]][str(b)]
            speedup = f" ({r['images_per_s'] / base['images_per_s']:.2f}×)" if s != setups[0] and "error" not in base else ""
            cells.append(f"{r['images_per_s']:,.0f}{speedup}")
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    lines += ["", "**Peak memory** (MB, high-water RSS of the largest process of the run; weights, optimizer "
              "state, activations, the Python runtime):", "",
              "| global batch | " + " | ".join(setups) + " |", "|---" * (len(setups) + 1) + "|"]
    for b in batches:
        lines.append(f"| {b} | " + " | ".join(
            "failed" if "error" in runs[s][str(b)] else f"{runs[s][str(b)]['peak_rss_bytes'] / 1e6:,.0f}"
            for s in setups) + " |")
    lines += ["", "**Cost growth**: log-log slope against the global batch (1 = linear) of the time per step and "
              "of the peak memory:", "", "| setup | step time | peak memory |", "|---|---|---|"]
    for s in setups:
        ok = [b for b in batches if "error" not in runs[s][str(b)]]
        lines.append(f"| {s} | {slope_cell(loglog_slope(ok, [runs[s][str(b)]['step_s'] for b in ok]))} | "
                     f"{slope_cell(loglog_slope(ok, [runs[s][str(b)]['peak_rss_bytes'] for b in ok]))} |")
    failures = [f"{s}, batch {b}: {runs[s][str(b)]['error']}" for s in setups for b in batches
                if "error" in runs[s][str(b)]]
    if failures:
        lines += ["", "Failed runs:", ""] + [f"* {f}" for f in failures]
    lines += [
        "", "## Reading the numbers", "",
        f"This machine has {report['environment']['logical_cpus']} logical CPUs shared with other work (see the load "
        "above): two processes of one thread each can at best double the throughput of one, and only when both "
        "cores are free; on a loaded machine they compete with everything else, and the gradient all-reduce (DDP) "
        "or the all-gather and reduce-scatter of every layer (FSDP) over gloo adds a cost per step that a small "
        "model does not amortise. On a machine loaded beyond its cores the scheduler shares the CPU time between all "
        "running processes, so two processes get about twice the share of one: a speed-up near or above 2× then "
        "reflects that share, not the scaling of the script. The point of this page is that the same script runs unchanged at 1 and 2 "
        "processes, with the same trajectory (tests/training/test_scale_out.py checks the final weights of FSDP "
        "and DDP against one process to 1e-5), not CPU speed.", "",
        "## Running the same script on several GPUs or nodes", "",
        "Nothing in the script changes; only the launcher does. The config files are in "
        "`training/accelerate_configs/` (each starts with the command and what to edit):", "",
        "* **one process**: `python training/train_image_classification.py --config training/configs/"
        "fashion_mnist_crate.yaml` (`--mixed_precision bf16` on a GPU).",
        "* **several GPUs, one machine (DDP)**: `accelerate launch --config_file training/accelerate_configs/"
        "multi_gpu.yaml training/train_image_classification.py --config ...`; set `num_processes` to the GPU "
        "count (or pass `--num_processes N`). `batch_size` stays the global batch.",
        "* **sharded (FSDP2)**, for models whose weights + AdamW state crowd one GPU: `multi_gpu_fsdp.yaml` "
        "(full state dicts are gathered for checkpoints and the saved model, so they load on one process).",
        "* **several nodes**: `multi_node.yaml` on every node, with `machine_rank` 0 on the main node and 1, 2, … "
        "on the others (or `--machine_rank`), `main_process_ip` / `main_process_port` of the main node, "
        "`num_processes` the total over all nodes; code, data and `output_dir` at the same paths on every node.",
        "* **DeepSpeed** (ZeRO-2, optional ZeRO-Offload of the optimizer state to CPU RAM): "
        "`deepspeed_zero2.yaml`, after `pip install deepspeed`, on CUDA machines only; not tested here.",
        "* **CPU, two processes (as measured here)**: `ACCELERATE_USE_CPU=1 accelerate launch --config_file "
        "training/accelerate_configs/cpu_ddp.yaml ...` (or `cpu_fsdp.yaml`).",
        "* **resuming**: `--resume_from_checkpoint latest` works the same under any launcher and any process "
        "count that divides the global batch.", "",
        "## How measured", "",
        f"* command: `{report['command']}`; each configuration is a separate `subprocess` run of the training "
        "script (`--save_model false`, evaluation and checkpointing only after the last step), started through "
        "`python -c` that reports `getrusage(RUSAGE_CHILDREN).ru_maxrss` after the run.",
        "* time per step = (elapsed_s at the last logged step − elapsed_s at the first) / steps between them, from "
        "the script's own `log.jsonl` (rank 0).",
        "* slopes: least-squares fit of log(cost) on log(global batch) (`benchmarks/_slopes.py`).", "",
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", default=None, help=f"markdown page (default {DEFAULT_OUTPUT}; {QUICK_OUTPUT} with --quick)")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny model, 4 steps, one batch size")
    p.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128])
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--log-every", type=int, default=4)
    p.add_argument("--dataset", default="digits", choices=["digits", "fashion-mnist"])
    p.add_argument("--hidden-size", type=int, default=96)
    p.add_argument("--num-layers", type=int, default=4)
    p.add_argument("--num-heads", type=int, default=4)
    p.add_argument("--patch-size", type=int, default=4)
    p.add_argument("--threads-per-process", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)  # for _common.start
    p.add_argument("--port", type=int, default=29591, help="main process port of the 2-process runs")
    p.add_argument("--timeout-s", type=float, default=900.0)
    args = p.parse_args(argv)
    if args.quick:
        args.batch_sizes, args.steps, args.log_every = [32], 4, 1
        args.hidden_size, args.num_layers = 32, 2
    for name in ("steps", "log_every", "hidden_size", "num_layers", "num_heads", "patch_size", "threads_per_process"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if any(b < 2 or b % 2 for b in args.batch_sizes):
        p.error(f"--batch-sizes must be even (two processes split each batch), got {args.batch_sizes}")
    if args.steps < 2 * args.log_every:
        p.error(f"--steps must be at least 2 × --log-every to time between two logged steps, got {args.steps} "
                f"and {args.log_every}")
    if args.output is None:
        args.output = QUICK_OUTPUT if args.quick else DEFAULT_OUTPUT
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    command, env = start(args, argv, "bench_scaling.main")
    runs = {s: {} for s in args.setups}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="whitebox_scaling_") as folder:
        for b in args.batch_sizes:
            for s in args.setups:
                r = run_setup(s, b, args, Path(folder))
                runs[s][str(b)] = r
                print(f"{s:<18} batch {b:>4}: " + (f"FAILED {r['error'][:300]}" if "error" in r else
                      f"{r['images_per_s']:8.1f} images/s, {r['step_s'] * 1e3:7.1f} ms/step, "
                      f"peak {r['peak_rss_bytes'] / 1e6:6.0f} MB ({r['wall_s']:.0f} s)"), flush=True)
    env["loadavg_end"] = loadavg()
    report = dict(command=command, date=now(), quick=args.quick, wall_s=time.perf_counter() - t0, environment=env,
                  model=dict(dataset=args.dataset, hidden_size=args.hidden_size, num_layers=args.num_layers,
                             num_heads=args.num_heads, patch_size=args.patch_size),
                  steps=args.steps, log_every=args.log_every, threads_per_process=args.threads_per_process,
                  batch_sizes=args.batch_sizes, setups=args.setups, runs=runs)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(report))
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out} and {out.with_suffix('.json')} ({report['wall_s']:.0f} s)")
    return report


if __name__ == "__main__":
    main()
