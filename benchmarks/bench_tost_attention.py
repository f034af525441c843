#!/usr/bin/env python
"""CPU benchmark: causal TSSA (ToST's attention) against causal softmax attention with SDPA, of equal width.

Both operators are the modules the language models use, alone (no embeddings, MLP or head), batch 1:

  * ``tost``: `whitebox_hf.nn.TokenStatisticsSelfAttention(d, K, is_causal=True)` (the fused, chunked causal
    path, `FusedCausalTokenStatistics`);
  * ``sdpa``: `whitebox_hf.nn.MultiHeadSelfAttention(d, K, is_causal=True)` through
    `torch.nn.functional.scaled_dot_product_attention` (PyTorch's flash-style CPU kernel: no N×N matrix).

For every length (default 2k…16k tokens) and dtype (fp32; bf16 autocast) it measures, in one run with the two
operators' repetitions interleaved, the forward time (``torch.inference_mode()``), the peak memory of one forward
and of one training step (forward + backward), the time growth per doubling of N and the log-log slopes of time
and memory against N, and writes a markdown report (``--output``) plus a JSON of the raw numbers.

Usage::

    .venv/bin/python benchmarks/bench_tost_attention.py --output docs/results/benchmark_tost.md
    .venv/bin/python benchmarks/bench_tost_attention.py --quick --output /tmp/smoke/tost.md
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from whitebox_hf.nn import MultiHeadSelfAttention, TokenStatisticsSelfAttention

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_common.py, whatever the working directory
from _common import environment_lines, goals_table, interleaved, loadavg, now, start, summarize  # noqa: E402
from _common import peak_increase_bytes, write_report  # noqa: E402
from _common import add_bf16_argument, resolve_bf16  # noqa: E402

# Targets of issue 19 (item 2), at the longest length.
GOAL_SPEEDUP = 10.0  # SDPA forward time / ToST forward time, fp32 and bf16
GOAL_MEMORY = 1.0  # ToST peak forward memory / SDPA's: at most
GOAL_GROWTH = 2.2  # worst ToST forward-time growth per doubling of N, from the shortest length on: at most
GOAL_TRAIN_MEMORY_SLOPE = 1.1  # log-log slope of ToST's training-step memory against N: at most (1 = linear)

OPERATORS = ("tost", "sdpa")
LABELS = {"tost": "ToST (causal TSSA)", "sdpa": "AoT-MHSA, SDPA"}
DTYPES = ("fp32", "bf16")


# --------------------------------------------------------------------------------------------------------------
# Memory: the process's resident-set high-water mark over the resident set just before the call
# --------------------------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------------------------------------------


def build(kind: str, hidden_size: int, num_heads: int, max_tokens: int) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "tost":
        return TokenStatisticsSelfAttention(hidden_size, num_heads, is_causal=True, max_position_embeddings=max_tokens)
    return MultiHeadSelfAttention(hidden_size, num_heads, is_causal=True)


def call(module, kind, x, positions):
    if kind == "tost":
        return module(x, position_ids=positions)[0]
    return module(x, attn_implementation="sdpa")[0]


def forward_fn(module, kind, x, positions, dtype):
    def fn():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
            return call(module, kind, x, positions)

    return fn


def training_fn(module, kind, x, positions, dtype):
    def fn():
        module.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
            out = call(module, kind, x, positions)
        out.float().square().mean().backward()

    return fn


def loglog_slope(xs, ys) -> float | None:
    """Least-squares slope of log(y) against log(x) (1 = linear growth, 2 = quadratic)."""
    pairs = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if y and y > 0]
    if len(pairs) < 2:
        return None
    mx = sum(a for a, _ in pairs) / len(pairs)
    my = sum(b for _, b in pairs) / len(pairs)
    return sum((a - mx) * (b - my) for a, b in pairs) / sum((a - mx) ** 2 for a, _ in pairs)


def run(args) -> dict:
    lengths = args.lengths
    modules = {k: build(k, args.hidden_size, args.num_heads, max(lengths)) for k in OPERATORS}
    results = {}
    # One short training step per operator first: autograd's and the allocator's one-time set-up would otherwise
    # land in the first training-memory measurement.
    for k in OPERATORS:
        short = torch.randn(1, min(256, lengths[0]), args.hidden_size)
        training_fn(modules[k].train(), k, short, torch.arange(short.shape[1])[None], "fp32")()
        modules[k].eval()
    for dtype in args.dtypes:
        entry = {k: {} for k in OPERATORS}
        for n in lengths:
            x = torch.randn(1, n, args.hidden_size, generator=torch.Generator().manual_seed(n))
            positions = torch.arange(n)[None]
            forwards = {k: forward_fn(modules[k], k, x, positions, dtype) for k in OPERATORS}
            for k in OPERATORS:
                forwards[k]()  # warm-up (thread pool, one-time kernel set-up) before the memory measurement
            memory = {k: peak_increase_bytes(forwards[k]) for k in OPERATORS}
            reps = args.reps if n <= 4096 else max(1, args.reps - 1)
            times = interleaved(forwards, args.warmup, reps)
            train_memory = {}
            if not args.skip_train:
                for k in OPERATORS:
                    module = modules[k].train()
                    train_memory[k] = peak_increase_bytes(training_fn(module, k, x, positions, dtype))
                    module.eval()
            for k in OPERATORS:
                entry[k][n] = dict(forward_peak_bytes=memory[k], train_peak_bytes=train_memory.get(k),
                                   **summarize(times[k]))
            print(f"[{dtype}] N={n}: " + ", ".join(
                f"{k} {1e3 * entry[k][n]['median_s']:.1f} ms, fwd +{memory[k] / 1e6:.1f} MB"
                + (f", train +{train_memory[k] / 1e6:.1f} MB" if train_memory else "") for k in OPERATORS), flush=True)
        for k in OPERATORS:
            medians = [entry[k][n]["median_s"] for n in lengths]
            entry[k]["growth"] = [b / a for a, b in zip(medians, medians[1:])]
            entry[k]["slopes"] = dict(
                time=loglog_slope(lengths, medians),
                forward_memory=loglog_slope(lengths, [entry[k][n]["forward_peak_bytes"] for n in lengths]),
                train_memory=None if args.skip_train else loglog_slope(
                    lengths, [entry[k][n]["train_peak_bytes"] for n in lengths]),
            )
        results[dtype] = entry
    return results


# --------------------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------------------


def evaluate_goals(report: dict) -> list[dict]:
    goals, lengths = [], report["lengths"]
    longest = lengths[-1]
    for dtype, entry in report["results"].items():
        t, s = entry["tost"][longest], entry["sdpa"][longest]
        speedup = s["median_s"] / t["median_s"]
        goals.append(dict(goal=f"forward speedup SDPA / ToST at N={longest}", mode=dtype, measured=f"{speedup:.2f}×",
                          target=f"≥ {GOAL_SPEEDUP:g}×", **{"pass": speedup >= GOAL_SPEEDUP}))
        memory = t["forward_peak_bytes"] / max(1, s["forward_peak_bytes"])
        goals.append(dict(goal=f"peak forward memory ToST / SDPA at N={longest}", mode=dtype,
                          measured=f"{memory:.2f}×", target=f"≤ {GOAL_MEMORY:g}×", **{"pass": memory <= GOAL_MEMORY}))
        worst = max(entry["tost"]["growth"])
        goals.append(dict(goal=f"ToST worst time growth per doubling ({lengths[0]}…{longest})", mode=dtype,
                          measured=f"{worst:.2f}×", target=f"≤ {GOAL_GROWTH:g}×", **{"pass": worst <= GOAL_GROWTH}))
        slope = entry["tost"]["slopes"]["train_memory"]
        if slope is not None:
            goals.append(dict(goal="ToST training-step memory, log-log slope against N", mode=dtype,
                              measured=f"{slope:.2f}", target=f"≤ {GOAL_TRAIN_MEMORY_SLOPE:g} (linear)",
                              **{"pass": slope <= GOAL_TRAIN_MEMORY_SLOPE}))
    return goals


def mb(value) -> str:
    return "n/a" if value is None else f"{value / 1e6:,.1f}"


def render(report: dict) -> str:
    lengths = report["lengths"]
    lines = ["# ToST's causal TSSA vs. softmax attention with SDPA on CPU: time, memory, growth with N", ""]
    if report["quick"]:
        lines += ["> **SMOKE RUN (`--quick`)**: short lengths and 1–2 repetitions. The numbers below only show that "
                  "the harness works; they are not a measurement.", ""]
    lines += environment_lines(report, extra=[
        f"* d {report['hidden_size']}, K {report['num_heads']} heads, batch 1, lengths {', '.join(map(str, lengths))}; "
        f"warm-up {report['warmup']}, timed repetitions {report['reps']} (one fewer above 4096 tokens)",
        "* the machine is shared (2 logical CPUs, other agents' jobs): absolute times on a loaded machine overstate "
        "what an idle one takes; the ToST/SDPA ratios are measured side by side (interleaved repetitions in one run) "
        "and stay meaningful"])
    for dtype, entry in report["results"].items():
        lines += [f"## {'fp32' if dtype == 'fp32' else 'bf16 autocast'}", "",
                  "| N | ToST ms | SDPA ms | SDPA / ToST time | ToST fwd peak MB | SDPA fwd peak MB | ToST / SDPA fwd "
                  "memory | ToST train-step peak MB | SDPA train-step peak MB |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for n in lengths:
            t, s = entry["tost"][n], entry["sdpa"][n]
            lines.append(
                f"| {n} | {1e3 * t['median_s']:,.1f} | {1e3 * s['median_s']:,.1f} | "
                f"**{s['median_s'] / t['median_s']:.2f}×** | {mb(t['forward_peak_bytes'])} | "
                f"{mb(s['forward_peak_bytes'])} | {t['forward_peak_bytes'] / max(1, s['forward_peak_bytes']):.2f}× | "
                f"{mb(t['train_peak_bytes'])} | {mb(s['train_peak_bytes'])} |")
        lines += ["", "Time growth per doubling of N (time(2N) / time(N)) and log-log slopes against N "
                  "(1 = linear, 2 = quadratic):", "",
                  "| operator | " + " | ".join(f"{a}→{b}" for a, b in zip(lengths, lengths[1:]))
                  + " | time slope | fwd memory slope | train memory slope |",
                  "|---|" + "---|" * (len(lengths) - 1) + "---|---|---|"]
        for k in OPERATORS:
            sl = entry[k]["slopes"]
            fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
            lines.append(f"| {LABELS[k]} | " + " | ".join(f"{g:.2f}×" for g in entry[k]["growth"])
                         + f" | {fmt(sl['time'])} | {fmt(sl['forward_memory'])} | {fmt(sl['train_memory'])} |")
        lines.append("")
    lines += ["## Goals", "", "Issue 19, item 2, at the longest length unless stated.", ""]
    lines += goals_table(report["goals"], ("goal", "mode", "measured", "target", "pass"),
                         header=("goal", "dtype", "measured", "target", "result"), quick=report["quick"])
    lines += [
        "## How measured", "",
        "* Operators built with `torch.manual_seed(0)`: `TokenStatisticsSelfAttention(d, K, is_causal=True, "
        "max_position_embeddings=N_max)` (default `chunk_size` 1024; the fused causal path "
        "`FusedCausalTokenStatistics`: per-chunk statistics in place on three chunk-sized float32 buffers, chunks "
        "written back into the projection's output at inference, only the inputs kept for backward) and "
        "`MultiHeadSelfAttention(d, K, is_causal=True)` with `attn_implementation=\"sdpa\"` (fused q/k/v projection, "
        "`F.scaled_dot_product_attention(is_causal=True)`, output projection). Equal width: both map (1, N, d) to "
        "(1, N, d) with two d×d-or-wider projections (SDPA's attention has 4 d² weights, TSSA 2 d²).",
        "* Input `N(0, 1)`, positions 0…N−1. bf16: `torch.autocast(\"cpu\", dtype=torch.bfloat16)` around the call "
        "(ToST's statistics stay float32 inside, by design).",
        "* **Time**: `time.perf_counter()` around one forward in `torch.inference_mode()`, the two operators' "
        "repetitions interleaved (A B, B A, …) after warm-up, garbage collector paused; median reported.",
        "* **Peak memory**: resident-set high-water mark (`VmHWM`, reset through `/proc/self/clear_refs`) during "
        "one call, minus the resident set just before it, after `gc.collect()` and glibc `malloc_trim(0)` so freed "
        "memory of earlier calls does not hide the call's own. Forward: one inference forward. Training step: "
        "forward, `out.float().square().mean()`, backward (parameter gradients allocated).",
        "* **Growth**: time(2N)/time(N) for consecutive lengths; slopes are least-squares fits of log(value) "
        "against log(N).",
        "",
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--output", default="docs/results/benchmark_tost.md",
                   help="markdown report path; the raw numbers go to the same name with .json")
    p.add_argument("--quick", action="store_true", help="smoke run: lengths 256…1024, 1 warm-up, 2 reps")
    p.add_argument("--lengths", type=int, nargs="+", default=[2048, 4096, 8192, 16384])
    p.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    add_bf16_argument(p)
    p.add_argument("--hidden-size", type=int, default=256)
    p.add_argument("--num-heads", type=int, default=8)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--reps", type=int, default=3, help="timed repetitions (one fewer above 4096 tokens)")
    p.add_argument("--skip-train", action="store_true", help="do not measure training-step memory")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    args = p.parse_args(argv)
    if args.quick:
        args.lengths, args.warmup, args.reps = [256, 512, 1024], 1, 2
    if sorted(args.lengths) != args.lengths or len(set(args.lengths)) < 2:
        p.error(f"--lengths must be at least two increasing lengths, got {args.lengths}")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    command, env = start(args, argv, "bench_tost_attention.main")
    bf16 = resolve_bf16(args.bf16) if "bf16" in args.dtypes else None
    if bf16 and not bf16["enabled"]:
        print(f"bf16 skipped: {bf16['reason']}", flush=True)
        args.dtypes = [d for d in args.dtypes if d != "bf16"]
    results = run(args)
    env["loadavg_end"] = loadavg()
    report = dict(command=command, date=now(), quick=args.quick, environment=env, bf16=bf16, lengths=args.lengths,
                  hidden_size=args.hidden_size, num_heads=args.num_heads, warmup=args.warmup, reps=args.reps,
                  results={d: {k: {str(n) if isinstance(n, int) else n: v for n, v in e.items()}
                               for k, e in entry.items()} for d, entry in results.items()})
    report_for_render = dict(report, results=results)
    report["goals"] = report_for_render["goals"] = evaluate_goals(report_for_render)
    write_report(args.output, report, lambda: render(report_for_render))
    return report


if __name__ == "__main__":
    main()
