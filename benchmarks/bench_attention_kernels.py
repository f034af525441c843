#!/usr/bin/env python
"""PyTorch's SDPA against plain matmul-softmax-matmul on CPU, fp32 and bf16, forward and forward + backward, at
CRATE's attention shapes and at longer causal sequences: the measurement behind
`whitebox_hf.nn.attention.uses_low_precision_cpu_matmul` (issue 19 item 1).

    python benchmarks/bench_attention_kernels.py --threads 1

Writes ``docs/results/benchmark_attention_kernels.md`` (and ``.json``). Each shape times, interleaved:
``sdpa``: ``F.scaled_dot_product_attention`` (on CPU, PyTorch's flash kernel), and ``matmul``:
``softmax(Q Kᵀ · scale) V`` with the softmax in the inputs' dtype (what `attend` runs in bf16 with at most
`LOW_PRECISION_CPU_MATMUL_MAX_KEYS` keys). Query = key = value (MSSA); ratio = sdpa time / matmul time (> 1: the
matmul route is faster).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_bf16_argument, environment_lines, interleaved, loadavg, now, resolve_bf16, start  # noqa: E402
from _common import write_report  # noqa: E402
from _slopes import loglog_slope, slope_cell  # noqa: E402

from whitebox_hf.nn.attention import LOW_PRECISION_CPU_MATMUL_MAX_KEYS  # noqa: E402

# (name, batch, heads, tokens, head_dim, causal)
SHAPES = (
    ("CRATE 28² (fmnist-28), batch 64", 64, 6, 50, 32, False),
    ("CRATE-T 224², batch 8", 8, 6, 197, 64, False),
    ("causal 256", 1, 4, 256, 64, True),
    ("causal 512", 1, 4, 512, 64, True),
    ("causal 1024", 1, 4, 1024, 64, True),
    ("causal 4096", 1, 4, 4096, 64, True),
)


def matmul_attention(q, k, v, causal: bool):
    scores = torch.matmul(q, k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    if causal:
        n = scores.shape[-1]
        scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    return torch.matmul(torch.softmax(scores, dim=-1), v)


def workload(kernel: str, shape, dtype, backward: bool):
    _, batch, heads, tokens, head_dim, causal = shape
    q = torch.randn(batch, heads, tokens, head_dim, generator=torch.Generator().manual_seed(0)).to(dtype)
    q.requires_grad_(backward)

    def run():
        with torch.set_grad_enabled(backward):
            out = (F.scaled_dot_product_attention(q, q, q, is_causal=causal) if kernel == "sdpa"
                   else matmul_attention(q, q, q, causal))
            if backward:
                out.float().sum().backward()
                q.grad = None
    return run


def measure(args) -> list[dict]:
    rows = []
    for shape in SHAPES:
        for dtype in args.dtypes:
            for backward in (False, True):
                fns = {kernel: workload(kernel, shape, dtype, backward) for kernel in ("sdpa", "matmul")}
                times = interleaved(fns, args.warmup, args.reps)
                medians = {k: statistics.median(t) for k, t in times.items()}
                rows.append(dict(shape=shape[0], tokens=shape[3], dtype=str(dtype).replace("torch.", ""),
                                 mode="forward + backward" if backward else "forward",
                                 sdpa_ms=1e3 * medians["sdpa"], matmul_ms=1e3 * medians["matmul"],
                                 ratio=medians["sdpa"] / medians["matmul"]))
                print(rows[-1], flush=True)
    return rows


def render(report: dict) -> str:
    lines = ["# Attention kernels on CPU: SDPA vs. matmul-softmax-matmul", ""]
    lines += environment_lines(report, [f"* warm-up {report['warmup']}, timed repetitions {report['reps']} "
                                        "(interleaved), medians"])
    lines += ["| shape | dtype | pass | SDPA ms | matmul ms | SDPA / matmul |", "|---|---|---|---|---|---|"]
    for row in report["rows"]:
        lines.append(f"| {row['shape']} | {row['dtype']} | {row['mode']} | {row['sdpa_ms']:.2f} | "
                     f"{row['matmul_ms']:.2f} | **{row['ratio']:.2f}** |")
    lines += ["", *growth_lines(report["rows"])]
    bf16 = [r for r in report["rows"] if r["dtype"] == "bfloat16"]
    short = [r["ratio"] for r in bf16 if r["tokens"] <= report["max_keys"]]
    long = [r["ratio"] for r in bf16 if r["tokens"] > report["max_keys"]]
    fp32 = [r["ratio"] for r in report["rows"] if r["dtype"] == "float32"]
    if not (short and long and fp32):  # a run without bf16 (or without short/long shapes) has no comparison to state
        return "\n".join(lines) + "\n"
    lines += ["", f"In bf16, up to {report['max_keys']} keys (`LOW_PRECISION_CPU_MATMUL_MAX_KEYS`), SDPA takes "
              f"{min(short):.2f}–{max(short):.2f}× the matmul route's time; beyond it "
              f"{min(long):.2f}–{max(long):.2f}×. In fp32 it takes {min(fp32):.2f}–{max(fp32):.2f}× (below 1: SDPA "
              "is faster). So `attend(..., \"sdpa\")` takes the matmul route in bf16/fp16 on CPU up to that many "
              "keys and calls SDPA otherwise and in fp32: past a few hundred keys the matmul route's N×N scores "
              "(and, for training, the probabilities kept for backward) grow quadratically while SDPA's memory "
              "stays linear, which the ToST/AoT memory comparison of `benchmark_tost.md` depends on."]
    return "\n".join(lines) + "\n"


def growth_lines(rows: list[dict]) -> list[str]:
    """Cost growth with the sequence: the log-log slope of time against tokens over the causal shapes (one head
    layout, 256 to 4,096 tokens), per dtype, pass and kernel. Attention does N² work, so 2 is its expected slope;
    below 2 the fixed per-call costs still weigh at the short end."""
    causal = [r for r in rows if r["shape"].startswith("causal")]
    keys = sorted({(r["dtype"], r["mode"]) for r in causal}, key=lambda k: (k[0] != "float32", k[1]))
    if not keys:
        return []
    lines = ["**Cost growth with the sequence** (causal shapes, "
             f"{', '.join(str(t) for t in sorted({r['tokens'] for r in causal}))} tokens; slope of log(time) against "
             "log(tokens): 2 = quadratic, the attention's N² work):", "",
             "| dtype | pass | SDPA slope | matmul slope |", "|---|---|---|---|"]
    for dtype, mode in keys:
        chosen = sorted((r for r in causal if (r["dtype"], r["mode"]) == (dtype, mode)), key=lambda r: r["tokens"])
        tokens = [r["tokens"] for r in chosen]
        lines.append(f"| {dtype} | {mode} | {slope_cell(loglog_slope(tokens, [r['sdpa_ms'] for r in chosen]))} | "
                     f"{slope_cell(loglog_slope(tokens, [r['matmul_ms'] for r in chosen]))} |")
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--output", default="docs/results/benchmark_attention_kernels.md")
    p.add_argument("--from-json", default=None, help="render the page again from a run's JSON, measuring nothing")
    add_bf16_argument(p)
    args = p.parse_args(argv)
    if args.from_json:
        report = json.loads(Path(args.from_json).read_text())
        Path(args.output).write_text(render(report))
        print(f"rendered {args.from_json} into {args.output}")
        return report
    command, env = start(args, argv, "bench_attention_kernels.main")
    bf16 = resolve_bf16(args.bf16)
    args.dtypes = (torch.float32, torch.bfloat16) if bf16["enabled"] else (torch.float32,)
    rows = measure(args)
    env["loadavg_end"] = loadavg()
    report = dict(command=command, date=now(), environment=env, bf16=bf16, warmup=args.warmup,
                  reps=args.reps, rows=rows, max_keys=LOW_PRECISION_CPU_MATMUL_MAX_KEYS)
    write_report(args.output, report, lambda: render(report))
    return report


if __name__ == "__main__":
    main()
