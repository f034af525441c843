"""Helpers shared by the CPU benchmarks in this folder: timing, machine description, report boilerplate.

Imported by the scripts next to it (``bench_crate_vs_vit.py``, ``bench_language_models.py``), which put this
folder on ``sys.path`` first so they run from any working directory.
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import gc
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

import transformers

__all__ = [
    "add_bf16_argument",
    "bf16_matmul_speedup",
    "resolve_bf16",
    "command_line",
    "cpu_flags",
    "cpu_model",
    "environment",
    "environment_lines",
    "interleaved",
    "keep_freed_memory",
    "loadavg",
    "now",
    "peak_increase_bytes",
    "pf",
    "summarize",
    "time_call",
]


# --------------------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------------------


def time_call(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleaved(fns: dict[str, callable], warmup: int, reps: int, self_timed: bool = False) -> dict[str, list[float]]:
    """Warm up every function, then time ``reps`` calls of each, alternating models and flipping the
    order every repetition (A B, B A, A B, …) so slow drifts of background load hit both alike.

    With ``self_timed`` each function returns the seconds of the part of its work that counts (for calls that
    need untimed set-up first, e.g. a prefill before timed decode steps) instead of being timed whole."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        times = {name: [] for name in names}
        for rep in range(reps):
            for name in (names if rep % 2 == 0 else names[::-1]):
                times[name].append(fns[name]() if self_timed else time_call(fns[name]))
    finally:
        if gc_was_enabled:
            gc.enable()
    return times


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field} line")


def _release_freed_memory() -> None:
    """Hand freed heap memory back to the OS, so a call's peak is measured from a low baseline instead of being
    absorbed by memory an earlier call left in the allocator."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def keep_freed_memory(threshold_bytes: int = 256 * 2**20) -> bool:
    """Make glibc keep freed buffers for reuse instead of handing them back to the OS (``mallopt`` of
    ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD``, what the ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``
    environment variables set). By default every buffer above 128 KiB is a fresh ``mmap`` whose pages fault on first
    touch, so each forward pays a page fault per 4 KiB of activations: a cost that lands harder on the model with the
    wider activations and, on some hosts, took 15 % of ViT's throughput. True where both calls took (glibc)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    return bool(libc.mallopt(m_mmap_threshold, threshold_bytes)) and bool(libc.mallopt(m_trim_threshold,
                                                                                          threshold_bytes))


def peak_increase_bytes(fn) -> int:
    """Peak resident memory of one call of ``fn`` above the resident memory just before it (Linux: the high-water
    mark ``VmHWM`` is reset through ``/proc/self/clear_refs``)."""
    _release_freed_memory()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    baseline = _status_kb("VmRSS")
    result = fn()
    peak = _status_kb("VmHWM")
    del result
    return max(0, peak - baseline) * 1024


def summarize(times: list[float]) -> dict:
    times_sorted = sorted(times)
    q = lambda f: times_sorted[min(len(times_sorted) - 1, int(round(f * (len(times_sorted) - 1))))]  # noqa: E731
    return dict(median_s=statistics.median(times), min_s=times_sorted[0], max_s=times_sorted[-1],
                q25_s=q(0.25), q75_s=q(0.75), reps=len(times), times_s=times)


# --------------------------------------------------------------------------------------------------------------
# Machine and report boilerplate
# --------------------------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                keep = [f for f in flags if f.startswith(("avx512", "amx")) or f in ("avx2", "fma")]
                return " ".join(sorted(keep))
    except OSError:
        pass
    return ""


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def memory_total_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def pf(flag: bool | None) -> str:
    """PASS / MISS, or "not measured" for a goal this run could not measure (``None``)."""
    return "not measured" if flag is None else "**PASS**" if flag else "**MISS**"


def bf16_matmul_speedup(size: int = 256, reps: int = 3) -> float:
    """Rate of a ``size``³ bf16 ``torch.mm`` over the fp32 rate, medians of ``reps`` calls after one warm-up.

    Above 1 where the CPU multiplies bf16 natively (AVX512-BF16, AMX: 2-5× the fp32 rate on the machines these
    pages were first measured on); far below 1 where bf16 is emulated (an AVX2-only CPU: 0.03 at 256³, 0.005 at 2048³, i.e. a bf16
    model runs ~200× slower than in fp32, and a bf16 benchmark would take hours to measure nothing of interest).
    """
    rates = {}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
        torch.mm(a, b)
        rates[dtype] = 1 / statistics.median(time_call(lambda: torch.mm(a, b)) for _ in range(reps))
    return rates[torch.bfloat16] / rates[torch.float32]


def add_bf16_argument(parser) -> None:
    """The ``--bf16 auto|on|off`` switch every benchmark with bf16 modes takes (see `resolve_bf16`)."""
    parser.add_argument("--bf16", default="auto", choices=["auto", "on", "off"],
                        help="measure the bf16 modes: auto = only where a bf16 matmul is at least as fast as an fp32 "
                             "one (a CPU that emulates bf16 would take hours to measure the emulation)")


def resolve_bf16(choice: str) -> dict:
    """``--bf16 auto|on|off``: whether a benchmark measures its bf16 modes. ``auto`` measures them only where a bf16
    matmul is at least as fast as an fp32 one (`bf16_matmul_speedup`). Returns ``{"enabled", "choice",
    "speedup" (None unless measured), "reason" (why bf16 is skipped, None when it runs)}``."""
    if choice not in ("auto", "on", "off"):
        raise ValueError(f"`bf16` must be one of auto, on, off, got {choice!r}")
    if choice != "auto":
        return dict(enabled=choice == "on", choice=choice, speedup=None,
                    reason=None if choice == "on" else "turned off on the command line (`--bf16 off`)")
    speedup = bf16_matmul_speedup()
    reason = None if speedup >= 1 else (
        f"this CPU emulates bf16 matmuls (a 256³ bf16 `torch.mm` ran at {speedup:.4f}× the fp32 rate; ISA flags "
        f"`{cpu_flags() or 'none'}`, no avx512_bf16 or amx_bf16), so bf16 rows would measure the emulation, not the "
        "models; rerun on a CPU with native bf16 (or pass `--bf16 on`)")
    return dict(enabled=speedup >= 1, choice=choice, speedup=speedup, reason=reason)


def goals_table(goals: list[dict], keys: tuple[str, ...], header: tuple[str, ...] | None = None,
                quick: bool = False) -> list[str]:
    """A report's goals as markdown lines: one column per key of ``keys`` (``"pass"`` shown by `pf`), headed by
    ``header`` (default: the keys, ``"pass"`` as ``result``), a blank line, and with ``quick`` the smoke-run note."""
    header = header or tuple("result" if key == "pass" else key for key in keys)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(pf(g[key]) if key == "pass" else f"{g[key]}" for key in keys) + " |" for g in goals]
    lines.append("")
    if quick:
        lines += ["(Smoke run: PASS/MISS above is not meaningful.)", ""]
    return lines


def write_report(output, report: dict, render) -> Path:
    """``<output>.json`` with ``report`` first (a long run's measurements survive a failure in the rendering:
    ``--from-json``), then the markdown page ``render()`` returns to ``output``; prints the page and both paths."""
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    markdown = render()
    out.write_text(markdown)
    print()
    print(markdown)
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return out


def now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def command_line(argv, entry_point: str) -> str:
    """The command that reproduces this run: the interpreter (relative to the working directory when below it)
    and ``sys.argv`` for a script run, or ``entry_point`` and the arguments for a call of ``main(argv)``."""
    exe = sys.executable
    try:
        relative = os.path.relpath(exe)
    except ValueError:  # another drive
        relative = ".."
    # An interpreter outside the working tree is named, not located: a results page shows no local path.
    exe = relative if not relative.startswith("..") else "python"
    return shlex.join([exe] + sys.argv) if argv is None else shlex.join([entry_point] + list(argv))


def environment() -> dict:
    """Library versions, threads and the CPU; call after ``torch.set_num_threads``."""
    return dict(
        cpu_model=cpu_model(), cpu_flags=cpu_flags(), logical_cpus=os.cpu_count(), memory_gb=memory_total_gb(),
        torch=torch.__version__, torch_threads=torch.get_num_threads(),
        torch_interop_threads=torch.get_num_interop_threads(), mkldnn=torch.backends.mkldnn.is_available(),
        transformers=transformers.__version__, python=platform.python_version(), loadavg_start=loadavg(),
    )


def start(args, argv, entry_point: str) -> tuple[str, dict]:
    """Apply ``--threads``, record the command line and the environment, and print a one-line header."""
    if args.threads:
        torch.set_num_threads(args.threads)
    env = environment()
    print(f"torch {env['torch']}, {env['torch_threads']} threads, CPU {env['cpu_model']}, load {env['loadavg_start']}",
          flush=True)
    return command_line(argv, entry_point), env


def other_load(env: dict) -> float:
    """Load added by other processes: before the run any load is other work; by the end, the benchmark's own
    threads account for about ``torch_threads`` of it."""
    if "n/a" in (env["loadavg_start"], env.get("loadavg_end", "n/a")):
        return 0.0
    return max(float(env["loadavg_start"].split()[0]), float(env["loadavg_end"].split()[0]) - env["torch_threads"])


def environment_lines(report: dict, extra: list[str] = ()) -> list[str]:
    """The ``## Environment`` section (command, date, CPU, libraries, load) and, under it, the warning when other
    processes loaded the machine. ``extra`` bullets go after the standard ones."""
    env = report["environment"]
    memory = f", {env['memory_gb']:.0f} GiB RAM" if env.get("memory_gb") else ""
    lines = [
        "## Environment", "",
        f"* command: `{report['command']}`",
        f"* date: {report['date']}",
        f"* CPU: {env['cpu_model']} ({env['logical_cpus']} logical CPUs visible{memory}; ISA flags: {env['cpu_flags']})",
        f"* torch {env['torch']} (threads: {env['torch_threads']}, interop threads: {env['torch_interop_threads']}, "
        f"oneDNN/mkldnn: {env['mkldnn']}), transformers {env['transformers']}, Python {env['python']}",
        f"* load average (1/5/15 min) at start: {env['loadavg_start']}; at end: {env['loadavg_end']} "
        "(anything else running on the machine competes for the same cores)",
        *extra,
        "",
    ]
    bf16 = report.get("bf16")
    if bf16 and not bf16["enabled"]:
        lines += [f"> **bf16 not measured**: {bf16['reason']}. The bf16 rows and goals of this page are therefore "
                  "absent or marked \"not measured\".", ""]
    load = other_load(env)
    if load > 0.5:
        lines += [f"> **Warning**: other processes added a load of about {load:.2f} on "
                  f"{env['logical_cpus']} logical CPUs while this ran, so the timings are noisy; compare the "
                  "q25–q75 spread and rerun on an idle machine.", ""]
    return lines
