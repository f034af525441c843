#!/usr/bin/env python
"""CPU benchmark: the white-box causal language models against GPT-2 at equal width, depth and heads.

Models (all built from scratch, default d 256, L 6, K 8, vocabulary 8192, 16384 positions): ToST (causal TSSA),
CausalCRATE (MSSA + ISTA), CausalCRATE-α (MSSA + ODL), AoT-MSSA, AoT-MHSA and transformers'
`GPT2LMHeadModel`. Three parts (``--parts a,b,c``), each in fp32 and under bf16 autocast, all in one run (part
(b) also with the weights cast to bf16, ``bf16-cast``):

  (a) long-context forward: time and peak memory of one batch-1 forward at 1k…16k tokens for ToST against
      causal softmax attention of the same width (AoT-MHSA and GPT-2, each with SDPA and with eager attention).
      Every configuration runs in a fresh process so that its peak memory is its own; configurations whose
      predicted N×N attention buffers exceed ``--max-memory-gb`` are skipped, not run.
  (b) generation: tokens/s of greedy one-token decode steps with each model's cache after a prefill of
      128…4096 tokens (ToST, CausalCRATE, AoT-MSSA, AoT-MHSA, GPT-2), with a growing `DynamicCache` and with a
      preallocated `StaticCache` (``--caches``; ToST keeps its own constant-size state either way).
  (c) training: tokens/s of forward + backward + AdamW step at batch 8 × 256 tokens for all six models.

It writes a markdown report (``--output``) and a JSON with every raw timing next to it, with a log-log slope
table (time and memory against the length or context) next to the ratios, and prints the goals as PASS/MISS.
``--reuse-from OLD.json`` takes the parts not run now from an earlier run's JSON (same model sizes), so one
part can be rerun without rerunning the others; the page names both commands. Smoke test: ``--quick`` (tiny
lengths; writes under /tmp unless ``--output`` is given).

Usage::

    .venv/bin/python benchmarks/bench_language_models.py --threads 2
    .venv/bin/python benchmarks/bench_language_models.py --quick --threads 2
    # decode only, both caches, the other parts kept from the previous full run:
    .venv/bin/python benchmarks/bench_language_models.py --threads 2 --parts b \
        --reuse-from docs/results/benchmark_language.json
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import math
import multiprocessing as mp
import re
import resource
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import StaticCache

from whitebox_hf.training.builders import build_causal_lm

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_common.py, whatever the working directory
from _common import environment_lines, goals_table, interleaved, loadavg, now, start, summarize, time_call  # noqa: E402
from _common import add_bf16_argument, resolve_bf16  # noqa: E402
from _slopes import loglog_slope, slope_cell  # noqa: E402

DEFAULT_OUTPUT = "docs/results/benchmark_language.md"
QUICK_OUTPUT = "/tmp/whitebox_hf_bench/benchmark_language_quick.md"  # never next to the real results

# Goals.
GOAL_TOST_GROWTH = 2.2  # (a) ToST forward time per doubling of the sequence length: at most
GOAL_TOST_SPEEDUP_SDPA = 5.0  # (a) ToST vs SDPA softmax attention at the longest length: at least
GOAL_TOST_MEMORY_VS_EAGER = 10.0  # (a) eager peak memory / ToST peak memory at the longest length eager ran: at least
GOAL_TOST_DECODE_FLATNESS = 1.5  # (b) ToST ms/token, slowest context / fastest context: at most
GOAL_CRATE_DECODE_VS_GPT2 = 1.5  # (b) CausalCRATE tokens/s / GPT-2 tokens/s, at every context: at least

MODES = {"fp32": False, "bf16-autocast": True}  # name: autocast to bf16? (every part)
# Part (b) only: a copy of each model with its weights cast to bf16, no autocast. In one-token decode steps autocast
# casts every fp32 weight again at every step (in inference mode it keeps no cast cache; the tied 8192×256 LM head
# alone is ~2.8 ms a step here), so a bf16 decode is what users run with a cast model.
CAST_MODES = {"bf16-cast": torch.bfloat16}

LABELS = {
    "tost": "ToST",
    "causal-crate": "CausalCRATE",
    "causal-crate-alpha": "CausalCRATE-α",
    "aot-mssa": "AoT-MSSA",
    "aot-mhsa": "AoT-MHSA",
    "gpt2": "GPT-2",
}
GEN_MODELS = ("tost", "causal-crate", "aot-mssa", "aot-mhsa", "gpt2")
# (b) caches: "dynamic" is each model's default (a growing DynamicCache; ToST's constant-size statistics),
# "static" a preallocated transformers StaticCache of context + decode-steps slots. ToST has no keys to
# preallocate: it runs only under "dynamic", its own state.
CACHES = ("dynamic", "static")
CACHE_LABELS = {"dynamic": "dyn", "static": "static"}
TRAIN_MODELS = ("tost", "causal-crate", "causal-crate-alpha", "aot-mssa", "aot-mhsa", "gpt2")
# Part (a): (key, model, attention implementation). ToST has no softmax attention: its "sdpa" is never used.
FORWARD_CONFIGS = (
    ("tost", "tost", "sdpa"),
    ("aot-mhsa/sdpa", "aot-mhsa", "sdpa"),
    ("aot-mhsa/eager", "aot-mhsa", "eager"),
    ("gpt2/sdpa", "gpt2", "sdpa"),
    ("gpt2/eager", "gpt2", "eager"),
)
FORWARD_LABELS = {"tost": "ToST", "aot-mhsa/sdpa": "AoT-MHSA SDPA", "aot-mhsa/eager": "AoT-MHSA eager",
                  "gpt2/sdpa": "GPT-2 SDPA", "gpt2/eager": "GPT-2 eager"}


# --------------------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Dims:
    hidden_size: int
    num_layers: int
    num_heads: int
    vocab_size: int
    max_positions: int


def build_model(key: str, dims: Dims, attn: str = "sdpa") -> torch.nn.Module:
    """A freshly initialised model in eval mode (seed it before calling). Dropout is 0 everywhere (GPT-2's
    default 0.1 is switched off, as in nanoGPT and the white-box configurations)."""
    # One builder and one set of family keys with training/train_causal_lm.py (`CAUSAL_LM_MODELS`).
    args = dict(model=key, hidden_size=dims.hidden_size, num_hidden_layers=dims.num_layers,
                num_attention_heads=dims.num_heads, context_length=dims.max_positions)
    model = build_causal_lm(args, dims.vocab_size, attn_implementation=attn)
    assert model.config._attn_implementation == attn, (key, model.config._attn_implementation, attn)
    return model.eval()


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    """All distinct parameters (tied LM head once), and those outside the token and position tables."""
    total = sum(p.numel() for p in model.parameters())
    tables = {id(m.weight): m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    return dict(total=total, non_embedding=total - sum(tables.values()))


def autocast_ctx(enabled: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled)


# --------------------------------------------------------------------------------------------------------------
# (a) Long-context forward: one fresh process per configuration
# --------------------------------------------------------------------------------------------------------------


def predicted_attention_gb(key: str, num_tokens: int, num_heads: int) -> float:
    """Predicted size of the N×N buffers of one eager forward (batch 1), in GB (10⁹ bytes); 0 for SDPA and ToST.

    Layers run one after another, so only one layer's scores are alive at a time: the (heads × N × N) scores
    and the softmax probabilities next to them (fp32, or bf16 scores + fp32 softmax + bf16 probabilities
    under autocast: 8 bytes per entry in both cases), plus one N×N causal mask."""
    if not key.endswith("/eager"):
        return 0.0
    return (2 * 4 * num_heads * num_tokens**2 + 4 * num_tokens**2) / 1e9


def _proc_status_kb(field: str) -> int | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux ≥ 4.0); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _proc_status_kb("VmHWM") is not None


def forward_fn(model, input_ids, autocast: bool):
    def fn():
        with torch.inference_mode(), autocast_ctx(autocast):
            return model(input_ids=input_ids, use_cache=False, logits_to_keep=1).logits

    return fn


def measure_forward(spec: dict) -> dict:
    """Build one model, then measure the peak memory of its first forward and the time of later ones."""
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    model = build_model(spec["model"], Dims(**spec["dims"]), spec["attn"])
    input_ids = torch.randint(0, spec["dims"]["vocab_size"], (1, spec["num_tokens"]),
                              generator=torch.Generator().manual_seed(1))
    fn = forward_fn(model, input_ids, spec["autocast"])
    # One forward of 16 tokens first: it starts the thread pool and triggers lazy imports and one-time kernel
    # set-up, whose memory does not depend on N, and leaves next to nothing in the allocator.
    forward_fn(model, input_ids[:, :16], spec["autocast"])()
    gc.collect()
    # Peak memory: RSS high-water mark of the first full-length forward over the RSS just before it. The first
    # call is the one measured because later calls reuse memory the allocator kept.
    if _reset_peak_rss():
        method = "VmHWM after reset"
        baseline_kb = _proc_status_kb("VmRSS")
        first_s = time_call(fn)
        peak_kb = _proc_status_kb("VmHWM")
    else:
        method = "ru_maxrss"
        baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        first_s = time_call(fn)
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(spec["warmup"] - 1):
        fn()
    gc.collect()
    gc.disable()
    times, start = [], time.perf_counter()
    while len(times) < spec["reps"]:
        times.append(time_call(fn))
        if len(times) >= spec["min_reps"] and time.perf_counter() - start > spec["budget_s"]:
            break
    gc.enable()
    return dict(peak_increase_bytes=max(0, peak_kb - baseline_kb) * 1024, baseline_rss_bytes=baseline_kb * 1024,
                memory_method=method, first_call_s=first_s, threads=torch.get_num_threads(), **summarize(times))


def forward_worker(spec: dict, conn) -> None:
    try:
        result = measure_forward(spec)
    except BaseException as error:  # noqa: BLE001 - reported in the table, never fatal to the run
        result = dict(error=f"{type(error).__name__}: {error}")
    conn.send(result)
    conn.close()


def run_in_fresh_process(ctx, spec: dict, timeout_s: float) -> dict:
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=forward_worker, args=(spec, send), daemon=True)
    process.start()
    send.close()
    result = None
    if receive.poll(timeout_s):
        try:
            result = receive.recv()
        except EOFError:
            result = None
    process.join(5 if result is not None else 0.1)
    if process.is_alive():
        process.kill()
        process.join()
        if result is None:
            return dict(error=f"timed out after {timeout_s:.0f} s")
    if result is None:
        code = process.exitcode
        why = f"killed by signal {-code}" + (" (out of memory?)" if code == -9 else "") if code and code < 0 else f"exit code {code}"
        return dict(error=f"worker died: {why}")
    return result


def run_forward_part(args, dims: Dims) -> dict:
    ctx = mp.get_context("forkserver")
    # The server imports the libraries once; each configuration is forked from it, so a fresh process costs
    # milliseconds instead of an import of torch + transformers. The server never computes, so its children
    # start with clean thread pools and a clean allocator.
    # `whitebox_hf` imports its models lazily, so the builders module is named: with the package alone every child
    # imported the model families (transformers' modeling modules) itself, about 4 s per configuration (a smoke
    # run of part (a): 57 s before, 16 s after). `__name__` covers a run of this file imported as a module.
    ctx.set_forkserver_preload(["__main__", __name__, "torch", "transformers", "whitebox_hf.training.builders"])
    configs = [c for c in FORWARD_CONFIGS]
    part = dict(lengths=args.lengths, configs=[c[0] for c in configs], max_memory_gb=args.max_memory_gb, modes={})
    for mode in [m for m in args.modes if m in MODES]:
        entry = {key: {} for key, _, _ in configs}
        for i, n in enumerate(args.lengths):
            for key, model_key, attn in (configs if i % 2 == 0 else configs[::-1]):
                predicted = predicted_attention_gb(key, n, dims.num_heads)
                if predicted > args.max_memory_gb:
                    entry[key][n] = dict(skipped=True, predicted_gb=predicted)
                    print(f"[a {mode}] N={n:>6} {FORWARD_LABELS[key]:<15} skipped (predicted {predicted:.1f} GB "
                          f"> --max-memory-gb {args.max_memory_gb:g})", flush=True)
                    continue
                spec = dict(model=model_key, attn=attn, dims=asdict(dims), num_tokens=n, autocast=MODES[mode],
                            threads=args.threads, warmup=args.warmup, reps=args.forward_reps,
                            min_reps=args.forward_min_reps, budget_s=args.forward_budget_s)
                t0 = time.perf_counter()
                res = run_in_fresh_process(ctx, spec, args.worker_timeout_s)
                res.update(predicted_gb=predicted, wall_s=time.perf_counter() - t0, skipped=False)
                entry[key][n] = res
                if "error" in res:
                    print(f"[a {mode}] N={n:>6} {FORWARD_LABELS[key]:<15} FAILED: {res['error']}", flush=True)
                else:
                    print(f"[a {mode}] N={n:>6} {FORWARD_LABELS[key]:<15} {1e3 * res['median_s']:9.1f} ms "
                          f"({res['reps']} reps), peak +{res['peak_increase_bytes'] / 1e6:8.1f} MB", flush=True)
        part["modes"][mode] = entry
    return part


def ok(cell: dict | None) -> bool:
    return cell is not None and not cell.get("skipped") and "error" not in cell


def growth_factors(entry: dict, lengths: list[int]) -> list[dict]:
    """Time growth per doubling between consecutive lengths: (t₂/t₁)^(1/log₂(N₂/N₁))."""
    out = []
    for n1, n2 in zip(lengths, lengths[1:]):
        a, b = entry.get(n1), entry.get(n2)
        factor = None
        if ok(a) and ok(b):
            factor = (b["median_s"] / a["median_s"]) ** (1 / math.log2(n2 / n1))
        out.append({"from": n1, "to": n2, "factor": factor})
    return out


# --------------------------------------------------------------------------------------------------------------
# (b) Generation
# --------------------------------------------------------------------------------------------------------------


def cache_bytes(cache) -> int:
    """Bytes held by a generation cache: keys/values of a DynamicCache, running sums of a TokenStatisticsCache."""
    total = 0
    for layer in getattr(cache, "layers", []):
        for name in ("keys", "values", "energy", "weighted_moment", "mass"):
            t = getattr(layer, name, None)
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()
    return total


def decode_fn(model, context_ids, steps: int, autocast: bool, record: dict, cache_kind: str = "dynamic"):
    """Prefill ``context_ids`` (untimed), then time ``steps`` greedy decode steps, one token each, calling the
    model's forward with its cache (``cache_kind`` "static": a `StaticCache` of context + steps slots, allocated
    before the prefill). Returns the seconds of the decode steps."""

    def fn():
        with torch.inference_mode(), autocast_ctx(autocast):
            t0 = time.perf_counter()
            cache = None
            if cache_kind == "static":
                cache = StaticCache(config=model.config, max_cache_len=context_ids.shape[1] + steps)
            out = model(input_ids=context_ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
            record["prefill_s"].append(time.perf_counter() - t0)
            cache = out.past_key_values
            if "cache_bytes_after_prefill" not in record:
                record["cache_bytes_after_prefill"] = cache_bytes(cache)
            token = out.logits[:, -1].argmax(-1, keepdim=True)
            t1 = time.perf_counter()
            for _ in range(steps):
                out = model(input_ids=token, past_key_values=cache, use_cache=True, logits_to_keep=1)
                cache = out.past_key_values
                token = out.logits[:, -1].argmax(-1, keepdim=True)
            elapsed = time.perf_counter() - t1
            assert int(cache.get_seq_length()) == context_ids.shape[1] + steps, cache.get_seq_length()
        return elapsed

    return fn


def series_key(model_key: str, cache_kind: str) -> str:
    return f"{model_key}/{cache_kind}"


def series_label(key: str) -> str:
    model_key, cache_kind = key.split("/")
    return LABELS[model_key] if model_key == "tost" else f"{LABELS[model_key]} {CACHE_LABELS[cache_kind]}"


def generation_series(models, caches) -> list[str]:
    """The (model, cache) pairs part (b) times, cache-major so that each cache's columns sit together."""
    return [series_key(k, c) for c in caches for k in models if not (k == "tost" and c != "dynamic")]


def run_generation_part(args, dims: Dims) -> dict:
    torch.manual_seed(0)
    models = {k: build_model(k, dims) for k in args.gen_models}
    series = generation_series(models, args.caches)
    part = dict(contexts=args.contexts, decode_steps=args.decode_steps, models=list(models), caches=args.caches,
                series=series, modes={})
    g = torch.Generator().manual_seed(2)
    for mode in args.modes:
        entry = {}
        mode_models = ({k: copy.deepcopy(m).to(CAST_MODES[mode]) for k, m in models.items()} if mode in CAST_MODES
                       else models)
        for context in args.contexts:
            ids = torch.randint(0, dims.vocab_size, (1, context), generator=g)
            records = {s: dict(prefill_s=[]) for s in series}
            fns = {s: decode_fn(mode_models[s.split("/")[0]], ids, args.decode_steps, MODES.get(mode, False),
                                records[s], s.split("/")[1]) for s in series}
            times = interleaved(fns, args.warmup, args.reps, self_timed=True)
            row = {}
            for s in series:
                stats = summarize(times[s])
                row[s] = dict(ms_per_token=1e3 * stats["median_s"] / args.decode_steps,
                              tokens_per_s=args.decode_steps / stats["median_s"],
                              prefill_median_s=summarize(records[s]["prefill_s"][-args.reps:])["median_s"],
                              cache_bytes_after_prefill=records[s]["cache_bytes_after_prefill"], **stats)
            entry[context] = row
            print(f"[b {mode}] context {context:>5}: " + ", ".join(
                f"{series_label(s)} {row[s]['tokens_per_s']:.0f} tok/s" for s in series), flush=True)
        part["modes"][mode] = entry
    return part


# --------------------------------------------------------------------------------------------------------------
# (c) Training
# --------------------------------------------------------------------------------------------------------------


def training_fn(model, input_ids, autocast: bool):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)

    def fn():
        optimizer.zero_grad(set_to_none=True)
        with autocast_ctx(autocast):
            loss = model(input_ids=input_ids, labels=input_ids, use_cache=False).loss
        loss.backward()
        optimizer.step()

    return fn


def run_training_part(args, dims: Dims) -> dict:
    torch.manual_seed(0)
    models = {k: build_model(k, dims) for k in args.train_models}
    tokens = args.train_batch * args.train_context
    ids = torch.randint(0, dims.vocab_size, (args.train_batch, args.train_context),
                        generator=torch.Generator().manual_seed(3))
    part = dict(batch=args.train_batch, context=args.train_context, models=list(models), modes={})
    for mode in [m for m in args.modes if m in MODES]:
        run_models = {k: copy.deepcopy(m).train() for k, m in models.items()}
        fns = {k: training_fn(m, ids, MODES[mode]) for k, m in run_models.items()}
        print(f"[c {mode}] batch {args.train_batch} × {args.train_context}, {args.warmup} warm-up + {args.reps} reps",
              flush=True)
        times = interleaved(fns, args.warmup, args.reps)
        entry = {}
        for k in models:
            stats = summarize(times[k])
            entry[k] = dict(step_ms=1e3 * stats["median_s"], tokens_per_s=tokens / stats["median_s"], **stats)
        if "gpt2" in entry:
            for k in models:
                entry[k]["tokens_per_s_vs_gpt2"] = entry[k]["tokens_per_s"] / entry["gpt2"]["tokens_per_s"]
        part["modes"][mode] = entry
        print("    " + ", ".join(f"{LABELS[k]} {entry[k]['tokens_per_s']:.0f} tok/s" for k in models), flush=True)
        del run_models, fns
        gc.collect()
    return part


# --------------------------------------------------------------------------------------------------------------
# Goals and report
# --------------------------------------------------------------------------------------------------------------


def evaluate_goals(report: dict) -> list[dict]:
    goals = []

    def add(goal, mode, measured, target, value, passed, note=""):
        goals.append(dict(goal=goal, mode=mode, measured=measured, target=target, value=value,
                          **{"pass": bool(passed)}, note=note))

    fwd = report["parts"].get("a")
    if fwd:
        lengths = fwd["lengths"]
        longest = lengths[-1]
        for mode, entry in fwd["modes"].items():
            tost = entry["tost"]
            factors = [g["factor"] for g in growth_factors(tost, lengths) if g["factor"] is not None]
            if factors:
                worst = max(factors)
                add("ToST forward time growth per doubling (worst step)", mode, f"{worst:.2f}×",
                    f"≤ {GOAL_TOST_GROWTH}×", worst, worst <= GOAL_TOST_GROWTH,
                    f"{lengths[0]}→{longest}: " + ", ".join(f"{f:.2f}" for f in factors))
            for key in ("aot-mhsa/sdpa", "gpt2/sdpa"):
                a, b = tost.get(longest), entry[key].get(longest)
                if ok(a) and ok(b):
                    speedup = b["median_s"] / a["median_s"]
                    add(f"ToST speedup vs {FORWARD_LABELS[key]} at N={longest}", mode, f"{speedup:.2f}×",
                        f"≥ {GOAL_TOST_SPEEDUP_SDPA}×", speedup, speedup >= GOAL_TOST_SPEEDUP_SDPA)
            for key in ("aot-mhsa/eager", "gpt2/eager"):
                ran = [n for n in lengths if ok(entry[key].get(n)) and ok(tost.get(n))]
                if not ran:
                    continue
                n = ran[-1]
                ratio = entry[key][n]["peak_increase_bytes"] / max(1, tost[n]["peak_increase_bytes"])
                note = "" if n == longest else (
                    f"eager not run at N={longest} ({skip_text(entry[key].get(longest))}); compared at N={n}")
                add(f"peak memory {FORWARD_LABELS[key]} / ToST at N={n}", mode, f"{ratio:.1f}×",
                    f"≥ {GOAL_TOST_MEMORY_VS_EAGER}×", ratio, ratio >= GOAL_TOST_MEMORY_VS_EAGER, note)
    gen = report["parts"].get("b")
    if gen:
        series = gen["series"]
        for mode, entry in gen["modes"].items():
            contexts = list(entry)
            if "tost/dynamic" in series:
                ms = [entry[c]["tost/dynamic"]["ms_per_token"] for c in contexts]
                flat = ms[-1] / ms[0]
                add(f"ToST ms/token, context {contexts[-1]} / context {contexts[0]}", mode, f"{flat:.2f}×",
                    f"≤ {GOAL_TOST_DECODE_FLATNESS}×", flat, flat <= GOAL_TOST_DECODE_FLATNESS,
                    ", ".join(f"{c}: {m:.2f} ms" for c, m in zip(contexts, ms)))
            for cache in gen["caches"]:
                crate, gpt2 = series_key("causal-crate", cache), series_key("gpt2", cache)
                if crate in series and gpt2 in series:
                    for c in contexts:
                        r = entry[c][crate]["tokens_per_s"] / entry[c][gpt2]["tokens_per_s"]
                        add(f"CausalCRATE / GPT-2 decode tokens/s at context {c}, both {cache} cache", mode,
                            f"{r:.2f}×", f"≥ {GOAL_CRATE_DECODE_VS_GPT2}×", r, r >= GOAL_CRATE_DECODE_VS_GPT2)
    return goals


def skip_text(cell: dict | None) -> str:
    if cell is None:
        return "not run"
    if cell.get("skipped"):
        return f"skipped (predicted {cell['predicted_gb']:.1f} GB)"
    if "error" in cell:
        return f"failed: {cell['error']}"
    return ""


def fmt_ms(seconds: float) -> str:
    ms = 1e3 * seconds
    return f"{ms:,.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def fmt_mb(num_bytes: float) -> str:
    mb = num_bytes / 1e6
    return f"{mb:,.0f}" if mb >= 100 else f"{mb:.1f}"


def render_forward(part: dict, dims: Dims) -> list[str]:
    lengths, keys = part["lengths"], part["configs"]
    head = "| N | " + " | ".join(FORWARD_LABELS[k] for k in keys) + " |"
    rule = "|---" * (len(keys) + 1) + "|"
    lines = [
        "## (a) Long-context forward: time and peak memory vs sequence length", "",
        f"Batch 1, `use_cache=False`, `logits_to_keep=1` for every model (only the last position goes through the "
        f"{dims.vocab_size}-way LM head, so the vocabulary projection does not dominate). Each configuration runs in "
        "its own freshly forked process (see *How measured*). Configurations whose predicted N×N attention buffers "
        f"exceed `--max-memory-gb {part['max_memory_gb']:g}` are skipped; eager prediction: one layer's heads×N×N "
        "scores and probabilities (8 bytes per entry) plus one N×N mask, i.e. "
        f"`(8·{dims.num_heads} + 4)·N²` bytes.", "",
    ]
    for mode, entry in part["modes"].items():
        lines += [f"### {mode}", "", "**Time per forward** (median, ms) and, in brackets, how many times faster ToST is:",
                  "", head, rule]
        for n in lengths:
            cells = []
            for k in keys:
                c = entry[k].get(n)
                if not ok(c):
                    cells.append(skip_text(c))
                    continue
                cell = fmt_ms(c["median_s"])
                if k != "tost" and ok(entry["tost"].get(n)):
                    cell += f" ({c['median_s'] / entry['tost'][n]['median_s']:.1f}×)"
                cells.append(cell)
            lines.append(f"| {n:,} | " + " | ".join(cells) + " |")
        lines += ["", "**Time growth per doubling** of N (t(N)/t(N/2)):", "",
                  "| N/2 → N | " + " | ".join(FORWARD_LABELS[k] for k in keys) + " |", rule]
        growth = {k: growth_factors(entry[k], lengths) for k in keys}
        for i, (n1, n2) in enumerate(zip(lengths, lengths[1:])):
            cells = [f"{growth[k][i]['factor']:.2f}×" if growth[k][i]["factor"] is not None else "–" for k in keys]
            lines.append(f"| {n1:,} → {n2:,} | " + " | ".join(cells) + " |")
        lines += ["", "**Peak memory of one forward** (MB above the post-load baseline) and, in brackets, that peak "
                  "over ToST's:", "", head, rule]
        for n in lengths:
            cells = []
            for k in keys:
                c = entry[k].get(n)
                if not ok(c):
                    cells.append(skip_text(c))
                    continue
                cell = fmt_mb(c["peak_increase_bytes"])
                if k != "tost" and ok(entry["tost"].get(n)):
                    cell += f" ({c['peak_increase_bytes'] / max(1, entry['tost'][n]['peak_increase_bytes']):.1f}×)"
                if c["predicted_gb"]:
                    cell += f" [pred. {1e3 * c['predicted_gb']:,.0f}]"
                cells.append(cell)
            lines.append(f"| {n:,} | " + " | ".join(cells) + " |")
        lines += ["", "`[pred. …]`: the predicted N×N buffers (MB) used for the skip rule, next to the measured peak.",
                  ""]
        lines += ["**Cost growth**: log-log slope of the forward time and of its peak memory against N (least squares "
                  "over the lengths that ran; 1 = linear, 2 = quadratic):", "",
                  "| configuration | lengths | time slope | memory slope |", "|---|---|---|---|"]
        for k in keys:
            ran = [n for n in lengths if ok(entry[k].get(n))]
            time_slope = loglog_slope(ran, [entry[k][n]["median_s"] for n in ran])
            memory_slope = loglog_slope(ran, [entry[k][n]["peak_increase_bytes"] for n in ran])
            span = f"{ran[0]:,}…{ran[-1]:,}" if ran else "none"
            lines.append(f"| {FORWARD_LABELS[k]} | {span} | {slope_cell(time_slope)} | {slope_cell(memory_slope)} |")
        lines.append("")
    return lines


def render_generation(part: dict) -> list[str]:
    series, steps = part["series"], part["decode_steps"]
    lines = [
        "## (b) Generation: greedy decode speed vs context length", "",
        f"Batch 1. Each repetition prefills a random context (untimed), then times {steps} greedy decode steps of one "
        "token each: `model(input_ids=token, past_key_values=cache, use_cache=True, logits_to_keep=1)` followed by an "
        "argmax. Calling forward directly rather than `generate()` keeps the logits processors and stopping "
        "criteria out of the timing; the work per step is the same. All attention models use SDPA. Caches: "
        "*dyn* = transformers `DynamicCache`, which concatenates each new key onto the old ones (GPT-2, AoT-MHSA: "
        "keys + values; CausalCRATE, AoT-MSSA: the shared projection `U_kᵀZ` once); *static* = a `StaticCache` "
        "preallocated for context + decode steps before the prefill, written in place, its unfilled slots masked "
        "(`generate(..., cache_implementation=\"static\")` uses the same cache). ToST keeps its constant-size "
        "`TokenStatisticsCache` in both cases.", "",
    ]
    head = "| context | " + " | ".join(series_label(s) for s in series) + " |"
    rule = "|---" * (len(series) + 1) + "|"
    for mode, entry in part["modes"].items():
        contexts = [int(c) for c in entry]
        lines += [f"### {mode}", "", "**Decode speed**: tokens/s (ms per token)", "", head, rule]
        for c, row in entry.items():
            lines.append(f"| {int(c):,} | " + " | ".join(
                f"{row[s]['tokens_per_s']:,.0f} ({row[s]['ms_per_token']:.2f})" for s in series) + " |")
        baselines = {s: series_key("gpt2", s.split("/")[1]) for s in series}
        if all(b in series or s.startswith("tost/") for s, b in baselines.items()):
            lines += ["", "**Decode tokens/s relative to GPT-2 with the same cache** (ToST: to GPT-2 dyn):", "",
                      head, rule]
            for c, row in entry.items():
                lines.append(f"| {int(c):,} | " + " | ".join(
                    f"{row[s]['tokens_per_s'] / row[baselines[s]]['tokens_per_s']:.2f}×" for s in series) + " |")
        statics = [s for s in series if s.endswith("/static") and series_key(s.split("/")[0], "dynamic") in series]
        if statics:
            lines += ["", "**Static over dynamic cache**, tokens/s:", "",
                      "| context | " + " | ".join(LABELS[s.split("/")[0]] for s in statics) + " |",
                      "|---" * (len(statics) + 1) + "|"]
            for c, row in entry.items():
                lines.append(f"| {int(c):,} | " + " | ".join(
                    f"{row[s]['tokens_per_s'] / row[series_key(s.split('/')[0], 'dynamic')]['tokens_per_s']:.2f}×"
                    for s in statics) + " |")
        lines += ["", "**Cost growth**: log-log slope against the context over "
                  f"{contexts[0]:,}…{contexts[-1]:,} (0 = flat, 1 = linear; a least-squares fit of all contexts) of "
                  "the time per decoded token, of the cache after the prefill, and of the prefill time:", "",
                  "| series | ms/token | cache bytes | prefill time |", "|---|---|---|---|"]
        for s in series:
            column = [entry[c][s] for c in entry]
            lines.append(f"| {series_label(s)} | " + " | ".join(slope_cell(loglog_slope(contexts, [r[name] for r in column]))
                         for name in ("ms_per_token", "cache_bytes_after_prefill", "prefill_median_s")) + " |")
        lines += ["", "**Cache size after the prefill** (MB; a static cache holds all its slots from the start) and "
                  "prefill time (median, ms):", "", head, rule]
        for c, row in entry.items():
            lines.append(f"| {int(c):,} | " + " | ".join(
                f"{row[s]['cache_bytes_after_prefill'] / 1e6:.2f} MB, {fmt_ms(row[s]['prefill_median_s'])} ms"
                for s in series) + " |")
        lines.append("")
    return lines


def render_training(part: dict) -> list[str]:
    models = part["models"]
    lines = [
        "## (c) Training throughput", "",
        f"Batch {part['batch']} × {part['context']} tokens: `zero_grad`, forward with `labels` (the models' own shifted "
        "cross-entropy over all positions), `backward()`, `torch.optim.AdamW(lr=1e-4, weight_decay=0.05).step()`; "
        "bf16-autocast wraps the forward only. Models interleaved in one process.", "",
        "| mode | " + " | ".join(LABELS[k] for k in models) + " |", "|---" * (len(models) + 1) + "|",
    ]
    for mode, entry in part["modes"].items():
        lines.append(f"| {mode}: tokens/s | " + " | ".join(f"{entry[k]['tokens_per_s']:,.0f}" for k in models) + " |")
        lines.append(f"| {mode}: ms/step | " + " | ".join(f"{entry[k]['step_ms']:,.1f}" for k in models) + " |")
        if "gpt2" in entry:
            lines.append(f"| {mode}: tokens/s vs GPT-2 | " + " | ".join(
                f"**{entry[k]['tokens_per_s_vs_gpt2']:.2f}×**" for k in models) + " |")
    lines.append("")
    return lines


def render(report: dict) -> str:
    dims = Dims(**report["dims"])
    lines = ["# White-box language models vs. GPT-2 on CPU: long context, generation, training", ""]
    if report["quick"]:
        lines += ["> **SMOKE RUN (`--quick`)**: tiny lengths and 1–2 repetitions. The numbers below only show "
                  "that the harness works; they are not a measurement.", ""]
    reused = report.get("reused", {})
    if reused:
        lines += ["> Parts " + ", ".join(f"({p})" for p in sorted(reused)) + " are taken unchanged from an earlier "
                  "run (`--reuse-from`): " + "; ".join(f"({p}) `{r['command']}` on {r['date']}, load average "
                  f"{r['loadavg_start']} → {r['loadavg_end']}" for p, r in sorted(reused.items())) + ". The "
                  "environment below is this run's, which measured part"
                  f"{'s' if len(report['parts']) - len(reused) > 1 else ''} "
                  + ", ".join(f"({p})" for p in report["parts"] if p not in reused) + ".", ""]
    lines += environment_lines(report, extra=[
        f"* parts: {', '.join(report['parts'])}; modes: {', '.join(report['modes'])}; warm-up iterations: "
        f"{report['warmup']}, timed repetitions: {report['reps']} (part (a): up to {report['forward_reps']}, at least "
        f"{report['forward_min_reps']}, stopping after {report['forward_budget_s']:g} s of timed calls)"])
    lines += [
        "## Models", "",
        f"Equal width and depth: d {dims.hidden_size}, L {dims.num_layers}, K {dims.num_heads} heads of "
        f"{dims.hidden_size // dims.num_heads}, vocabulary {dims.vocab_size}, {dims.max_positions} positions, tied "
        "LM head, dropout 0, random init (seed 0). The blocks differ, so the parameter counts do: GPT-2 layer = "
        "attention (4d²) + MLP (8d²); AoT-MHSA = GPT-2 without the MLP; AoT-MSSA = MSSA (2d²) only; CausalCRATE = "
        "MSSA + ISTA (d²); CausalCRATE-α = MSSA + ODL (8d²); ToST = TSSA (2d²) + MLP (8d²) + a per-head, "
        "per-position score bias (K × positions, counted below with the layers, not with the tables).", "",
        "| model | parameters | without token/position tables |", "|---|---|---|",
    ]
    for k, p in report["params"].items():
        lines.append(f"| {LABELS[k]} | {p['total']:,} | {p['non_embedding']:,} |")
    lines.append("")
    if "a" in report["parts"]:
        lines += render_forward(report["parts"]["a"], dims)
    if "b" in report["parts"]:
        lines += render_generation(report["parts"]["b"])
    if "c" in report["parts"]:
        lines += render_training(report["parts"]["c"])

    lines += ["## Goals", "", *goals_table(report["goals"], ("goal", "mode", "measured", "target", "pass", "note"))]
    fwd = report["parts"].get("a")
    if fwd:
        longest = fwd["lengths"][-1]
        stated = []
        for mode, entry in fwd["modes"].items():
            for key in ("aot-mhsa/sdpa", "gpt2/sdpa"):
                a, b = entry["tost"].get(longest), entry[key].get(longest)
                if ok(a) and ok(b):
                    stated.append(f"{mode}: {FORWARD_LABELS[key]} / ToST = "
                                  f"{b['peak_increase_bytes'] / max(1, a['peak_increase_bytes']):.2f}×")
        if stated:
            lines += [f"Peak memory against SDPA at N={longest} (stated, no target): " + "; ".join(stated) + ".", ""]
    if report["quick"]:
        lines += ["(Smoke run: PASS/MISS above is not meaningful.)", ""]

    lines += ["## Explanation", ""]
    if report.get("explanation"):
        lines += [report["explanation"].strip(), ""]
    else:
        lines += ["_To be written after the full run: why each goal passed or missed (what dominates ToST's time at "
                  "each length, where the softmax models' time and memory go, the per-token overheads in decode, and "
                  "what the parameter differences between the blocks mean for the training ratios)._", ""]
    lines += [
        "## How measured", "",
        "* **Timing**: `time.perf_counter()` around each call; the median of the timed repetitions after the "
        "warm-up is reported. `torch.set_num_threads(--threads)` in every process. fp32 runs the fp32 model; "
        "`bf16-autocast` wraps the forward in `torch.autocast(\"cpu\", dtype=torch.bfloat16)` (weights stay fp32, "
        "matmuls run in bf16; ToST's running statistics stay fp32 by design). `bf16-cast` (part (b) only) decodes with a "
        "copy of each model cast to bf16 (`model.to(torch.bfloat16)`), no autocast: in one-token steps autocast casts "
        "every fp32 weight again at every step.",
        "* **(a) fresh process per configuration**: the script starts a `multiprocessing` *forkserver* that imports "
        "torch, transformers and whitebox_hf once and never computes; each (model, attention, length, mode) is a "
        "process forked from it. In that process: build the model (seed 0), make the input, run one 16-token forward "
        "(thread pool start-up, lazy imports and one-time kernel set-up, none of which depends on N), `gc.collect()`, read "
        "the RSS (`VmRSS`), reset the RSS high-water mark (`echo 5 > /proc/self/clear_refs`), run the first "
        "forward and read the high-water mark (`VmHWM`). **Peak memory = VmHWM − VmRSS before the forward**: "
        "the most resident memory the forward added at any moment, activations and attention buffers included, weights and imports excluded. "
        "(Where `clear_refs` is not available it falls back to the increase of `getrusage().ru_maxrss`.) Only the "
        "first forward is measured, because later ones reuse memory the allocator kept. That first call also counts "
        "as the first warm-up; the timed repetitions follow in the same process. Lengths are visited in flipped "
        "model order every other length.",
        "* **(b)** all models in one process, repetitions interleaved (A B …, then … B A) with the garbage "
        "collector paused; the prefill of each repetition is not timed.",
        "* **(c)** a fresh copy of each model in `train()` mode per mode, repetitions interleaved as in (b). One "
        "batch size only, so no slope is fitted for (c).",
        "* **Slopes**: least-squares fit of log(cost) on log(length) over every measured length "
        "(`benchmarks/_slopes.py`), computed from the same medians as the tables.",
        "",
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------------------


def int_list(text: str) -> list[int]:
    return [int(v) for v in text.replace(",", " ").split()]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--output", default=None,
                   help=f"markdown report path; the raw numbers go to the same name with .json "
                        f"(default: {DEFAULT_OUTPUT}, or {QUICK_OUTPUT} with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: tiny lengths, contexts and batches, 1 warm-up, 2 reps (overrides the sizes below)")
    p.add_argument("--parts", default="a,b,c", help="comma-separated subset of a (long-context forward), "
                   "b (generation), c (training)")
    p.add_argument("--modes", nargs="+", default=[*MODES, *CAST_MODES], choices=[*MODES, *CAST_MODES],
                   help=f"{', '.join(MODES)}: every part; {', '.join(CAST_MODES)} (weights cast, no autocast): part (b) "
                        "only")
    add_bf16_argument(p)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    p.add_argument("--hidden-size", type=int, default=256)
    p.add_argument("--num-layers", type=int, default=6)
    p.add_argument("--num-heads", type=int, default=8)
    p.add_argument("--vocab-size", type=int, default=8192)
    p.add_argument("--max-positions", type=int, default=16384,
                   help="max_position_embeddings of every model (raised automatically to fit the lengths)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up iterations per model and mode")
    p.add_argument("--reps", type=int, default=5, help="timed repetitions for (b) and (c) (median reported)")
    p.add_argument("--lengths", type=int_list, default=[1024, 2048, 4096, 8192, 16384], help="(a) sequence lengths")
    p.add_argument("--max-memory-gb", type=float, default=8.0,
                   help="(a) skip a configuration whose predicted N×N attention buffers exceed this (GB)")
    p.add_argument("--forward-reps", type=int, default=5, help="(a) timed repetitions at most")
    p.add_argument("--forward-min-reps", type=int, default=3, help="(a) timed repetitions at least")
    p.add_argument("--forward-budget-s", type=float, default=30.0,
                   help="(a) stop timing a configuration once its timed calls took this long (after min reps)")
    p.add_argument("--worker-timeout-s", type=float, default=1800.0, help="(a) give up on a configuration after this")
    p.add_argument("--contexts", type=int_list, default=[128, 256, 512, 1024, 2048, 4096], help="(b) context lengths")
    p.add_argument("--decode-steps", type=int, default=32, help="(b) timed greedy decode steps per repetition")
    p.add_argument("--gen-models", nargs="+", default=list(GEN_MODELS), choices=list(LABELS))
    p.add_argument("--caches", nargs="+", default=list(CACHES), choices=list(CACHES),
                   help="(b) caches to decode with: the model's default (dynamic) and/or a preallocated StaticCache")
    p.add_argument("--reuse-from", default=None,
                   help="JSON of an earlier run of this script: the parts not in --parts are copied from it (the "
                        "model sizes must match), and so is its page's hand-written Explanation section")
    p.add_argument("--train-batch", type=int, default=8)
    p.add_argument("--train-context", type=int, default=256)
    p.add_argument("--train-models", nargs="+", default=list(TRAIN_MODELS), choices=list(LABELS))
    args = p.parse_args(argv)
    args.parts = [s.strip() for s in args.parts.split(",") if s.strip()]
    if not args.parts or set(args.parts) - {"a", "b", "c"}:
        p.error(f"--parts must be a comma-separated subset of a,b,c, got {args.parts}")
    if args.quick:
        args.warmup, args.reps = 1, 2
        args.forward_reps, args.forward_min_reps = 2, 1
        args.lengths, args.contexts, args.decode_steps = [256, 512], [128, 256], 4
        args.train_batch, args.train_context = 2, 64
    if args.output is None:
        args.output = QUICK_OUTPUT if args.quick else DEFAULT_OUTPUT
    if args.reuse_from is not None and not Path(args.reuse_from).is_file():
        p.error(f"--reuse-from must be an existing JSON file of an earlier run, got {args.reuse_from!r}")
    args.lengths, args.contexts = sorted(args.lengths), sorted(args.contexts)
    needed = max(args.lengths + [c + args.decode_steps for c in args.contexts] + [args.train_context])
    args.max_positions = max(args.max_positions, needed)
    return args


def check_reusable(path: str, dims: Dims) -> dict:
    """The earlier run at ``path``, refused (before anything is measured) if its model sizes differ."""
    old = json.loads(Path(path).read_text())
    if old.get("dims") != asdict(dims):
        raise ValueError(f"--reuse-from {path}: the earlier run's model sizes {old.get('dims')} differ from this "
                         f"run's {asdict(dims)}; rerun every part instead")
    return old


def with_integer_keys(value):
    """``value`` with its digit-string dict keys turned back into the ints they were: JSON writes the lengths and
    contexts that key parts (a) and (b) as strings, and the renderers look them up as ints."""
    if isinstance(value, dict):
        return {int(k) if isinstance(k, str) and k.isdigit() else k: with_integer_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [with_integer_keys(v) for v in value]
    return value


def reuse_parts(path: str, dims: Dims, parts: dict) -> tuple[dict, str | None]:
    """Copy into ``parts`` the parts of the earlier run at ``path`` that this run did not measure; returns where
    each came from and the Explanation section of the earlier page (the JSON's, or else its markdown's)."""
    old = check_reusable(path, dims)
    reused = {}
    for name, part in old["parts"].items():
        if name not in parts:
            parts[name] = with_integer_keys(part)
            source = old.get("reused", {}).get(name) or dict(
                command=old["command"], date=old["date"], loadavg_start=old["environment"]["loadavg_start"],
                loadavg_end=old["environment"].get("loadavg_end", "n/a"))
            reused[name] = source
    explanation = old.get("explanation")
    page = Path(path).with_suffix(".md")
    if explanation is None and page.is_file():
        text = page.read_text()
        if "## Explanation" in text:
            explanation = text.split("## Explanation", 1)[1].split("\n## ", 1)[0]
            if "_To be written" in explanation:
                explanation = None
    if explanation and reused:
        # Reused once more: the marker of the previous reuse is already there (one copy, not one per rerun).
        body = explanation.strip()
        while body.startswith("*Written for the earlier run of ") and "\n\n" in body:
            body = body.split("\n\n", 1)[1]
        explanation = (f"*Written for the earlier run of {', '.join(sorted(reused))} (and its part (b), with "
                       "`DynamicCache` only); the numbers it quotes are that run's.*\n\n" + body)
    return reused, explanation


def main(argv=None) -> dict:
    args = parse_args(argv)
    command, env = start(args, argv, "bench_language_models.main")
    bf16 = resolve_bf16(args.bf16) if any(m != "fp32" for m in args.modes) else None
    if bf16 and not bf16["enabled"]:
        print(f"bf16 modes skipped: {bf16['reason']}", flush=True)
        args.modes = [m for m in args.modes if m == "fp32"]
    dims = Dims(args.hidden_size, args.num_layers, args.num_heads, args.vocab_size, args.max_positions)
    if args.reuse_from is not None:
        check_reusable(args.reuse_from, dims)
    torch.manual_seed(0)
    params = {k: parameter_counts(build_model(k, dims)) for k in LABELS}

    parts = {}
    t0 = time.perf_counter()
    if "a" in args.parts:
        parts["a"] = run_forward_part(args, dims)
    if "b" in args.parts:
        parts["b"] = run_generation_part(args, dims)
    if "c" in args.parts:
        parts["c"] = run_training_part(args, dims)
    env["loadavg_end"] = loadavg()
    reused, explanation = {}, None
    if args.reuse_from is not None:
        reused, explanation = reuse_parts(args.reuse_from, dims, parts)

    report = dict(
        command=command, date=now(), quick=args.quick, wall_s=time.perf_counter() - t0, environment=env, bf16=bf16,
        dims=asdict(dims), modes=args.modes, warmup=args.warmup, reps=args.reps, forward_reps=args.forward_reps,
        forward_min_reps=args.forward_min_reps, forward_budget_s=args.forward_budget_s, params=params,
        parts={p: parts[p] for p in ("a", "b", "c") if p in parts}, reused=reused, explanation=explanation,
        goals_definition=dict(tost_growth_per_doubling=GOAL_TOST_GROWTH, tost_speedup_vs_sdpa=GOAL_TOST_SPEEDUP_SDPA,
                              tost_memory_vs_eager=GOAL_TOST_MEMORY_VS_EAGER,
                              tost_decode_flatness=GOAL_TOST_DECODE_FLATNESS,
                              crate_decode_vs_gpt2=GOAL_CRATE_DECODE_VS_GPT2),
    )
    report["goals"] = evaluate_goals(report)
    markdown = render(report)

    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(markdown)
    for g in report["goals"]:
        print(f"{'PASS' if g['pass'] else 'MISS'}: {g['goal']} [{g['mode']}]: {g['measured']} (target {g['target']})"
              + (f"; {g['note']}" if g["note"] else ""))
    print(f"wrote {out} and {out.with_suffix('.json')} ({report['wall_s']:.0f} s)")
    return report


if __name__ == "__main__":
    main()
